"""Search latency and index size at 10k, 100k and 1M clips: exact blocked search vs FAISS.

Random normalised vectors of the model's width (``--dim``; 64 = RT-Tiny-ViT of configs/demo.yaml,
512 = ViT-B-32); each query is a noisy copy of a random clip. Exact = ``raytrain.search.query.exact_top_k``
(what ``raytrain search`` runs by default); FAISS = IVF-Flat (nlist = sqrt(n), nprobe = nlist/20) and,
up to ``--hnsw-max``, HNSW32 (efSearch 64). recall@10 = the share of the exact top 10 that FAISS
returns too. Index size = the embedding bytes (the Parquet column) and FAISS's serialised index.

    flock /tmp/raytrain-heavy.lock .venv/bin/python bench/search_scale.py --out bench/results/search_scale_cpu.txt
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import numpy as np


def _normalised(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def _timed(fn, repeats: int = 3):
    best, out = float("inf"), None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def measure(n: int, dim: int, queries: int, hnsw_max: int) -> list[str]:
    from raytrain.search.query import exact_top_k

    rng = np.random.default_rng(n)
    clips = _normalised(rng.standard_normal((n, dim), dtype=np.float32))
    q = _normalised(clips[rng.integers(0, n, queries)] + 0.5 * rng.standard_normal((queries, dim)) / np.sqrt(dim))
    t_exact, (_, exact) = _timed(lambda: exact_top_k(q, clips, 10, block=256))
    one_exact, _ = _timed(lambda: exact_top_k(q[:1], clips, 10))
    lines = [(f"{n:>8} {'exact':<6} {clips.nbytes / 2**20:>9.1f} {'-':>8} {one_exact * 1e3:>10.2f} "
              f"{t_exact / queries * 1e3:>12.3f} {1.0:>9.3f}")]
    lines += [_faiss_row(kind, n, clips, q, exact) for kind in ("ivf", "hnsw") if kind == "ivf" or n <= hnsw_max]
    return lines


def _faiss_row(kind: str, n: int, clips: np.ndarray, q: np.ndarray, exact: np.ndarray) -> str:
    import faiss

    from raytrain.search.query import faiss_index, faiss_top_k, recall_at

    t0 = time.perf_counter()
    index = faiss_index(clips, kind)
    build = time.perf_counter() - t0
    size = faiss.serialize_index(index).nbytes / 2**20
    t_batch, (_, approx) = _timed(lambda: faiss_top_k(index, q, 10))
    one, _ = _timed(lambda: faiss_top_k(index, q[:1], 10))
    return (f"{n:>8} {kind:<6} {size:>9.1f} {build:>8.1f} {one * 1e3:>10.2f} "
            f"{t_batch / len(q) * 1e3:>12.3f} {recall_at(approx, exact):>9.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--hnsw-max", type=int, default=100_000, help="skip HNSW above this size (slow build)")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    import faiss
    import torch

    torch.set_num_threads(args.threads)
    faiss.omp_set_num_threads(args.threads)
    lines = [(f"# bench/search_scale.py: dim={args.dim}, {args.queries} queries, {args.threads} thread(s), "
              f"{platform.processor() or platform.machine()}, faiss {faiss.__version__}"),
             "#    clips kind   size_MiB  build_s  1query_ms  per_query_ms(batch)  recall@10"]
    print("\n".join(lines), flush=True)
    for n in args.sizes:
        rows = measure(n, args.dim, args.queries, args.hnsw_max)
        print("\n".join(rows), flush=True)
        lines += rows
    if args.out:
        Path(args.out).write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
