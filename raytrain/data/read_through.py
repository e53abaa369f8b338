"""Reading clips through the frame cache (``data.cache=frames``): a hit is read back, a miss decodes
every cached sampling of the clip from one open of the file and queues them; :meth:`flush` writes a
batch's misses as one shard. No Ray here."""

from __future__ import annotations

import numpy as np

from raytrain.data import frame_cache
from raytrain.data.reader import ClipReader


class ReadThroughCache:
    """``reader``'s clips through the cache folder ``location``; a train clip keeps ``samplings``
    temporal samplings whose frame offsets derive from ``seed`` (``frame_cache.sampling_rngs``), an
    eval clip its centres."""

    def __init__(self, reader: ClipReader, location: str, samplings: int = 1, seed: int = 0):
        self.reader = reader
        self.location = location
        self.samplings = samplings
        self.seed = seed
        self.write_error: str | None = None
        self._cache: frame_cache.FrameCache | None = None  # opened on the first read
        self._pending: list[tuple[int, int, np.ndarray]] = []

    def _open(self) -> frame_cache.FrameCache:
        if self._cache is None:
            self._cache = frame_cache.FrameCache(self.location)
        return self._cache

    def read(self, path: str, start_s, end_s, clip: int, sampling: int) -> tuple[np.ndarray, bool]:
        """``(frames, hit)`` of one clip sampling."""
        cache = self._open()
        for clip_, k, frames in self._pending:  # decoded earlier in this same batch (a clip met twice)
            if clip_ == clip and k == sampling:
                return frames.copy(), False
        frames = cache.get(clip, sampling)
        if frames is not None:
            return frames, True
        rngs = frame_cache.sampling_rngs(self.seed, clip, self.samplings) if self.reader.train else [None]
        decoded = self.reader.read(path, start_s, end_s, rngs)
        self._pending.extend((clip, k, decoded[k]) for k in range(len(rngs)))
        return decoded[sampling].copy(), False

    def flush(self) -> None:
        """Write the queued samplings as one shard. A cache that cannot be written (disk full, no
        permission) must not stop training: the frames are decoded already. Say so once, and stop
        writing; reads go on."""
        items, self._pending = self._pending, []
        if not items or self.write_error is not None:
            return
        try:
            self._open().add(items)
        except Exception as exc:  # noqa: BLE001 - OSError, ArrowException, a storage client's own errors
            self.write_error = f"{type(exc).__name__}: {exc}"
            print(f"[raytrain] frame cache {self.location}: cannot write ({self.write_error}); "
                  f"this decode actor goes on decoding without writing", flush=True)
