"""Retrieval metrics at 1k, 10k and 100k clips: raytrain's blocked evaluation vs the full matrix.

Each measurement runs in a fresh process (so peak memory is its own): random normalised embeddings
(one caption per clip, a noisy copy of its video), then either ``sharded_both_directions`` (blocks of
``--block`` queries) or the full ``both_directions(text @ video.T)``. Peak memory is the process's
peak RSS above its RSS once the embeddings exist. The full matrix is skipped where it cannot fit
(100k x 100k: 40 GB of float32 scores, 80 GB once ``metrics.py`` casts to float64).

    .venv/bin/python bench/eval_scale.py                 # 1k, 10k, 100k; about 6 min on 2 cores
    .venv/bin/python bench/eval_scale.py --sizes 1000 10000 --out bench/results/eval_scale_cpu.txt
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import platform
import resource
import time


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def _measure(kind: str, n: int, dim: int, block: int, threads: int, queue) -> None:
    import numpy as np
    import torch

    from raytrain.eval.metrics import both_directions
    from raytrain.eval.sharded import sharded_both_directions

    torch.set_num_threads(threads)
    gen = torch.Generator().manual_seed(0)
    videos = torch.nn.functional.normalize(torch.randn(n, dim, generator=gen), dim=1)
    texts = torch.nn.functional.normalize(videos + 1.0 * torch.randn(n, dim, generator=gen), dim=1)
    owner = np.arange(n)
    base = _rss_mb()
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t0 = time.perf_counter()
    if kind == "blocked":
        metrics = sharded_both_directions(texts, videos, owner, block=block)
    else:
        metrics = both_directions((texts @ videos.T).numpy(), owner)
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    queue.put({"seconds": seconds, "peak_mb": max(peak, peak_before) - base, "t2v_R1": metrics["t2v_R1"],
               "v2t_R1": metrics["v2t_R1"], "t2v_MnR": metrics["t2v_MnR"]})


def measure(kind: str, n: int, dim: int, block: int, threads: int) -> dict:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_measure, args=(kind, n, dim, block, threads, queue))
    proc.start()
    result = queue.get()
    proc.join()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 100000])
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--block", type=int, default=1024)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--full-limit-gb", type=float, default=8.0,
                        help="skip the full matrix when its float64 copy alone would exceed this")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()

    title = (f"# bench/eval_scale.py on {platform.node()} ({mp.cpu_count()} CPUs, no GPU), dim {args.dim}, "
             f"block {args.block}, torch threads {args.threads}")
    header = (f"{'clips':>7}  {'blocked s':>9}  {'blocked MB':>10}  {'full s':>7}  {'full MB':>8}  "
              f"{'full/blocked time':>17}  {'full/blocked memory':>19}  metrics equal")
    lines = [title, header]
    print("\n".join(lines), flush=True)
    for n in args.sizes:
        blocked = measure("blocked", n, args.dim, args.block, args.threads)
        full_gb = n * n * 12 / 2**30  # float32 scores + the float64 copy
        if full_gb <= args.full_limit_gb:
            full = measure("full", n, args.dim, args.block, args.threads)
            same = all(full[k] == blocked[k] for k in ("t2v_R1", "v2t_R1", "t2v_MnR"))
            row = (f"{n:>7}  {blocked['seconds']:>9.2f}  {blocked['peak_mb']:>10.0f}  {full['seconds']:>7.2f}  "
                   f"{full['peak_mb']:>8.0f}  {full['seconds'] / blocked['seconds']:>17.2f}  "
                   f"{full['peak_mb'] / max(blocked['peak_mb'], 1):>19.1f}  {'yes' if same else 'NO'}")
        else:
            row = (f"{n:>7}  {blocked['seconds']:>9.2f}  {blocked['peak_mb']:>10.0f}  {'-':>7}  "
                   f"{'-':>8}  {'-':>17}  {'-':>19}  (full matrix needs {full_gb:.0f} GB)")
        row += f"   t2v R@1 {blocked['t2v_R1']:.2f}, MnR {blocked['t2v_MnR']:.1f}"
        print(row, flush=True)
        lines.append(row)
    if args.out:
        with open(args.out, "w") as f:
            f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
