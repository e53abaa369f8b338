"""The frame cache without Ray: shards, the reader's index, keys and invalidation."""

import json

import numpy as np
import pytest

from raytrain.config import Config, apply_overrides
from raytrain.data import frame_cache
from raytrain.data.frame_cache import FrameCache, fingerprint, prepare, write_shard
from raytrain.data.manifest import ClipRow


def _frames(value: int, shape=(3, 8, 8, 3)) -> np.ndarray:
    return np.full(shape, value, np.uint8) + np.arange(np.prod(shape), dtype=np.uint8).reshape(shape)


def test_shards_round_trip_and_misses(tmp_path):
    loc = str(tmp_path / "c")
    (tmp_path / "c").mkdir()
    cache = FrameCache(loc)
    assert cache.get(0, 0) is None and cache.misses == 1
    cache.add([(0, 0, _frames(1)), (0, 1, _frames(2)), (5, 0, _frames(3))])
    assert np.array_equal(cache.get(0, 1), _frames(2)) and np.array_equal(cache.get(5, 0), _frames(3))
    assert cache.get(5, 1) is None
    got = cache.get(0, 0)
    got[:] = 0  # a fresh array: writing to it cannot touch the memory-mapped shard
    assert np.array_equal(cache.get(0, 0), _frames(1))
    # Another reader (another actor) finds the shard from the folder alone.
    other = FrameCache(loc, refresh_s=0.0)
    assert np.array_equal(other.get(5, 0), _frames(3)) and other.hits == 1
    # ... and a shard another actor writes later, on its next miss.
    write_shard(loc, [(9, 2, _frames(4))])
    assert np.array_equal(other.get(9, 2), _frames(4))


def test_unreadable_and_unfinished_shards_are_skipped(tmp_path, capsys):
    loc = tmp_path / "c"
    loc.mkdir()
    write_shard(str(loc), [(1, 0, _frames(7))])
    (loc / "shard-broken.arrow").write_bytes(b"not arrow at all")
    (loc / ".shard-half.arrow.tmp").write_bytes(b"partial")
    cache = FrameCache(str(loc), refresh_s=0.0)  # refresh on every miss
    assert np.array_equal(cache.get(1, 0), _frames(7))
    out = capsys.readouterr().out
    assert "ignoring unreadable shard" in out and "shard-broken.arrow" in out
    assert ".shard-half" not in out  # an unfinished write is not a shard: never opened
    assert cache.get(2, 0) is None  # and a broken shard is not retried on every miss
    assert "ignoring" not in capsys.readouterr().out


def test_write_shard_keeps_each_clips_frame_count_and_rejects_mixed_image_sizes(tmp_path):
    short = _frames(1, (2, 8, 8, 3))  # CLIP4Clip sampling: a short clip keeps its 2 real frames
    write_shard(str(tmp_path), [(1, 0, _frames(1)), (2, 0, short)])
    cache = FrameCache(str(tmp_path))
    assert np.array_equal(cache.get(2, 0), short) and np.array_equal(cache.get(1, 0), _frames(1))
    with pytest.raises(ValueError, match="clip 2 sampling 0"):
        write_shard(str(tmp_path), [(1, 0, _frames(1)), (2, 0, _frames(1, (3, 4, 8, 3)))])


def _setup(tmp_path, **over):
    videos = []
    for i in range(3):
        p = tmp_path / f"v{i}.mp4"
        p.write_bytes(b"x" * (i + 1))
        videos.append(ClipRow(f"v{i}", str(p), (f"cap {i}",), "train"))
    cfg = apply_overrides(Config(), [f"run.storage_path={tmp_path / 'runs'}", "run.name=r", "data.cache=frames",
                                     *[f"{k}={v}" for k, v in over.items()]])
    return cfg, videos


