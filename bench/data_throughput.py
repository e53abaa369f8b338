"""raytrain's data pipeline vs a plain multiprocessing decord Pool, same clips, same cores; and a
frame-cache epoch (reads) vs the decode epoch that filled it.

Every variant turns the same H.264 clips into ``--frames`` training frames resized and centre-cropped
to ``--size`` (uint8), one random temporal sampling per clip:

* ``pool``: ``multiprocessing.Pool(--cpus)`` mapping ``DecordDecoder.decode`` over the clips (the
  workers are warmed up first, so this is the Pool's steady state);
* ``raytrain``: ``raytrain.data.pipeline.train_dataset`` (epoch plan → Ray Data decode actors, which
  also tokenise the captions) on a local Ray with ``--cpus`` CPUs and ``--cpus`` decode actors, read by
  the driver, ``--epochs`` epochs in one pass as a training run reads it. Timed end to end (actor
  start-up included) and steady (from the batch that completes the first quarter of the clips on);
* ``cache fill`` / ``cache hit``: the same with ``data.cache=frames``: the first epoch decodes
  ``--samplings`` samplings per clip and writes them, the second epoch reads them back;
* ``start-up``: what a decode actor imports (fresh interpreters, ``-X importtime``), then
  ``--startup-repeats`` interleaved ``--epochs`` passes as before (``open_clip.get_tokenizer`` in
  every actor, the plan's dataset by ``ray.data.from_arrow``), with the light tokenizer
  (``open_clip/tokenizer.py`` alone), and now (also ``ray.data.from_blocks``): end to end and steady
  vs the Pool, and the timeline (dataset built, actor process start, constructor, first batch).

    .venv/bin/python bench/data_throughput.py                      # 96 clips of 320x240 on 2 CPUs
    .venv/bin/python bench/data_throughput.py --cpus 16 --clips 512 # a bigger machine
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import platform
import shutil
import time
from pathlib import Path

for _key, _value in {"RAY_DATA_USE_DATASOURCE_V2": "0", "RAY_TRAIN_METRICS_ENABLED": "0",
                     "RAY_USAGE_STATS_ENABLED": "0", "RAY_DEDUP_LOGS": "0"}.items():
    os.environ.setdefault(_key, _value)

import numpy as np


def _decode_one_frames(item: tuple[str, int, int, int]) -> np.ndarray:
    """One Pool task; the frames go back to the parent (pickled through the pipe), as the pipeline's
    travel to its reader through the object store."""
    from raytrain.data.decode import DecordDecoder

    path, frames, size, seed = item
    return DecordDecoder().decode(path, frames, size, train=True, rng=np.random.default_rng(seed))


def _one_thread() -> None:
    """One torch thread per Pool process (the resize runs in torch), as Ray gives each 1-CPU actor;
    without it the processes oversubscribe the cores and the baseline is slower than it need be."""
    import torch

    torch.set_num_threads(1)


def pool_clips_per_s(paths: list[str], cpus: int, frames: int, size: int) -> float:
    items = [(p, frames, size, i) for i, p in enumerate(paths)]
    with multiprocessing.get_context("fork").Pool(cpus, initializer=_one_thread) as pool:
        list(pool.imap_unordered(_decode_one_frames, items[:cpus], chunksize=1))  # warm: imports, first open
        t0 = time.perf_counter()
        n = sum(1 for _ in pool.imap_unordered(_decode_one_frames, items, chunksize=1))
        return n / (time.perf_counter() - t0)


def pipeline_rates(cfg, rows, size: int, start_step: int, end_step: int) -> dict[str, float]:
    """Clips/s of one pass of raytrain's train pipeline: end to end (actor start-up included), and
    steady: from the batch that completes the first quarter of the clips to the last batch (by then
    every actor is decoding, and the rate is not inflated by blocks decoded before the first batch)."""
    from raytrain.data.pipeline import train_dataset

    t0 = time.perf_counter()
    ds = train_dataset(cfg, rows, image_size=size, start_step=start_step, end_step=end_step)
    timeline, n, hits = [], 0, 0
    for batch in ds.iter_batches(batch_size=cfg.train.batch_size, batch_format="numpy", prefetch_batches=2):
        n += len(batch["frames"])
        hits += int(batch["cache_hit"].sum()) if "cache_hit" in batch else 0
        timeline.append((time.perf_counter(), n))
    t_q, n_q = next((t, c) for t, c in timeline if c >= n / 4)
    t1 = timeline[-1][0]
    return {"clips": n, "total": n / (t1 - t0), "steady": (n - n_q) / max(t1 - t_q, 1e-9),
            "startup_s": timeline[0][0] - t0, "hit": hits / n}


# --------------------------------------------------------------------------------------------------
# Start-up: where a decode actor's first seconds go, and the end-to-end pass with the light tokenizer
# (now: open_clip/tokenizer.py alone) against open_clip.get_tokenizer in every actor (before)


def _process_start_time() -> float | None:
    """This process's start (Unix seconds) from /proc (Linux), else None."""
    try:
        ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
        boot = next(int(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines()
                    if line.startswith("btime"))
        return boot + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, StopIteration, IndexError):
        return None


