"""The sweep driver's Tune callbacks: Tune's stop decisions reach the trials' Train runs, ended trials
free their workers, and one TensorBoard HParams view sums the sweep up."""

from __future__ import annotations

import math
from typing import Any

from ray.tune import Callback

from raytrain.config import Config
from raytrain.storage import TensorBoardLog, join
from raytrain.tune.plan import plain_params
from raytrain.tune.space import SearchSpace
from raytrain.tune.trial import TrialControl

HEADLINE_METRIC = "t2v_R1"  # shown in the HParams view beside the swept metric when the trials evaluate


def trial_event_line(trial_id: str, event: str, params: dict[str, Any] | None = None,
                     result: dict[str, Any] | None = None, metric: str = "") -> str:
    """One console line per trial event: ``started`` (its parameters), ``report`` (step, loss and the
    swept metric when reported), ``finished``, ``failed``."""
    parts = [f"[sweep] trial {trial_id} {event}"]
    if params:
        parts.append(", ".join(f"{k}={v}" for k, v in plain_params(params).items()))
    if result:
        shown = [f"step {result['step']}"] if "step" in result else []
        for key in dict.fromkeys(["loss", metric]):
            if key and isinstance(result.get(key), (int, float)):
                shown.append(f"{key}={result[key]:.4g}")
        parts.append(", ".join(shown))
    return ": ".join(p for p in parts if p)


class TrialEvents(Callback):
    """The sweep's console: one line per trial event (Tune's own tables are off, ``verbose=0``)."""

    def __init__(self, metric: str):
        self.metric = metric

    def on_trial_start(self, iteration: int, trials: list, trial, **info) -> None:
        print(trial_event_line(trial.trial_id, "started", params=trial.config), flush=True)

    def on_trial_result(self, iteration: int, trials: list, trial, result: dict, **info) -> None:
        print(trial_event_line(trial.trial_id, "report", result=result, metric=self.metric), flush=True)

    def on_trial_complete(self, iteration: int, trials: list, trial, **info) -> None:
        print(trial_event_line(trial.trial_id, "finished", result=trial.last_result or {}, metric=self.metric),
              flush=True)

    def on_trial_error(self, iteration: int, trials: list, trial, **info) -> None:
        print(trial_event_line(trial.trial_id, "failed (its error is in the sweep folder's trial logs)"),
              flush=True)


class ForwardTrialStops(Callback):
    """Ask a trial's Train run to end when Tune decides to stop the trial (ASHA).

    Tune marks the result it stops a trial on with ``done=True`` before it stops the trial's process;
    the trial's thread sits in ``trainer.fit()`` and cannot see the decision itself (Ray 2.60 has no
    public stop signal for a function trainable), so the driver writes the trial's stop request. A
    trial that ends by itself sends no such result."""

    def __init__(self, runs_dir: str):
        self.runs_dir = runs_dir

    def on_trial_result(self, iteration: int, trials: list, trial, result: dict, **info) -> None:
        if result.get("done"):
            TrialControl(join(self.runs_dir, trial.trial_id)).request_stop()


class ReleaseTrialResources(Callback):
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


class HParamsCallback(Callback):
    """One TensorBoard HParams view for the sweep: ``<sweep>/hparams`` holds the experiment (every
    searched key and the metrics) and one run per finished trial with its values and final metrics."""

    def __init__(self, cfg: Config, space: SearchSpace, location: str):
        self.cfg, self.space, self.location = cfg, space, location
        # TensorBoard tag -> the reported metric it shows (its last value)
        self.metrics = {f"hparam/{cfg.sweep.metric}": cfg.sweep.metric, "hparam/steps": "step"}
        if cfg.sweep.metric != HEADLINE_METRIC and cfg.eval.at_end:
            self.metrics[f"hparam/{HEADLINE_METRIC}"] = HEADLINE_METRIC

    def setup(self, **info) -> None:
        from torch.utils.tensorboard.summary import hparams

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

        analysis = getattr(trial, "metric_analysis", {}) or {}
        values = {}
        for name, key in self.metrics.items():
            last = analysis.get(key, {}).get("last")
            if last is not None and not (isinstance(last, float) and math.isnan(last)):
                values[name] = float(last)
        _, start, end = hparams(plain_params(trial.config), values)
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
