"""Faults inside the training loop (no Ray): the injector built from the ``faults:`` section (a no-op
when it is off; kill and checkpoint-crash faults fire once per run folder), the NaN policy, the
counters that go into checkpoints and the run's attempt log.

The attempt log ``<run>/attempts.jsonl`` (rank 0, local storage only) has one line per (re)start of
the worker group (``{"start_step": s}``), per published checkpoint (``{"checkpoint_step": s}``) and
per injected fault (``{"fault": kind, "step": s}``): ``bench/faults.py`` reads the steps lost and the
finished checkpoints lost from it.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from raytrain.config import FaultsSection

ATTEMPTS_FILE = "attempts.jsonl"


class NonFiniteLossError(RuntimeError):
    """A NaN/Inf loss or gradient with ``train.on_nan: stop``; names the step and the last checkpoint."""


def local_run_dir(storage_path: str, name: str) -> Path | None:
    return None if "://" in storage_path else Path(storage_path) / name


def log_event(run_dir: Path | None, **event: Any) -> None:
    if run_dir is None:
        return
    run_dir.mkdir(parents=True, exist_ok=True)
    with open(run_dir / ATTEMPTS_FILE, "a") as f:
        f.write(json.dumps({**event, "time": time.time()}) + "\n")
        f.flush()
        os.fsync(f.fileno())


def say(run_dir: Path | None, message: str, **event: Any) -> None:
    """One ``[raytrain]`` line on stderr, and ``event`` (if any) in ``<run>/attempts.jsonl``: what a
    resume or the run folder's repair did, for the user now and for the drills later."""
    print(f"[raytrain] {message}", file=sys.stderr, flush=True)
    if event:
        log_event(run_dir, **event)


def read_events(run_dir: str | Path) -> list[dict[str, Any]]:
    path = Path(run_dir) / ATTEMPTS_FILE
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def fire_once(run_dir: Path | None, kind: str, step: int) -> bool:
    """True the first time ``kind`` at ``step`` is asked for in this run folder (a marker file created
    exclusively), so a restarted worker group does not fail again at the same place."""
    if run_dir is None:
        return False
    marker = run_dir / "faults" / f"{kind}-step{step}"
    marker.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return False
    os.close(fd)
    log_event(run_dir, fault=kind, step=step)
    return True


def die() -> None:
    """End this process at once, as a lost node or an OOM kill would (no cleanup, no exception)."""
    os.kill(os.getpid(), signal.SIGKILL)


@dataclass
class FaultCounters:
    """What the run survived so far; rides in every checkpoint (``extra["faults"]``, as a dict)."""
    bad_videos_skipped: int = 0
    bad_video_paths: list[str] = field(default_factory=list)  # the first few, for the error report
    nan_steps_skipped: int = 0

    @classmethod
    def from_saved(cls, saved: dict[str, Any] | None) -> FaultCounters:
        """The counters of a checkpoint's ``extra["faults"]`` dict (missing keys: 0)."""
        saved = saved or {}
        return cls(int(saved.get("bad_videos_skipped", 0)), list(saved.get("bad_video_paths", [])),
                   int(saved.get("nan_steps_skipped", 0)))

    def to_saved(self) -> dict[str, Any]:
        return asdict(self)

    def add_bad_clips(self, clip_ids: list[int], paths: list[str], keep: int = 5) -> None:
        self.bad_videos_skipped += len(clip_ids)
        for i in clip_ids:
            path = paths[i] if 0 <= i < len(paths) else f"<clip {i}>"
            if path not in self.bad_video_paths and len(self.bad_video_paths) < keep:
                self.bad_video_paths.append(path)

    def metrics(self) -> dict[str, Any]:
        out: dict[str, Any] = {"bad_videos_skipped": self.bad_videos_skipped,
                               "nan_steps_skipped": self.nan_steps_skipped}
        if self.bad_video_paths:
            out["bad_video_examples"] = " | ".join(self.bad_video_paths)
        return out


@dataclass(frozen=True)
class FaultInjector:
    """The ``faults:`` section for one rank: every question is False (and nothing happens) when the
    section is off. Kill and checkpoint-crash faults fire once per run folder (see :func:`fire_once`)."""
    cfg: FaultsSection
    rank: int
    run_dir: Path | None

    def poisons_loss(self, step: int) -> bool:
        """Whether the loss of ``step`` (1-based, the step being trained) is made NaN."""
        return 0 < self.cfg.nan_at_step == step

    def after_step(self, step: int) -> None:
        """Kill this worker after ``step`` when the config asks for it (once per run folder)."""
        if (0 < self.cfg.kill_at_step == step and self.rank == self.cfg.kill_rank
                and fire_once(self.run_dir, "kill", step)):
            print(f"[raytrain] fault injection: rank {self.rank} exits hard after step {step}", flush=True)
            die()

    def checkpoint_hook(self, step: int) -> Callable[[], None] | None:
        """What to run halfway through writing checkpoint ``step`` (rank 0): ``die`` once, or nothing."""
        crash = 0 < self.cfg.checkpoint_crash_at_step == step and fire_once(self.run_dir, "checkpoint_crash", step)
        return die if crash else None


def on_non_finite(on_nan: str, step: int, run_dir: Path | None, counters: FaultCounters) -> None:
    """A NaN/Inf loss or gradient at ``step``, agreed by every rank: count the skipped update
    (``train.on_nan=skip``), or stop naming the step and the last good checkpoint (``stop``)."""
    if on_nan == "skip":
        counters.nan_steps_skipped += 1
        return
    last = "none (the run has no checkpoint yet)"
    if run_dir is not None:
        from raytrain.train.state import find_checkpoint, load_training_state

        try:
            ckpt = find_checkpoint(run_dir)
            last = f"step {load_training_state(ckpt)['step']} at {ckpt}"
        except FileNotFoundError:
            pass
    raise NonFiniteLossError(f"non-finite loss or gradient at step {step} (train.on_nan=stop); "
                             f"the last good checkpoint is {last}")
