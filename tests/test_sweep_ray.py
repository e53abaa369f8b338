"""Tier 3: real Ray Tune sweeps of Ray Train runs on tiny data — TensorBoard (scalars and the HParams
view, read back with TensorBoard's event reader), ASHA stopping a bad trial, the best config
training unchanged with ``raytrain train``, and resuming an interrupted sweep."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from raytrain.config import apply_overrides, load_config
from raytrain.tune.space import load_space_dict
from raytrain.tune.sweep import resume_sweep, start_sweep
from raytrain.tune.trial import TrialControl

pytestmark = [pytest.mark.ray, pytest.mark.e2e]


def _sweep_config(tiny_config, tmp_path, name):
    # 1 worker per trial, batch 4: 12 steps per epoch; 6 steps, a checkpoint (and report) every 2.
    return apply_overrides(tiny_config, [
        "scaling.num_workers=1", "train.max_steps=6", "checkpoint.every=2", "train.log_every=1",
        "optim.warmup_fraction=0.0", f"run.storage_path={tmp_path / 'sweeps'}", f"sweep.name={name}",
        "sweep.max_concurrent_trials=1"])


def _events(directory: Path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    for path in sorted(directory.rglob("events.out.tfevents.*")):
        acc = EventAccumulator(str(path))
        acc.Reload()
        yield path, acc


def _steps(directory: Path, tag: str) -> set[int]:
    """The steps at which ``tag`` was logged, over every event file of a run (HParams adds its own)."""
    return {e.step for _, acc in _events(directory) if tag in acc.Tags()["scalars"] for e in acc.Scalars(tag)}


def _hparams_sessions(hparams_dir: Path) -> dict[str, dict]:
    """trial id -> {hparams, metrics} as TensorBoard's HParams plugin reads them."""
    from tensorboard.plugins.hparams import plugin_data_pb2

    sessions: dict[str, dict] = {}
    for path, acc in _events(hparams_dir):
        trial = path.parent.name
        for tag, content in acc.PluginTagToContent("hparams").items():
            data = plugin_data_pb2.HParamsPluginData.FromString(content)
            if data.HasField("session_start_info"):
                values = {k: (v.number_value if v.HasField("number_value") else v.string_value)
                          for k, v in data.session_start_info.hparams.items()}
                sessions.setdefault(trial, {})["hparams"] = values
            if data.HasField("experiment"):
                sessions.setdefault("<experiment>", {})["hparams"] = [h.name for h in data.experiment.hparam_infos]
        for tag in acc.Tags()["scalars"]:
            sessions.setdefault(trial, {}).setdefault("metrics", {})[tag] = acc.Scalars(tag)[-1].value
    return sessions


def _alive_actors() -> list[str]:
    """The actors still alive, from the GCS (the tests run without a dashboard)."""
    import ray._private.state

    return [f"{a.get('ActorClassName')} pid={a.get('Pid')}" for a in ray._private.state.actors().values()
            if a.get("State") == "ALIVE"]


def test_a_trial_releases_the_placement_group_its_train_run_recorded(ray_session, tmp_path):
    from ray.util import placement_group, placement_group_table
    from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

    control = TrialControl(str(tmp_path / "run"))
    group = placement_group([{"CPU": 0.5}])
    ray_session.get(group.ready(), timeout=60)

    @ray_session.remote(num_cpus=0.5, scheduling_strategy=PlacementGroupSchedulingStrategy(placement_group=group))
    def rank_0() -> None:
        control.record_placement_group()  # as the training loop's rank 0 does in its Train worker

    ray_session.get(rank_0.remote(), timeout=60)
    assert (tmp_path / "run" / "train_placement_group").read_text() == group.id.hex()
    control.release()
    deadline = time.time() + 30
    while time.time() < deadline and placement_group_table(group)["state"] != "REMOVED":
        time.sleep(0.5)
    assert placement_group_table(group)["state"] == "REMOVED"
    control.release()  # again: the group is gone, nothing to do


