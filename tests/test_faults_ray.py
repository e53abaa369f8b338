"""Issue 8 on Ray: each fault injected into a 2-worker CPU fit of 4 steps (checkpoints at 2 and 4).
One drill per test; see tests/drills.py and bench/faults.py."""

import pytest
import torch
from drills import run_drill  # tests/drills.py

pytestmark = [pytest.mark.ray, pytest.mark.e2e]


def _same_weights(a, b):
    return set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a)


def test_killed_worker_restarts_from_the_last_checkpoint_and_matches_an_uninterrupted_run(
        ray_session, tiny_config, tmp_path):
    clean = run_drill(tiny_config, "none (baseline)", tmp_path)
    killed = run_drill(tiny_config, "worker killed (rank 1, step 3)", tmp_path)
    assert clean.finished and clean.steps_lost == 0, clean.error
    assert killed.injected and killed.finished, killed.error
    assert killed.final_step == 4 and killed.steps_lost == 1  # step 3 trained again, after checkpoint 2
    assert killed.checkpoints_lost == 0
    # Per-rank plan + restored RNG/optimizer/scheduler: bit-identical to the uninterrupted run.
    assert _same_weights(clean.model, killed.model)
    assert killed.metrics["loss"] == clean.metrics["loss"]


def test_bad_videos_are_skipped_counted_and_named(ray_session, tiny_config, tmp_path):
    r = run_drill(tiny_config, "bad videos, skip", tmp_path)
    assert r.finished and r.final_step == 4, r.error
    assert r.metrics["bad_videos_skipped"] == 2
    assert "zero.mp4" in r.metrics["bad_video_examples"] and "truncated.mp4" in r.metrics["bad_video_examples"]


def test_bad_videos_stop_the_run_naming_the_file(ray_session, tiny_config, tmp_path):
    r = run_drill(tiny_config, "bad videos, error", tmp_path)
    assert r.stopped_as_expected and not r.finished, r.error  # stopped, with the file and the decoder's message


def test_crash_during_a_checkpoint_write_resumes_from_the_previous_one(ray_session, tiny_config, tmp_path):
    r = run_drill(tiny_config, "crash mid-checkpoint (step 4)", tmp_path)
    assert r.injected and r.finished and r.final_step == 4, r.error
    assert r.steps_lost == 2 and r.checkpoints_lost == 0


@pytest.mark.parametrize("mode", ["skip", "stop"])
def test_nan_loss(ray_session, tiny_config, tmp_path, mode):
    r = run_drill(tiny_config, f"NaN loss, {mode} (step 3)", tmp_path)
    if mode == "skip":
        assert r.finished, r.error
        assert r.final_step == 4 and r.metrics["nan_steps_skipped"] == 1
    else:
        assert r.stopped_as_expected and not r.finished, r.error


def test_a_failed_train_command_ends_in_one_message_and_exit_code_1(ray_session, synth_dir, tmp_path, capsys):
    """`raytrain train` on a manifest with undecodable clips: rc 1 and one short message naming the
    file, its manifest row and video_id, the run folder and its last good checkpoint; no traceback."""
    from drills import bad_video_manifest
    from tiny import tiny_fit_config, tiny_overrides

    from raytrain.cli import main
    from raytrain.data.manifest import load_manifest

    cfg = tiny_fit_config(synth_dir, tmp_path / "runs", "bad")
    manifest = bad_video_manifest(cfg, tmp_path / "bad")
    overrides = [*tiny_overrides(synth_dir), f"data.manifest={manifest}", f"run.storage_path={tmp_path / 'runs'}",
                 "run.name=bad", "train.max_steps=2", "data.per_rank_plan=true", "eval.at_end=false"]
    capsys.readouterr()
    assert main(["train", *overrides]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) <= 4, err
    assert err.startswith("raytrain train: failed: cannot decode '"), err
    rows = load_manifest(manifest)
    bad = next(i for i, r in enumerate(rows) if r.path in err)
    assert f"manifest row {bad} (video_id '{rows[bad].video_id}')" in err
    assert f"run folder: {tmp_path / 'runs' / 'bad'}; last good checkpoint: none" in err


def test_a_snapshot_referring_to_a_deleted_and_a_truncated_checkpoint_is_repaired_and_the_run_resumes(
        ray_session, tiny_config, tmp_path, capsys):
    """Issue 19: Ray's checkpoint_manager_snapshot.json names a deleted and a truncated checkpoint; the
    rerun drops both references, resumes from the newest usable one and finishes."""
    import json
    import shutil

    from raytrain.config import apply_overrides
    from raytrain.train.faults import read_events
    from raytrain.train.run_folder import CHECKPOINT_TMP, SNAPSHOT_FILE
    from raytrain.train.state import checkpoint_step, complete_checkpoints
    from raytrain.train.trainer import fit, run_dir

    cfg = apply_overrides(tiny_config, ["train.max_steps=3", "checkpoint.every=1",
                                        "checkpoint.keep=10", "eval.at_end=false", "data.per_rank_plan=true",
                                        "run.name=snap"])
    fit(cfg)
    run = run_dir(cfg)
    by_step = {checkpoint_step(p): p for p in run.glob("checkpoint_*") if p.is_dir()}
    assert sorted(by_step) == [1, 2, 3]
    assert {r["checkpoint_dir_name"] for r in json.loads((run / SNAPSHOT_FILE).read_text())["checkpoint_results"]} \
        == {p.name for p in by_step.values()}
    assert not list((run / CHECKPOINT_TMP).iterdir())  # the staged copies are gone, in the run folder
    shutil.rmtree(by_step[1])
    state = by_step[3] / "state.pt"
    state.write_bytes(state.read_bytes()[:1000])
    (run / CHECKPOINT_TMP / "raytrain-ckpt-killed").mkdir()  # what a rank 0 killed mid-save leaves
    capsys.readouterr()

    metrics = fit(cfg).metrics
    assert metrics["step"] == 3 and metrics.get("final")
    err = capsys.readouterr().err
    assert f"'{by_step[1].name}' (missing): reference dropped" in err and by_step[3].name in err
    starts = [e["start_step"] for e in read_events(run) if "start_step" in e]
    assert starts[-1] == 2  # resumed from the newest usable checkpoint, not from scratch
    assert not (run / CHECKPOINT_TMP / "raytrain-ckpt-killed").exists()
    assert next(s for s, _ in complete_checkpoints(run)) == 3
