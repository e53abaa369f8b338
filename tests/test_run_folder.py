"""Issue 19, no Ray cluster: Ray Train's checkpoint snapshot repaired (made and re-read with Ray's own
model of it), checkpoints Ray does not track pruned after restarts, and the staging folder."""

import json
import shutil

from fixture_files import save_tiny_checkpoint  # tests/fixture_files.py

from raytrain.train.run_folder import (
    CHECKPOINT_TMP,
    SNAPSHOT_FILE,
    checkpoint_tmp_dir,
    prepare_run_folder,
    prune_untracked,
    repair_snapshot,
)
from raytrain.train.state import complete_checkpoints, latest_checkpoint_step


def _ray_snapshot(run, names, pending=()):
    """A snapshot as Ray Train V2 writes it (its pydantic model), naming ``names`` in report order."""
    from ray.train.v2._internal.execution.checkpoint.checkpoint_manager import (
        _CheckpointManagerState,
        _TrainingResultState,
    )

    results = [_TrainingResultState(checkpoint_dir_name=n, metrics={"step": 2 * (i + 1)}) for i, n in enumerate(names)]
    state = _CheckpointManagerState(
        checkpoint_results=results, checkpoint_report_indices=list(range(1, len(names) + 1)),
        latest_checkpoint_result=results[-1], pending_training_results=[r for r in results if r.checkpoint_dir_name
                                                                          in pending],
        pending_validation_specs=[False for n in names if n in pending], current_report_index=len(names),
        validated_checkpoint_dir_names=list(names), timed_out_validation_checkpoint_dir_names=[],
        failed_validation_checkpoint_dir_names=[])
    (run / SNAPSHOT_FILE).write_text(state.model_dump_json())


def _load_with_ray(run):
    from ray.train.v2._internal.execution.checkpoint.checkpoint_manager import _CheckpointManagerState

    return _CheckpointManagerState.model_validate_json((run / SNAPSHOT_FILE).read_text())


def test_references_to_a_deleted_and_a_truncated_checkpoint_are_dropped(tmp_path, capsys):
    run = tmp_path / "run"
    names = [f"checkpoint_00000{i}" for i in range(3)]
    for i, n in enumerate(names):
        save_tiny_checkpoint(run / n, 2 * (i + 1))
    _ray_snapshot(run, names, pending=names[1:])
    shutil.rmtree(run / names[0])  # deleted by hand
    data = (run / names[2] / "state.pt").read_bytes()
    (run / names[2] / "state.pt").write_bytes(data[:100])  # the newest, truncated

    assert repair_snapshot(run) == [names[0], names[2]]
    state = _load_with_ray(run)  # Ray's own model accepts the repaired file
    assert [r.checkpoint_dir_name for r in state.checkpoint_results] == [names[1]]
    assert state.checkpoint_report_indices == [2] and state.latest_checkpoint_result.checkpoint_dir_name == names[1]
    assert [r.checkpoint_dir_name for r in state.pending_training_results] == [names[1]]
    assert state.pending_validation_specs == [False] and state.validated_checkpoint_dir_names == [names[1]]
    err = capsys.readouterr().err
    assert f"'{names[0]}' (missing)" in err and f"'{names[2]}' (state.pt is 100 bytes" in err
    assert repair_snapshot(run) == []  # nothing left to repair
    assert latest_checkpoint_step(run) == 4


def test_an_unreadable_snapshot_is_moved_aside_with_a_message(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / SNAPSHOT_FILE).write_text('{"checkpoint_results": [{"checkpoint_dir')  # a half-written file
    repair_snapshot(run)
    assert not (run / SNAPSHOT_FILE).exists()
    backups = list(run.glob(f"{SNAPSHOT_FILE}.broken-*"))
    assert len(backups) == 1 and backups[0].name in capsys.readouterr().err


def test_a_checkpoint_resumed_from_but_never_registered_with_ray_is_pruned_once_a_newer_one_is(tmp_path):
    """Issue 19 item 3: a restart resumed from local step 4 (Ray registered only 2); with keep=2 Ray then
    tracks 6 and 8: the untracked 4 goes, never the newest nor a folder newer than Ray's newest."""
    run = tmp_path / "run"
    for step in (2, 4, 6, 8, 10):
        save_tiny_checkpoint(run / f"checkpoint_s{step:02d}", step)
    (run / "checkpoint_s02" / "progress.json").unlink()  # incomplete: left alone (reported, not pruned)
    _ray_snapshot(run, ["checkpoint_s06", "checkpoint_s08"])  # 10: reported, not yet registered
    assert prune_untracked(run, keep=2) == ["checkpoint_s04"]
    assert sorted(p.name for p in run.glob("checkpoint_s*")) == ["checkpoint_s02", "checkpoint_s06",
                                                                 "checkpoint_s08", "checkpoint_s10"]
    assert [s for s, _ in complete_checkpoints(run)] == [10, 8, 6]  # keep (2) + the unregistered newest
    (run / SNAPSHOT_FILE).unlink()
    assert prune_untracked(run, keep=2) == []  # no snapshot: nothing is known to be stale