def test_sweep_logs_every_trial_stops_the_bad_one_and_its_best_config_trains(
        ray_session, tiny_config, tmp_path):
    cfg = apply_overrides(_sweep_config(tiny_config, tmp_path, "lw"), [
        "method.name=mascot", "method.mascot.decoder_heads=2", "sweep.metric=loss", "sweep.mode=min",
        "sweep.search=grid", "sweep.scheduler=asha", "sweep.asha_grace_period=2", "eval.at_end=true"])
    # A bad trial by construction: its masked-view InfoNCE weighs 50 (a contrastive loss stays near
    # log(batch) early on, so its total loss is ~20x the other's). Grid order is the listed order:
    # the sane trial runs first and sets ASHA's cutoff at step 2, where the bad one is stopped.
    space = load_space_dict({"space": {"method.mascot.lambda_mv": {"grid": [0.5, 50.0]},
                                       "mask.high_ratio": {"grid": [0.3]}}}, cfg, "test space")
    result = start_sweep(cfg, space)

    sweep = Path(result.sweep_dir)
    by_weight = {r.params["method.mascot.lambda_mv"]: r for r in result.rows}
    good, bad = by_weight[0.5], by_weight[50.0]
    assert result.rows[0] is good and good.status == "finished" and good.steps == 6
    assert bad.status == "stopped early" and bad.steps == 2, result.table
    assert bad.metric > good.metric
    assert "t2v_R1" in good.metrics  # the finished trial evaluated at the end

    # Stopping a trial stops its Train run: the placement group its loop recorded is removed and no
    # Train worker outlives its trial. (Ray Data's decode actors and Train's controller are Ray's to
    # collect once their owner goes; on a loaded 2-core CI machine a finished trial's controller was
    # once seen alive minutes later, so their CPUs are not asserted here.)
    from ray.util import placement_group_table
    from ray.util.placement_group import PlacementGroup

    recorded = [Path(TrialControl(str(sweep / "runs" / row.trial_id)).placement_group_file) for row in (good, bad)]
    groups = [PlacementGroup(ray_session.PlacementGroupID.from_hex(p.read_text().strip())) for p in recorded]
    deadline = time.time() + 120  # actor shutdown is asynchronous, and slow on a loaded 2-core machine
    while time.time() < deadline and (any(placement_group_table(g)["state"] != "REMOVED" for g in groups)
                                      or any(a.startswith("RayTrainWorker ") for a in _alive_actors())):
        time.sleep(1)
    assert [placement_group_table(g)["state"] for g in groups] == ["REMOVED", "REMOVED"]
    assert not [a for a in _alive_actors() if a.startswith("RayTrainWorker ")], _alive_actors()

    # TensorBoard: each trial's own Train run logged its training scalars (the stopped one may log a
    # step or two more while the stop reaches its workers) ...
    def train_steps(row):
        run = sweep / "runs" / row.trial_id / "tensorboard"
        return _steps(run, "train/loss")

    assert train_steps(good) == set(range(1, 7))
    assert {1, 2} <= train_steps(bad)
    # ... Tune logged every report of every trial ...
    tune_tags = {tag for path, acc in _events(sweep) if "runs" not in path.parts and "hparams" not in path.parts
                 for tag in acc.Tags()["scalars"]}
    assert "ray/tune/loss" in tune_tags
    # ... and one HParams view lists every trial's values against its final metric.
    sessions = _hparams_sessions(sweep / "hparams")
    assert set(sessions.pop("<experiment>")["hparams"]) == {"method.mascot.lambda_mv", "mask.high_ratio"}
    assert {t: s["hparams"]["method.mascot.lambda_mv"] for t, s in sessions.items()} == {
        good.trial_id: 0.5, bad.trial_id: 50.0}
    assert sessions[good.trial_id]["metrics"]["hparam/loss"] == pytest.approx(good.metric)
    assert sessions[good.trial_id]["metrics"]["hparam/steps"] == 6
    assert sessions[bad.trial_id]["metrics"]["hparam/steps"] == 2
    assert "hparam/t2v_R1" in sessions[good.trial_id]["metrics"]

    table = (sweep / "trials.txt").read_text().splitlines()
    assert good.trial_id in table[2] and bad.trial_id in table[3]
    assert json.loads((sweep / "trials.json").read_text())[0]["trial_id"] == good.trial_id

    # The best config trains unchanged with `raytrain train`.
    best = load_config(result.best_config_path)
    assert best.method.mascot.lambda_mv == 0.5 and best.run.name == "lw-best"
    env = {**os.environ, "RAY_ADDRESS": ray_session.get_runtime_context().gcs_address}
    done = subprocess.run([sys.executable, "-m", "raytrain.cli", "train", "--config", result.best_config_path],
                          check=False, capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    metrics = json.loads((Path(best.run.storage_path) / "lw-best" / "metrics.json").read_text())
    assert metrics["step"] == 6 and "t2v_R1" in metrics


def test_an_interrupted_sweep_resumes_without_rerunning_finished_trials(ray_session, tiny_config, tmp_path):
    cfg = apply_overrides(_sweep_config(tiny_config, tmp_path, "resume"), [
        "sweep.metric=t2v_R1", "sweep.search=grid", "eval.at_end=true", "train.max_steps=4",
        "eval.every=2"])
    space = {"space": {"mask.high_ratio": {"grid": [0.2, 0.4]}}}
    (tmp_path / "space.yaml").write_text(yaml.safe_dump(space))
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(cfg.to_dict()))
    env = {**os.environ, "RAY_ADDRESS": ray_session.get_runtime_context().gcs_address}
    sweep = tmp_path / "sweeps" / "resume"
    driver = subprocess.Popen([sys.executable, "-m", "raytrain.cli", "sweep", "--config", str(config),
                               "--space", str(tmp_path / "space.yaml")], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:  # interrupt the sweep driver once the first trial has finished
        deadline = time.time() + 400
        while time.time() < deadline and len(list((sweep / "hparams").glob("*/events.*"))) < 1:
            time.sleep(1)
        assert len(list((sweep / "hparams").glob("*/events.*"))) == 1, "the first trial never finished"
        time.sleep(5)  # Tune saves its experiment state every 2 s in a sweep
    finally:
        driver.kill()
        driver.wait()
    first = next(p.parent.name for p in (sweep / "hparams").glob("*/events.*"))
    first_ckpts = sorted(p.name for p in (sweep / "runs" / first).glob("checkpoint_*"))

    result = resume_sweep(str(sweep))
    assert {r.status for r in result.rows} == {"finished"} and len(result.rows) == 2, result.table
    assert {r.params["mask.high_ratio"] for r in result.rows} == {0.2, 0.4}
    assert all(r.metric is not None for r in result.rows)
    # The finished trial was not trained again: its run folder holds the same checkpoints.
    assert sorted(p.name for p in (sweep / "runs" / first).glob("checkpoint_*")) == first_ckpts
    assert Path(result.best_config_path).is_file()
    # eval.every=2: R@1 at the step-2 checkpoint as well as at the end, in TensorBoard and in Tune.
    for row in result.rows:
        run = sweep / "runs" / row.trial_id / "tensorboard"
        assert _steps(run, "eval/t2v_R1") == {2, 4}
        progress = (Path(row.path) / "progress.csv").read_text().splitlines()
        header = progress[0].split(",")
        assert all(line.split(",")[header.index("t2v_R1")] for line in progress[1:])
