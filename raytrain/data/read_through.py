"""Reading clips through the frame cache (``data.cache=frames``): a hit is read back, a miss decodes
every cached sampling of the clip from one open of the file and queues them; :meth:`flush` writes a
batch's misses as one shard. No Ray here."""

from __future__ import annotations

import numpy as np

from raytrain.data import cache_disk, frame_cache
from raytrain.data.reader import ClipReader


class ReadThroughCache:
    """``reader``'s clips through the cache folder ``location``; a train clip keeps ``samplings``
    temporal samplings whose frame offsets derive from ``seed`` (``frame_cache.sampling_rngs``), an
    eval clip its centres. Shards are written with ``compression`` (``data.cache_compression``) while
    the folder stays within ``budget_bytes`` (``data.cache_budget_gb``; 0 = no budget) and its disk
    keeps ``min_free_bytes`` free (``cache_disk.min_free_bytes``; 0 = no floor): the first shard that
    would break either is not written, and from then on this actor writes nothing and decodes only the
    sampling it is asked for (the clips not cached are decoded every epoch). The same after a failed
    write (a full disk). ``token`` names the process that built the dataset (``cache_disk.writer_token``), so that
    its actors say each of these once."""

    def __init__(self, reader: ClipReader, location: str, samplings: int = 1, seed: int = 0,
                 compression: str = "none", budget_bytes: int = 0, min_free_bytes: int = 0, token: str = ""):
        self.reader = reader
        self.location = location
        self.samplings = samplings
        self.seed = seed
        self.compression = compression
        self.budget_bytes = int(budget_bytes)
        self.min_free_bytes = int(min_free_bytes)
        self.token = token
        self.write_error: str | None = None
        self.budget_reached = False
        self._cache: frame_cache.FrameCache | None = None  # opened on the first read
        self._pending: list[tuple[int, int, np.ndarray]] = []

    @property
    def writing(self) -> bool:
        return self.write_error is None and not self.budget_reached

    def _open(self) -> frame_cache.FrameCache:
        if self._cache is None:
            self._cache = frame_cache.FrameCache(self.location)
        return self._cache

    def read(self, path: str, start_s, end_s, clip: int, sampling: int) -> tuple[np.ndarray, bool]:
        """``(frames, hit)`` of one clip sampling. A hit is a read-only view of the cached bytes (the
        batch that stacks it makes the one copy); a miss a fresh array."""
        cache = self._open()
        for clip_, k, frames in self._pending:  # decoded earlier in this same batch (a clip met twice)
            if clip_ == clip and k == sampling:
                return frames.copy(), False
        frames = cache.view(clip, sampling)
        if frames is not None:
            return frames, True
        if not self.reader.train:
            rngs = [None]
        else:
            rngs = frame_cache.sampling_rngs(self.seed, clip, self.samplings)
            if not self.writing:  # nothing will be written: decode the one sampling asked for, same frames
                return self.reader.read(path, start_s, end_s, rngs[sampling:sampling + 1])[0], False
        decoded = self.reader.read(path, start_s, end_s, rngs)
        if self.writing:
            self._pending.extend((clip, k, decoded[k]) for k in range(len(rngs)))
        return decoded[sampling].copy(), False

    def flush(self) -> None:
        """Write the queued samplings as one shard. A cache that cannot be written (disk full, no
        permission) must not stop training: the frames are decoded already. Say so once, and stop
        writing; reads go on. The same when the budget is reached."""
        items, self._pending = self._pending, []
        if not items or not self.writing:
            return
        cache = self._open()
        try:
            written = cache.add(items, self.compression, self.budget_bytes, self.min_free_bytes)
        except Exception as exc:  # noqa: BLE001 - OSError, ArrowException, a storage client's own errors
            self.write_error = f"{type(exc).__name__}: {exc}"
            self._say("error", f"[raytrain] frame cache {self.location}: cannot write ({self.write_error}); "
                               f"the decode actors go on decoding without writing")
            return
        if written:
            return
        self.budget_reached = True
        total = cache.total_clips()
        held = f"at {cache.clips} clips (of {total or '?'}), {cache.bytes / 1e9:.2f} GB in {self.location}"
        if cache.refused == "budget":
            why = f"frame cache budget {self.budget_bytes / 1e9:.1f} GB (data.cache_budget_gb) reached {held}"
        else:
            why = (f"frame cache stopped writing {held}: its disk has {(cache.free_bytes or 0) / 1e9:.2f} GB "
                   f"free and keeps {self.min_free_bytes / 1e9:.2f} GB for checkpoints and logs "
                   f"(data.cache_max_disk_fraction, data.cache_disk_reserve_gb)")
        self._say(cache.refused, f"[raytrain] {why}; the decode actors write no more shards, and the clips "
                                 f"not cached are decoded every epoch")

    def _say(self, what: str, message: str) -> None:
        """Once for the driver (the first of its actors to get here), or once per actor where the
        folder cannot hold the marker (``cache_disk.say_once``)."""
        cache_disk.say_once(self.location, self.token, what, message)
