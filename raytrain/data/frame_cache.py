"""The frame cache (``data.cache: frames``): sampled, resized uint8 frames kept in Arrow IPC shards.

The first time a clip is needed its frames are decoded (for training: ``data.cache_samplings``
temporal samplings at once, from one open of the file) and written to a shard; later epochs and
evaluations read them back instead of decoding. No Ray here: the decode actors of
``raytrain.data.pipeline`` own a :class:`FrameCache` each.

Why Arrow IPC files, not Parquet: training reads clips in a shuffled order, and an IPC file gives
random access to one record batch (one clip sampling) by memory-mapping a local file, or by a ranged
read from object storage, with no row group to decompress.

Layout: ``<cache root>/<split>-<key>/`` holds ``meta.json`` (what the key was made from) and
``shard-*.arrow`` files, one record batch per (clip, sampling); each shard's schema metadata lists its
(clip, sampling) pairs, so a reader indexes a shard from its footer alone. The key hashes everything
the frames depend on (the rows' files, sizes and modification times, segments, frame count, image
size, samplings, decoder, seed), so a changed manifest or sampling config gets a new folder and never
reads stale frames. Frames are a pure function of the key, clip and sampling: two actors that both
miss a clip write identical duplicates, never conflicting data.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import time
import uuid
from collections.abc import Callable, Sequence

import numpy as np
import pyarrow as pa

from raytrain.config import Config
from raytrain.data import cache_disk
from raytrain.data.manifest import ClipRow
from raytrain.storage import filesystem, is_uri, join, run_location

FORMAT_VERSION = 2  # 2: a shape per item (CLIP4Clip sampling keeps a short clip's real frames only)
SHARD_SUFFIX = ".arrow"
_SCHEMA = pa.schema([("clip", pa.int64()), ("sampling", pa.int32()), ("frames", pa.binary())])


def cache_root(cfg: Config) -> str:
    """``data.cache_dir``, or the run folder's ``frame_cache`` (local path or URI)."""
    return cfg.data.cache_dir or join(run_location(cfg), "frame_cache")


def num_samplings(cfg: Config, train: bool) -> int:
    """Train clips keep ``data.cache_samplings`` temporal samplings; eval clips their one (centres), and
    so does every clip under ``data.frame_sampling=clip4clip`` (the same frames every epoch)."""
    return cfg.data.cache_samplings if train and cfg.data.frame_sampling == "segments" else 1


def _file_state(path: str) -> list:
    try:
        st = os.stat(path)
        return [st.st_size, st.st_mtime_ns]
    except OSError:
        return [None, None]  # not readable here: the decode will name the file when it is needed


def fingerprint(cfg: Config, rows: Sequence[ClipRow], split: str, image_size: int, train: bool) -> dict:
    """Everything the cached frames depend on (captions do not: tokens are never cached)."""
    digest = hashlib.sha256()
    for row in rows:
        digest.update(json.dumps([row.path, row.start_s, row.end_s, *_file_state(row.path)]).encode())
    return {"format": FORMAT_VERSION, "split": split, "train": train, "clips": len(rows),
            "rows_sha256": digest.hexdigest(), "num_frames": cfg.data.num_frames, "image_size": image_size,
            "samplings": num_samplings(cfg, train), "decoder": cfg.data.decoder,
            "frame_sampling": [cfg.data.frame_sampling, cfg.data.sample_fps, cfg.data.max_seconds],
            "seed": cfg.train.seed if train else None}


def cache_key(fp: dict) -> str:
    return hashlib.sha256(json.dumps(fp, sort_keys=True).encode()).hexdigest()[:16]


def _changes(old: dict, new: dict) -> str:
    keys = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    named = {"rows_sha256": "the rows' files, sizes, times or segments", "clips": "the number of clips"}
    return "; ".join(named.get(k, f"{k} {old.get(k)!r} -> {new.get(k)!r}") for k in keys) or "unknown"


