"""``raytrain sweep``: a Ray Tune sweep whose every trial is a full Ray Train run.

Each trial is a Tune *function trainable* that builds and fits a ``TorchTrainer`` (Train V2 refuses
``Tuner(TorchTrainer)``); ``TuneReportCallback`` relays every ``ray.train.report`` as one Tune result.
The trial's Train run lives at ``<sweep>/runs/<trial id>``, so a restored sweep resumes each unfinished
trial from its own last checkpoint. Folder layout and TensorBoard: docs/sweeps.md.
"""

from __future__ import annotations

import functools
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from raytrain.config import Config, ConfigError, apply_overrides
from raytrain.storage import exists, is_uri, join, read_text, run_location, write_text
from raytrain.tune.space import SearchSpace, apply_params, check_search, load_space_dict, to_tune
from raytrain.tune.trial import TrialControl

EVAL_PREFIXES = ("t2v_", "v2t_")
SWEEP_CONFIG = "sweep_config.yaml"  # the base config, as the sweep ran it (for --resume)
SWEEP_SPACE = "search_space.yaml"
TRIAL_DRIVER_CPU = 0.01  # the trial function only drives its TorchTrainer (Tune refuses 0)


# ---------------------------------------------------------------- pure planning (tested without Ray)

def trial_resources(cfg: Config) -> dict[str, float]:
    """What one trial holds at its peak: Train workers, the train decode pool(s) and the eval pool."""
    d, s = cfg.data, cfg.scaling
    pools = s.num_workers if d.per_rank_plan else 1
    if cfg.needs_eval:
        pools += 1
    need = {"CPU": s.num_workers * s.cpus_per_worker + pools * d.decode_actors * d.decode_cpus + TRIAL_DRIVER_CPU}
    if s.use_gpu:
        need["GPU"] = float(s.num_workers)
    if d.decode_resource:
        need[d.decode_resource] = pools * d.decode_actors * d.decode_resource_per_actor
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


def is_eval_metric(metric: str) -> bool:
    return metric.startswith(EVAL_PREFIXES)


def prepare_sweep_config(cfg: Config) -> tuple[Config, list[str]]:
    """Settings a sweep needs: ASHA on an eval metric needs evaluations during training (``eval.every``
    defaults to every checkpoint then). Returns the config and notes for the user."""
    notes = []
    s = cfg.sweep
    if s.metric != "loss" and not is_eval_metric(s.metric):
        raise ConfigError(f"config key 'sweep.metric': '{s.metric}' is not reported by training; use loss "
                          f"or an eval metric (t2v_R1, t2v_R5, t2v_R10, t2v_MdR, t2v_MnR, v2t_*)")
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
    expected = {"t2v_MdR", "t2v_MnR", "v2t_MdR", "v2t_MnR", "loss"}
    if (s.metric in expected) != (s.mode == "min"):
        notes.append(f"warning: sweep.mode={s.mode} for {s.metric} (lower is better for ranks and loss)")
    return cfg, notes


def asha_grace_period(cfg: Config) -> int:
    """In optimizer steps (ASHA's clock is the reported ``step``): by default the first report that
    carries the metric."""
    if cfg.sweep.asha_grace_period:
        return cfg.sweep.asha_grace_period
    return cfg.eval.every if is_eval_metric(cfg.sweep.metric) else cfg.checkpoint.every


def best_trial_config(cfg: Config, params: dict[str, Any]) -> Config:
    """The best trial's config as a fresh run: ``raytrain train --config best.yaml`` trains it unchanged."""
    best = apply_params(cfg, params)
    return best.replace(**{"run.name": f"{cfg.sweep.name}-best"})


@dataclass
class TrialRow:
    trial_id: str
    params: dict[str, Any]
    metric: float | None  # the last reported value of sweep.metric
    steps: int  # the last reported step
    status: str  # finished | stopped early | error
    path: str = ""
    metrics: dict[str, Any] = field(default_factory=dict)


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


# ---------------------------------------------------------------- the trial (runs in a Tune actor)

