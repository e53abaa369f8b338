"""The metric logger: what the run shows on the console (rank 0) and in TensorBoard, and when.

Every ``train.log_every`` steps: the loss (mean over the steps since the last checkpoint, at most
``log_every``), the learning rate, the epoch, the method's own terms, the frame-cache hit rate and the
time the step waited for its batch vs the time it computed, and (``data.decoder=auto``) the clips the
fallback decoder read. At once: skipped non-finite steps, eval
metrics, bad videos at each checkpoint. Ranks other than 0 keep the running loss (for the reported
metrics) and write nothing.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from raytrain.config import Config
from raytrain.eval.metrics import is_eval_metric
from raytrain.storage import tensorboard_log
from raytrain.train.checkpoint import gather_from_ranks
from raytrain.train.faults import log_event
from raytrain.train.progress import Window, progress_line
from raytrain.train.step import StepResult

STEP_REACHED_FILE = "step_reached.json"  # rank 0's last progress step, for the Ctrl-C message


def write_step_reached(run_dir: Path | None, step: int) -> None:
    if run_dir is None:
        return
    run_dir.mkdir(parents=True, exist_ok=True)
    tmp = run_dir / f".{STEP_REACHED_FILE}.tmp"
    tmp.write_text(json.dumps({"step": step}))
    tmp.replace(run_dir / STEP_REACHED_FILE)


def read_step_reached(run_dir: Path | None) -> int | None:
    try:
        return int(json.loads((Path(run_dir) / STEP_REACHED_FILE).read_text())["step"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


class MetricLogger:
    def __init__(self, cfg: Config, rank: int, world_size: int, step: int, steps_per_epoch: int,
                 total_steps: int, run_dir: Path | None):
        self.cfg, self.rank, self.steps_per_epoch, self.total_steps = cfg, rank, steps_per_epoch, total_steps
        self.run_dir = run_dir
        self.clips_per_step, self.world_size = cfg.train.batch_size * world_size, world_size
        self.window = _Progress()  # rank 0's progress line: the steps since the last one
        self.run_steps, self.run_wall_s = 0, 0.0  # this attempt's training steps and their wall time
        self.losses: list[float] = []  # finite steps since the last checkpoint
        self.cache_hits: list[float] = []  # data.cache=frames: share of each batch read from the cache
        self.fallback_decodes = 0  # data.decoder=auto: this rank's clips the fallback decoder read
        self.data_wait_s: list[float] = []
        self.compute_s: list[float] = []
        self.step_wall_s: list[float] = []  # wall time of each step, its data wait included
        self.grad_norms: list[float] = []
        self.last_eval: dict[str, float] = {}  # for the HParams tab at close
        self.writer = None
        if rank == 0:
            # a resume at step s redoes the steps after s: drop the old points past s, keep s itself
            self.writer = tensorboard_log(cfg, purge_step=step + 1 if step else None)  # <run>/tensorboard
            self.writer.add_text("config", _yaml_text(cfg), step)
            print(f"[raytrain] rank 0: {world_size} worker(s), {steps_per_epoch} steps/epoch, "
                  f"{total_steps} steps in all, starting at step {step}", flush=True)
            log_event(run_dir, start_step=step)

    def worker_nodes(self, nodes: list[str], step: int) -> None:
        """The Ray node of every rank, as JSON (``{"0": node id, ...}``), on the console and in TensorBoard."""
        if self.writer is not None:
            text = json.dumps({str(rank): node for rank, node in enumerate(nodes)})
            print(f"[raytrain] worker nodes (rank: node id): {text}", flush=True)
            self.writer.add_text("worker_nodes", text, step)

    def batch(self, cache_hit, data_wait_s: float, fallback_decoded=None) -> None:
        if cache_hit is not None:
            self.cache_hits.append(float(cache_hit.float().mean()))
        if fallback_decoded is not None:
            self.fallback_decodes += int(fallback_decoded.sum())
        self.data_wait_s.append(data_wait_s)
        self.window.data_wait_s += data_wait_s

    def step(self, result: StepResult, step: int, lr: float, nan_steps_skipped: int) -> None:
        """After step ``step`` (1-based): keep its loss, report a skipped step, log at the interval."""
        self.compute_s.append(result.compute_s)
        self._progress(result, step)
        if result.skipped:
            if self.rank == 0:
                print(f"[raytrain] non-finite loss or gradient at step {step}: update skipped "
                      f"({nan_steps_skipped} so far)", flush=True)
            self._scalar("train/nan_steps_skipped", nan_steps_skipped, step)
        else:
            self.losses.append(result.loss)
        if self.writer is None or step % self.cfg.train.log_every:
            return
        last = self.cfg.train.log_every
        self._scalar("train/loss", float(np.mean(self.losses[-last:])), step)
        self._scalar("train/lr", lr, step)
        self._scalar("train/epoch", step / self.steps_per_epoch, step)
        for key, value in result.logs.items():
            self._scalar(f"train/{key}", float(value), step)
        if self.cache_hits:
            self._scalar("data/cache_hit_rate", float(np.mean(self.cache_hits[-last:])), step)
        if self.cfg.data.decoder == "auto":  # rank 0's clips so far (the run's total is in the summary)
            self._scalar("data/fallback_decodes_rank0", self.fallback_decodes, step)
        self._scalar("time/data_wait_s", float(np.mean(self.data_wait_s[-last:])), step)
        self._scalar("time/compute_s", float(np.mean(self.compute_s[-last:])), step)
        self._throughput(step, last)

    def _throughput(self, step: int, last: int) -> None:
        """Step time, the share of it spent waiting for data, clips/s, gradient norm, GPU memory."""
        wall = float(np.sum(self.step_wall_s[-last:]))
        self._scalar("time/step_s", wall / len(self.step_wall_s[-last:]), step)
        if wall > 0:
            self._scalar("time/data_wait_share", min(1.0, float(np.sum(self.data_wait_s[-last:])) / wall), step)
            self._scalar("data/clips_per_s", len(self.step_wall_s[-last:]) * self.clips_per_step / wall, step)
        if self.grad_norms:
            self._scalar("train/grad_norm", float(np.mean(self.grad_norms[-last:])), step)
        import torch

        if torch.cuda.is_available():
            self._scalar("gpu/max_memory_allocated_gb", torch.cuda.max_memory_allocated() / 1e9, step)

    def _progress(self, result: StepResult, step: int) -> None:
        """Rank 0: the progress line every ``log_every`` steps and at each epoch's end."""
        wall = self.window.tick(None if result.skipped else result.loss)
        self.step_wall_s.append(wall)
        if not result.skipped:
            self.grad_norms.append(float(result.grad_norm))
        self.run_steps, self.run_wall_s = self.run_steps + 1, self.run_wall_s + wall
        epoch_end = step % self.steps_per_epoch == 0
        if self.rank != 0 or not (epoch_end or step % self.cfg.train.log_every == 0):
            return
        print(progress_line(step, self.total_steps, self.steps_per_epoch, self.window.take(self.clips_per_step),
                            epoch_end), flush=True)
        write_step_reached(self.run_dir, step)

    def summary(self) -> dict[str, float]:
        """This attempt's training throughput (clips per second of step wall time, evaluations apart)
        and, with ``data.decoder=auto``, its train clips the fallback decoder read on all ranks (a
        collective: every rank calls this once, at the end)."""
        out: dict[str, float] = {}
        if self.cfg.data.decoder == "auto":
            out["fallback_decodes"] = sum(gather_from_ranks(self.fallback_decodes, self.world_size))
        if self.run_wall_s:
            out["train_clips_per_s"] = self.run_steps * self.clips_per_step / self.run_wall_s
        return out

    def take_loss(self) -> dict[str, float]:
        """The mean loss since the last checkpoint (for the report), and start a new window."""
        out = {"loss": float(np.mean(self.losses))} if self.losses else {}
        self.losses = []
        return out

    def evaluation(self, metrics: dict[str, Any], step: int) -> dict[str, Any]:
        for key, value in metrics.items():
            if is_eval_metric(key):
                self._scalar(f"eval/{key}", value, step)
        self.window.restart()  # the evaluation's time is not the next step's
        self.last_eval = {k: float(v) for k, v in metrics.items() if is_eval_metric(k)}
        return metrics

    def checkpoint(self, metrics: dict[str, Any] | None) -> None:
        """After a periodic checkpoint: the bad videos skipped so far (``data.on_bad_video=skip``)."""
        if metrics is not None and self.cfg.data.on_bad_video == "skip":
            self._scalar("data/bad_videos_skipped", metrics["bad_videos_skipped"], metrics["step"])

    def close(self) -> None:
        if self.writer is not None:
            if self.last_eval:  # HParams: single runs compare side by side (config keys vs last metrics)
                self.writer.add_hparams(_hparams(self.cfg), {f"hparam/{k}": v for k, v in self.last_eval.items()},
                                        run_name=".")
            self.writer.close()
            self.writer = None

    def _scalar(self, tag: str, value: float, step: int) -> None:
        if self.writer is not None:
            self.writer.add_scalar(tag, value, step)


