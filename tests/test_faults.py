"""Issue 8, pure part: crash-safe checkpoint writes, the NaN guard, bad videos in the decode UDF
(skip / error / timeout) and the fault-injection keys. The Ray fits live in test_faults_ray.py."""

import json

import numpy as np
import pytest
from fixture_files import save_tiny_checkpoint  # tests/fixture_files.py

from raytrain.config import Config
from raytrain.train import state as state_mod
from raytrain.train.state import (
    checkpoint_complete,
    find_checkpoint,
    latest_checkpoint_step,
    load_training_state,
)


def test_crash_in_the_middle_of_a_checkpoint_write_keeps_the_previous_one(tmp_path, monkeypatch):
    run = tmp_path / "run"
    save_tiny_checkpoint(run / "checkpoint_a", 2)
    assert checkpoint_complete(run / "checkpoint_a")
    # The config write (after state.pt is on disk) raises: half the files are written.
    monkeypatch.setattr(state_mod, "dump_config", lambda *a, **k: (_ for _ in ()).throw(OSError("disk died")))
    with pytest.raises(OSError, match="disk died"):
        save_tiny_checkpoint(run / "checkpoint_b", 4)
    monkeypatch.undo()
    assert (run / "checkpoint_b" / "state.pt").is_file() and not checkpoint_complete(run / "checkpoint_b")
    assert not list((run / "checkpoint_b").glob(".*tmp*"))  # no temporary left behind
    assert latest_checkpoint_step(run) == 2
    assert find_checkpoint(run) == run / "checkpoint_a"
    assert load_training_state(find_checkpoint(run))["step"] == 2
    with pytest.raises(FileNotFoundError, match="incomplete"):
        find_checkpoint(run / "checkpoint_b")


