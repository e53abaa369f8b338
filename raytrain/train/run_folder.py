"""The local run folder kept resumable and tidy (no Ray): Ray Train's checkpoint snapshot repaired,
checkpoints Ray no longer tracks pruned, and the hidden folder checkpoints are staged in.

Ray Train V2 keeps ``checkpoint_manager_snapshot.json`` in the run folder: the checkpoints it reported
(``checkpoint_results`` with their report indices, the latest, pending validations). On a rerun it
refuses to start (``CheckpointManagerInitializationError``) when one of them no longer exists, and it
hands a damaged latest one to every worker. :func:`repair_snapshot` drops such references before
``TorchTrainer.fit()``; a snapshot that cannot be read is moved aside to a named backup.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from raytrain.train.faults import say
from raytrain.train.state import checkpoint_problem, checkpoint_step, complete_checkpoints

SNAPSHOT_FILE = "checkpoint_manager_snapshot.json"  # ray/train/v2/_internal/constants.py
CHECKPOINT_TMP = ".checkpoint-tmp"  # hidden: never matches checkpoint_*, never in Ray's snapshot


def repaired_snapshot(snapshot: dict[str, Any], problems: dict[str, str | None]) -> tuple[dict[str, Any], list[str]]:
    """``snapshot`` (Ray's JSON, as a dict) without the checkpoints whose ``problems[name]`` is not
    None, and the names dropped. The latest becomes the newest (highest report index) kept one."""
    results, indices = snapshot.get("checkpoint_results", []), snapshot.get("checkpoint_report_indices", [])
    bad = {r["checkpoint_dir_name"] for r in results if problems.get(r["checkpoint_dir_name"]) is not None}
    latest = snapshot.get("latest_checkpoint_result")
    if latest is not None and problems.get(latest["checkpoint_dir_name"]) is not None:
        bad.add(latest["checkpoint_dir_name"])
    if not bad:
        return snapshot, []
    kept = [(r, i) for r, i in zip(results, indices) if r["checkpoint_dir_name"] not in bad]
    out = dict(snapshot, checkpoint_results=[r for r, _ in kept], checkpoint_report_indices=[i for _, i in kept])
    if latest is not None and latest["checkpoint_dir_name"] in bad:
        out["latest_checkpoint_result"] = max(kept, key=lambda t: t[1])[0] if kept else None
    pending = [(r, v) for r, v in zip(snapshot.get("pending_training_results", []),
                                      snapshot.get("pending_validation_specs", []))
               if r["checkpoint_dir_name"] not in bad]
    out["pending_training_results"], out["pending_validation_specs"] = [r for r, _ in pending], [v for _, v in pending]
    for key in ("validated_checkpoint_dir_names", "timed_out_validation_checkpoint_dir_names",
                "failed_validation_checkpoint_dir_names"):
        if key in snapshot:
            out[key] = [n for n in snapshot[key] if n not in bad]
    return out, sorted(bad)


def snapshot_names(snapshot: dict[str, Any]) -> set[str]:
    """The checkpoint folder names Ray's snapshot refers to."""
    entries = [*snapshot.get("checkpoint_results", []), *snapshot.get("pending_training_results", []),
               snapshot.get("latest_checkpoint_result")]
    return {e["checkpoint_dir_name"] for e in entries if e}


def read_snapshot(run_dir: Path) -> dict[str, Any] | None:
    """Ray's snapshot of ``run_dir`` (None: none, or not readable JSON right now)."""
    try:
        snapshot = json.loads((run_dir / SNAPSHOT_FILE).read_text())
    except (OSError, ValueError):
        return None
    return snapshot if isinstance(snapshot, dict) else None


def checkpoint_problems(run_dir: Path) -> dict[str, str | None]:
    """``checkpoint_problem`` of every ``checkpoint_*`` folder, by name: each archive's checksums read
    once for all of :func:`prepare_run_folder`'s steps (a checkpoint can be gigabytes)."""
    return {f.name: checkpoint_problem(f) for f in sorted(run_dir.glob("checkpoint_*")) if f.is_dir()}


def _problem(run_dir: Path, name: str, known: dict[str, str | None] | None) -> str | None:
    """``checkpoint_problem`` of folder ``name``, taken from ``known`` (:func:`checkpoint_problems`) if there."""
    return known[name] if known is not None and name in known else checkpoint_problem(run_dir / name)


def repair_snapshot(run_dir: Path, known: dict[str, str | None] | None = None) -> list[str]:
    """Drop the snapshot's references to missing, incomplete or damaged checkpoints (one message
    each), rewriting it atomically; a snapshot that is not valid JSON of the known shape is moved
    aside to ``checkpoint_manager_snapshot.json.broken-<time>``. Returns the names dropped.
    ``known``: the folders' problems when already checked (:func:`checkpoint_problems`)."""
    path = run_dir / SNAPSHOT_FILE
    if not path.is_file():
        return []
    snapshot = read_snapshot(run_dir)
    try:
        names = snapshot_names(snapshot) if snapshot is not None else None
    except (KeyError, TypeError, AttributeError):
        names = None
    if names is None:
        backup = path.with_name(f"{SNAPSHOT_FILE}.broken-{time.strftime('%Y%m%d-%H%M%S')}")
        os.replace(path, backup)
        say(run_dir, f"Ray's checkpoint snapshot '{path}' is unreadable: moved to '{backup.name}'; "
                     f"the run resumes from its newest usable checkpoint folder", snapshot_moved=backup.name)
        return []
    problems = {n: "missing" if not (run_dir / n).is_dir() else _problem(run_dir, n, known) for n in names}
    fixed, dropped = repaired_snapshot(snapshot, problems)
    for name in dropped:
        say(run_dir, f"Ray's checkpoint snapshot refers to checkpoint '{name}' ({problems[name]}): reference "
                     f"dropped", snapshot_dropped=name, reason=problems[name])
    if dropped:
        tmp = path.with_name(f".{SNAPSHOT_FILE}.tmp-{os.getpid()}")
        tmp.write_text(json.dumps(fixed))
        os.replace(tmp, path)
    return dropped


def prune_untracked(run_dir: Path, keep: int, known: dict[str, str | None] | None = None) -> list[str]:
    """Delete the complete ``checkpoint_*`` folders Ray's snapshot does not track (a folder resumed
    from that was never registered with Ray, e.g. after a worker lost right after its report) once
    a newer tracked checkpoint is usable and they are not among the newest ``keep`` (``checkpoint.keep``:
    an untracked folder counts toward it, as Ray's would). Ray's own ones (latest, best-by-metric) and
    anything newer than its newest are kept; so is everything when there is no readable snapshot.
    Returns the names. ``known``: as for :func:`repair_snapshot`."""
    snapshot = read_snapshot(run_dir)
    if snapshot is None:
        return []
    try:
        tracked = snapshot_names(snapshot)
    except (KeyError, TypeError, AttributeError):
        return []
    newest_tracked = _newest_usable_step(run_dir, tracked, known)
    if newest_tracked is None:
        return []
    pruned = []
    for step, folder in complete_checkpoints(run_dir)[keep:]:
        if folder.name not in tracked and step < newest_tracked:
            shutil.rmtree(folder, ignore_errors=True)
            pruned.append(folder.name)
            say(run_dir, f"removed checkpoint '{folder.name}' (step {step}): not tracked by Ray, older than "
                         f"its step {newest_tracked}", pruned_checkpoint=folder.name)
    return pruned


def _newest_usable_step(run_dir: Path, names: set[str], known: dict[str, str | None] | None) -> int | None:
    """The highest step among the usable folders ``names`` (archives checked newest first, until one passes)."""
    steps = sorted(((checkpoint_step(run_dir / n), n) for n in names if (run_dir / n).is_dir()),
                   key=lambda t: -1 if t[0] is None else t[0], reverse=True)
    return next((step for step, n in steps if step is not None and _problem(run_dir, n, known) is None), None)


def report_broken(run_dir: Path, known: dict[str, str | None] | None = None) -> list[str]:
    """One message per ``checkpoint_*`` folder a resume skips (left in place for inspection);
    ``known``: as for :func:`repair_snapshot`."""
    broken = []
    for name, problem in (checkpoint_problems(run_dir) if known is None else known).items():
        if problem is not None:
            broken.append(name)
            say(run_dir, f"skipping checkpoint '{run_dir / name}': {problem}", skipped_checkpoint=name,
                reason=problem)
    return broken


def checkpoint_tmp_root(run_dir: Path | None) -> str | None:
    """Where rank 0 stages a checkpoint before Ray copies it into storage: the run's hidden
    ``.checkpoint-tmp`` for local storage (a save killed midway leaves it in the run, cleaned at the
    next start), the system temp dir (None) for remote storage."""
    if run_dir is None:
        return None
    root = run_dir / CHECKPOINT_TMP
    root.mkdir(parents=True, exist_ok=True)
    return str(root)


def checkpoint_tmp_dir(run_dir: Path | None) -> tempfile.TemporaryDirectory:
    return tempfile.TemporaryDirectory(prefix="raytrain-ckpt-", dir=checkpoint_tmp_root(run_dir))


def remove_stale_tmp(run_dir: Path | None) -> None:
    """Remove what saves killed midway left in ``.checkpoint-tmp`` (at a start: no save is running)."""
    if run_dir is not None and (run_dir / CHECKPOINT_TMP).is_dir():
        shutil.rmtree(run_dir / CHECKPOINT_TMP, ignore_errors=True)


def prepare_run_folder(run_dir: Path | None, keep: int) -> None:
    """Before ``TorchTrainer.fit()`` (driver): stale temp folders removed, broken checkpoints reported,
    Ray's snapshot repaired, stale untracked checkpoints pruned. Nothing for remote storage."""
    if run_dir is None or not run_dir.is_dir():
        return
    remove_stale_tmp(run_dir)
    known = checkpoint_problems(run_dir)  # each archive checked once, not once per step below
    report_broken(run_dir, known)
    repair_snapshot(run_dir, known)
    prune_untracked(run_dir, keep, known)