def run_trial(params: dict[str, Any], base_config: dict[str, Any], runs_dir: str) -> None:
    """One Tune trial: the base config plus this trial's values, trained by Ray Train, every report relayed."""
    import ray.data
    import ray.tune
    from ray.tune.integration.ray_train import TuneReportCallback

    from raytrain.train.trainer import build_trainer

    ctx = ray.data.DataContext.get_current()  # as the driver's (ray_env.ensure_ray): plain logs
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False
    trial_id = ray.tune.get_context().get_trial_id()
    cfg = apply_params(Config.from_dict(base_config, source=SWEEP_CONFIG), params)
    cfg = cfg.replace(**{"run.name": trial_id, "run.storage_path": runs_dir})
    trial = TrialControl(run_location(cfg))
    trial.reset()
    trainer, _ = build_trainer(cfg, callbacks=[TuneReportCallback()], trial=trial)
    finished = _stop_training_when_tune_stops(trial)
    try:
        trainer.fit()
    finally:
        finished.set()
        trial.release()


def _stop_training_when_tune_stops(trial: TrialControl):
    """When Tune stops this trial (ASHA), ask its Train run to end (``trial.request_stop``); the training
    loop asks at its logging intervals. (Tune only sets a stop event for a function trainable; its thread sits in
    ``trainer.fit()``.) The sweep driver's ``ReleaseTrialResources`` frees the workers in any case.
    Returns an event to set once ``fit`` has returned."""
    import threading

    from ray.train._internal.session import get_session  # Tune's session of this function trainable

    finished = threading.Event()
    stop_event = getattr(get_session(), "stop_event", None)
    if stop_event is None:  # not under Tune, or a Ray without the event: nothing to watch
        return finished

    def watch() -> None:
        stop_event.wait()
        if not finished.is_set():
            trial.request_stop()

    threading.Thread(target=watch, name="raytrain-trial-stop", daemon=True).start()
    return finished


# ---------------------------------------------------------------- the driver

@dataclass
class SweepResult:
    sweep_dir: str
    rows: list[TrialRow]  # best first
    best_config_path: str | None
    table: str


def sweep_dir(cfg: Config) -> str:
    return join(cfg.run.storage_path, cfg.sweep.name)


def start_sweep(cfg: Config, space: SearchSpace) -> SweepResult:
    """Validate, save the sweep's config and space beside its trials, then run it."""
    from raytrain.train.trainer import resolve_paths, validate_inputs

    check_search(space, cfg.sweep.search)
    cfg, notes = prepare_sweep_config(resolve_paths(cfg))
    for params in _corner_params(space):  # every trial's data, model and plan checks, before Ray starts
        validate_inputs(apply_params(cfg, params))
    out = sweep_dir(cfg)
    if exists(join(out, SWEEP_CONFIG)):
        raise ConfigError(f"sweep folder '{out}' already holds a sweep: resume it with "
                          f"`raytrain sweep --resume {out}` or choose another sweep.name")
    write_text(join(out, SWEEP_CONFIG), yaml.safe_dump(cfg.to_dict(), sort_keys=False))
    write_text(join(out, SWEEP_SPACE), yaml.safe_dump(space.to_dict(), sort_keys=False))
    for note in notes:
        print(f"[sweep] {note}", flush=True)
    return _run(cfg, space, resume=False)


def resume_sweep(directory: str) -> SweepResult:
    """Continue an interrupted sweep: finished trials stay, unfinished and failed ones go on from their
    Train run's last checkpoint, trials not yet started start."""
    config_path = join(directory.rstrip("/"), SWEEP_CONFIG)
    if not exists(config_path):
        raise FileNotFoundError(f"'{directory}' is not a sweep folder (no {SWEEP_CONFIG})")
    cfg = Config.from_dict(yaml.safe_load(read_text(config_path)), source=config_path)
    space_path = join(directory.rstrip("/"), SWEEP_SPACE)
    space = load_space_dict(yaml.safe_load(read_text(space_path)), cfg, source=space_path)
    if sweep_dir(cfg).rstrip("/") != os.path.abspath(directory).rstrip("/") and not is_uri(directory):
        cfg = cfg.replace(**{"run.storage_path": os.path.dirname(os.path.abspath(directory)),
                             "sweep.name": os.path.basename(os.path.abspath(directory))})
    return _run(cfg, space, resume=True)