def test_truncated_state_file_is_not_complete(tmp_path):
    ckpt = save_tiny_checkpoint(tmp_path / "checkpoint_x", 6)
    assert json.loads((ckpt / "progress.json").read_text())["files"]["state.pt"] > 0
    data = (ckpt / "state.pt").read_bytes()
    (ckpt / "state.pt").write_bytes(data[: len(data) // 2])  # e.g. an interrupted copy into storage
    assert not checkpoint_complete(ckpt) and latest_checkpoint_step(tmp_path) == 0
    # Overwriting an existing checkpoint folder unpublishes it until the new progress file is written.
    save_tiny_checkpoint(ckpt, 7)
    assert checkpoint_complete(ckpt) and latest_checkpoint_step(tmp_path) == 7


# ---- bad videos in the decode UDF (no Ray: the class is called directly) ---------------------------

class _FakeDecoder:
    """Decodes every path to frames filled with the path's length; some paths fail, some hang until
    ``release`` is set (a hung native decoder)."""

    name = "fake"

    def __init__(self, bad=(), hang=()):
        import threading

        self.bad, self.hang, self.calls = set(bad), set(hang), []
        self.release = threading.Event()

    def decode(self, path, num_frames, size, train, rng=None, start_s=None, end_s=None):
        from raytrain.data.decode import VideoDecodeError

        self.calls.append(path)
        if path in self.bad:
            raise VideoDecodeError(path, self.name, "moov atom not found")
        if path in self.hang:
            self.release.wait()
        return np.full((num_frames, size, size, 3), len(path) % 256, np.uint8)


def _spec(on_bad="skip", timeout=0.0, **over):
    from raytrain.data.spec import DecodeSpec

    return DecodeSpec("pyav", num_frames=2, image_size=8, train=True, arch="RT-Micro-ViT", max_words=16,
                      on_bad_video=on_bad, timeout_s=timeout, **over)


def _udf(on_bad="skip", timeout=0.0, bad=(), hang=(), substitutes=("good_a.mp4", "good_bb.mp4"), **over):
    from raytrain.data.decode_clips import DecodeClips
    from raytrain.data.manifest import ClipRow
    from raytrain.data.substitute import substitute_rows

    rows = [ClipRow(video_id=p, path=p, captions=(f"caption of {p}",), split="train", start_s=None, end_s=None)
            for p in substitutes]
    decoder = _FakeDecoder(bad, hang)
    return DecodeClips(_spec(on_bad, timeout, **over), substitute_rows(rows), decoder=decoder), decoder


def _batch(paths):
    n = len(paths)
    return {"path": np.asarray(paths, dtype=object), "clip": np.arange(10, 10 + n),
            "start_s": np.full(n, np.nan), "end_s": np.full(n, np.nan),
            "caption": np.asarray([f"c{i}" for i in range(n)], dtype=object),
            "sample_seed": np.arange(100, 100 + n)}


def test_skip_replaces_bad_clips_keeps_the_batch_full_and_flags_them():
    udf, decoder = _udf(bad={"x/zero.mp4", "x/trunc.mp4"})
    out = udf(_batch(["ok1.mp4", "x/zero.mp4", "x/trunc.mp4", "ok22.mp4"]))
    assert out["frames"].shape == (4, 2, 8, 8, 3) and out["tokens"].shape[0] == 4
    assert out["bad_clip"].tolist() == [-1, 11, 12, -1]  # the plan clip indices that were replaced
    assert {int(out["frames"][i].flat[0]) for i in (1, 2)} <= {len("good_a.mp4"), len("good_bb.mp4")}
    again = _udf(bad={"x/zero.mp4", "x/trunc.mp4"})[0](_batch(["ok1.mp4", "x/zero.mp4", "x/trunc.mp4", "ok22.mp4"]))
    assert all(np.array_equal(out[k], again[k]) for k in out)  # the stand-in is a deterministic draw
    # A bad file is not decoded a second time by the same actor.
    decoder.calls.clear()
    udf(_batch(["x/zero.mp4", "ok1.mp4"]))
    assert "x/zero.mp4" not in decoder.calls


def test_a_whole_batch_of_bad_clips_does_not_hang_and_no_stand_in_fails_clearly():
    from raytrain.data.decode import VideoDecodeError

    out = _udf(bad={"b1", "b2", "b3"})[0](_batch(["b1", "b2", "b3"]))
    assert out["frames"].shape[0] == 3 and (out["bad_clip"] >= 0).all()
    with pytest.raises(VideoDecodeError, match="no good substitute"):
        _udf(bad={"b1", "good_a.mp4", "good_bb.mp4"})[0](_batch(["b1"]))


def test_error_mode_names_the_file_and_the_decoder_message():
    from raytrain.data.decode import VideoDecodeError

    with pytest.raises(VideoDecodeError, match=r"x/trunc\.mp4.*moov atom not found"):
        _udf(on_bad="error", bad={"x/trunc.mp4"})[0](_batch(["ok.mp4", "x/trunc.mp4"]))


def test_a_hanging_decode_is_abandoned_at_the_timeout_and_the_next_clip_decodes():
    from raytrain.data.decode import VideoDecodeError

    udf, decoder = _udf(on_bad="error", timeout=0.3, hang={"hang.mp4"})
    try:
        with pytest.raises(VideoDecodeError, match=r"hang\.mp4.*timed out after 0\.3 s \(data\.decode_timeout_s\)"):
            udf(_batch(["hang.mp4"]))
        # The hung decode still holds its thread (never released), yet the same actor decodes on.
        out = udf(_batch(["ok.mp4"]))
        assert not decoder.release.is_set() and (out["frames"] == len("ok.mp4")).all()
    finally:
        decoder.release.set()
    skipping, decoder = _udf(timeout=0.3, hang={"hang.mp4"})
    try:
        out = skipping(_batch(["ok.mp4", "hang.mp4", "ok22.mp4"]))
        assert out["bad_clip"].tolist() == [-1, 11, -1] and not decoder.release.is_set()
        assert (out["frames"][2] == len("ok22.mp4")).all()  # the clip after the hung one decoded too
        decoder.calls.clear()
        skipping(_batch(["hang.mp4"]))
        assert "hang.mp4" not in decoder.calls  # a file that timed out is bad: not tried again
    finally:
        decoder.release.set()


def test_fault_and_resilience_keys_are_validated(synth_dir, tmp_path):
    from raytrain.config import ConfigError, apply_overrides
    from raytrain.train.trainer import validate_inputs

    base = apply_overrides(Config(), [f"data.manifest={synth_dir / 'manifest.parquet'}", "train.batch_size=4",
                                      f"run.storage_path={tmp_path}"])
    with pytest.raises(ConfigError, match="data.on_bad_video"):
        apply_overrides(base, ["data.on_bad_video=ignore"])
    with pytest.raises(ConfigError, match="train.on_nan"):
        apply_overrides(base, ["train.on_nan=retry"])
    with pytest.raises(ConfigError, match="data.decode_timeout_s"):
        apply_overrides(base, ["data.decode_timeout_s=-1"])
    with pytest.raises(ConfigError, match="faults.kill_rank"):
        apply_overrides(base, ["faults.kill_at_step=3", "faults.kill_rank=2"])
    with pytest.raises(ConfigError, match="checkpoint.keep_best_by.*reported metric"):
        apply_overrides(base, ["checkpoint.keep_best_by=accuracy"])
    with pytest.raises(ConfigError, match="faults.kill_at_step.*local run.storage_path"):
        apply_overrides(base, ["faults.kill_at_step=2", "run.storage_path=s3://b/r"])
    assert validate_inputs(apply_overrides(base, ["checkpoint.keep_best_by=loss"])).cfg.checkpoint.keep_best_order == "min"


def test_fire_once_and_the_attempt_log(tmp_path):
    from raytrain.train import faults

    assert faults.fire_once(tmp_path, "kill", 3) and not faults.fire_once(tmp_path, "kill", 3)
    faults.log_event(tmp_path, start_step=2)
    assert [e.get("fault") or e.get("start_step") for e in faults.read_events(tmp_path)] == ["kill", 2]
    assert not faults.fire_once(None, "kill", 3)  # remote storage: never fires


def test_a_frame_cache_that_cannot_be_written_does_not_stop_decoding(tmp_path, monkeypatch, capsys):
    from raytrain.data import frame_cache

    udf, _ = _udf(on_bad="error", cache_location=str(tmp_path), cache_samplings=2)
    batch = {**_batch(["a.mp4", "bb.mp4"]), "sampling": np.array([0, 1])}
    written = udf(batch)
    assert not written["cache_hit"].any() and len(list(tmp_path.glob("shard-*.arrow"))) == 1
    assert udf(batch)["cache_hit"].all()  # read back

    def disk_full(location, data, *args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(frame_cache, "publish_shard", disk_full)
    fresh = {**_batch(["ccc.mp4", "dddd.mp4"]), "clip": np.array([20, 21]), "sampling": np.array([1, 0])}
    out = udf(fresh)  # decoded and returned although the cache write fails
    assert out["frames"].shape == (2, 2, 8, 8, 3) and not out["cache_hit"].any()
    assert (out["frames"][0] == len("ccc.mp4")).all()
    assert "cannot write (OSError: [Errno 28] No space left on device)" in capsys.readouterr().out
    udf(fresh)
    assert "cannot write" not in capsys.readouterr().out  # said once
    assert udf(batch)["cache_hit"].all()  # what was cached before is still read
