"""The training state and the one decision of where a (re)started worker group resumes from (no Ray).

The candidates: the checkpoint Ray Train hands the workers (its latest registered report) and the
complete checkpoints in the local run folder. A worker lost right after a report can take that
report with it before Ray's controller registers it, although the checkpoint is already complete in
storage: so the newest step wins (Ray's on a tie). A candidate with a ``checkpoint_problem``
(incomplete, damaged archive) or that fails to load is reported by name and skipped for the next
newest; a fresh start only when no checkpoint is usable. The driver's start step applies the same
rule (``state.latest_checkpoint_step``), so both pick the same checkpoint.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from raytrain.train.faults import FaultCounters, say
from raytrain.train.state import (
    checkpoint_problem,
    checkpoint_step,
    complete_checkpoints,
    load_training_state,
    seed_everything,
    set_rng_state,
)

RNG_RESEED_STRIDE = 1000003  # a different worker count: reseed from (seed, step, rank) with this stride


@dataclass
class TrainState:
    """What a checkpoint holds and a resume restores: the objective (unwrapped, for saving), its
    optimizer and scheduler, the step reached, the step this attempt started at and the counters."""
    module: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: Any
    step: int = 0
    start_step: int = 0
    counters: FaultCounters = field(default_factory=FaultCounters)

    def restore(self, saved: dict[str, Any]) -> None:
        self.module.load_state_dict(saved["model"])
        self.optimizer.load_state_dict(saved["optimizer"])
        self.scheduler.load_state_dict(saved["scheduler"])
        self.step = self.start_step = int(saved["step"])
        self.counters = FaultCounters.from_saved(saved.get("extra", {}).get("faults"))


@dataclass(frozen=True)
class Candidate:
    """A checkpoint a resume could use: its step (-1: unknown), a name for messages, its folder."""
    step: int
    name: str
    directory: Path
    from_ray: bool = False


def resume_order(candidates: list[Candidate]) -> list[Candidate]:
    """Newest step first, Ray's before a local one of the same step; one entry per folder."""
    seen, out = set(), []
    for c in sorted(candidates, key=lambda c: (c.step, c.from_ray), reverse=True):
        key = os.path.realpath(c.directory)
        if key not in seen:
            seen.add(key)
            out.append(c)
    return out


def load_first_usable(candidates: list[Candidate], on_skip: Callable[[str, str], None]) -> dict[str, Any] | None:
    """The saved state of the first candidate (in :func:`resume_order`) that has no
    ``checkpoint_problem`` and loads; ``on_skip(name, reason)`` for each one passed over."""
    for c in resume_order(candidates):
        problem = checkpoint_problem(c.directory)
        if problem is None:
            try:
                return load_training_state(c.directory)
            except Exception as exc:  # noqa: BLE001 - any unreadable checkpoint is skipped, by name
                problem = f"torch.load failed: {type(exc).__name__}: {exc}"
        on_skip(c.name, problem)
    return None


def local_candidates(run_dir: Path | None) -> list[Candidate]:
    """The run folder's complete checkpoints (none for remote storage)."""
    if run_dir is None or not Path(run_dir).is_dir():
        return []
    return [Candidate(step, str(folder), folder) for step, folder in complete_checkpoints(run_dir)]


def load_resume_state(ray_checkpoint, run_dir: Path | None,
                      on_skip: Callable[[str, str], None] | None = None) -> dict[str, Any] | None:
    """The saved state to resume from (see the module docstring), or None for a fresh start.
    ``ray_checkpoint``: ``ray.train.get_checkpoint()`` (a ``Checkpoint`` or None); ``on_skip(name,
    reason)``: told about each broken checkpoint passed over (default: :func:`report_skipped`)."""
    on_skip = on_skip or (lambda name, reason: report_skipped(run_dir, name, reason))
    with contextlib.ExitStack() as stack:
        candidates = local_candidates(run_dir)
        if ray_checkpoint is not None:
            directory = Path(stack.enter_context(ray_checkpoint.as_directory()))
            name, step = str(getattr(ray_checkpoint, "path", directory)), checkpoint_step(directory)
            if step is None:  # e.g. progress.json deleted: a step to order it by is unknown
                on_skip(name, checkpoint_problem(directory) or "no step in its progress file")
            else:
                candidates.append(Candidate(step, name, directory, True))
        return load_first_usable(candidates, on_skip)


def skip_reporter(run_dir: Path | None, rank: int) -> Callable[[str, str], None]:
    """Rank 0 reports each skipped checkpoint (every rank makes the same decision, silently)."""
    return (lambda name, reason: report_skipped(run_dir, name, reason)) if rank == 0 else (lambda name, reason: None)


def report_skipped(run_dir: Path | None, name: str, reason: str) -> None:
    """One line on stderr, and an event in ``<run>/attempts.jsonl``."""
    say(run_dir, f"skipping checkpoint '{name}': {reason}", skipped_checkpoint=name, reason=reason)


def restore_rng(saved: dict[str, Any] | None, seed: int, rank: int, world_size: int) -> None:
    """Per-rank random streams: a fresh run seeds ``seed + rank``; a resume restores this rank's saved
    state, or (saved with a different worker count) reseeds deterministically from the step."""
    if saved is None:
        seed_everything(seed + rank)
        return
    rngs = saved.get("rng") or []
    if len(rngs) == world_size:
        set_rng_state(rngs[rank])
    else:
        seed_everything(seed + RNG_RESEED_STRIDE * int(saved["step"]) + rank)
