"""The Ray Data graph: manifest → shuffled rows → decode actors (frames uint8 + tokens) → Train.

This is the only module of ``raytrain.data`` that imports Ray. Decoding and tokenising happen in a
callable class on CPU actors (set up once per actor); frames stay uint8 all the way to the trainer.
"""

from __future__ import annotations

import os
import zlib
from pathlib import Path

import numpy as np

from raytrain.config import Config
from raytrain.data.manifest import ClipRow, load_manifest

MANIFEST_COLUMNS = ["video_id", "path", "captions", "split", "start_s", "end_s"]


class DecodeClips:
    """``map_batches`` UDF: decode ``num_frames`` frames per clip and (train) tokenise one caption.

    Train: random frame offsets inside T equal segments and one random caption per clip, drawn anew
    each time the clip is seen. Eval: segment centres, no text (every caption is queried separately).
    """

    def __init__(self, manifest_dir: str, decoder: str, num_frames: int, image_size: int, train: bool,
                 arch: str, max_words: int, seed: int):
        from raytrain.data.decode import make_decoder

        self.manifest_dir = Path(manifest_dir)
        self.decoder = make_decoder(decoder)
        self.num_frames = num_frames
        self.image_size = image_size
        self.train = train
        self.tokenizer = None
        if train:
            from raytrain.model.clip_video import get_tokenizer

            self.tokenizer = get_tokenizer(arch, max_words)
        self.rng = np.random.default_rng([seed, os.getpid(), zlib.crc32(os.urandom(8))])

    def _path(self, path: str) -> str:
        return path if os.path.isabs(path) else str(self.manifest_dir / path)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        clips = []
        for i, path in enumerate(batch["path"]):
            start = batch["start_s"][i] if "start_s" in batch else None
            end = batch["end_s"][i] if "end_s" in batch else None
            clips.append(self.decoder.decode(
                self._path(str(path)), num_frames=self.num_frames, size=self.image_size, train=self.train,
                rng=self.rng if self.train else None,
                start_s=None if start is None or np.isnan(start) else float(start),
                end_s=None if end is None or np.isnan(end) else float(end)))
        out = {"frames": np.stack(clips)}
        if self.train:
            captions = [str(caps[self.rng.integers(len(caps))]) for caps in batch["captions"]]
            out["tokens"] = self.tokenizer(captions).numpy().astype(np.int64)
        else:
            out["video_index"] = np.asarray(batch["video_index"], dtype=np.int64)
        return out


def _read_split(manifest: str, split: str):
    import ray.data
    from ray.data.expressions import col

    ds = ray.data.read_parquet(manifest, columns=_present_columns(manifest))
    return ds.filter(expr=col("split") == split)


def _present_columns(manifest: str) -> list[str]:
    import pyarrow.parquet as pq

    names = pq.read_schema(manifest).names
    return [c for c in MANIFEST_COLUMNS if c in names]


def _decode(ds, cfg: Config, manifest: str, image_size: int, train: bool):
    import ray.data

    return ds.map_batches(
        DecodeClips,
        fn_constructor_kwargs={
            "manifest_dir": str(Path(manifest).resolve().parent), "decoder": cfg.data.decoder,
            "num_frames": cfg.data.num_frames, "image_size": image_size, "train": train, "arch": cfg.model.arch,
            "max_words": cfg.data.max_words, "seed": cfg.train.seed},
        batch_size=cfg.data.decode_batch_size,
        batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=cfg.data.decode_actors),
        num_cpus=cfg.data.decode_cpus,
    )


def train_dataset(cfg: Config, image_size: int):
    """Rows of the train split, shuffled anew each epoch (the rows are tiny: shuffle before decode)."""
    manifest = str(Path(cfg.data.manifest).resolve())
    ds = _read_split(manifest, cfg.data.train_split).random_shuffle()
    return _decode(ds, cfg, manifest, image_size, train=True)


def eval_dataset(cfg: Config, rows: list[ClipRow], image_size: int):
    """Eval clips in manifest order, each carrying ``video_index`` (its column in the sim matrix)."""
    import ray.data

    manifest = str(Path(cfg.data.manifest).resolve())
    items = [{"video_id": r.video_id, "path": r.path, "video_index": i,
              "start_s": np.nan if r.start_s is None else r.start_s,
              "end_s": np.nan if r.end_s is None else r.end_s, "captions": list(r.captions)}
             for i, r in enumerate(rows)]
    ds = ray.data.from_items(items, override_num_blocks=max(1, min(len(items) // 16, 64)))
    return _decode(ds, cfg, manifest, image_size, train=False)


def eval_texts(rows: list[ClipRow]) -> tuple[list[str], np.ndarray]:
    """Every caption of the eval clips and the index of its clip (multi-caption evaluation)."""
    texts, owner = [], []
    for i, row in enumerate(rows):
        texts.extend(row.captions)
        owner.extend([i] * len(row.captions))
    return texts, np.asarray(owner, dtype=np.int64)


def validated_rows(cfg: Config, split: str) -> list[ClipRow]:
    return load_manifest(cfg.data.manifest, split=split)
