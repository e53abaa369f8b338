"""The checkpointer: when to save, what a save holds, and the report every rank makes with it.

``ray.train.report`` is a barrier: every rank calls it the same number of times, at the same steps;
rank 0 writes the checkpoint files (staged in the run's ``.checkpoint-tmp``) and attaches them, then
prunes the checkpoints Ray does not track (``run_folder.prune_untracked``). A save gathers every rank's RNG state and the
bad clips each rank met since the last save, so the counters in the checkpoint are the run's.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch.distributed as dist

from raytrain.config import Config
from raytrain.train.faults import FaultInjector, log_event
from raytrain.train.resume import TrainState
from raytrain.train.run_folder import checkpoint_tmp_dir, prune_untracked, remove_stale_tmp
from raytrain.train.state import rng_state, save_training_state


def gather_from_ranks(mine: Any, world_size: int) -> list[Any]:
    """``mine`` from every rank, in rank order (a collective when there are several ranks)."""
    out = [None] * world_size
    if world_size > 1:
        dist.all_gather_object(out, mine)
    else:
        out[0] = mine
    return out


class Checkpointer:
    """Saves every ``checkpoint.every`` steps before the last, then once at the end (``final``) or when
    the run is stopped early (``stopped``, unless that step was just saved)."""

    def __init__(self, cfg: Config, state: TrainState, rank: int, world_size: int, end_step: int,
                 run_dir: Path | None, train_paths: list[str], injector: FaultInjector):
        self.cfg, self.state, self.rank, self.world_size = cfg, state, rank, world_size
        self.end_step, self.run_dir, self.train_paths, self.injector = end_step, run_dir, train_paths, injector
        self.new_bad_clips: list[int] = []  # plan clips this rank replaced since the last save
        if rank == 0:
            remove_stale_tmp(run_dir)  # what the previous attempt's rank 0, killed mid-save, staged

    def due(self, step: int) -> bool:
        """A periodic save at ``step`` (the last step's save is the final one)."""
        return step % self.cfg.checkpoint.every == 0 and step < self.end_step

    def maybe_save(self, metrics: Callable[[], dict[str, Any]]) -> dict[str, Any] | None:
        """Save when due at the state's step, with ``metrics()`` (asked only then); the reported metrics."""
        return self.save(metrics()) if self.due(self.state.step) else None

    def note_bad_clips(self, clip_ids: list[int]) -> None:
        self.new_bad_clips.extend(clip_ids)

    def save_stopped(self, metrics: dict[str, Any]) -> dict[str, Any] | None:
        """The last step of a run stopped early, unless it was just saved."""
        if self.state.step % self.cfg.checkpoint.every == 0:
            return None
        return self.save({**metrics, "stopped": True})

    def save_final(self, metrics: dict[str, Any]) -> dict[str, Any]:
        return self.save({**metrics, "final": True})

    def save(self, metrics: dict[str, Any]) -> dict[str, Any]:
        """Checkpoint (rank 0 writes the files) and report on every rank; returns the reported metrics."""
        import ray.train

        state, step = self.state, self.state.step
        gathered = gather_from_ranks((rng_state(), list(self.new_bad_clips)), self.world_size)
        self.new_bad_clips = []
        state.counters.add_bad_clips([c for g in gathered for c in g[1]], list(self.train_paths))
        metrics = {"step": step, **metrics, **state.counters.metrics()}
        if self.rank != 0:
            ray.train.report(metrics)
            return metrics
        with checkpoint_tmp_dir(self.run_dir) as tmp:  # in the run folder (local storage), not /tmp
            save_training_state(tmp, self.cfg, state.module, state.optimizer, state.scheduler, step,
                                [g[0] for g in gathered],
                                extra={"metrics": metrics, "start_step": state.start_step,
                                       "faults": state.counters.to_saved()},
                                after_state_file=self.injector.checkpoint_hook(step))
            ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(tmp))
        log_event(self.run_dir, checkpoint_step=step)
        if self.run_dir is not None:  # e.g. the folder a restart resumed from, never registered with Ray
            prune_untracked(self.run_dir, self.cfg.checkpoint.keep)
        return metrics
