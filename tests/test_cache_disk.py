"""The frame cache and a disk that fills, without Ray: the default floor of free space, failed writes
that leave no temp file, stale temp files, one message per dataset; a real 20 MB tmpfs where one can
be mounted."""

import errno
import os
import subprocess
import time
from collections import namedtuple

import numpy as np
import pyarrow.fs
import pytest
from fixture_files import cache_config  # tests/fixture_files.py

from raytrain.config import ConfigError, apply_overrides
from raytrain.data import cache_disk, frame_cache
from raytrain.data.frame_cache import FrameCache, prepare
from raytrain.data.read_through import ReadThroughCache

Usage = namedtuple("Usage", "total used free")
GB = 10**9


class _Reader:
    """A ClipReader stand-in whose frames weigh ``side``² × 3 × 2 bytes per sampling (noise: incompressible)."""

    train = True
    name = "fake"

    def __init__(self, side=8):
        self.side = side

    def read(self, path, start_s, end_s, rngs):
        return np.stack([np.random.default_rng(len(path)).integers(0, 255, (2, self.side, self.side, 3), np.uint8)
                         for _ in rngs])


def _temps(folder):
    return [n for n in os.listdir(folder) if n.endswith(".tmp")]


def _shards(folder):
    return [n for n in os.listdir(folder) if n.endswith(".arrow") and not n.startswith(".")]


def test_the_default_floor_is_a_share_of_free_plus_cached_and_keeps_a_reserve(tmp_path):
    root = tmp_path / "frame_cache"
    (root / "train-1").mkdir(parents=True)
    measure = cache_disk.measure_min_free
    assert measure(str(root), 0.5, 2.0, disk_usage=lambda p: Usage(0, 0, 100 * GB)) == 50 * GB
    # What the cache holds counts as its own: the floor does not move as the cache fills the disk.
    (root / "train-1" / "shard-a.arrow").write_bytes(b"x" * 1000)
    assert measure(str(root), 0.5, 2.0, disk_usage=lambda p: Usage(0, 0, 100 * GB - 1000)) == 50 * GB
    # A small disk: the reserve for checkpoints and logs wins over the share (3 GB free: 1 GB for the cache).
    assert measure(str(root), 0.5, 2.0, disk_usage=lambda p: Usage(0, 0, 3 * GB)) == 2 * GB
    # An explicit data.cache_budget_gb replaces the share, never the reserve.
    assert measure(str(root), 0.5, 2.0, budget_gb=1.0, disk_usage=lambda p: Usage(0, 0, 100 * GB)) == 2 * GB
    assert measure(str(tmp_path / "not" / "yet"), 0.25, 0.0, disk_usage=lambda p: Usage(0, 0, 8 * GB)) == 6 * GB
    assert measure("s3://bucket/cache", 0.5, 2.0) == 0  # an object store: no floor


def test_the_fraction_and_reserve_are_checked_beside_their_fields_and_reach_the_spec(tmp_path):
    from raytrain.data.spec import DecodeSpec

    cfg, _ = cache_config(tmp_path, **{"data.cache_max_disk_fraction": 0.25, "data.cache_disk_reserve_gb": 0.5})
    spec = DecodeSpec.from_config(cfg, 224, False, cache_location="x")  # eval: no tokenizer to load
    free = cache_disk.shutil.disk_usage(tmp_path).free
    assert 0.5 * GB <= spec.cache_min_free_bytes and abs(spec.cache_min_free_bytes - 0.75 * free) < 0.01 * free
    assert spec.cache_token == cache_disk.writer_token() and DecodeSpec.from_config(cfg, 224, False).cache_min_free_bytes == 0
    for bad in ("data.cache_max_disk_fraction=0", "data.cache_max_disk_fraction=1.5", "data.cache_disk_reserve_gb=-1"):
        with pytest.raises(ConfigError, match=bad.split("=")[0].split(".")[1]):
            apply_overrides(cfg, [bad])