def _run(cfg: Config, space: SearchSpace, resume: bool) -> SweepResult:
    import ray
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search.basic_variant import BasicVariantGenerator

    # ASHA skips results without its metric (reports between evaluations); Tune's strict check would
    # refuse them instead.
    os.environ["TUNE_DISABLE_STRICT_METRIC_CHECKING"] = "1"
    # Save the experiment state often (Tune's auto period is >= 10 s): a driver killed right after a
    # trial finished must not run that trial again on --resume. The state is small.
    os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", "2")
    out = sweep_dir(cfg)
    trainable = tune.with_resources(
        tune.with_parameters(run_trial, base_config=cfg.to_dict(), runs_dir=join(out, "runs")),
        {"cpu": TRIAL_DRIVER_CPU})
    callbacks = [ReleaseTrialResources(join(out, "runs")), HParamsCallback(cfg, space, join(out, "hparams"))]
    if resume:
        tuner = tune.Tuner.restore(out, trainable, resume_unfinished=True, resume_errored=True,
                                   param_space=to_tune(space, cfg.sweep.search))
    else:
        scheduler = None
        if cfg.sweep.scheduler == "asha":
            total = _total_steps(cfg)
            scheduler = ASHAScheduler(time_attr="step", metric=cfg.sweep.metric, mode=cfg.sweep.mode,
                                      max_t=total, grace_period=min(asha_grace_period(cfg), total),
                                      reduction_factor=cfg.sweep.asha_reduction_factor)
        concurrent = max_concurrent_trials(cfg, ray.cluster_resources())
        print(f"[sweep] {space.grid_size(cfg.sweep.search) * cfg.sweep.num_samples} trial(s), at most "
              f"{concurrent} at once (each needs {trial_resources(cfg)})", flush=True)
        tuner = tune.Tuner(
            trainable,
            param_space=to_tune(space, cfg.sweep.search),
            # reuse_actors=False: a stopped trial's actor is killed, and with it the TorchTrainer it owns
            # (a reused actor would keep the stopped Train run, its workers and CPUs alive).
            tune_config=tune.TuneConfig(num_samples=cfg.sweep.num_samples, scheduler=scheduler, reuse_actors=False,
                                        # (Tune ignores TuneConfig.max_concurrent_trials for this one)
                                        search_alg=BasicVariantGenerator(max_concurrent=concurrent,
                                                                         random_state=cfg.sweep.seed)),
            run_config=tune.RunConfig(name=cfg.sweep.name, storage_path=cfg.run.storage_path,
                                      callbacks=callbacks, verbose=1),
        )
    grid = tuner.fit()
    rows = sort_trials([_trial_row(cfg, r) for r in grid], cfg.sweep.mode)
    return _finish(cfg, rows)


def _finish(cfg: Config, rows: list[TrialRow]) -> SweepResult:
    out = sweep_dir(cfg)
    table = trials_table(rows, cfg.sweep.metric)
    write_text(join(out, "trials.txt"), table + "\n")
    write_text(join(out, "trials.json"), json.dumps([r.__dict__ for r in rows], indent=2, default=str))
    best_path = None
    if rows and rows[0].metric is not None:
        best_path = join(out, "best.yaml")
        best = best_trial_config(cfg, rows[0].params)
        header = (f"# best trial {rows[0].trial_id} of sweep '{cfg.sweep.name}': {cfg.sweep.metric}="
                  f"{rows[0].metric:.4g} ({rows[0].params})\n# train it: raytrain train --config {best_path}\n")
        write_text(best_path, header + yaml.safe_dump(best.to_dict(), sort_keys=False))
    return SweepResult(out, rows, best_path, table)


def _trial_row(cfg: Config, result) -> TrialRow:
    metric = cfg.sweep.metric
    params = {k: (v.item() if hasattr(v, "item") else v) for k, v in (result.config or {}).items()}
    history = result.metrics_dataframe
    value, steps = None, 0
    if history is not None and len(history):
        if metric in history:
            seen = history[metric].dropna()
            value = float(seen.iloc[-1]) if len(seen) else None
        if "step" in history:
            steps = int(history["step"].max())
    if result.error is not None:
        status = "error"
    elif steps < _total_steps(apply_params(cfg, params)):
        status = "stopped early"
    else:
        status = "finished"
    trial_id = (result.metrics or {}).get("trial_id") or Path(result.path).name
    return TrialRow(str(trial_id), params, value, steps, status, str(result.path),
                    {k: v for k, v in (result.metrics or {}).items() if isinstance(v, int | float | str)})


def _total_steps(cfg: Config) -> int:
    from raytrain.data.plan import end_step, plan_steps

    _, total = plan_steps(_train_clip_count(cfg.data.manifest, cfg.data.train_split), cfg.scaling.num_workers,
                          cfg.train.batch_size, cfg.train.epochs, cfg.train.max_steps)
    return end_step(total, cfg.train.stop_at_step)


