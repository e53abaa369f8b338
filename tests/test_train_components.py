"""The loop's components that decide their own timing, without Ray: the fault injector (a no-op when
the faults: section is off), the checkpointer's and evaluator's schedules, the metric logger, the NaN
policy and the counters that ride in checkpoints."""

import pytest
import torch

from raytrain.config import Config, apply_overrides
from raytrain.train import faults
from raytrain.train.checkpoint import Checkpointer
from raytrain.train.evaluator import Evaluator
from raytrain.train.faults import FaultCounters, FaultInjector, NonFiniteLossError, on_non_finite
from raytrain.train.job import TrainJob
from raytrain.train.metric_logger import MetricLogger
from raytrain.train.resume import TrainState
from raytrain.train.step import StepResult


def test_the_injector_does_nothing_when_the_faults_section_is_off(tmp_path, monkeypatch):
    killed = []
    monkeypatch.setattr(faults, "die", lambda: killed.append(True))
    injector = FaultInjector(Config().faults, rank=1, run_dir=tmp_path)
    assert not Config().faults.enabled
    for step in range(20):
        assert not injector.poisons_loss(step) and injector.checkpoint_hook(step) is None
        injector.after_step(step)
    assert killed == [] and list(tmp_path.iterdir()) == []  # no marker, no attempt log


def test_the_injector_fires_each_fault_once_at_its_step(tmp_path, monkeypatch):
    killed = []
    monkeypatch.setattr(faults, "die", lambda: killed.append(True))
    cfg = apply_overrides(Config(), ["faults.nan_at_step=3", "faults.kill_at_step=2", "faults.kill_rank=1",
                                     "faults.checkpoint_crash_at_step=4"]).faults
    assert [s for s in range(1, 6) if FaultInjector(cfg, 0, tmp_path).poisons_loss(s)] == [3]
    FaultInjector(cfg, 0, tmp_path).after_step(2)  # another rank: not killed
    assert killed == []
    FaultInjector(cfg, 1, tmp_path).after_step(2)
    FaultInjector(cfg, 1, tmp_path).after_step(2)  # the restarted worker group goes on
    assert killed == [True]
    assert FaultInjector(cfg, 0, tmp_path).checkpoint_hook(2) is None
    assert FaultInjector(cfg, 0, tmp_path).checkpoint_hook(4) is not None
    assert FaultInjector(cfg, 0, tmp_path).checkpoint_hook(4) is None
    assert [e["fault"] for e in faults.read_events(tmp_path)] == ["kill", "checkpoint_crash"]


def _state(step=0):
    model = torch.nn.Linear(2, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    return TrainState(model, opt, torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0), step=step)


def test_the_checkpointer_saves_every_n_steps_before_the_last_and_asks_for_metrics_only_then():
    cfg = apply_overrides(Config(), ["checkpoint.every=2"])
    state = _state()
    ckpt = Checkpointer(cfg, state, rank=0, world_size=1, end_step=6, run_dir=None, train_paths=[],
                        injector=FaultInjector(cfg.faults, 0, None))
    assert [s for s in range(1, 9) if ckpt.due(s)] == [2, 4]

    def no_metrics():
        raise AssertionError("metrics asked for although no save is due")

    for step in (1, 3, 5, 6):
        state.step = step
        assert ckpt.maybe_save(no_metrics) is None
    state.step = 4
    assert ckpt.save_stopped({"loss": 1.0}) is None  # the step was just saved: no second report


def test_the_evaluator_is_due_every_eval_every_steps():
    job = TrainJob({}, num_train_clips=0, plan_start_step=0)
    assert not any(Evaluator(Config(), job, torch.device("cpu"), 0).due(s) for s in range(1, 13))
    every3 = Evaluator(apply_overrides(Config(), ["checkpoint.every=3", "eval.every=3"]), job, torch.device("cpu"), 0)
    assert [s for s in range(1, 13) if every3.due(s)] == [3, 6, 9, 12]


def test_the_job_pickles_and_gives_back_the_config():
    import pickle

    cfg = apply_overrides(Config(), ["train.batch_size=3"])
    job = TrainJob(cfg.to_dict(), 10, 2, ["a cat"], [0], 1, ["v.mp4"])
    again = pickle.loads(pickle.dumps(job))
    assert again == job and again.cfg() == cfg


def _result(loss, skipped=False):
    return StepResult(loss, {"aux": torch.tensor(0.5)}, torch.tensor(1.0), skipped, [], 0.25)