def test_the_floor_stops_every_actor_with_one_message(tmp_path, capsys):
    cfg, rows = cache_config(tmp_path)
    loc = prepare(cfg, rows, "train", 8, True)
    capacity = 1500 + 5600  # a "disk" with room for 2 shards (2.2 kB each) above the floor; shards its only use

    def disk_usage(path):
        return Usage(capacity, 0, capacity - sum(os.path.getsize(os.path.join(loc, n)) for n in _shards(loc)))

    actors = []
    for _ in range(2):
        cache = ReadThroughCache(_Reader(), loc, samplings=2, min_free_bytes=1500, token="run1")
        cache._cache = FrameCache(loc, disk_usage=disk_usage)
        actors.append(cache)
    for clip in range(6):
        actor = actors[clip % 2]
        actor.read("v" * (clip + 1), None, None, clip=clip, sampling=0)
        actor.flush()
        assert disk_usage(loc).free >= 1500  # never below the floor
    out = capsys.readouterr().out
    assert not any(a.writing for a in actors) and len(_shards(loc)) == 2
    assert out.count("frame cache stopped writing") == 1, out  # one line for both actors
    assert "keeps 0.00 GB for checkpoints and logs" in out and "decoded every epoch" in out
    # Without a dataset token (no marker to share) each actor says it.
    lone = ReadThroughCache(_Reader(), loc, samplings=2, min_free_bytes=1500)
    lone._cache = FrameCache(loc, disk_usage=disk_usage)
    lone.read("w", None, None, clip=9, sampling=0)
    lone.flush()
    assert capsys.readouterr().out.count("frame cache stopped writing") == 1 and not lone.writing


class _FullDisk:
    """A LocalFileSystem whose output streams write ``room`` bytes, then fail as a full disk does."""

    def __init__(self, room, error=None):
        self.local, self.room, self.error = pyarrow.fs.LocalFileSystem(), room, error

    def __getattr__(self, name):
        return getattr(self.local, name)

    def open_output_stream(self, path):
        stream, room, error = self.local.open_output_stream(path), self.room, self.error

        class Stream:
            def __enter__(self):
                return self

            def __exit__(self, *exc):
                stream.close()

            def write(self, data):
                stream.write(memoryview(data)[:room])
                stream.flush()
                raise error or OSError(errno.ENOSPC, "No space left on device")

        return Stream()


def test_a_write_that_fails_mid_shard_leaves_no_temp_file_and_the_actors_go_on_reading(tmp_path, capsys):
    cfg, rows = cache_config(tmp_path)
    loc = prepare(cfg, rows, "train", 8, True)
    actors = []
    for _ in range(2):
        cache = ReadThroughCache(_Reader(), loc, samplings=2, token="run1")
        cache._cache = FrameCache(loc, fs=_FullDisk(room=100))
        actors.append(cache)
    for clip, actor in enumerate(actors):
        frames, hit = actor.read("abc", None, None, clip=clip, sampling=1)
        assert not hit and frames.shape == (2, 8, 8, 3)
        actor.flush()
        assert not actor.writing and "No space left" in actor.write_error
    assert _temps(loc) == [] and _shards(loc) == []
    assert capsys.readouterr().out.count("cannot write (OSError") == 1
    again, hit = actors[0].read("abc", None, None, clip=0, sampling=1)  # training goes on: decoded
    assert not hit and again.shape == (2, 8, 8, 3)
    # Not only OSError: an interrupt mid-write also takes its temp file with it.
    with pytest.raises(KeyboardInterrupt):
        frame_cache.publish_shard(loc, frame_cache.encode_shard([(0, 0, again)]), _FullDisk(10, KeyboardInterrupt()))
    assert _temps(loc) == []