@functools.lru_cache(maxsize=8)
def _train_clip_count(manifest: str, split: str) -> int:
    """Clips in a split, read once per sweep (every trial row needs its planned steps)."""
    from raytrain.data.manifest import load_manifest

    return len(load_manifest(manifest, split=split))


def _corner_params(space: SearchSpace) -> list[dict[str, Any]]:
    """Low and high corners of the space (what can break a trial's plan: batch size, frames, ...)."""
    lows, highs = {}, {}
    for p in space.params:
        if p.is_range:
            low, high = p.values
            lows[p.key], highs[p.key] = low, (high - 1 if p.kind == "randint" else high)
        else:
            lows[p.key], highs[p.key] = p.values[0], p.values[-1]
    return [lows, highs]


# ---------------------------------------------------------------- driver callbacks

def _callback_base():
    from ray.tune import Callback

    return Callback


class ReleaseTrialResources(_callback_base()):
    """Free an ended trial's Train workers from the driver.

    Tune ends a trial's process as soon as the trial returns or is stopped, which can be before Train's
    controller has released its workers' placement group; Train's own cleaner then needs the dashboard's
    state API, which a local Ray may lack, and the sweep's next trials would wait for CPUs forever. The
    training loop records the group's id in the trial's run folder; removing it ends any worker still
    running (an ASHA-stopped trial) and frees its resources."""

    def __init__(self, runs_dir: str):
        self.runs_dir = runs_dir

    def on_trial_complete(self, iteration: int, trials: list, trial, **info) -> None:
        TrialControl(join(self.runs_dir, trial.trial_id)).release()

    def on_trial_error(self, iteration: int, trials: list, trial, **info) -> None:
        self.on_trial_complete(iteration, trials, trial, **info)


# ---------------------------------------------------------------- TensorBoard HParams

class HParamsCallback(_callback_base()):
    """One TensorBoard HParams view for the sweep: ``<sweep>/hparams`` holds the experiment (every
    searched key and the metrics) and one run per finished trial with its values and final metrics."""

    def __init__(self, cfg: Config, space: SearchSpace, location: str):
        self.cfg, self.space, self.location = cfg, space, location
        # TensorBoard tag -> the reported metric it shows (its last value)
        self.metrics = {f"hparam/{cfg.sweep.metric}": cfg.sweep.metric, "hparam/steps": "step"}
        if cfg.sweep.metric != "t2v_R1" and cfg.eval.at_end:
            self.metrics["hparam/t2v_R1"] = "t2v_R1"
        self._wrote_experiment = False

    def setup(self, **info) -> None:
        from torch.utils.tensorboard.summary import hparams

        from raytrain.storage import TensorBoardLog

        example = {p.key: _example_value(p) for p in self.space.params}
        discrete = {p.key: list(p.values) for p in self.space.params if not p.is_range}
        experiment, _, _ = hparams(example, {m: 0.0 for m in self.metrics}, hparam_domain_discrete=discrete)
        log = TensorBoardLog(self.location)
        log.writer.file_writer.add_summary(experiment)
        log.close()

    def on_trial_complete(self, iteration: int, trials: list, trial, **info) -> None:
        self._write_trial(trial)

    def on_trial_error(self, iteration: int, trials: list, trial, **info) -> None:
        self._write_trial(trial)

    def _write_trial(self, trial) -> None:
        from torch.utils.tensorboard.summary import hparams

        from raytrain.storage import TensorBoardLog

        analysis = getattr(trial, "metric_analysis", {}) or {}
        values = {}
        for name, key in self.metrics.items():
            last = analysis.get(key, {}).get("last")
            if last is not None and not (isinstance(last, float) and math.isnan(last)):
                values[name] = float(last)
        params = {k: (v.item() if hasattr(v, "item") else v) for k, v in (trial.config or {}).items()}
        _, start, end = hparams(params, values)
        log = TensorBoardLog(join(self.location, trial.trial_id))
        log.writer.file_writer.add_summary(start)
        for name, value in values.items():
            log.writer.add_scalar(name, value, int(values.get("hparam/steps", 0)))
        log.writer.file_writer.add_summary(end)
        log.close()


def _example_value(param) -> Any:
    if param.kind == "randint":
        return int(param.values[0])
    if param.is_range:
        return float(param.values[0])
    return param.values[0]

