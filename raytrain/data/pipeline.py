"""The Ray Data graph: epoch plan → decode actors (frames uint8 + tokens) → Ray Train.

This is the only module of ``raytrain.data`` that imports Ray. Decoding and tokenising happen in a
callable class on CPU actors (set up once per actor); frames stay uint8 all the way to the trainer.
The manifest is read and validated once on the driver (``load_manifest``); training streams the
epoch plan built from it (``raytrain.data.plan``), evaluation the eval split in manifest order.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa

from raytrain.config import Config
from raytrain.data import frame_cache
from raytrain.data.manifest import ClipRow
from raytrain.data.plan import build_plan
from raytrain.model.clip_video import model_num_patches


class DecodeClips:
    """``map_batches`` UDF: decode ``num_frames`` frames per clip; tokenise the planned caption (train).

    Train rows come from the epoch plan and carry a caption and a ``sample_seed`` that fixes the
    random frame offsets inside T equal segments, so augmentation is reproducible. Eval rows get
    segment centres and no text (every caption is queried separately).
    """

    def __init__(self, decoder: str, num_frames: int, image_size: int, train: bool, arch: str, max_words: int,
                 mask_patches: int = 0, high_ratio: float = 0.0, low_ratio: float = 0.0,
                 tube_grid: int = 0, tube_ratio: float = 0.5, tube_block: tuple[int, int] = (2, 4),
                 on_bad_video: str = "error", timeout_s: float = 0.0, substitutes: list[dict] | None = None,
                 cache_location: str | None = None, cache_samplings: int = 1, seed: int = 0):
        from raytrain.data.decode import make_decoder

        self.decoder = make_decoder(decoder)
        self.on_bad_video = on_bad_video
        self.timeout_s = timeout_s
        self.substitutes = substitutes or []  # train split rows (path, start_s, end_s, captions)
        self.known_bad: set[str] = set()  # files that failed once are not decoded again
        self._pool = None
        self.mask_patches = mask_patches  # > 0: also emit random high/low masks (T, N) per clip
        self.ratios = (high_ratio, low_ratio)
        self.tube = (tube_grid, tube_ratio, tuple(tube_block))  # tube_grid > 0: MILES's mask_tube (N,)
        self.num_frames = num_frames
        self.image_size = image_size
        self.train = train
        self.cache = None  # a FrameCache (data.cache=frames), opened on the first batch
        self.cache_location = cache_location
        self.cache_write_error: str | None = None
        self.cache_samplings = cache_samplings  # frame_cache.num_samplings: 1 for eval
        self.seed = seed  # train.seed: the cached samplings' frame offsets derive from it
        self.tokenizer = None
        if train:
            from raytrain.model.clip_video import get_tokenizer

            self.tokenizer = get_tokenizer(arch, max_words)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        clips, captions, bad, hits, pending = [], [], [], [], []
        for i, path in enumerate(batch["path"]):
            start, end = batch["start_s"][i], batch["end_s"][i]
            seed = int(batch["sample_seed"][i]) if self.train else 0
            try:
                if self.cache_location is None:
                    rng = np.random.default_rng(seed) if self.train else None
                    clips.append(self._decode(str(path), start, end, [rng])[0])
                else:
                    clip = int(batch["clip"][i] if self.train else batch["video_index"][i])
                    sampling = int(batch["sampling"][i]) if self.train else 0
                    frames, hit = self._cached(str(path), start, end, clip, sampling, pending)
                    clips.append(frames)
                    hits.append(hit)
                bad.append(-1)
                if self.train:
                    captions.append(str(batch["caption"][i]))
            except Exception as exc:  # VideoDecodeError, or a decoder bug: either way the file is bad
                from raytrain.data.decode import VideoDecodeError

                if self.on_bad_video != "skip":
                    if isinstance(exc, VideoDecodeError):
                        raise
                    raise VideoDecodeError(str(path), self.decoder.name, f"{type(exc).__name__}: {exc}") from exc
                print(f"[raytrain] skipping bad video: {exc}", flush=True)
                self.known_bad.add(str(path))
                if self.train:  # a good clip of the train split takes its place: batches stay full
                    frames, caption = self._substitute(str(path), seed)
                    clips.append(frames)
                    captions.append(caption)
                    bad.append(int(batch["clip"][i]) if "clip" in batch else 0)
                else:  # eval keeps every clip (the similarity matrix is fixed): a blank video
                    clips.append(np.zeros((self.num_frames, self.image_size, self.image_size, 3), np.uint8))
                if self.cache_location is not None:
                    hits.append(False)
        if pending:  # every sampling of the clips decoded in this batch, as one shard
            self._write_cache(pending)
        out = {"frames": np.stack(clips)}
        if self.train and self.cache_location is not None:
            out["cache_hit"] = np.asarray(hits, dtype=bool)
        if self.train:
            out["tokens"] = self.tokenizer(captions).numpy().astype(np.int64)
            if self.on_bad_video == "skip":
                out["bad_clip"] = np.asarray(bad, dtype=np.int64)  # plan clip index replaced, or -1
            if self.mask_patches:
                out.update(self._random_masks(batch["sample_seed"]))
            if self.tube[0]:
                out["mask_tube"] = self._tube_masks(batch["sample_seed"])
        else:
            out["video_index"] = np.asarray(batch["video_index"], dtype=np.int64)
        return out

    def _cached(self, path: str, start, end, clip: int, sampling: int,
                pending: list) -> tuple[np.ndarray, bool]:
        """``(frames, hit)`` of one clip sampling from the frame cache; on a miss decode every cached
        sampling of the clip at once and queue them in ``pending`` (written after the batch)."""
        if self.cache is None:
            self.cache = frame_cache.FrameCache(self.cache_location)
        for clip_, k, frames in pending:  # decoded earlier in this same batch (a clip met twice)
            if clip_ == clip and k == sampling:
                return frames.copy(), False
        frames = self.cache.get(clip, sampling)
        if frames is not None:
            return frames, True
        if self.train:
            rngs = frame_cache.sampling_rngs(self.seed, clip, self.cache_samplings)
        else:
            rngs = [None]
        decoded = self._decode(path, start, end, rngs)
        pending.extend((clip, k, decoded[k]) for k in range(len(rngs)))
        return decoded[sampling].copy(), False

    def _write_cache(self, items: list) -> None:
        """A cache that cannot be written (disk full, no permission) must not stop training: the
        frames are decoded already. Say so once, and stop writing; reads go on."""
        if self.cache_write_error is not None:
            return
        try:
            self.cache.add(items)
        except Exception as exc:  # noqa: BLE001 - OSError, ArrowException, a storage client's own errors
            self.cache_write_error = f"{type(exc).__name__}: {exc}"
            print(f"[raytrain] frame cache {self.cache_location}: cannot write ({self.cache_write_error}); "
                  f"this decode actor goes on decoding without writing", flush=True)

    def _decode(self, path: str, start, end, rngs: list) -> np.ndarray:
        """``(len(rngs), T, S, S, 3)``: one sampling per generator (``[None]`` for eval's centres)."""
        from raytrain.data.decode import VideoDecodeError, decode_samplings

        if path in self.known_bad:
            raise VideoDecodeError(path, self.decoder.name, "failed earlier in this run")
        kwargs = {"num_frames": self.num_frames, "size": self.image_size, "train": self.train, "rngs": rngs,
                  "start_s": None if start is None or np.isnan(start) else float(start),
                  "end_s": None if end is None or np.isnan(end) else float(end)}
        if not self.timeout_s:
            return decode_samplings(self.decoder, path, **kwargs)
        import concurrent.futures as cf

        if self._pool is None:
            self._pool = cf.ThreadPoolExecutor(max_workers=1, thread_name_prefix="decode")
        future = self._pool.submit(decode_samplings, self.decoder, path, **kwargs)
        try:
            return future.result(timeout=self.timeout_s)
        except cf.TimeoutError:
            # A hung native decoder cannot be interrupted: abandon its thread, start a fresh one.
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
            raise VideoDecodeError(path, self.decoder.name,
                                   f"timed out after {self.timeout_s:g} s (data.decode_timeout_s)") from None

    def _substitute(self, bad_path: str, seed: int, tries: int = 16) -> tuple[np.ndarray, str]:
        """A deterministic stand-in for a bad train clip: the first good one of a seeded draw."""
        from raytrain.data.decode import VideoDecodeError

        rng = np.random.default_rng([seed, 0xBAD])
        order = rng.permutation(len(self.substitutes))[:tries] if self.substitutes else []
        for j in order:
            row = self.substitutes[int(j)]
            if row["path"] in self.known_bad:
                continue
            try:
                frames = self._decode(row["path"], row["start_s"], row["end_s"],
                                      [np.random.default_rng(int(rng.integers(2**62)))])[0]
            except Exception:  # noqa: BLE001 - any failure makes the stand-in unusable; try the next
                self.known_bad.add(row["path"])
                continue
            return frames, row["captions"][int(rng.integers(len(row["captions"])))]
        raise VideoDecodeError(bad_path, self.decoder.name,
                               f"bad, and no good substitute among {len(order)} train clips tried")

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


def _decode(ds, cfg: Config, image_size: int, train: bool, rows: list[ClipRow] | None = None,
            cache_location: str | None = None, mask_columns: Sequence[str] = ()):
    import ray.data

    masks = tuple(mask_columns) if train else ()
    miles = cfg.method.miles
    return ds.map_batches(
        DecodeClips,
        fn_constructor_kwargs={
            "decoder": cfg.data.decoder, "num_frames": cfg.data.num_frames, "image_size": image_size,
            "train": train, "arch": cfg.model.arch, "max_words": cfg.data.max_words,
            "mask_patches": model_num_patches(cfg.model.arch) if "mask_high" in masks else 0,
            "high_ratio": cfg.mask.high_ratio, "low_ratio": cfg.mask.low_ratio,
            "tube_grid": round(model_num_patches(cfg.model.arch) ** 0.5) if "mask_tube" in masks else 0,
            "tube_ratio": miles.mask_ratio, "tube_block": (miles.block_min, miles.block_max),
            "on_bad_video": cfg.data.on_bad_video, "timeout_s": cfg.data.decode_timeout_s,
            "substitutes": substitute_rows(rows) if train and cfg.data.on_bad_video == "skip" else None,
            "cache_location": cache_location, "cache_samplings": frame_cache.num_samplings(cfg, train), "seed": cfg.train.seed},
        batch_size=cfg.data.decode_batch_size,
        batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=cfg.data.decode_actors),
        num_cpus=cfg.data.decode_cpus,
        **decode_remote_args(cfg),
    )