def _probed_udf(probe_dir: str, light: bool):
    """``DecodeClips`` that writes, per actor: its process start, the constructor's start and end
    (the module imports come before it), the first batch's end, and whether open_clip got imported.
    ``light`` False: the spec's ``simple_tokenizer`` is dropped, so the actor builds its tokenizer
    with ``open_clip.get_tokenizer``, as every actor did before."""
    import dataclasses
    import json
    import sys

    from raytrain.data.decode_clips import DecodeClips

    class ProbedDecodeClips(DecodeClips):
        def __init__(self, spec, *args, **kwargs):
            self._t = {"process": _process_start_time(), "init": time.time()}
            super().__init__(spec if light else dataclasses.replace(spec, simple_tokenizer=None), *args, **kwargs)
            self._t["init_done"] = time.time()

        def __call__(self, batch):
            out = super().__call__(batch)
            if "first_done" not in self._t:
                self._t.update(first_done=time.time(), open_clip="open_clip" in sys.modules)
                Path(probe_dir, f"{os.getpid()}.json").write_text(json.dumps(self._t))
            return out

    return ProbedDecodeClips


def _table_dataset_from_arrow(table, rows_per_block: int):
    """The plan's dataset as it was made before: ``ray.data.from_arrow``, one metadata task per block."""
    import ray.data

    from raytrain.data.pipeline import _blocks

    size = -(-table.num_rows // _blocks(table.num_rows, rows_per_block)) or 1
    return ray.data.from_arrow([table.slice(i, size) for i in range(0, table.num_rows, size)] or [table])


def startup_pass(cfg, rows, size: int, end_step: int, light: bool, from_blocks: bool) -> dict:
    """``pipeline_rates`` of one pass over steps [0, end_step), the actors probed (``_probed_udf``);
    the actors' timeline is the median over actors, in seconds from the pass's start. ``from_blocks``
    False: the plan's dataset is made with ``from_arrow``, as before."""
    import json
    import tempfile

    from raytrain.data import pipeline

    saved = pipeline.DecodeClips, pipeline.train_dataset, pipeline._table_dataset
    built = []

    def train_dataset(*args, **kwargs):  # the driver's part: plan, spec, the Dataset object
        ds = saved[1](*args, **kwargs)
        built.append(time.time())
        return ds

    with tempfile.TemporaryDirectory() as probe_dir:
        pipeline.DecodeClips, pipeline.train_dataset = _probed_udf(probe_dir, light), train_dataset
        if not from_blocks:
            pipeline._table_dataset = _table_dataset_from_arrow
        try:
            t0 = time.time()
            rates = pipeline_rates(cfg, rows, size, 0, end_step)
        finally:
            pipeline.DecodeClips, pipeline.train_dataset, pipeline._table_dataset = saved
        actors = [json.loads(f.read_text()) for f in Path(probe_dir).glob("*.json")]
    rel = {k: float(np.median([a[k] - t0 for a in actors if a.get(k)])) if actors else float("nan")
           for k in ("process", "init", "init_done", "first_done")}
    return {**rates, "actors": len(actors), "open_clip": any(a["open_clip"] for a in actors), **rel,
            "driver": built[0] - t0, "batch": rates["startup_s"]}


def import_seconds(code: str, repeats: int = 2) -> tuple[float, dict[str, float]]:
    """``(wall seconds, cumulative import seconds of torch and open_clip)`` of ``code`` in a fresh
    interpreter (the fastest of ``repeats``), as a decode actor runs it after Ray's worker start."""
    import re
    import subprocess
    import sys

    best = None
    for _ in range(repeats):
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, "-X", "importtime", "-c", code], capture_output=True, text=True,
                              check=True, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
        wall = time.perf_counter() - t0
        top = {}
        for m in re.finditer(r"^import time:\s+\d+ \|\s+(\d+) \|(\s+)(\S+)$", proc.stderr, re.MULTILINE):
            if m.group(3) in ("torch", "open_clip") and m.group(3) not in top:
                top[m.group(3)] = int(m.group(1)) / 1e6
        if best is None or wall < best[0]:
            best = (wall, top)
    return best


