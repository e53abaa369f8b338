"""Shared by the step benchmarks: median seconds per step, variants interleaved."""

from __future__ import annotations

import statistics
import time

import torch


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def time_steps(steps: dict, repeats: int, warmup: int) -> dict[str, float]:
    """Median seconds of each ``steps[name]()`` call; the variants run interleaved, so drift on a
    shared machine hits every variant alike; CUDA work is synchronised around each call."""
    for fn in steps.values():
        for _ in range(warmup):
            fn()
    samples: dict[str, list[float]] = {k: [] for k in steps}
    for _ in range(repeats):
        for name, fn in steps.items():
            _sync()
            t0 = time.perf_counter()
            fn()
            _sync()
            samples[name].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in samples.items()}
