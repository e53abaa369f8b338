"""Frame-cache figures for ``bench/data_throughput.py``: where the time of a cache hit goes, and
shard size vs read speed per ``data.cache_compression``. Imported by that script (no ``main``).

Every rate here is measured in one process on frames already in the page cache, side by side:

* ``memcpy``: ``np.copyto`` of one decode batch of frames (the machine's copy bandwidth, one core);
* ``hit read``: :meth:`FrameCache.view` of each clip and one copy into the batch array (what a decode
  actor does on a hit), and the same through the old path (a private copy per clip, then
  ``np.stack``);
* ``UDF``: the decode actors' ``DecodeClips`` on all-hit batches without Ray (adds tokenising and the
  batch assembly);
* ``Ray Data ceiling``: a Ray Data pass whose UDF returns ready frames, at the bench's decode batch
  and at a larger one: what Ray's block hand-off (object store put, fetch, batching) allows on its own.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import numpy as np

from raytrain.data import frame_cache


def _rate(fn, n_items: int, min_s: float = 0.5) -> float:
    """Items per second of ``fn`` (which handles ``n_items``), repeated for at least ``min_s``."""
    fn()  # warm: page faults of the memory maps, imports
    reps, t0 = 0, time.perf_counter()
    while True:
        fn()
        reps += 1
        dt = time.perf_counter() - t0
        if dt >= min_s:
            return reps * n_items / dt


def read_rates(location: str, keys: list[tuple[int, int]], batch: int) -> dict[str, float]:
    """Clips/s of the hit read (view + one copy into the batch) and of the old path (copy + stack)."""
    cache = frame_cache.FrameCache(location)
    cache.refresh()
    shape = cache.view(*keys[0]).shape
    out = np.empty((batch, *shape), np.uint8)

    def view_into():
        for i, key in enumerate(keys):
            out[i % batch] = cache.view(*key)

    def copy_stack():
        for j in range(0, len(keys), batch):
            np.stack([cache.get(*key) for key in keys[j:j + batch]])

    src = np.empty_like(out)
    memcpy = _rate(lambda: np.copyto(out, src), batch)
    return {"memcpy": memcpy, "view": _rate(view_into, len(keys)), "copy_stack": _rate(copy_stack, len(keys))}


def udf_rate(cfg, rows, size: int, location: str, start_step: int, end_step: int) -> float:
    """Clips/s of ``DecodeClips`` on the plan's (all-hit) batches, no Ray."""
    from raytrain.data.decode_clips import DecodeClips
    from raytrain.data.plan import build_plan
    from raytrain.data.spec import DecodeSpec

    batch = cfg.data.decode_batch_size
    plan = build_plan(rows, batch, cfg.train.seed, start_step, end_step, frame_cache.num_samplings(cfg, True),
                      cfg.data.epoch_unit).to_pydict()
    udf = DecodeClips(DecodeSpec.from_config(cfg, size, True, (), location))
    batches = [{k: np.asarray(v[i:i + batch]) for k, v in plan.items()} for i in range(0, len(plan["clip"]), batch)]

    def run():
        for b in batches:
            out = udf(b)
        assert out["cache_hit"].all(), "the UDF bench needs a filled cache"

    return _rate(run, sum(len(b["clip"]) for b in batches))


class _Ready:
    """A UDF that returns ready frames: the Ray Data hand-off alone."""

    def __init__(self, shape):
        self.frames = np.random.default_rng(0).integers(0, 255, (64, *shape), np.uint8)

    def __call__(self, batch):
        n = len(batch["id"])
        return {"frames": self.frames[:n].copy(), "tokens": np.zeros((n, 32), np.int64)}