def prepare(cfg: Config, rows: Sequence[ClipRow], split: str, image_size: int, train: bool) -> str:
    """The cache folder for this split and config (created, with ``meta.json``). Folders of the same
    split and manifest with another key are stale: removed when they live in the run folder, reported
    (and left for other runs) in a shared ``data.cache_dir``. A folder of another manifest (its
    ``meta.json`` says which) is never touched: evaluating a run on another manifest keeps its cache."""
    import pyarrow.fs

    fp = fingerprint(cfg, rows, split, image_size, train)
    manifest = cfg.data.manifest if "://" in cfg.data.manifest else os.path.abspath(cfg.data.manifest)
    root = cache_root(cfg)
    name = f"{split}-{cache_key(fp)}"
    fs, root_path = filesystem(root)
    fs.create_dir(f"{root_path}/{name}", recursive=True)
    for info in fs.get_file_info(pyarrow.fs.FileSelector(root_path, allow_not_found=True)):
        other = info.base_name
        if info.type != pyarrow.fs.FileType.Directory or other == name or not other.startswith(f"{split}-"):
            continue
        try:
            with fs.open_input_stream(f"{info.path}/meta.json") as f:
                old = json.loads(f.read())
        except (OSError, ValueError):
            old = {}
        if old.get("manifest", manifest) != manifest:
            continue  # another manifest's cache (e.g. `raytrain eval --checkpoint RUN data.manifest=OTHER`): kept
        why = _changes({k: v for k, v in old.items() if k != "manifest"}, fp) if old else "no readable meta.json"
        if cfg.data.cache_dir:
            print(f"[raytrain] frame cache {join(root, other)} does not match this run ({why}); "
                  f"not used, left in the shared data.cache_dir", flush=True)
        else:
            print(f"[raytrain] frame cache {join(root, other)} invalidated ({why}); removed", flush=True)
            fs.delete_dir(info.path)
    for temp in cache_disk.remove_stale_temps(f"{root_path}/{name}"):
        print(f"[raytrain] frame cache: removed {join(root, name, temp)} (a shard write that never finished)",
              flush=True)
    meta = f"{root_path}/{name}/meta.json"
    if fs.get_file_info(meta).type == pyarrow.fs.FileType.NotFound:
        with fs.open_output_stream(meta) as f:
            f.write(json.dumps({**fp, "manifest": manifest}, indent=2, sort_keys=True).encode())  # not in the key
    return join(root, name)


def sampling_rngs(seed: int, clip: int, samplings: int) -> list[np.random.Generator]:
    """The frame-offset generators of a train clip's cached samplings (one per sampling)."""
    return [np.random.default_rng([seed, clip, k, 0xF4A3]) for k in range(samplings)]


COMPRESSIONS = ("none", "lz4", "zstd")  # data.cache_compression: Arrow IPC buffer compression


def encode_shard(items: Sequence[tuple[int, int, np.ndarray]], compression: str = "none") -> pa.Buffer:
    """``(clip, sampling, frames)`` items as the bytes of one Arrow IPC file: one record batch per item,
    the (clip, sampling) pairs, the shapes and the compression in the schema metadata. Compressed
    buffers (lz4 frame or zstd) are flagged in each record batch's own header, so a reader decompresses
    what needs it and a folder can mix shards written with different ``data.cache_compression``."""
    if not items:
        raise ValueError("a frame cache shard needs at least one item")
    if compression not in COMPRESSIONS:
        raise ValueError(f"frame cache compression must be one of {list(COMPRESSIONS)} (got {compression!r})")
    shapes = [list(frames.shape) for _, _, frames in items]  # (n, S, S, 3): n may differ between clips
    pairs = [[int(c), int(k)] for c, k, _ in items]
    schema = _SCHEMA.with_metadata({"pairs": json.dumps(pairs), "shapes": json.dumps(shapes),
                                    "compression": compression})
    options = pa.ipc.IpcWriteOptions(compression=None if compression == "none" else compression)
    sink = pa.BufferOutputStream()
    with pa.ipc.new_file(sink, schema, options=options) as writer:
        for clip, k, frames in items:
            if frames.ndim != 4 or list(frames.shape[1:]) != shapes[0][1:] or frames.dtype != np.uint8:
                raise ValueError(f"frame cache items must be uint8 (n, {', '.join(map(str, shapes[0][1:]))}); "
                                 f"clip {clip} sampling {k} has {frames.dtype} {list(frames.shape)}")
            data = pa.py_buffer(np.ascontiguousarray(frames))  # no copy: the binary value is the array's bytes
            offsets = pa.py_buffer(np.array([0, data.size], np.int32))
            writer.write_batch(pa.record_batch(
                [pa.array([clip], pa.int64()), pa.array([k], pa.int32()),
                 pa.Array.from_buffers(pa.binary(), 1, [None, offsets, data])], schema=schema))
    return sink.getvalue()


