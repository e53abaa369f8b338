"""The frame cache without Ray: shards, the reader's index, keys and invalidation."""

import json

import numpy as np
import pytest
from fixture_files import cache_config  # tests/fixture_files.py

from raytrain.config import apply_overrides
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


def test_a_local_cache_lists_on_every_miss_unless_listing_grows_costly(tmp_path, monkeypatch):
    now = {"t": 100.0}
    monkeypatch.setattr(frame_cache.time, "monotonic", lambda: now["t"])
    loc = tmp_path / "c"
    loc.mkdir()
    reader = FrameCache(str(loc))  # local: no fixed interval (each rank's pool sees the others' shards)
    assert reader.refresh_s == 0.0  # (remote storage: frame_cache.REMOTE_REFRESH_S)
    assert reader.get(1, 0) is None
    write_shard(str(loc), [(1, 0, _frames(5))])
    assert np.array_equal(reader.get(1, 0), _frames(5))  # found at once, the very next miss
    # A listing that takes 10 ms is not repeated within 10 ms / LISTING_SHARE = 0.2 s.
    listings, real = [], reader.refresh

    def slow_refresh():
        listings.append(now["t"])
        real()
        reader._listing_s = 0.01

    reader.refresh = slow_refresh
    for t in (101.0, 101.05, 101.1, 101.19, 101.2, 101.25, 101.41):
        now["t"] = t
        assert reader.get(7, 0) is None
    assert listings == [101.0, 101.2, 101.41]


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


def test_key_follows_what_the_frames_depend_on(tmp_path):
    cfg, rows = cache_config(tmp_path)
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
    cfg, rows = cache_config(tmp_path)
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


def test_evaluating_another_manifest_leaves_the_runs_own_cache_alone(tmp_path, capsys):
    cfg, rows = cache_config(tmp_path)
    own = prepare(cfg, rows, "test", 224, False)
    write_shard(own, [(0, 0, _frames(1))])
    other_cfg = apply_overrides(cfg, [f"data.manifest={tmp_path / 'other.parquet'}"])  # eval ... data.manifest=OTHER
    other = prepare(other_cfg, rows[:2], "test", 224, False)
    assert other != own and "invalidated" not in capsys.readouterr().out
    assert len(list((tmp_path / own).glob("shard-*.arrow"))) == 1  # the run's cache, shards and all
    assert prepare(cfg, rows, "test", 224, False) == own  # and the run's next evaluation reads it
    assert (tmp_path / other).exists()


def test_a_shared_cache_dir_keeps_other_configs(tmp_path, capsys):
    cfg, rows = cache_config(tmp_path, **{"data.cache_dir": str(tmp_path / "shared")})
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


def _natural(clip: int, shape=(3, 16, 16, 3)) -> np.ndarray:
    """Frames with noise on a gradient: what an image codec would call texture (compresses a little)."""
    rng = np.random.default_rng(clip)
    ramp = np.linspace(0, 200, shape[2], dtype=np.float32)[None, None, :, None]
    return np.clip(ramp + rng.normal(0, 20, shape), 0, 255).astype(np.uint8)


def test_a_hit_is_a_read_only_view_of_the_shard_and_get_a_private_copy(tmp_path):
    write_shard(str(tmp_path), [(3, 0, _frames(5)), (3, 1, _frames(6))])
    cache = FrameCache(str(tmp_path))
    view = cache.view(3, 1)
    assert np.array_equal(view, _frames(6)) and not view.flags.writeable
    with pytest.raises(ValueError, match="read-only"):
        view[0] = 0
    copy = cache.get(3, 1)
    copy[:] = 0
    assert np.array_equal(cache.view(3, 1), _frames(6)) and cache.hits == 3
    assert cache.view(4, 0) is None and cache.misses == 1


@pytest.mark.parametrize("compression", ["lz4", "zstd"])
def test_compressed_shards_read_back_the_same_frames_beside_uncompressed_ones(tmp_path, compression):
    items = [(c, 0, _natural(c)) for c in range(4)]
    flat = [(c, 0, _frames(c, (3, 16, 16, 3))) for c in range(4, 8)]  # very compressible
    for folder in ("plain", "mixed", "packed"):
        (tmp_path / folder).mkdir()
    write_shard(str(tmp_path / "plain"), items + flat)
    write_shard(str(tmp_path / "mixed"), items)  # one folder, two compressions: each shard says its own
    write_shard(str(tmp_path / "mixed"), flat, compression=compression)
    write_shard(str(tmp_path / "packed"), items + flat, compression=compression)
    size = {d: sum(f.stat().st_size for f in (tmp_path / d).glob("shard-*.arrow")) for d in ("plain", "packed")}
    assert size["packed"] < size["plain"]
    for folder in ("mixed", "packed"):
        cache = FrameCache(str(tmp_path / folder))
        for clip, k, want in items + flat:
            assert np.array_equal(cache.view(clip, k), want), (folder, clip)
    shard = next((tmp_path / "packed").glob("shard-*.arrow"))
    assert pa_ipc_metadata(shard)[b"compression"] == compression.encode()
    with pytest.raises(ValueError, match="compression must be one of"):
        write_shard(str(tmp_path), items, compression="gzip")


