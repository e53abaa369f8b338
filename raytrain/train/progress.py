"""What a watched run prints: the progress line of rank 0, the resume/interrupt/finished messages and
the run's closing summary. Pure functions of numbers and paths (no Ray, no torch), tested as such."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any


def duration(seconds: float) -> str:
    """``45s``, ``3m05s``, ``2h07m``; ``?`` for an unknown (negative, infinite or NaN) time."""
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        return "?"
    s = round(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


@dataclass(frozen=True)
class Window:
    """The steps since the last progress line: how many, their wall time, the time they waited for
    data, the global batch (clips per step) and their finite losses."""
    steps: int
    wall_s: float
    data_wait_s: float
    clips_per_step: int
    losses: Sequence[float]

    @property
    def clips_per_s(self) -> float:
        return self.steps * self.clips_per_step / self.wall_s if self.wall_s > 0 else float("nan")

    @property
    def wait_share(self) -> float:
        """The share of the window's wall time spent waiting for batches (0..1)."""
        return min(1.0, self.data_wait_s / self.wall_s) if self.wall_s > 0 else float("nan")

    def eta_s(self, steps_left: int) -> float:
        return steps_left * self.wall_s / self.steps if self.steps else float("nan")


def epoch_of(step: int, steps_per_epoch: int) -> int:
    """The 1-based epoch that step ``step`` (1-based) belongs to."""
    return (step - 1) // steps_per_epoch + 1 if step > 0 else 1


def progress_line(step: int, total_steps: int, steps_per_epoch: int, window: Window,
                  epoch_end: bool = False) -> str:
    """``step 25/100 (25%) | epoch 5/20 | loss 3.912 | 118.3 clips/s | data wait 12% | ETA 1m05s``;
    at an epoch's end ``epoch 5/20 done``; ``loss -`` when every step of the window was skipped."""
    epochs = max(1, math.ceil(total_steps / steps_per_epoch))
    loss = f"{sum(window.losses) / len(window.losses):.4f}" if window.losses else "-"
    share = window.wait_share
    wait = f"{100 * share:.0f}%" if math.isfinite(share) else "?"
    rate = window.clips_per_s
    parts = [f"step {step}/{total_steps} ({100 * step / total_steps:.0f}%)",
             f"epoch {epoch_of(step, steps_per_epoch)}/{epochs}" + (" done" if epoch_end else ""),
             f"loss {loss}", f"{rate:.1f} clips/s" if math.isfinite(rate) else "? clips/s",
             f"data wait {wait}", f"ETA {duration(window.eta_s(total_steps - step))}"]
    return "[raytrain] " + " | ".join(parts)


def resume_line(run: str, step: int, total_steps: int) -> str:
    return f"[raytrain] resuming {run} at step {step} of {total_steps}"


def interrupted_line(step: int | None, checkpoint_step: int | None) -> str:
    """What Ctrl-C leaves: the step reached (None: unknown), the last checkpoint (None: unknown, e.g.
    remote storage; 0: none), how to go on."""
    reached = f"interrupted at step {step}" if step is not None else "interrupted"
    if checkpoint_step is None:
        last = "the run resumes from its latest checkpoint"
    else:
        last = f"the last checkpoint is step {checkpoint_step}" if checkpoint_step else "there is no checkpoint yet"
    return f"raytrain: {reached}; {last}; rerun the same command to resume"


def finished_line(run_dir: str, step: int, total_steps: int) -> str:
    return (f"run {run_dir} already finished (step {step} of {total_steps}): nothing to do "
            f"(its metrics.json and checkpoints are kept; a new run.name starts another run)")


def summary_lines(metrics: Mapping[str, Any], wall_s: float, run_dir: str, checkpoint: str | None,
                  metrics_json: str | None, tensorboard: str | None, on_bad_video: str = "error") -> list[str]:
    """The closing summary of ``raytrain train`` (and ``demo``): time, steps, throughput, what was
    skipped and where the results are. ``metrics``: the run's final reported metrics."""
    step = metrics.get("step")
    rate = metrics.get("train_clips_per_s")
    head = f"done in {duration(wall_s)}: {step if step is not None else '?'} steps"
    if rate is not None:
        head += f", {float(rate):.1f} clips/s while training"
    bad = int(metrics.get("bad_videos_skipped", 0))
    skipped = f"skipped videos: {bad}" + ("" if on_bad_video == "skip" else f" (data.on_bad_video={on_bad_video})")
    if bad and metrics.get("bad_video_examples"):
        skipped += f", e.g. {metrics['bad_video_examples']}"
    skipped += f"; NaN/Inf steps skipped: {int(metrics.get('nan_steps_skipped', 0))}"
    if metrics.get("fallback_decodes"):  # data.decoder=auto: files the fast decoder could not read
        skipped += f"; clips read by the fallback decoder: {int(metrics['fallback_decodes'])}"
    lines = [head, skipped,
             f"run folder:        {run_dir}", f"latest checkpoint: {checkpoint or '(none)'}"]
    if metrics_json:
        lines.append(f"metrics.json:      {metrics_json}")
    if tensorboard:
        lines.append(f"TensorBoard:       tensorboard --logdir {tensorboard}")
    return lines