def decode_remote_args(cfg: Config) -> dict:
    """``data.decode_resource``: each decode actor also requests that custom resource, so Ray places
    the actors only on the nodes that offer it (CPU decode nodes), keeping GPU nodes' CPUs for Train."""
    if not cfg.data.decode_resource:
        return {}
    return {"resources": {cfg.data.decode_resource: cfg.data.decode_resource_per_actor}}


def substitute_rows(rows: list[ClipRow] | None) -> list[dict]:
    nan = float("nan")
    return [{"path": r.path, "start_s": nan if r.start_s is None else r.start_s,
             "end_s": nan if r.end_s is None else r.end_s, "captions": list(r.captions)} for r in rows or []]


def prepare_cache(cfg: Config, rows: list[ClipRow], image_size: int, train: bool) -> str | None:
    """``data.cache=frames``: the split's frame-cache folder (stale ones invalidated); else None."""
    if cfg.data.cache != "frames":
        return None
    split = cfg.data.train_split if train else cfg.data.eval_split
    return frame_cache.prepare(cfg, rows, split, image_size, train)


def _plan_samplings(cfg: Config) -> int:
    return cfg.data.cache_samplings if cfg.data.cache == "frames" else 0


def _blocks(num_rows: int, rows_per_block: int) -> int:
    return max(1, min(-(-num_rows // max(1, rows_per_block)), 2000))


def _table_dataset(table, rows_per_block: int):
    """``table`` as a dataset, in order, cut into blocks on the driver: a ``repartition`` would run Ray
    tasks, which wait forever when the decode actors hold every CPU of a small cluster."""
    import ray.data

    size = -(-table.num_rows // _blocks(table.num_rows, rows_per_block)) or 1
    return ray.data.from_arrow([table.slice(i, size) for i in range(0, table.num_rows, size)] or [table])


def train_datasets(cfg: Config, rows: list[ClipRow], image_size: int, start_step: int, end_step: int,
                   mask_columns: Sequence[str] = ()) -> dict:
    """The Train datasets for steps ``[start_step, end_step)``: ``{"train": ...}`` split by Ray Data, or
    with ``data.per_rank_plan`` one dataset per rank (``rank_dataset_name``)."""
    if cfg.data.per_rank_plan:
        return train_datasets_per_rank(cfg, rows, image_size, start_step, end_step, mask_columns)
    return {"train": train_dataset(cfg, rows, image_size, start_step, end_step, mask_columns)}


def train_dataset(cfg: Config, rows: list[ClipRow], image_size: int, start_step: int, end_step: int,
                  mask_columns: Sequence[str] = ()):
    """One pass over the epoch plan for steps ``[start_step, end_step)``."""
    global_batch = cfg.train.batch_size * cfg.scaling.num_workers
    plan = build_plan(rows, global_batch, cfg.train.seed, start_step, end_step, _plan_samplings(cfg))
    ds = _table_dataset(plan, cfg.data.decode_batch_size)
    return _decode(ds, cfg, image_size, train=True, rows=rows,
                   cache_location=prepare_cache(cfg, rows, image_size, train=True), mask_columns=mask_columns)


def rank_dataset_name(rank: int) -> str:
    return f"train_rank{rank}"


def train_datasets_per_rank(cfg: Config, rows: list[ClipRow], image_size: int, start_step: int,
                            end_step: int, mask_columns: Sequence[str] = ()) -> dict:
    """``data.per_rank_plan``: one dataset per rank holding that rank's ``batch_size`` rows of every
    planned step, in plan order. Read unsplit with ``preserve_order``, each rank's batches are then a
    pure function of the plan (no dynamic split), so a restarted run sees exactly the same batches."""
    per_rank = cfg.train.batch_size
    world = cfg.scaling.num_workers
    plan = build_plan(rows, per_rank * world, cfg.train.seed, start_step, end_step, _plan_samplings(cfg))
    cache_location = prepare_cache(cfg, rows, image_size, train=True)
    position = np.arange(plan.num_rows) % (per_rank * world)
    out = {}
    for rank in range(world):
        part = plan.take(np.flatnonzero(position // per_rank == rank))
        ds = _table_dataset(part, cfg.data.decode_batch_size)
        out[rank_dataset_name(rank)] = _decode(ds, cfg, image_size, train=True, rows=rows,
                                               cache_location=cache_location, mask_columns=mask_columns)
    return out


def fill_dataset(cfg: Config, rows: list[ClipRow], image_size: int, train: bool, mask_columns: Sequence[str] = ()):
    """``(dataset, cache folder)``: every clip of a split once through the decode actors with the frame
    cache on (``raytrain cache``): a train clip's first visit writes all of its samplings, an eval clip
    its centres. Read it to the end; the frames themselves are not needed."""
    location = prepare_cache(cfg, rows, image_size, train)
    if not train:
        return _decode(_eval_items(cfg, rows), cfg, image_size, train=False, cache_location=location), location
    table = pa.table({
        "step": pa.array([0] * len(rows), pa.int64()), "clip": pa.array(range(len(rows)), pa.int64()),
        "path": pa.array([r.path for r in rows], pa.string()),
        "start_s": pa.array([r.start_s for r in rows], pa.float64()),
        "end_s": pa.array([r.end_s for r in rows], pa.float64()),
        "caption": pa.array([r.captions[0] for r in rows], pa.string()),
        "sample_seed": pa.array([0] * len(rows), pa.int64()), "sampling": pa.array([0] * len(rows), pa.int32())})
    ds = _table_dataset(table, cfg.data.decode_batch_size)
    return _decode(ds, cfg, image_size, train=True, rows=rows, cache_location=location,
                   mask_columns=mask_columns), location


def eval_dataset(cfg: Config, rows: list[ClipRow], image_size: int):
    """Eval clips in manifest order, each carrying ``video_index`` (its column in the sim matrix)."""
    return _decode(_eval_items(cfg, rows), cfg, image_size, train=False,
                   cache_location=prepare_cache(cfg, rows, image_size, train=False))


def _eval_items(cfg: Config, rows: list[ClipRow]):
    import ray.data

    items = [{"path": r.path, "video_index": i,
              "start_s": np.nan if r.start_s is None else r.start_s,
              "end_s": np.nan if r.end_s is None else r.end_s}
             for i, r in enumerate(rows)]
    return ray.data.from_items(items, override_num_blocks=_blocks(len(items), cfg.data.decode_batch_size))


def eval_texts(rows: list[ClipRow]) -> tuple[list[str], np.ndarray]:
    """Every caption of the eval clips and the index of its clip (multi-caption evaluation)."""
    texts, owner = [], []
    for i, row in enumerate(rows):
        texts.extend(row.captions)
        owner.extend([i] * len(row.captions))
    return texts, np.asarray(owner, dtype=np.int64)