def pa_ipc_metadata(path):
    import pyarrow as pa

    return pa.ipc.open_file(pa.memory_map(str(path), "r")).schema.metadata


def test_the_cache_keys_take_compression_and_budget_and_check_them(tmp_path):
    from raytrain.config import ConfigError
    from raytrain.data.spec import DecodeSpec

    cfg, rows = cache_config(tmp_path, **{"data.cache_compression": "zstd", "data.cache_budget_gb": 1.5})
    spec = DecodeSpec.from_config(cfg, 224, True, cache_location="x")
    assert spec.cache_compression == "zstd" and spec.cache_budget_bytes == 1_500_000_000
    # Compression is not in the key: a folder keeps its shards when the setting changes (mixed reads).
    plain = apply_overrides(cfg, ["data.cache_compression=none", "data.cache_budget_gb=0"])
    assert (frame_cache.cache_key(fingerprint(cfg, rows, "train", 224, True))
            == frame_cache.cache_key(fingerprint(plain, rows, "train", 224, True)))
    with pytest.raises(ConfigError, match="cache_compression"):
        apply_overrides(cfg, ["data.cache_compression=gzip"])
    with pytest.raises(ConfigError, match="cache_budget_gb"):
        apply_overrides(cfg, ["data.cache_budget_gb=-1"])


class _Reader:
    """A ClipReader stand-in: counts the samplings it decodes; frames are the clip's path length + k."""

    train = True
    name = "fake"

    def __init__(self):
        self.decoded = 0

    def read(self, path, start_s, end_s, rngs):
        self.decoded += len(rngs)
        return np.stack([np.full((2, 8, 8, 3), len(path) + int(r.integers(50)), np.uint8) for r in rngs])


def test_a_budget_stops_writing_with_one_clear_line_and_the_rest_is_decoded(tmp_path, capsys):
    from raytrain.data.read_through import ReadThroughCache

    cfg, rows = cache_config(tmp_path)
    loc = prepare(cfg, rows, "train", 8, True)  # meta.json: the split has 3 clips
    shard = len(frame_cache.encode_shard([(0, k, np.zeros((2, 8, 8, 3), np.uint8)) for k in range(2)]))
    budget = int(shard * 1.5)  # room for one shard of one clip's 2 samplings, not two
    reader = _Reader()
    cache = ReadThroughCache(reader, loc, samplings=2, seed=0, compression="none", budget_bytes=budget)
    a, hit = cache.read("a.mp4", None, None, clip=0, sampling=1)
    cache.flush()
    assert not hit and reader.decoded == 2 and cache.writing
    b, _ = cache.read("bb.mp4", None, None, clip=1, sampling=0)
    cache.flush()  # would exceed the budget: not written
    out = capsys.readouterr().out
    assert out.count("frame cache budget") == 1 and "reached at 1 clips (of 3)" in out
    assert "clips not cached are decoded every epoch" in out and not cache.writing
    assert len(list((tmp_path / loc).glob("shard-*.arrow"))) == 1
    assert sum(f.stat().st_size for f in (tmp_path / loc).glob("shard-*.arrow")) <= budget
    # Past the budget a miss decodes only the sampling asked for, the same frames it would have cached.
    before = reader.decoded
    again, hit = cache.read("bb.mp4", None, None, clip=1, sampling=0)
    assert not hit and reader.decoded == before + 1 and np.array_equal(again, b)
    cache.flush()
    assert "budget" not in capsys.readouterr().out  # said once per actor
    got, hit = cache.read("a.mp4", None, None, clip=0, sampling=1)
    assert hit and np.array_equal(got, a)  # what was cached is still read
    # Another actor sees the folder as it is now (a fresh listing before each write), not its old view.
    other = FrameCache(loc)
    other.refresh()
    write_shard(loc, [(2, 0, _frames(1, (2, 8, 8, 3)))])  # a third actor's write since that listing
    assert not other.add([(1, 0, b)], budget_bytes=budget)
