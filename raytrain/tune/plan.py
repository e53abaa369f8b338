"""Sweep planning, pure: what a trial needs, how many fit at once, the settings a sweep adds, the
scheduler's clock, and the trials table. Imports no Ray, so all of it is tested without a cluster."""

from __future__ import annotations

import functools
import math
import os
from dataclasses import dataclass, field
from typing import Any

from raytrain.config import Config, ConfigError, apply_overrides
from raytrain.eval.metrics import EVAL_METRICS, is_eval_metric
from raytrain.ray_env import train_cpus
from raytrain.storage import is_uri, join
from raytrain.tune.space import SearchSpace, apply_params

SWEEP_CONFIG = "sweep_config.yaml"  # the base config, as the sweep ran it (for --resume)
SWEEP_SPACE = "search_space.yaml"
TRIAL_DRIVER_CPU = 0.01  # the trial function only drives its TorchTrainer (Tune refuses 0)
SWEEPABLE_METRICS = ("loss", *EVAL_METRICS)  # what training reports that a scheduler can compare


def sweep_dir(cfg: Config) -> str:
    return join(cfg.run.storage_path, cfg.sweep.name)


def trial_resources(cfg: Config) -> dict[str, float]:
    """What one trial holds at its peak: Train workers, the train decode pool(s) and the eval pool."""
    d, s = cfg.data, cfg.scaling
    pools, each = cfg.train_decode_pools
    actors = pools * each + (d.decode_actors if cfg.needs_eval else 0)
    workers, train_decode = train_cpus(cfg)
    eval_decode = (d.decode_actors if cfg.needs_eval else 0) * d.decode_cpus
    need = {"CPU": workers + train_decode + eval_decode + TRIAL_DRIVER_CPU}
    if s.use_gpu:
        need["GPU"] = float(s.num_workers)
    if d.decode_resource:
        need[d.decode_resource] = actors * d.decode_resource_per_actor
    return need


def max_concurrent_trials(cfg: Config, cluster: dict[str, float]) -> int:
    """``sweep.max_concurrent_trials``, or as many trials as the cluster's resources hold at once
    (more would leave Train workers and decode actors waiting on each other)."""
    if cfg.sweep.max_concurrent_trials:
        return cfg.sweep.max_concurrent_trials
    need = trial_resources(cfg)
    fits = []
    for resource, amount in need.items():
        have = float(cluster.get(resource, 0.0))
        if have < amount:
            raise ConfigError(f"one trial needs {amount:g} {resource} (scaling.num_workers, cpus_per_worker, "
                              f"data.decode_*), the cluster has {have:g}: no trial could start")
        fits.append(math.floor(have / amount + 1e-9))
    return max(1, min(fits))


def prepare_sweep_config(cfg: Config) -> tuple[Config, list[str]]:
    """Settings a sweep needs: ASHA on an eval metric needs evaluations during training (``eval.every``
    defaults to every checkpoint then). Returns the config and notes for the user."""
    notes = []
    s = cfg.sweep
    if s.metric not in SWEEPABLE_METRICS:
        raise ConfigError(f"config key 'sweep.metric': '{s.metric}' is not reported by training; use loss "
                          f"or an eval metric ({', '.join(EVAL_METRICS)})")
    if is_eval_metric(s.metric) and not cfg.eval.at_end and not cfg.eval.every:
        raise ConfigError(f"config key 'sweep.metric': '{s.metric}' needs evaluation; set eval.at_end "
                          f"or eval.every")
    if s.scheduler == "asha" and is_eval_metric(s.metric) and not cfg.eval.every:
        cfg = apply_overrides(cfg, [f"eval.every={cfg.checkpoint.every}"])
        notes.append(f"ASHA stops trials on {s.metric}: evaluating every checkpoint "
                     f"(eval.every={cfg.checkpoint.every})")
    if cfg.data.cache == "frames" and not cfg.data.cache_dir:
        cache_dir = join(sweep_dir(cfg), "frame_cache")
        cfg = cfg.replace(**{"data.cache_dir": cache_dir if is_uri(cache_dir) else os.path.abspath(cache_dir)})
        notes.append(f"the trials share one frame cache: {cfg.data.cache_dir}")
    if s.lower_is_better != (s.mode == "min"):
        notes.append(f"warning: sweep.mode={s.mode} for {s.metric} (lower is better for ranks and loss)")
    return cfg, notes