def startup_report(cfg, rows, size: int, steps: int, epochs: int, pool: float, repeats: int = 2) -> list[str]:
    """The start-up table: a decode actor's imports, then ``repeats`` interleaved passes of ``epochs``
    epochs as before (open_clip.get_tokenizer in every actor, the plan's dataset by ``from_arrow``),
    with the light tokenizer only, and now (light tokenizer, ``from_blocks``): end to end and steady
    vs the Pool, with the driver's and the actors' median timeline."""
    arch, words = cfg.model.arch, cfg.data.max_words
    base = "import raytrain.data.decode_clips; from raytrain.data.tokens import CaptionTokenizer"
    lines = ["", "start-up: a decode actor's imports and tokenizer in a fresh interpreter (wall s; cumulative import s)"]
    for label, code in (("python + import torch (the floor)", "import torch"),
                        ("decode modules + light tokenizer (now)",
                         f"{base}; CaptionTokenizer('{arch}', {words}, (('context_length', {words}),))"),
                        ("decode modules + open_clip tokenizer (before)", f"{base}; CaptionTokenizer('{arch}', {words})")):
        wall, top = import_seconds(code)
        lines.append(f"  {label:46s} {wall:6.2f} s  ({', '.join(f'{k} {v:.2f}' for k, v in top.items())})")
    variants = {"before: open_clip tokenizer, from_arrow": (False, False),
                "light tokenizer, from_arrow": (True, False), "now: light tokenizer, from_blocks": (True, True)}
    runs: dict[str, list[dict]] = {v: [] for v in variants}
    for _ in range(repeats):
        for name, (light, from_blocks) in variants.items():
            runs[name].append(startup_pass(cfg, rows, size, epochs * steps, light, from_blocks))
    lines += ["", (f"start-up, {epochs} epochs of {len(rows)} clips in one pass, {runs[name][0]['actors']} actors "
                   f"(median of {repeats} interleaved passes; actor timeline: s from the pass's start)"),
              (f"{'variant':38s} {'end-to-end':>10s} {'vs pool':>7s} {'steady':>7s} {'vs pool':>7s} "
               f"{'driver':>6s} {'proc':>5s} {'init':>5s} {'ready':>5s} {'batch1':>6s} {'read':>5s}  open_clip")]
    for label in variants:
        med = {k: float(np.median([r[k] for r in runs[label]]))
               for k in ("total", "steady", "driver", "process", "init", "init_done", "first_done", "batch")}
        loaded = "imported" if any(r["open_clip"] for r in runs[label]) else "not imported"
        lines.append(f"{label:38s} {med['total']:10.2f} {med['total'] / pool:7.2f} {med['steady']:7.2f} "
                     f"{med['steady'] / pool:7.2f} {med['driver']:6.1f} {med['process']:5.1f} {med['init']:5.1f} "
                     f"{med['init_done']:5.1f} {med['first_done']:6.1f} {med['batch']:5.1f}  {loaded}")
    raw = "; ".join(f"{label.split(':')[0].split(',')[0]} {r['total']:.1f}/{r['steady']:.1f}"
                    for label in variants for r in runs[label])
    lines.append("  (seconds from the pass's start: driver: train_dataset returned; proc: actor process started; "
                 "init: constructor entered, after the module imports; ready: constructor done; batch1: an actor's "
                 f"first batch decoded; read: the first batch reached the reader. Each pass, end-to-end/steady "
                 f"clips/s: {raw})")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clips", type=int, default=160)
    ap.add_argument("--cpus", type=int, default=2)
    ap.add_argument("--frames", type=int, default=12)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--width", type=int, default=320)
    ap.add_argument("--height", type=int, default=240)
    ap.add_argument("--epochs", type=int, default=3, help="epochs in the no-cache pipeline pass")
    ap.add_argument("--samplings", type=int, default=4, help="data.cache_samplings for the cache rows")
    ap.add_argument("--decode-batch", type=int, default=4, help="data.decode_batch_size")
    ap.add_argument("--data", default="/tmp/raytrain_bench_data", help="where the clips are generated")
    ap.add_argument("--out", default=None, help="also write the report to this file")
    ap.add_argument("--startup-repeats", type=int, default=2,
                    help="interleaved start-up passes per variant (actors vs driver tokenise); 0 = skip")
    ap.add_argument("--hit-batch", type=int, default=32,
                    help="data.decode_batch_size of the extra cache-hit epochs (bigger Ray Data blocks)")
    ap.add_argument("--no-cache-detail", action="store_true",
                    help="skip the frame-cache breakdown and the compression table")
    args = ap.parse_args()

    import ray

    from raytrain.config import Config, apply_overrides
    from raytrain.data.manifest import load_manifest
    from raytrain.data.synth import generate_synthvtt

    data = Path(args.data) / f"{args.clips}x{args.width}x{args.height}"
    manifest = data / "manifest.parquet"
    if not manifest.exists():
        t0 = time.perf_counter()
        generate_synthvtt(data, num_videos=args.clips, seed=0, test_fraction=0.0001,
                          width=args.width, height=args.height)
        print(f"generated {args.clips} clips of {args.width}x{args.height} in {time.perf_counter() - t0:.1f} s")
    batch = args.decode_batch
    rows = load_manifest(manifest, split="train")
    rows = rows[:len(rows) // batch * batch]  # whole steps: epoch 1 visits every clip epoch 2 reads
    paths = [r.path for r in rows]
    mean_s = np.mean([float(_duration(p)) for p in paths[:16]])
    steps = len(rows) // batch
    runs = Path(args.data) / "runs"
    cfg = apply_overrides(Config(), [
        f"data.manifest={manifest}", f"data.num_frames={args.frames}", "data.max_words=32",
        f"data.decode_actors={args.cpus}", "data.decode_cpus=1", f"data.decode_batch_size={batch}",
        "data.decode_timeout_s=0", "model.arch=RT-Tiny-ViT", "scaling.num_workers=1",
        f"train.batch_size={batch}", f"run.storage_path={runs}", f"run.name=bench{time.time_ns()}"])
    cached = apply_overrides(cfg, ["data.cache=frames", f"data.cache_samplings={args.samplings}"])

    import torch

    head = [(f"# bench/data_throughput.py on {platform.node()}: {platform.processor() or platform.machine()}, "
             f"{os.cpu_count()} CPUs visible, using {args.cpus} (Pool processes = Ray CPUs = decode actors); "
             f"torch {torch.__version__}, ray {ray.__version__}"),
            (f"# {len(rows)} SynthVTT H.264 clips, {args.width}x{args.height}, mean {mean_s:.1f} s; "
             f"{args.frames} frames per clip (random offsets) resized to {args.size}, uint8; decode batch {batch}")]
    print("\n".join(head), flush=True)
    pool = pool_clips_per_s(paths, args.cpus, args.frames, args.size)

    ray.init(num_cpus=args.cpus, object_store_memory=1 << 30, include_dashboard=False, log_to_driver=False)
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False
    plain = pipeline_rates(cfg, rows, args.size, 0, args.epochs * steps)  # one pass, as a run reads it
    fill = pipeline_rates(cached, rows, args.size, 0, steps)  # epoch 0: decode every sampling, write
    hit = pipeline_rates(cached, rows, args.size, steps, 2 * steps)  # epoch 1: read
    startup = startup_report(cfg, rows, args.size, steps, args.epochs, pool,
                             args.startup_repeats) if args.startup_repeats else []
    cache_bytes = sum(f.stat().st_size for f in (runs / cached.run.name / "frame_cache").rglob("*.arrow"))
    detail = None if args.no_cache_detail else cache_detail(args, cached, rows, steps, plain["steady"])
    ray.shutdown()
    shutil.rmtree(runs / cached.run.name, ignore_errors=True)

    ratio = plain["steady"] / pool
    lines = ["", f"{'variant':44s} {'clips/s':>9s} {'vs pool':>8s}",
             f"{'multiprocessing Pool + decord (steady)':44s} {pool:9.2f} {1.0:8.2f}",
             f"{'raytrain pipeline, steady':44s} {plain['steady']:9.2f} {ratio:8.2f}",
             (f"{f'raytrain pipeline, end to end, {args.epochs} epochs':44s} {plain['total']:9.2f} "
             f"{plain['total'] / pool:8.2f}"),
             f"  (actor start-up to the first batch: {plain['startup_s']:.1f} s, once per run)",
             "", f"{'frame cache (data.cache=frames)':44s} {'clips/s':>9s} {'vs decode':>9s}  hit rate",
             f"{'no cache: decode 1 sampling (as above)':44s} {plain['steady']:9.2f} {1.0:9.2f}"]
    for label, r in ((f"epoch 1: decode {args.samplings} samplings + write", fill),
                     ("epoch 2: read from the cache", hit)):
        lines.append(f"{label:44s} {r['steady']:9.2f} {r['steady'] / plain['steady']:9.2f}  {r['hit']:.2f}")
    lines += [(f"  (steady rates; end to end: fill {fill['total']:.2f}, hit {hit['total']:.2f} clips/s; "
               f"cache {cache_bytes / 2**20:.0f} MiB for {len(rows)} clips x {args.samplings} samplings)"),
              "", (f"ratio raytrain / Pool (steady): {ratio:.2f} (target >= 0.9: {'met' if ratio >= 0.9 else 'NOT met'}); "
                   f"cache-hit epoch / decode epoch: {hit['steady'] / plain['steady']:.1f}x")]
    lines += startup
    lines += detail or []
    print("\n".join(lines))
    if args.out:
        Path(args.out).write_text("\n".join(head + lines) + "\n")


def cache_detail(args, cached, rows, steps: int, decode_rate: float) -> list[str]:
    """Where a cache hit's time goes (``bench/cache_read.py``), hit epochs with bigger decode batches
    and per compression, and shard bytes vs read speed on SynthVTT and on a natural texture. Runs
    after the fill and hit epochs, on their cache folder (while Ray is up)."""
    import cache_read

    from raytrain.config import apply_overrides
    from raytrain.data.frame_cache import COMPRESSIONS, FrameCache

    folder = next((Path(cached.run.storage_path) / cached.run.name / "frame_cache").glob("train-*"))
    location, batch, clip_mb = str(folder), args.decode_batch, args.frames * args.size ** 2 * 3 / 1e6
    cache = FrameCache(location)
    cache.refresh()
    keys = sorted(cache._index)[:64]
    reads = cache_read.read_rates(location, keys, batch)
    udf = cache_read.udf_rate(cached, rows, args.size, location, steps, 2 * steps)
    shape = (args.frames, args.size, args.size, 3)
    ceiling = {b: cache_read.ray_ceiling(len(rows) * 2, shape, b, args.cpus, batch) for b in (batch, args.hit_batch)}

    def row(label: str, clips_s: float) -> str:
        return f"{label:52s} {clips_s:9.1f} {clips_s * clip_mb:8.0f} {clips_s / decode_rate:9.2f}"

    out = ["", f"where a cache hit's time goes ({clip_mb:.2f} MB of frames per clip; one process unless Ray)",
           f"{'stage':52s} {'clips/s':>9s} {'MB/s':>8s} {'vs decode':>9s}",
           row(f"memcpy of a {batch}-clip batch (np.copyto)", reads["memcpy"]),
           row("hit read: view of the mmap'd shard + 1 copy to the batch", reads["view"]),
           row("  old hit read: private copy per clip, then np.stack", reads["copy_stack"]),
           row("DecodeClips UDF on all-hit batches (+tokens, assembly)", udf),
           *(row(f"Ray Data alone (ready frames), blocks of {b} clips", r) for b, r in ceiling.items())]
    epochs = {}
    hit_cfg = apply_overrides(cached, [f"data.decode_batch_size={args.hit_batch}"])
    for compression in COMPRESSIONS:
        if compression != "none":
            cache_read.rewrite(location, compression)
        size = sum(f.stat().st_size for f in folder.glob("shard-*.arrow")) / len(cache)  # per clip sampling
        epochs[compression] = (pipeline_rates(hit_cfg, rows, args.size, steps, 2 * steps)["steady"], size)
    out += ["", f"cache-hit epochs through the pipeline, data.decode_batch_size={args.hit_batch} (bench rows above: {batch})",
            f"{'data.cache_compression':52s} {'clips/s':>9s} {'MB/s':>8s} {'vs decode':>9s} {'bytes/clip':>11s}"]
    out += [row(c, r) + f" {size:11,.0f}" for c, (r, size) in epochs.items()]
    natural = {f"texture, noise {sd:g}": cache_read.natural_frames(48, shape, sd) for sd in (0.0, 3.0)}
    formats = cache_read.format_rows(location, natural, Path(args.data) / "formats", batch)
    out += ["", "shard size vs hit read speed (one process, no Ray; 48 texture clips, the cache's SynthVTT samplings)",
            f"{'frames':18s} {'compression':12s} {'bytes/clip':>11s} {'ratio':>6s} {'read MB/s':>10s} {'write MB/s':>11s}"]
    out += [f"{r['texture']:18s} {r['compression']:12s} {r['bytes']:11,.0f} {r['ratio']:6.2f} {r['read_mb_s']:10.0f} "
            f"{r['write_mb_s']:11.0f}" for r in formats]
    out.append("  (SynthVTT frames are flat synthetic shapes and compress far better than camera footage; the "
               "texture rows (a smooth texture on a gradient, moving, with or without sensor noise) are stand-ins for it, not real video)")
    return out


def _duration(path: str) -> float:
    import decord

    reader = decord.VideoReader(path, num_threads=1)
    return len(reader) / reader.get_avg_fps()


if __name__ == "__main__":
    main()
