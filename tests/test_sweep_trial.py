"""Tier 1: the sweep driver's side of the trial protocol (no Ray cluster): Tune's stop decision
becomes the trial's stop request, and an ended trial without a recorded placement group is released
as a no-op."""

from types import SimpleNamespace

from raytrain.storage import write_text
from raytrain.tune.callbacks import ForwardTrialStops, ReleaseTrialResources
from raytrain.tune.trial import TrialControl


def test_tunes_stop_decision_becomes_the_trials_stop_request(tmp_path):
    trial = SimpleNamespace(trial_id="t_00001")
    control = TrialControl(str(tmp_path / "t_00001"))
    forward = ForwardTrialStops(str(tmp_path))
    forward.on_trial_result(3, [trial], trial, result={"loss": 1.0, "step": 2, "done": False})
    assert not control.stop_requested()
    forward.on_trial_result(4, [trial], trial, result={"loss": 9.0, "step": 2, "done": True})
    assert control.stop_requested()
    assert not TrialControl(str(tmp_path / "t_00002")).stop_requested()  # only that trial's run
    control.reset()  # a resumed trial goes on
    assert not control.stop_requested()


def test_releasing_a_trial_without_a_recorded_group_does_nothing(tmp_path):
    release = ReleaseTrialResources(str(tmp_path))
    release.on_trial_complete(1, [], SimpleNamespace(trial_id="never_started"))
    write_text(TrialControl(str(tmp_path / "ran_without_a_group")).placement_group_file, "")
    release.on_trial_error(1, [], SimpleNamespace(trial_id="ran_without_a_group"))


def test_the_sweep_prints_one_line_per_trial_event():
    import numpy as np

    from raytrain.tune.callbacks import trial_event_line

    assert trial_event_line("a_00000", "started", params={"optim.lr": np.float64(0.001), "mask.high_ratio": 0.3}) \
        == "[sweep] trial a_00000 started: optim.lr=0.001, mask.high_ratio=0.3"
    assert trial_event_line("a_00000", "report", result={"step": 4, "loss": 2.34567, "t2v_R1": 12.5, "x": "y"},
                            metric="t2v_R1") == "[sweep] trial a_00000 report: step 4, loss=2.346, t2v_R1=12.5"
    assert trial_event_line("a_00001", "finished", result={"step": 8, "loss": 1.0}, metric="loss") == \
        "[sweep] trial a_00001 finished: step 8, loss=1"
