"""``raytrain sweep``, the driver: start, resume, run and finish a Ray Tune sweep whose every trial is
a full Ray Train run.

Each trial is a Tune *function trainable* (``run_trial``) that builds and fits a ``TorchTrainer``
(Train V2 refuses ``Tuner(TorchTrainer)``); ``TuneReportCallback`` relays every ``ray.train.report`` as
one Tune result. The trial's Train run lives at ``<sweep>/runs/<trial id>``, so a restored sweep resumes
each unfinished trial from its own last checkpoint. Planning: ``plan``; the driver's callbacks:
``callbacks``. Folder layout and TensorBoard: docs/sweeps.md.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from raytrain.config import Config, ConfigError
from raytrain.storage import exists, is_uri, join, read_text, run_location, write_text
from raytrain.tune import plan
from raytrain.tune.plan import SWEEP_CONFIG, SWEEP_SPACE, TrialRow, sweep_dir
from raytrain.tune.space import SearchSpace, apply_params, check_search, load_space_dict, to_tune
from raytrain.tune.trial import TrialControl


def run_trial(params: dict[str, Any], base_config: dict[str, Any], runs_dir: str) -> None:
    """One Tune trial: the base config plus this trial's values, trained by Ray Train, every report relayed
    (``TuneReportCallback``) as one Tune result."""
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
    try:
        trainer.fit()
    finally:
        trial.release()


@dataclass
class SweepResult:
    sweep_dir: str
    rows: list[TrialRow]  # best first
    best_config_path: str | None
    table: str


def start_sweep(cfg: Config, space: SearchSpace) -> SweepResult:
    """Validate, save the sweep's config and space beside its trials, then run it."""
    from raytrain.train.trainer import resolve_paths, validate_inputs

    check_search(space, cfg.sweep.search)
    cfg, notes = plan.prepare_sweep_config(resolve_paths(cfg))
    for params in plan.corner_params(space):  # every trial's data, model and plan checks, before Ray starts
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
    from ray import tune

    from raytrain.tune.callbacks import ForwardTrialStops, HParamsCallback, ReleaseTrialResources, TrialEvents

    # ASHA skips results without its metric (reports between evaluations); Tune's strict check would
    # refuse them instead.
    os.environ["TUNE_DISABLE_STRICT_METRIC_CHECKING"] = "1"
    # Save the experiment state often (Tune's auto period is >= 10 s): a driver killed right after a
    # trial finished must not run that trial again on --resume. The state is small.
    os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", "2")
    out = sweep_dir(cfg)
    trainable = tune.with_resources(
        tune.with_parameters(run_trial, base_config=cfg.to_dict(), runs_dir=join(out, "runs")),
        {"cpu": plan.TRIAL_DRIVER_CPU})
    callbacks = [ForwardTrialStops(join(out, "runs")), ReleaseTrialResources(join(out, "runs")),
                 HParamsCallback(cfg, space, join(out, "hparams")), TrialEvents(cfg.sweep.metric)]
    if resume:
        tuner = tune.Tuner.restore(out, trainable, resume_unfinished=True, resume_errored=True,
                                   param_space=to_tune(space, cfg.sweep.search))
    else:
        tuner = _new_tuner(cfg, space, trainable, callbacks)
    grid = tuner.fit()
    rows = plan.sort_trials([_trial_row(cfg, r) for r in grid], cfg.sweep.mode)
    return _finish(cfg, rows)


def _new_tuner(cfg: Config, space: SearchSpace, trainable, callbacks: list):
    import ray
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search.basic_variant import BasicVariantGenerator

    scheduler = None
    if cfg.sweep.scheduler == "asha":
        total = plan.total_steps(cfg)
        scheduler = ASHAScheduler(time_attr="step", metric=cfg.sweep.metric, mode=cfg.sweep.mode,
                                  max_t=total, grace_period=min(plan.asha_grace_period(cfg), total),
                                  reduction_factor=cfg.sweep.asha_reduction_factor)
    concurrent = plan.max_concurrent_trials(cfg, ray.cluster_resources())
    print(f"[sweep] {space.grid_size(cfg.sweep.search) * cfg.sweep.num_samples} trial(s), at most "
          f"{concurrent} at once (each needs {plan.trial_resources(cfg)})", flush=True)
    return tune.Tuner(
        trainable,
        param_space=to_tune(space, cfg.sweep.search),
        # reuse_actors=False: a stopped trial's actor is killed, and with it the TorchTrainer it owns
        # (a reused actor would keep the stopped Train run, its workers and CPUs alive).
        tune_config=tune.TuneConfig(num_samples=cfg.sweep.num_samples, scheduler=scheduler, reuse_actors=False,
                                    # (Tune ignores TuneConfig.max_concurrent_trials for this one)
                                    search_alg=BasicVariantGenerator(max_concurrent=concurrent,
                                                                     random_state=cfg.sweep.seed)),
        run_config=tune.RunConfig(name=cfg.sweep.name, storage_path=cfg.run.storage_path,
                                  callbacks=callbacks, verbose=0),  # TrialEvents: a line per trial event
    )


def _finish(cfg: Config, rows: list[TrialRow]) -> SweepResult:
    out = sweep_dir(cfg)
    table = plan.trials_table(rows, cfg.sweep.metric)
    write_text(join(out, "trials.txt"), table + "\n")
    write_text(join(out, "trials.json"), json.dumps([r.__dict__ for r in rows], indent=2, default=str))
    best_path = None
    if rows and rows[0].metric is not None:
        best_path = join(out, "best.yaml")
        best = plan.best_trial_config(cfg, rows[0].params)
        header = (f"# best trial {rows[0].trial_id} of sweep '{cfg.sweep.name}': {cfg.sweep.metric}="
                  f"{rows[0].metric:.4g} ({rows[0].params})\n# train it: raytrain train --config {best_path}\n")
        write_text(best_path, header + yaml.safe_dump(best.to_dict(), sort_keys=False))
    return SweepResult(out, rows, best_path, table)


def _trial_row(cfg: Config, result) -> TrialRow:
    metric = cfg.sweep.metric
    params = plan.plain_params(result.config)
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
    else:
        status = plan.ended_status(steps, plan.total_steps(apply_params(cfg, params)))
    trial_id = (result.metrics or {}).get("trial_id") or Path(result.path).name
    return TrialRow(str(trial_id), params, value, steps, status, str(result.path),
                    {k: v for k, v in (result.metrics or {}).items() if isinstance(v, int | float | str)})