def test_the_metric_logger_windows_losses_and_logs_data_wait_and_compute(tmp_path, capsys):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    cfg = apply_overrides(Config(), ["train.log_every=2", f"run.storage_path={tmp_path}", "run.name=r"])
    logger = MetricLogger(cfg, rank=0, world_size=1, step=0, steps_per_epoch=4, total_steps=8, run_dir=None)
    for step, (loss, skipped) in enumerate([(1.0, False), (None, True), (3.0, False), (5.0, False)], start=1):
        logger.batch(torch.tensor([True, False]), data_wait_s=0.5, fallback_decoded=torch.tensor([step == 3, False]))
        logger.step(_result(loss, skipped), step, lr=0.1, nan_steps_skipped=1)
    assert "non-finite loss or gradient at step 2: update skipped (1 so far)" in capsys.readouterr().out
    assert logger.take_loss() == {"loss": 3.0} and logger.take_loss() == {}
    logger.evaluation({"t2v_R1": 50.0, "num_videos": 4.0}, 4)
    logger.close()
    acc = EventAccumulator(str(tmp_path / "r" / "tensorboard"))
    acc.Reload()
    scalars = {tag: {e.step: e.value for e in acc.Scalars(tag)} for tag in acc.Tags()["scalars"]}
    assert scalars["train/loss"] == {2: 1.0, 4: 4.0}  # the last log_every finite steps
    assert scalars["train/nan_steps_skipped"] == {2: 1.0}
    assert scalars["time/data_wait_s"] == {2: 0.5, 4: 0.5} and scalars["time/compute_s"] == {2: 0.25, 4: 0.25}
    assert scalars["data/cache_hit_rate"] == {2: 0.5, 4: 0.5} and scalars["train/aux"] == {2: 0.5, 4: 0.5}
    assert scalars["data/fallback_decodes_rank0"] == {2: 0.0, 4: 1.0}  # data.decoder=auto (the default)
    assert logger.summary()["fallback_decodes"] == 1
    assert scalars["eval/t2v_R1"] == {4: 50.0} and "eval/num_videos" not in scalars
    assert scalars["train/grad_norm"] == {2: 1.0, 4: 1.0}  # the finite steps' norms
    assert set(scalars["time/step_s"]) == set(scalars["data/clips_per_s"]) == {2, 4}
    assert all(0 <= v <= 1 for v in scalars["time/data_wait_share"].values())
    text = acc.Tensors("config/text_summary")[0].tensor_proto.string_val[0].decode()
    assert "    train:\n" in text and "      log_every: 2" in text  # YAML, not a dict repr
    assert "_hparams_/session_start_info" in acc.summary_metadata  # the HParams tab: config vs eval metrics
    assert scalars["hparam/t2v_R1"] == {0: 50.0}


def test_other_ranks_log_nothing_but_keep_the_loss(tmp_path):
    cfg = apply_overrides(Config(), [f"run.storage_path={tmp_path}", "run.name=r"])
    logger = MetricLogger(cfg, rank=1, world_size=2, step=0, steps_per_epoch=4, total_steps=8, run_dir=tmp_path)
    logger.step(_result(2.0), 1, lr=0.1, nan_steps_skipped=0)
    assert logger.take_loss() == {"loss": 2.0} and not (tmp_path / "r").exists()


def test_the_nan_policy_counts_a_skip_or_stops_naming_the_last_checkpoint(tmp_path):
    from raytrain.train.state import save_training_state

    counters = FaultCounters()
    on_non_finite("skip", 3, tmp_path, counters)
    assert counters.nan_steps_skipped == 1
    with pytest.raises(NonFiniteLossError, match="at step 3 .*last good checkpoint is none"):
        on_non_finite("stop", 3, tmp_path, counters)
    s = _state()
    save_training_state(tmp_path / "checkpoint_000000", Config(), s.module, s.optimizer, s.scheduler, 2, [])
    with pytest.raises(NonFiniteLossError, match="at step 3 .*last good checkpoint is step 2 at .*checkpoint_000000"):
        on_non_finite("stop", 3, tmp_path, counters)


def test_counters_name_the_first_bad_videos_and_report_metrics():
    counters = FaultCounters()
    assert counters.metrics() == {"bad_videos_skipped": 0, "nan_steps_skipped": 0}
    counters.add_bad_clips([0, 0, 1, 9], ["a.mp4", "b.mp4"], keep=2)
    assert counters.bad_videos_skipped == 4 and counters.bad_video_paths == ["a.mp4", "b.mp4"]
    assert counters.metrics()["bad_video_examples"] == "a.mp4 | b.mp4"
    assert FaultCounters.from_saved(counters.to_saved()) == counters