def test_key_follows_what_the_frames_depend_on(tmp_path):
    cfg, rows = _setup(tmp_path)
    base = frame_cache.cache_key(fingerprint(cfg, rows, "train", 224, True))
    changed = {
        "num_frames": fingerprint(apply_overrides(cfg, ["data.num_frames=12"]), rows, "train", 224, True),
        "samplings": fingerprint(apply_overrides(cfg, ["data.cache_samplings=2"]), rows, "train", 224, True),
        "decoder": fingerprint(apply_overrides(cfg, ["data.decoder=pyav"]), rows, "train", 224, True),
        "seed": fingerprint(apply_overrides(cfg, ["train.seed=5"]), rows, "train", 224, True),
        "image size": fingerprint(cfg, rows, "train", 112, True),
        "segment": fingerprint(cfg, [rows[0], ClipRow("v1", rows[1].path, ("c",), "train", 1.0, 2.0), rows[2]],
                               "train", 224, True),
        "order": fingerprint(cfg, rows[::-1], "train", 224, True),
    }
    for what, fp in changed.items():
        assert frame_cache.cache_key(fp) != base, what
    # Captions are not cached (tokens are made live): a new caption keeps the frames.
    recaptioned = [ClipRow(r.video_id, r.path, ("another caption",), "train") for r in rows]
    assert frame_cache.cache_key(fingerprint(cfg, recaptioned, "train", 224, True)) == base
    # A video rewritten in place (new size) changes the key.
    (tmp_path / "v1.mp4").write_bytes(b"y" * 50)
    assert frame_cache.cache_key(fingerprint(cfg, rows, "train", 224, True)) != base
    # Eval keeps one sampling (centres) and no seed: train.seed does not touch the eval cache.
    assert fingerprint(cfg, rows, "test", 224, False)["samplings"] == 1
    assert (frame_cache.cache_key(fingerprint(cfg, rows, "test", 224, False))
            == frame_cache.cache_key(fingerprint(apply_overrides(cfg, ["train.seed=5"]), rows, "test", 224, False)))


def test_prepare_invalidates_a_stale_cache_in_the_run_folder(tmp_path, capsys):
    cfg, rows = _setup(tmp_path)
    first = prepare(cfg, rows, "train", 224, True)
    assert first.startswith(str(tmp_path / "runs" / "r" / "frame_cache" / "train-"))
    meta = json.loads((tmp_path / first / "meta.json").read_text())
    assert meta["num_frames"] == cfg.data.num_frames and meta["samplings"] == 4
    write_shard(first, [(0, 0, _frames(1))])
    assert prepare(cfg, rows, "train", 224, True) == first  # same config: same folder, shards kept
    assert len(list((tmp_path / first).glob("shard-*.arrow"))) == 1
    eval_loc = prepare(cfg, rows, "test", 224, False)  # another split is left alone
    second = prepare(apply_overrides(cfg, ["data.num_frames=12"]), rows, "train", 224, True)
    assert second != first
    out = capsys.readouterr().out
    assert "invalidated (num_frames 8 -> 12); removed" in out
    assert not (tmp_path / first).exists() and (tmp_path / eval_loc).exists()


def test_a_shared_cache_dir_keeps_other_configs(tmp_path, capsys):
    cfg, rows = _setup(tmp_path, **{"data.cache_dir": str(tmp_path / "shared")})
    first = prepare(cfg, rows, "train", 224, True)
    assert first.startswith(str(tmp_path / "shared" / "train-"))
    second = prepare(apply_overrides(cfg, ["data.cache_samplings=2"]), rows, "train", 224, True)
    assert second != first and (tmp_path / first).exists()
    assert "does not match this run (samplings 4 -> 2)" in capsys.readouterr().out


def test_sampling_generators_are_per_clip_and_sampling():
    a = [g.random() for g in frame_cache.sampling_rngs(0, 3, 3)]
    b = [g.random() for g in frame_cache.sampling_rngs(0, 3, 3)]
    c = [g.random() for g in frame_cache.sampling_rngs(0, 4, 3)]
    assert a == b and len(set(a)) == 3 and a != c


def test_an_unlistable_cache_folder_is_a_miss_not_an_error(tmp_path, capsys):
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("x")
    cache = FrameCache(str(not_a_folder), refresh_s=0.0)
    assert cache.get(0, 0) is None and cache.get(1, 0) is None
    out = capsys.readouterr().out
    assert out.count("cannot list") == 1 and "decoding instead" in out
