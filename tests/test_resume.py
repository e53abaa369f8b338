"""The resume decision and the training state (raytrain.train.resume), without Ray: Ray's checkpoint
vs the run folder's newest complete one vs none, RNG restore per rank, counters from old checkpoints."""

import contextlib
import random

import numpy as np
import pytest
import torch

from raytrain.config import Config
from raytrain.train.faults import FaultCounters
from raytrain.train.resume import (
    RNG_RESEED_STRIDE,
    Candidate,
    TrainState,
    load_resume_state,
    restore_rng,
    resume_order,
)
from raytrain.train.state import rng_state, save_training_state, seed_everything


def _state():
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    return TrainState(model, opt, torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0))


def _save(directory, step, extra=None, rngs=()):
    s = _state()
    return save_training_state(directory, Config(), s.module, s.optimizer, s.scheduler, step, list(rngs), extra)


class _RayCheckpoint:
    """What ``ray.train.get_checkpoint()`` returns, for a local folder."""

    def __init__(self, path):
        self.path = path

    @contextlib.contextmanager
    def as_directory(self):
        yield str(self.path)


@pytest.mark.parametrize("ray_step,local_step,expected", [
    (None, None, None), (4, None, "ray"), (None, 2, "local"), (2, 4, "local"), (4, 4, "ray"), (6, 4, "ray")])
def test_resume_order_newest_step_first_ray_on_a_tie(tmp_path, ray_step, local_step, expected):
    cands = [Candidate(s, n, tmp_path / n, n == "ray") for s, n in ((ray_step, "ray"), (local_step, "local"))
             if s is not None]
    order = resume_order(cands)
    assert (order[0].name if order else None) == expected
    assert len(resume_order([Candidate(2, "a", tmp_path / "x"), Candidate(2, "b", tmp_path / "x", True)])) == 1


def test_a_worker_lost_right_after_a_report_resumes_from_the_run_folders_newer_checkpoint(tmp_path):
    run = tmp_path / "run"
    _save(run / "checkpoint_000000", 2)
    _save(run / "checkpoint_000001", 4)  # complete on disk, but Ray's controller never registered it
    assert load_resume_state(_RayCheckpoint(run / "checkpoint_000000"), run)["step"] == 4
    assert load_resume_state(None, run)["step"] == 4
    assert load_resume_state(_RayCheckpoint(run / "checkpoint_000001"), run)["step"] == 4
    assert load_resume_state(_RayCheckpoint(run / "checkpoint_000000"), None)["step"] == 2  # remote storage
    assert load_resume_state(None, tmp_path / "fresh") is None


def test_restore_rng_per_rank_or_reseed_when_the_worker_count_changed():
    seed_everything(5)
    saved_rngs = [rng_state()]
    expected = (torch.rand(1), np.random.rand(), random.random())
    restore_rng({"step": 4, "rng": saved_rngs}, seed=0, rank=0, world_size=1)
    assert (torch.rand(1), np.random.rand(), random.random()) == expected

    restore_rng({"step": 4, "rng": saved_rngs}, seed=7, rank=1, world_size=2)  # 1 saved state, 2 workers
    got = torch.rand(1)
    seed_everything(7 + RNG_RESEED_STRIDE * 4 + 1)
    assert torch.equal(got, torch.rand(1))

    restore_rng(None, seed=7, rank=1, world_size=2)  # a fresh run: seed + rank
    got = torch.rand(1)
    seed_everything(8)
    assert torch.equal(got, torch.rand(1))


def test_train_state_restores_weights_step_and_counters_of_the_dict_form(tmp_path):
    from raytrain.train.state import load_training_state

    counters = {"bad_videos_skipped": 2, "bad_video_paths": ["a.mp4"], "nan_steps_skipped": 1}
    saved = load_training_state(_save(tmp_path / "c", 6, extra={"faults": counters, "start_step": 2}))
    state = _state()
    state.restore(saved)
    assert state.step == state.start_step == 6
    assert all(torch.equal(saved["model"][k], v) for k, v in state.module.state_dict().items())
    assert state.counters == FaultCounters(2, ["a.mp4"], 1) and state.counters.to_saved() == counters

    older = load_training_state(_save(tmp_path / "d", 2, extra={}))  # a checkpoint without counters
    state.restore(older)
    assert state.step == 2 and state.counters == FaultCounters()


def _truncate(ckpt):
    data = (ckpt / "state.pt").read_bytes()
    (ckpt / "state.pt").write_bytes(data[: len(data) // 2])


def _corrupt_same_size(ckpt):
    """A flipped byte in the tensor data: sizes match progress.json, torch.load does not notice."""
    import struct
    import zipfile

    data = bytearray((ckpt / "state.pt").read_bytes())
    member = next(i for i in zipfile.ZipFile(ckpt / "state.pt").infolist() if i.filename.endswith("data/0"))
    name_len, extra_len = struct.unpack("<HH", data[member.header_offset + 26: member.header_offset + 30])
    data[member.header_offset + 30 + name_len + extra_len] ^= 0xFF  # the first byte of a weight tensor
    (ckpt / "state.pt").write_bytes(bytes(data))


@pytest.mark.parametrize("damage", ["truncated", "no progress.json", "corrupt, same size", "unpicklable"])
def test_a_broken_newest_checkpoint_is_reported_by_name_and_skipped_on_the_worker_and_the_driver(
        tmp_path, damage, monkeypatch):
    from raytrain.train import resume as resume_mod
    from raytrain.train.state import latest_checkpoint_step

    run = tmp_path / "run"
    _save(run / "checkpoint_000000", 2)
    _save(run / "checkpoint_000001", 4)
    newest = _save(run / "checkpoint_000002", 6)
    if damage == "truncated":
        _truncate(newest)
    elif damage == "no progress.json":
        (newest / "progress.json").unlink()
    elif damage == "corrupt, same size":
        _corrupt_same_size(newest)
    else:  # passes every file check, fails in torch.load (the worker's last line of defence)
        real = resume_mod.load_training_state
        monkeypatch.setattr(resume_mod, "load_training_state", lambda d: (_ for _ in ()).throw(
            RuntimeError("PytorchStreamReader failed reading zip archive")) if d == newest else real(d))
    skipped = []
    saved = load_resume_state(_RayCheckpoint(newest), run, lambda name, reason: skipped.append((name, reason)))
    assert saved["step"] == 4  # the next newest complete one, not a fresh start
    assert [name for name, _ in skipped] == [str(newest)]  # Ray's is the same folder: reported once
    if damage != "unpicklable":
        assert latest_checkpoint_step(run) == 4  # the driver's start step agrees
    skipped.clear()
    assert load_resume_state(None, run, lambda name, reason: skipped.append(name))["step"] == 4
    # Locally only complete-by-size folders are candidates (the driver reports the others before fit).
    assert skipped == ([str(newest)] if damage in ("corrupt, same size", "unpicklable") else [])


def test_only_broken_checkpoints_mean_a_fresh_start(tmp_path, capsys):
    run = tmp_path / "run"
    _truncate(_save(run / "checkpoint_000000", 2))
    assert load_resume_state(_RayCheckpoint(run / "checkpoint_000000"), run) is None
    err = capsys.readouterr().err
    assert "skipping checkpoint" in err and "checkpoint_000000" in err and "truncated" in err
    from raytrain.train.faults import read_events
    assert [e["skipped_checkpoint"] for e in read_events(run)] == [str(run / "checkpoint_000000")]
