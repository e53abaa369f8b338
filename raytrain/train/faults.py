"""Fault handling inside the training loop (no Ray): fault injection that fires once per run folder,
the run's attempt log, the non-finite loss guard and the counters that go into checkpoints.

The attempt log ``<run>/attempts.jsonl`` (rank 0, local storage only) has one line per (re)start of
the worker group (``{"start_step": s}``), per published checkpoint (``{"checkpoint_step": s}``) and
per injected fault (``{"fault": kind, "step": s}``): ``bench/faults.py`` reads the steps lost and the
finished checkpoints lost from it.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path
from typing import Any

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


def new_counters() -> dict[str, Any]:
    return {"bad_videos_skipped": 0, "bad_video_paths": [], "nan_steps_skipped": 0}


def add_bad_clips(counters: dict[str, Any], clip_ids: list[int], paths: list[str], keep: int = 5) -> None:
    counters["bad_videos_skipped"] += len(clip_ids)
    for i in clip_ids:
        path = paths[i] if 0 <= i < len(paths) else f"<clip {i}>"
        if path not in counters["bad_video_paths"] and len(counters["bad_video_paths"]) < keep:
            counters["bad_video_paths"].append(path)


def counter_metrics(counters: dict[str, Any]) -> dict[str, Any]:
    out = {"bad_videos_skipped": counters["bad_videos_skipped"], "nan_steps_skipped": counters["nan_steps_skipped"]}
    if counters["bad_video_paths"]:
        out["bad_video_examples"] = " | ".join(counters["bad_video_paths"])
    return out