def test_best_by_metric_checkpoints_ray_keeps_are_not_pruned(tmp_path):
    run = tmp_path / "run"
    for step in (2, 4, 6):
        save_tiny_checkpoint(run / f"checkpoint_s{step}", step)
    _ray_snapshot(run, ["checkpoint_s2", "checkpoint_s6"])  # the best (2) and the latest (6)
    assert prune_untracked(run, keep=1) == ["checkpoint_s4"] and (run / "checkpoint_s2").is_dir()


def test_checkpoints_are_staged_in_the_runs_hidden_folder_and_stale_ones_cleaned_at_start(tmp_path):
    run = tmp_path / "run"
    save_tiny_checkpoint(run / "checkpoint_000000", 2)
    with checkpoint_tmp_dir(run) as tmp:
        assert tmp.startswith(str(run / CHECKPOINT_TMP))
        save_tiny_checkpoint(tmp, 4)  # a complete checkpoint being staged is never taken for one of the run's
        assert latest_checkpoint_step(run) == 2 and [s for s, _ in complete_checkpoints(run)] == [2]
    with checkpoint_tmp_dir(None) as tmp:  # remote storage: the system temp dir
        assert not tmp.startswith(str(run))
    stale = run / CHECKPOINT_TMP / "raytrain-ckpt-killed"
    stale.mkdir(parents=True)
    (stale / "state.pt").write_bytes(b"x" * 1000)  # a rank 0 killed mid-save
    prepare_run_folder(run, keep=2)
    assert not (run / CHECKPOINT_TMP).exists() and (run / "checkpoint_000000").is_dir()


def test_prepare_reports_each_broken_checkpoint_once_in_the_attempt_log(tmp_path, capsys):
    from raytrain.train.faults import read_events

    run = tmp_path / "run"
    save_tiny_checkpoint(run / "checkpoint_000000", 2)
    (save_tiny_checkpoint(run / "checkpoint_000001", 4) / "progress.json").unlink()
    prepare_run_folder(run, keep=2)
    assert [e["skipped_checkpoint"] for e in read_events(run)] == ["checkpoint_000001"]
    assert "skipping checkpoint" in capsys.readouterr().err
    assert json.loads((run / "checkpoint_000000" / "progress.json").read_text())["step"] == 2


def test_the_fallback_is_never_pruned_when_rays_newer_checkpoints_are_broken(tmp_path):
    run = tmp_path / "run"
    for step in (4, 8):
        save_tiny_checkpoint(run / f"checkpoint_s{step}", step)
    _ray_snapshot(run, ["checkpoint_s8"])
    _flip_a_weight_byte(run / "checkpoint_s8" / "state.pt")  # same size, damaged
    assert prune_untracked(run, keep=1) == [] and latest_checkpoint_step(run) == 4


def _flip_a_weight_byte(path):
    import struct
    import zipfile

    data = bytearray(path.read_bytes())
    member = next(i for i in zipfile.ZipFile(path).infolist() if i.filename.endswith("data/0"))
    name_len, extra_len = struct.unpack("<HH", data[member.header_offset + 26: member.header_offset + 30])
    data[member.header_offset + 30 + name_len + extra_len] ^= 0xFF
    path.write_bytes(bytes(data))


def test_an_untracked_checkpoint_within_keep_is_kept(tmp_path):
    """The crash-mid-checkpoint drill: the worker lost at step 4 took step 2's report with it, so Ray
    tracks only 4; with keep=10 step 2 is one of the newest `keep` and stays (not a lost checkpoint)."""
    run = tmp_path / "run"
    for step in (2, 4):
        save_tiny_checkpoint(run / f"checkpoint_s{step}", step)
    _ray_snapshot(run, ["checkpoint_s4"])
    assert prune_untracked(run, keep=10) == [] and (run / "checkpoint_s2").is_dir()
    assert prune_untracked(run, keep=1) == ["checkpoint_s2"]