def write_shard(location: str, items: Sequence[tuple[int, int, np.ndarray]], compression: str = "none") -> str:
    """Write ``(clip, sampling, frames)`` items as one shard; returns its name."""
    return publish_shard(location, encode_shard(items, compression))


def publish_shard(location: str, data: pa.Buffer, fs=None) -> str:
    """Write an encoded shard; returns its name. A reader never sees a partial shard: local shards are
    written under a hidden name (``cache_disk.temp_name``, naming the writer) and renamed, object stores
    publish an upload only when it completes. On any failure (a full disk, an interrupt) the temp file
    is removed before the error goes on. ``fs``: the folder's pyarrow filesystem (tests inject faults)."""
    name = f"shard-{uuid.uuid4().hex}{SHARD_SUFFIX}"
    own_fs, path = filesystem(location)
    fs = fs or own_fs
    final = f"{path}/{name}"
    target = final if is_uri(location) else f"{path}/{cache_disk.temp_name(name)}"
    try:
        with fs.open_output_stream(target) as sink:
            sink.write(data)
        if target != final:
            fs.move(target, final)
    except BaseException:
        if target != final:
            with contextlib.suppress(Exception):  # never created, or the storage gone: the first error counts
                fs.delete_file(target)
        raise
    return name


REMOTE_REFRESH_S = 2.0  # a cache on remote storage is listed at most this often
LISTING_SHARE = 0.05  # and any cache: the time since the last listing is >= its duration / this