class _Progress:
    """The running window of the progress line: steps, wall time since its start, data wait, losses."""

    def __init__(self):
        self.t0 = self.last = time.perf_counter()
        self.steps, self.data_wait_s, self.losses = 0, 0.0, []

    def tick(self, loss: float | None) -> float:
        """One step ended (``loss``: None if skipped); its wall time since the previous one."""
        now = time.perf_counter()
        wall, self.last = now - self.last, now
        self.steps += 1
        if loss is not None:
            self.losses.append(loss)
        return wall

    def restart(self) -> None:
        """Time spent outside the steps (an evaluation) is left out of the window."""
        now = time.perf_counter()
        self.t0 += now - self.last
        self.last = now

    def take(self, clips_per_step: int) -> Window:
        out = Window(self.steps, self.last - self.t0, self.data_wait_s, clips_per_step, list(self.losses))
        self.t0, self.steps, self.data_wait_s, self.losses = self.last, 0, 0.0, []
        return out


def _hparams(cfg: Config) -> dict[str, Any]:
    """The config flattened to ``section.key`` scalars (None as text) for TensorBoard's HParams tab."""
    out: dict[str, Any] = {}

    def walk(node: dict[str, Any], prefix: str) -> None:
        for key, value in node.items():
            if isinstance(value, dict):
                walk(value, f"{prefix}{key}.")
            else:
                out[prefix + key] = value if isinstance(value, (bool, int, float, str)) else str(value)

    walk(cfg.to_dict(), "")
    return out


def _yaml_text(cfg: Config) -> str:
    """The config as YAML for TensorBoard's text tab (indented 4: markdown's code block)."""
    import yaml

    return "\n".join("    " + line for line in yaml.safe_dump(cfg.to_dict(), sort_keys=False).splitlines())