def ray_ceiling(n_clips: int, shape, block: int, cpus: int, read_batch: int) -> float:
    """Steady clips/s of a Ray Data pass of ``_Ready`` blocks of ``block`` clips on ``cpus`` actors."""
    import sys

    import ray.cloudpickle
    import ray.data

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the workers cannot import bench/
    ds = ray.data.from_items([{"id": i} for i in range(n_clips)], override_num_blocks=max(1, n_clips // block))
    ds = ds.map_batches(_Ready, fn_constructor_kwargs={"shape": shape}, batch_size=block, batch_format="numpy",
                        compute=ray.data.ActorPoolStrategy(size=cpus), num_cpus=1)
    timeline, n = [], 0
    for b in ds.iter_batches(batch_size=read_batch, batch_format="numpy", prefetch_batches=2):
        n += len(b["frames"])
        timeline.append((time.perf_counter(), n))
    t_q, n_q = next((t, c) for t, c in timeline if c >= n / 4)
    return (n - n_q) / max(timeline[-1][0] - t_q, 1e-9)


def rewrite(location: str, compression: str) -> None:
    """Re-encode every shard of a cache folder with ``compression`` (same entries, same frames)."""
    cache = frame_cache.FrameCache(location)
    cache.refresh()
    old = sorted(Path(location).glob("shard-*.arrow"))
    keys = sorted(cache._index)
    for j in range(0, len(keys), 16):
        frame_cache.write_shard(location, [(c, k, cache.view(c, k)) for c, k in keys[j:j + 16]], compression)
    del cache
    for path in old:
        path.unlink()


def natural_frames(n_clips: int, shape, noise: float = 3.0, seed: int = 0) -> list[np.ndarray]:
    """Frames with the statistics of camera footage rather than SynthVTT's flat shapes: a smooth
    low-frequency texture (upsampled noise) on a gradient, moving by a few pixels per frame, plus
    sensor noise (sigma ``noise`` grey levels; H.264 and the resize remove much of it). An assumption, not real video: real frames compress somewhere
    between this and SynthVTT."""
    import torch

    t, s = shape[0], shape[1]
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n_clips):
        coarse = torch.from_numpy(rng.normal(128, 50, (1, 3, s // 8 + 4, s // 8 + 4)).astype(np.float32))
        big = torch.nn.functional.interpolate(coarse, scale_factor=8, mode="bicubic")[0].permute(1, 2, 0).numpy()
        ramp = np.linspace(-40, 40, s, dtype=np.float32)[None, :, None]
        frames = np.stack([big[2 * i:2 * i + s, 3 * i % 8:3 * i % 8 + s] for i in range(t)]) + ramp
        frames += rng.normal(0, noise, frames.shape).astype(np.float32)
        out.append(np.clip(frames, 0, 255).astype(np.uint8))
    return out


def format_rows(location: str, natural: dict[str, list[np.ndarray]], scratch: Path, batch: int) -> list[dict]:
    """Bytes per clip sampling and hit-read MB/s for each compression, on the cache's own (SynthVTT)
    frames and on each list of ``natural`` frames (as many SynthVTT samplings as the first has)."""
    base = frame_cache.FrameCache(location)
    base.refresh()
    keys = sorted(base._index)[:len(next(iter(natural.values())))]
    synth = [base.get(*key) for key in keys]
    rows = []
    for texture, clips in {"SynthVTT": synth, **natural}.items():
        for compression in frame_cache.COMPRESSIONS:
            folder = scratch / f"{texture}-{compression}"
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir(parents=True)
            t0 = time.perf_counter()
            for j in range(0, len(clips), 16):
                frame_cache.write_shard(str(folder), [(i, 0, clips[i]) for i in range(j, min(j + 16, len(clips)))],
                                        compression)
            write_s = time.perf_counter() - t0
            size = sum(f.stat().st_size for f in folder.glob("shard-*.arrow"))
            rates = read_rates(str(folder), [(i, 0) for i in range(len(clips))], batch)
            raw = clips[0].nbytes
            rows.append({"texture": texture, "compression": compression, "bytes": size / len(clips),
                         "ratio": raw * len(clips) / size, "read_mb_s": rates["view"] * raw / 1e6,
                         "write_mb_s": raw * len(clips) / write_s / 1e6})
            shutil.rmtree(folder, ignore_errors=True)
    return rows