def asha_grace_period(cfg: Config) -> int:
    """In optimizer steps (ASHA's clock is the reported ``step``): by default the first report that
    carries the metric."""
    if cfg.sweep.asha_grace_period:
        return cfg.sweep.asha_grace_period
    return cfg.eval.every if is_eval_metric(cfg.sweep.metric) else cfg.checkpoint.every


def total_steps(cfg: Config) -> int:
    """The optimizer steps a trial with this config plans (ASHA's ``max_t``; fewer = stopped early)."""
    from raytrain.data.plan import end_step, plan_steps

    _, total = plan_steps(_train_item_count(cfg.data.manifest, cfg.data.train_split, cfg.data.epoch_unit),
                          cfg.scaling.num_workers,
                          cfg.train.batch_size, cfg.train.epochs, cfg.train.max_steps)
    return end_step(total, cfg.train.stop_at_step)


@functools.lru_cache(maxsize=8)
def _train_item_count(manifest: str, split: str, epoch_unit: str) -> int:
    """Clips (or caption pairs) in a split, read once per sweep (every trial row needs its planned steps)."""
    from raytrain.data.manifest import load_manifest
    from raytrain.data.plan import num_epoch_items

    return num_epoch_items(load_manifest(manifest, split=split), epoch_unit)


def corner_params(space: SearchSpace) -> list[dict[str, Any]]:
    """Low and high corners of the space (what can break a trial's plan: batch size, frames, ...)."""
    lows, highs = {}, {}
    for p in space.params:
        if p.is_range:
            low, high = p.values
            lows[p.key], highs[p.key] = low, (high - 1 if p.kind == "randint" else high)
        else:
            lows[p.key], highs[p.key] = p.values[0], p.values[-1]
    return [lows, highs]


def plain_params(config: dict[str, Any] | None) -> dict[str, Any]:
    """A trial's values as plain Python (Tune samples numpy scalars)."""
    return {k: (v.item() if hasattr(v, "item") else v) for k, v in (config or {}).items()}


def best_trial_config(cfg: Config, params: dict[str, Any]) -> Config:
    """The best trial's config as a fresh run: ``raytrain train --config best.yaml`` trains it unchanged."""
    best = apply_params(cfg, params)
    return best.replace(**{"run.name": f"{cfg.sweep.name}-best"})


# ---------------------------------------------------------------- the trials table

@dataclass
class TrialRow:
    trial_id: str
    params: dict[str, Any]
    metric: float | None  # the last reported value of sweep.metric
    steps: int  # the last reported step
    status: str  # finished | stopped early | error
    path: str = ""
    metrics: dict[str, Any] = field(default_factory=dict)


def ended_status(steps: int, planned_steps: int) -> str:
    """How a trial that raised no error ended: the scheduler stopped it before its plan, or not."""
    return "stopped early" if steps < planned_steps else "finished"


def sort_trials(rows: list[TrialRow], mode: str) -> list[TrialRow]:
    """Best first; trials without the metric (errors, stopped before any report) last."""
    def key(row: TrialRow):
        if row.metric is None or (isinstance(row.metric, float) and math.isnan(row.metric)):
            return (1, 0.0)
        return (0, -row.metric if mode == "max" else row.metric)

    return sorted(rows, key=key)


def trials_table(rows: list[TrialRow], metric: str) -> str:
    keys = sorted({k for r in rows for k in r.params})
    head = ["#", "trial", *keys, metric, "steps", "status"]
    body = []
    for i, r in enumerate(rows, 1):
        value = "-" if r.metric is None else f"{r.metric:.4g}"
        body.append([str(i), r.trial_id, *[_fmt(r.params.get(k)) for k in keys], value, str(r.steps), r.status])
    widths = [max(len(h), *(len(b[j]) for b in body)) if body else len(h) for j, h in enumerate(head)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(head, widths)), "  ".join("-" * w for w in widths)]
    lines += ["  ".join(c.ljust(w) for c, w in zip(b, widths)) for b in body]
    return "\n".join(lines)


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return "-" if v is None else str(v)
