"""The Ray Data graph: epoch plan → decode actors (frames uint8 + tokens) → Ray Train.

This is the only module of ``raytrain.data`` that imports Ray. Decoding and tokenising happen in a
callable class on CPU actors (set up once per actor); frames stay uint8 all the way to the trainer.
The manifest is read and validated once on the driver (``load_manifest``); training streams the
epoch plan built from it (``raytrain.data.plan``), evaluation the eval split in manifest order.
"""

from __future__ import annotations

import numpy as np

from raytrain.config import Config
from raytrain.data.manifest import ClipRow
from raytrain.data.plan import build_plan
from raytrain.methods.objective import random_mask_columns
from raytrain.model.clip_video import model_num_patches


class DecodeClips:
    """``map_batches`` UDF: decode ``num_frames`` frames per clip; tokenise the planned caption (train).

    Train rows come from the epoch plan and carry a caption and a ``sample_seed`` that fixes the
    random frame offsets inside T equal segments, so augmentation is reproducible. Eval rows get
    segment centres and no text (every caption is queried separately).
    """

    def __init__(self, decoder: str, num_frames: int, image_size: int, train: bool, arch: str, max_words: int,
                 mask_patches: int = 0, high_ratio: float = 0.0, low_ratio: float = 0.0,
                 tube_grid: int = 0, tube_ratio: float = 0.5, tube_block: tuple[int, int] = (2, 4)):
        from raytrain.data.decode import make_decoder

        self.decoder = make_decoder(decoder)
        self.mask_patches = mask_patches  # > 0: also emit random high/low masks (T, N) per clip
        self.ratios = (high_ratio, low_ratio)
        self.tube = (tube_grid, tube_ratio, tuple(tube_block))  # tube_grid > 0: MILES's mask_tube (N,)
        self.num_frames = num_frames
        self.image_size = image_size
        self.train = train
        self.tokenizer = None
        if train:
            from raytrain.model.clip_video import get_tokenizer

            self.tokenizer = get_tokenizer(arch, max_words)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        clips = []
        for i, path in enumerate(batch["path"]):
            start, end = batch["start_s"][i], batch["end_s"][i]
            rng = np.random.default_rng(int(batch["sample_seed"][i])) if self.train else None
            clips.append(self.decoder.decode(
                str(path), num_frames=self.num_frames, size=self.image_size, train=self.train, rng=rng,
                start_s=None if start is None or np.isnan(start) else float(start),
                end_s=None if end is None or np.isnan(end) else float(end)))
        out = {"frames": np.stack(clips)}
        if self.train:
            out["tokens"] = self.tokenizer([str(c) for c in batch["caption"]]).numpy().astype(np.int64)
            if self.mask_patches:
                out.update(self._random_masks(batch["sample_seed"]))
            if self.tube[0]:
                out["mask_tube"] = self._tube_masks(batch["sample_seed"])
        else:
            out["video_index"] = np.asarray(batch["video_index"], dtype=np.int64)
        return out


    def _random_masks(self, seeds: np.ndarray) -> dict[str, np.ndarray]:
        from raytrain.methods.masks import random_mask

        shape = (self.num_frames, self.mask_patches)
        high, low = [], []
        for seed in seeds:
            rng = np.random.default_rng([int(seed), 0x3A5C])  # independent of the frame sampling stream
            high.append(random_mask(shape, self.ratios[0], rng))
            low.append(random_mask(shape, self.ratios[1], rng))
        return {"mask_high": np.stack(high), "mask_low": np.stack(low)}

    def _tube_masks(self, seeds: np.ndarray) -> np.ndarray:
        from raytrain.methods.masks import tube_mask

        grid, ratio, (block_min, block_max) = self.tube
        return np.stack([tube_mask(grid, grid, ratio, np.random.default_rng([int(seed), 0x311E5]), block_min, block_max)
                         for seed in seeds])  # (B, N), its own stream per row: reproducible


def _decode(ds, cfg: Config, image_size: int, train: bool):
    import ray.data

    masks = random_mask_columns(cfg) if train else ()
    miles = cfg.method.miles
    return ds.map_batches(
        DecodeClips,
        fn_constructor_kwargs={
            "decoder": cfg.data.decoder, "num_frames": cfg.data.num_frames, "image_size": image_size,
            "train": train, "arch": cfg.model.arch, "max_words": cfg.data.max_words,
            "mask_patches": model_num_patches(cfg.model.arch) if "mask_high" in masks else 0,
            "high_ratio": cfg.mask.high_ratio, "low_ratio": cfg.mask.low_ratio,
            "tube_grid": round(model_num_patches(cfg.model.arch) ** 0.5) if "mask_tube" in masks else 0,
            "tube_ratio": miles.mask_ratio, "tube_block": (miles.block_min, miles.block_max)},
        batch_size=cfg.data.decode_batch_size,
        batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=cfg.data.decode_actors),
        num_cpus=cfg.data.decode_cpus,
    )


def _blocks(num_rows: int, rows_per_block: int) -> int:
    return max(1, min(-(-num_rows // max(1, rows_per_block)), 2000))


def train_dataset(cfg: Config, rows: list[ClipRow], image_size: int, start_step: int, end_step: int):
    """One pass over the epoch plan for steps ``[start_step, end_step)``."""
    import ray.data

    global_batch = cfg.train.batch_size * cfg.train.num_workers
    plan = build_plan(rows, global_batch, cfg.train.seed, start_step, end_step)
    ds = ray.data.from_arrow(plan).repartition(_blocks(plan.num_rows, cfg.data.decode_batch_size))
    return _decode(ds, cfg, image_size, train=True)


def eval_dataset(cfg: Config, rows: list[ClipRow], image_size: int):
    """Eval clips in manifest order, each carrying ``video_index`` (its column in the sim matrix)."""
    import ray.data

    items = [{"path": r.path, "video_index": i,
              "start_s": np.nan if r.start_s is None else r.start_s,
              "end_s": np.nan if r.end_s is None else r.end_s}
             for i, r in enumerate(rows)]
    ds = ray.data.from_items(items, override_num_blocks=_blocks(len(items), cfg.data.decode_batch_size))
    return _decode(ds, cfg, image_size, train=False)


def eval_texts(rows: list[ClipRow]) -> tuple[list[str], np.ndarray]:
    """Every caption of the eval clips and the index of its clip (multi-caption evaluation)."""
    texts, owner = [], []
    for i, row in enumerate(rows):
        texts.extend(row.captions)
        owner.extend([i] * len(row.captions))
    return texts, np.asarray(owner, dtype=np.int64)
