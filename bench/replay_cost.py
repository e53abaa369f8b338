"""What exact replay costs: the default dynamic split against ``data.per_rank_plan``, same CPUs.

Two ranks read the training stream in lockstep (a barrier after every batch, as DDP's all-reduce holds
them), each ``train.batch_size`` clips a step:

* ``split``: one dataset of the epoch plan, ``streaming_split(ranks, equal=True)`` as Ray Train's
  ``DataConfig`` does, ``--actors`` decode actors in all (``data.per_rank_plan=false``);
* ``per-rank``: one dataset per rank holding its own slice of every step, read in plan order
  (``preserve_order``), ``--actors / ranks`` decode actors each — the same actors in all (the default,
  ``data.per_rank_plan=true``);
* ``per-rank x2``: as ``per-rank`` with ``--actors`` each (twice the actors and the CPUs they reserve:
  what ``data.decode_actors`` meant before it counted the training stream's actors in all).

Passes are interleaved (``--repeats`` rounds of split, per-rank, per-rank x2) so load drift hits every
variant alike; clips/s end to end (actor start-up included) and steady (after the first quarter).

    .venv/bin/python bench/replay_cost.py [--clips 96] [--actors 2] [--repeats 3] [--out FILE]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import threading
import time
from pathlib import Path

for _key, _value in {"RAY_DATA_USE_DATASOURCE_V2": "0", "RAY_TRAIN_METRICS_ENABLED": "0",
                     "RAY_USAGE_STATS_ENABLED": "0", "RAY_DEDUP_LOGS": "0"}.items():
    os.environ.setdefault(_key, _value)


def lockstep_rates(iterables: list, batch_size: int) -> dict[str, float]:
    """Clips/s of ``len(iterables)`` ranks each reading ``batch_size`` clips a step, a barrier after
    every step: the slowest rank sets the pace, as in data-parallel training."""
    barrier = threading.Barrier(len(iterables))
    marks: list[list[float]] = [[] for _ in iterables]
    t0 = time.perf_counter()

    def read(rank: int) -> None:
        for _ in iterables[rank].iter_batches(batch_size=batch_size, batch_format="numpy", prefetch_batches=2):
            barrier.wait()
            marks[rank].append(time.perf_counter())

    threads = [threading.Thread(target=read, args=(r,)) for r in range(len(iterables))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    steps = min(len(m) for m in marks)
    ends = [max(m[s] for m in marks) for s in range(steps)]
    clips = steps * batch_size * len(iterables)
    q = steps // 4
    return {"steps": steps, "total": clips / (ends[-1] - t0),
            "steady": (steps - q - 1) * batch_size * len(iterables) / max(ends[-1] - ends[q], 1e-9)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clips", type=int, default=96)
    ap.add_argument("--ranks", type=int, default=2)
    ap.add_argument("--actors", type=int, default=2, help="decode actors in all (split); per rank: actors / ranks")
    ap.add_argument("--batch", type=int, default=4, help="train.batch_size (clips per rank per step)")
    ap.add_argument("--frames", type=int, default=8)
    ap.add_argument("--size", type=int, default=112)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--data", default="/tmp/raytrain-bench-replay")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    if args.actors % args.ranks:
        ap.error("--actors must be a multiple of --ranks (the same actors in all, split evenly)")

    import ray

    from raytrain.config import Config, apply_overrides
    from raytrain.data.manifest import load_manifest
    from raytrain.data.pipeline import rank_dataset_name, train_datasets
    from raytrain.data.synth import generate_synthvtt

    data = Path(args.data) / f"{args.clips}"
    manifest = data / "manifest.parquet"
    if not manifest.exists():
        generate_synthvtt(data, num_videos=args.clips, seed=0, test_fraction=0.0001)
    rows = load_manifest(manifest, split="train")
    steps = len(rows) // (args.batch * args.ranks)
    base = apply_overrides(Config(), [
        f"data.manifest={manifest}", f"data.num_frames={args.frames}", "data.max_words=32", "data.decode_cpus=1",
        f"data.decode_batch_size={args.batch}", "data.decode_timeout_s=0", "model.arch=RT-Tiny-ViT",
        f"scaling.num_workers={args.ranks}", f"train.batch_size={args.batch}",
        f"run.storage_path={Path(args.data) / 'runs'}", "run.name=bench"])
    variants = {
        "split": apply_overrides(base, ["data.per_rank_plan=false", f"data.decode_actors={args.actors}"]),
        # data.decode_actors is the training stream's actors in all: per rank, actors / ranks each
        "per-rank": apply_overrides(base, ["data.per_rank_plan=true", f"data.decode_actors={args.actors}"]),
        "per-rank x2": apply_overrides(base, ["data.per_rank_plan=true", f"data.decode_actors={2 * args.actors}"]),
    }
    ray.init(num_cpus=max(args.actors * 2, os.cpu_count() or 1), object_store_memory=1 << 30,
             include_dashboard=False, log_to_driver=False)
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False
    results: dict[str, list[dict]] = {name: [] for name in variants}
    for _ in range(args.repeats):
        for name, cfg in variants.items():
            # as the trainer's DataConfig: per-rank datasets in plan order, the split one unordered;
            # set before the datasets are made (they copy the current DataContext)
            ctx.execution_options.preserve_order = name != "split"
            sets = train_datasets(cfg, rows, image_size=args.size, start_step=0, end_step=args.epochs * steps)
            if "train" in sets:
                shards = sets["train"].streaming_split(args.ranks, equal=True)
            else:
                shards = [sets[rank_dataset_name(r)] for r in range(args.ranks)]
            results[name].append(lockstep_rates(shards, args.batch))
            print(name, results[name][-1], flush=True)
    lines = [f"# bench/replay_cost.py on {platform.node()}: {os.cpu_count()} CPUs; ray {ray.__version__}",
             (f"# {len(rows)} SynthVTT clips, {args.ranks} ranks x batch {args.batch}, {args.epochs} epochs "
             f"({args.epochs * steps} steps), {args.frames} frames at {args.size}; {args.actors} decode actors "
              f"in all for split and per-rank; median of {args.repeats} interleaved passes"),
             f"{'variant':<12} {'actors':>6} {'clips/s total':>14} {'clips/s steady':>15} {'vs split':>9}"]
    split = statistics.median(r["steady"] for r in results["split"])
    for name, rs in results.items():
        actors = args.actors * (args.ranks if name == "per-rank x2" else 1)
        total, steady = (statistics.median(r[k] for r in rs) for k in ("total", "steady"))
        lines.append(f"{name:<12} {actors:>6} {total:>14.1f} {steady:>15.1f} {steady / split:>9.2f}")
    print("\n".join(lines))
    if args.out:
        Path(args.out).write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