class FrameCache:
    """Reads (and, through :func:`publish_shard`, fills) one cache folder. Each shard is opened once per
    cache (a memory map of a local file, kept open), and the index maps (clip, sampling) straight to
    its reader, record batch and shape, so a hit is one footer lookup and no copy (:meth:`view`). The
    index is refreshed from the folder listing on a miss, at most every ``refresh_s`` seconds (default:
    0 for a local folder, so each rank's pool finds the shards the others wrote with
    ``data.per_rank_plan``; 2 s for remote storage) and never more often than keeps the listings
    under ~5% of the time (``LISTING_SHARE``: a folder of 300k shards is not listed per miss)."""

    def __init__(self, location: str, refresh_s: float | None = None, fs=None,
                 disk_usage: Callable = shutil.disk_usage):
        self.location = location
        self.refresh_s = refresh_s if refresh_s is not None else (REMOTE_REFRESH_S if is_uri(location) else 0.0)
        self._fs, self._path = filesystem(location)
        self._fs = fs or self._fs  # tests inject a failing filesystem
        self._disk_usage = disk_usage
        self._index: dict[tuple[int, int], tuple[pa.ipc.RecordBatchFileReader, int, tuple[int, ...]]] = {}
        self._shards: dict[str, int] = {}  # shard name -> its size in bytes (-1: unreadable, not tried again)
        self._refreshed = float("-inf")
        self._listing_s = 0.0  # how long the last listing took
        self.hits = 0
        self.misses = 0
        self.list_error = False  # the last listing failed (said once until one succeeds)
        self.refused = ""  # why the last add wrote nothing: "budget" (the folder's) or "disk" (its floor)
        self.free_bytes: int | None = None  # the disk's free space at the last add's check

    @property
    def bytes(self) -> int:
        """The size of the readable shards found at the last listing (plus this cache's own writes)."""
        return sum(size for size in self._shards.values() if size > 0)

    @property
    def clips(self) -> int:
        """Distinct clips with at least one cached sampling."""
        return len({clip for clip, _ in self._index})

    def total_clips(self) -> int | None:
        """The split's clip count from the folder's ``meta.json`` (None when there is none)."""
        try:
            with self._fs.open_input_stream(f"{self._path}/meta.json") as f:
                return int(json.loads(f.read())["clips"])
        except (OSError, KeyError, ValueError, TypeError):
            return None

    def refresh(self) -> None:
        import pyarrow.fs

        self._refreshed = time.monotonic()
        try:
            infos = self._fs.get_file_info(pyarrow.fs.FileSelector(self._path, allow_not_found=True))
            self._listing_s = time.monotonic() - self._refreshed
        except (OSError, pa.ArrowException) as exc:  # storage unreachable: a miss decodes instead
            if not self.list_error:
                print(f"[raytrain] frame cache {self.location}: cannot list ({type(exc).__name__}: {exc}); "
                      f"decoding instead", flush=True)
            self.list_error = True
            return
        self.list_error = False
        for info in infos:
            name = info.base_name
            if name.endswith(SHARD_SUFFIX) and not name.startswith(".") and name not in self._shards:
                self._index_shard(name, info.path, int(info.size or 0))

    def _index_shard(self, name: str, path: str, size: int) -> None:
        try:
            reader = self._open(path)
            meta = reader.schema.metadata or {}
            pairs = json.loads(meta[b"pairs"])
            shapes = json.loads(meta[b"shapes"])
        except (OSError, KeyError, ValueError, pa.ArrowInvalid) as exc:
            print(f"[raytrain] frame cache: ignoring unreadable shard {join(self.location, name)} "
                  f"({type(exc).__name__}: {exc})", flush=True)
            self._shards[name] = -1  # do not try it again
            return
        self._shards[name] = size
        for i, (clip, k) in enumerate(pairs):
            self._index.setdefault((int(clip), int(k)), (reader, i, tuple(shapes[i])))

    def _open(self, path: str) -> pa.ipc.RecordBatchFileReader:
        if is_uri(self.location):
            return pa.ipc.open_file(self._fs.open_input_file(path))  # ranged reads per record batch
        return pa.ipc.open_file(pa.memory_map(path, "r"))  # pages come in on demand

    def __len__(self) -> int:
        """(clip, sampling) entries indexed so far (call :meth:`refresh` first for the folder's count)."""
        return len(self._index)

    def view(self, clip: int, sampling: int) -> np.ndarray | None:
        """The cached frames of ``(clip, sampling)``, ``(n, S, S, 3)`` uint8, read-only and without a
        copy (the memory-mapped shard's bytes; a compressed shard's decompressed buffer), or None when
        not cached. Copy what must outlive the cache or be written to."""
        key = (int(clip), int(sampling))
        if key not in self._index and self._refresh_due():
            self.refresh()
        found = self._index.get(key)
        if found is None:
            self.misses += 1
            return None
        reader, i, shape = found
        frames = np.frombuffer(reader.get_batch(i).column(2)[0].as_buffer(), np.uint8).reshape(shape)
        frames.flags.writeable = False
        self.hits += 1
        return frames

    def _refresh_due(self) -> bool:
        return time.monotonic() - self._refreshed >= max(self.refresh_s, self._listing_s / LISTING_SHARE)

    def get(self, clip: int, sampling: int) -> np.ndarray | None:
        """The cached frames of ``(clip, sampling)`` (a fresh, writable array), or None when not cached."""
        frames = self.view(clip, sampling)
        return None if frames is None else frames.copy()

    def add(self, items: Sequence[tuple[int, int, np.ndarray]], compression: str = "none",
            budget_bytes: int = 0, min_free_bytes: int = 0) -> bool:
        """Write items as a new shard and index it (this cache sees its own writes at once). False, and
        nothing written (:attr:`refused` says why), when the folder at a fresh listing plus the shard
        would exceed ``budget_bytes`` (0 = no budget), or when the shard would leave less than
        ``min_free_bytes`` free on a local disk (``cache_disk.min_free_bytes``; 0 = no floor)."""
        if not items:
            return True
        data = encode_shard(items, compression)
        self.refused = ""
        if budget_bytes:
            self.refresh()  # what every actor has written so far, not what this one saw 2 s ago
            if self.bytes + data.size > budget_bytes:
                self.refused = "budget"
                return False
        if min_free_bytes and not is_uri(self.location):
            self.free_bytes = int(self._disk_usage(self._path).free)
            if self.free_bytes - data.size < min_free_bytes:
                self.refused = "disk"
                return False
        name = publish_shard(self.location, data, self._fs)
        self._index_shard(name, f"{self._path}/{name}", data.size)  # no second listing
        return True