def test_stale_temp_shards_are_removed_when_a_dataset_opens_the_cache(tmp_path, capsys):
    folder = tmp_path / "train-1"
    folder.mkdir()
    name = "shard-0123.arrow"
    dead, live = cache_disk.temp_name(name, "here", 111), cache_disk.temp_name(name, "here", 222)
    elsewhere, legacy, old = cache_disk.temp_name(name, "there", 111), f".{name}.tmp", ".shard-9.arrow.tmp"
    said = [f".said-here-{pid}-disk" for pid in (111, 222)]
    for n in (dead, live, elsewhere, legacy, old, *said):
        (folder / n).write_bytes(b"partial")
    past = time.time() - cache_disk.STALE_TEMP_S - 60
    os.utime(folder / old, (past, past))
    removed = cache_disk.remove_stale_temps(str(folder), host="here", alive=lambda pid: pid == 222)
    # A killed actor's (its pid gone) and an old one go; a live actor's, another host's recent one and a
    # recent one of unknown owner stay; so do the message markers of a live driver (said once per run).
    assert sorted(removed) == sorted([dead, old])
    assert sorted(os.listdir(folder)) == sorted([live, elsewhere, legacy, said[1]])
    # prepare() does it for the folder it opens, and says so.
    cfg, rows = cache_config(tmp_path)
    loc = prepare(cfg, rows, "train", 8, True)
    killed = subprocess.Popen(["true"])
    killed.wait()  # its pid is gone: a decode actor killed mid-write
    stale = cache_disk.temp_name(name, pid=killed.pid)
    (tmp_path / loc / stale).write_bytes(b"partial")
    capsys.readouterr()
    prepare(cfg, rows, "train", 8, True)
    assert _temps(loc) == [] and "a shard write that never finished" in capsys.readouterr().out


def test_add_lists_the_folder_once_and_sees_its_own_shard(tmp_path):
    (tmp_path / "c").mkdir()
    cache = FrameCache(str(tmp_path / "c"))
    listings = []
    real = cache.refresh
    cache.refresh = lambda: (listings.append(1), real())[1]
    assert cache.add([(0, 0, np.zeros((1, 4, 4, 3), np.uint8))], budget_bytes=10**9)
    assert len(listings) == 1 and cache.get(0, 0) is not None and cache.bytes > 0


@pytest.fixture
def tiny_disk(tmp_path):
    """A real 20 MB tmpfs (root, where mount works), unmounted afterwards."""
    point = tmp_path / "disk"
    point.mkdir()
    mount = ["mount", "-t", "tmpfs", "-o", "size=20m", "tmpfs", str(point)]
    if (os.geteuid() != 0 or not cache_disk.shutil.which("mount")
            or subprocess.run(mount, check=False, capture_output=True).returncode != 0):
        pytest.skip("cannot mount a tmpfs here (needs root and mount rights)")
    yield point
    subprocess.run(["umount", "-l", str(point)], check=False)


def _fill(folder, actors, clips=40):
    for clip in range(clips):
        actor = actors[clip % len(actors)]
        actor.read("c" * (clip + 1), None, None, clip=clip, sampling=0)
        actor.flush()


def test_a_real_full_disk_stops_the_cache_and_leaves_no_temp_file(tiny_disk, capsys):
    folder = tiny_disk / "train-1"
    folder.mkdir()
    actors = [ReadThroughCache(_Reader(side=512), str(folder), samplings=2, token="t") for _ in range(2)]
    _fill(folder, actors)  # 3 MB a clip, 40 clips: far past 20 MB, no floor
    assert not any(a.writing for a in actors) and _temps(folder) == []
    assert capsys.readouterr().out.count("No space left on device") == 1
    assert len(_shards(folder)) >= 4  # the disk took what it could


def test_the_default_floor_keeps_a_real_small_disk_from_filling(tiny_disk, capsys):
    folder = tiny_disk / "frame_cache" / "train-1"
    folder.mkdir(parents=True)
    floor = cache_disk.measure_min_free(str(tiny_disk / "frame_cache"), 0.5, 0.0)
    assert 9 * 10**6 < floor <= 10.5 * 10**6
    actors = [ReadThroughCache(_Reader(side=512), str(folder), samplings=2, min_free_bytes=floor, token="t")
              for _ in range(2)]
    _fill(folder, actors)
    assert not any(a.writing for a in actors) and _temps(folder) == []
    assert cache_disk.shutil.disk_usage(tiny_disk).free >= floor  # sequential actors: no overshoot
    out = capsys.readouterr().out
    assert out.count("frame cache stopped writing") == 1 and "No space" not in out
