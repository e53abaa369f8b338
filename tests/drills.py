"""Fault drills: run a small fit with one injected fault and measure what it cost (used by
``tests/test_faults_ray.py`` and ``bench/faults.py``; a test harness, so it lives out of the package).

Every drill runs the same tiny plan (``data.per_rank_plan`` on, so batches are reproducible) with one
fault; :func:`run_drill` returns a row: whether the fault fired, whether the run finished (every step
trained, no error), whether it stopped with the drill's expected message (the stop-by-design faults),
the steps lost (trained again after a restart: the fault's step minus the step the restart resumed
from) and the finished checkpoints lost (published before the fault and not complete on disk
afterwards; must be 0).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from raytrain.config import Config, apply_overrides
from raytrain.data.manifest import load_manifest, write_manifest
from raytrain.data.plan import build_plan
from raytrain.train.faults import read_events
from raytrain.train.state import checkpoint_complete, find_checkpoint, load_training_state

# name -> (overrides, expected error text or None when the run must finish)
DRILLS: dict[str, tuple[list[str], str | None]] = {
    "none (baseline)": ([], None),
    "worker killed (rank 1, step 3)": (["faults.kill_at_step=3", "faults.kill_rank=1",
                                        "train.max_failures=1"], None),
    "bad videos, skip": (["data.on_bad_video=skip"], None),
    "bad videos, error": (["data.on_bad_video=error"], r"cannot decode '.*(zero|truncated)\.mp4'"),
    "crash mid-checkpoint (step 4)": (["faults.checkpoint_crash_at_step=4", "train.max_failures=1"], None),
    "NaN loss, skip (step 3)": (["faults.nan_at_step=3", "train.on_nan=skip"], None),
    "NaN loss, stop (step 3)": (["faults.nan_at_step=3", "train.on_nan=stop"],
                                r"non-finite loss or gradient at step 3.*last good checkpoint is step 2"),
}


@dataclass
class DrillResult:
    name: str
    injected: bool
    finished: bool  # every planned step trained, no error
    stopped_as_expected: bool  # failed with the drill's expected message (the stop-by-design drills)
    steps_lost: int
    checkpoints_lost: int
    final_step: int | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    error: str = ""
    model: dict | None = None  # the final checkpoint's weights

    @property
    def as_designed(self) -> bool:
        """The drill's outcome is the designed one: finished, or (expected error) stopped with it."""
        return self.stopped_as_expected if DRILLS[self.name][1] is not None else self.finished


def drill_config(base: Config, name: str, workdir: Path) -> Config:
    """``base`` (a tiny 2-worker config) for drill ``name``: 4 steps, a checkpoint every 2 steps,
    reproducible per-rank batches; bad-video drills get a manifest with a zero-byte and a truncated
    mp4 among the first step's clips."""
    slug = "".join(c if c.isalnum() else "-" for c in name).strip("-")
    cfg = apply_overrides(base, ["train.max_steps=4", "checkpoint.every=2", "checkpoint.keep=10",
                                 "eval.at_end=false", "data.per_rank_plan=true",
                                 f"run.storage_path={workdir / 'runs'}", f"run.name={slug}"])
    if name.startswith("bad videos"):
        cfg = apply_overrides(cfg, [f"data.manifest={bad_video_manifest(cfg, workdir / slug)}"])
    return apply_overrides(cfg, DRILLS[name][0])


def bad_video_manifest(cfg: Config, out: Path) -> Path:
    """A copy of the manifest whose first two planned train clips are a zero-byte and a truncated mp4."""
    out.mkdir(parents=True, exist_ok=True)
    rows = load_manifest(cfg.data.manifest)
    train = [r for r in rows if r.split == cfg.data.train_split]
    plan = build_plan(train, cfg.train.batch_size * cfg.scaling.num_workers, cfg.train.seed, 0, 1)
    first = [train[i].video_id for i in plan.column("clip").to_pylist()[:2]]
    (out / "zero.mp4").write_bytes(b"")
    (out / "truncated.mp4").write_bytes(Path(train[0].path).read_bytes()[:700])
    bad = dict(zip(first, [out / "zero.mp4", out / "truncated.mp4"]))
    return write_manifest([{"video_id": r.video_id, "path": str(bad.get(r.video_id, r.path)),
                            "captions": list(r.captions), "split": r.split, "start_s": r.start_s,
                            "end_s": r.end_s} for r in rows], out / "manifest.parquet")


def run_drill(base: Config, name: str, workdir: Path) -> DrillResult:
    from raytrain.train.trainer import fit, run_dir  # Ray Data and Train: imported when a drill runs

    cfg = drill_config(base, name, Path(workdir))
    expected_error = DRILLS[name][1]
    run = run_dir(apply_overrides(cfg, []))
    error, metrics = "", {}
    try:
        metrics = fit(cfg).metrics
    except Exception as exc:  # noqa: BLE001 - the drill reports any failure as a row
        error = f"{type(exc).__name__}: {exc}"
    events = read_events(run)
    fired = [e for e in events if "fault" in e]
    injected = bool(fired) or bool(metrics.get("bad_videos_skipped") or metrics.get("nan_steps_skipped")) \
        or (expected_error is not None and bool(error))
    finished = not error and metrics.get("step") == cfg.train.max_steps
    stopped_as_expected = expected_error is not None and bool(re.search(expected_error, error, re.DOTALL))
    steps_lost = 0
    for fault in fired:  # the next start after the fault resumed from its checkpoint
        later = [e["start_step"] for e in events if "start_step" in e and e["time"] > fault["time"]]
        if later:
            steps_lost += fault["step"] - later[0]
    published = {e["checkpoint_step"] for e in events if "checkpoint_step" in e}
    on_disk = {json.loads((p / "progress.json").read_text())["step"]
               for p in Path(run).glob("checkpoint_*") if checkpoint_complete(p)}
    model, final_step = None, None
    try:
        state = load_training_state(find_checkpoint(run))
        model, final_step = state["model"], int(state["step"])
    except FileNotFoundError:
        pass
    return DrillResult(name, injected, finished, stopped_as_expected, steps_lost, len(published - on_disk), final_step,
                       metrics, error, model)
