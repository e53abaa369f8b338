"""The training state and the one decision of where a (re)started worker group resumes from (no Ray).

Two candidates: the checkpoint Ray Train hands the workers (its latest registered report) and the
newest complete checkpoint in the local run folder. A worker lost right after a report can take that
report with it before Ray's controller registers it, although the checkpoint is already complete in
storage: so the run folder's newest wins when it is later than Ray's; otherwise Ray's; otherwise none.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch

from raytrain.train.faults import FaultCounters
from raytrain.train.state import (
    find_checkpoint,
    latest_checkpoint_step,
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


def resume_source(ray_step: int | None, local_step: int | None) -> Literal["ray", "local"] | None:
    """Which checkpoint to resume from, given the step of Ray's (None: none) and of the run folder's
    newest complete one (None: none)."""
    if local_step is not None and local_step > (ray_step if ray_step is not None else 0):
        return "local"
    return "ray" if ray_step is not None else None


def newest_local_checkpoint(run_dir: Path | None) -> tuple[int, Path] | None:
    """(step, folder) of the run folder's newest complete checkpoint, or None (none, or remote storage)."""
    if run_dir is None or not Path(run_dir).is_dir():
        return None
    step = latest_checkpoint_step(run_dir)
    return (step, find_checkpoint(run_dir)) if step > 0 else None


def load_resume_state(ray_checkpoint, run_dir: Path | None) -> dict[str, Any] | None:
    """The saved state to resume from (see the module docstring), or None for a fresh start.
    ``ray_checkpoint``: ``ray.train.get_checkpoint()`` (a ``Checkpoint`` or None)."""
    saved = None
    if ray_checkpoint is not None:
        with ray_checkpoint.as_directory() as directory:
            saved = load_training_state(directory)
    local = newest_local_checkpoint(run_dir)
    source = resume_source(int(saved["step"]) if saved is not None else None, local[0] if local else None)
    if source == "local":
        return load_training_state(local[1])
    return saved


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
