"""``data.decoder=auto``: the fast decoder first, PyAV for the files it cannot read."""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from raytrain.data.decoders.base import IndexedDecoder, SamplingsDecoder, SegmentError, VideoDecodeError


class AutoDecoder(SamplingsDecoder):
    """Reads with ``primary`` (decord) and, for a file it cannot read, with ``fallback`` (PyAV): the
    first failure of a file is logged (naming the file and the primary's message) and remembered, so
    the file costs one failed primary decode per process and is read by the fallback from then on.
    ``fallback_count`` / ``fallback_files`` are what a pipeline reports. A segment that holds no frame
    is the clip's fault, not the decoder's: it is raised as it is."""

    name = "auto"

    def __init__(self, primary: IndexedDecoder, fallback: IndexedDecoder):
        self.primary, self.fallback = primary, fallback
        self.fallback_files: dict[str, str] = {}  # path -> why the primary could not read it

    @property
    def fallback_count(self) -> int:
        return len(self.fallback_files)

    def decode_samplings(self, path: str, num_frames: int, size: int, train: bool,
                         rngs: Sequence[np.random.Generator | None], start_s: float | None = None,
                         end_s: float | None = None) -> np.ndarray:
        path = os.fspath(path)
        args = (path, num_frames, size, train, rngs, start_s, end_s)
        first = self.fallback_files.get(path)
        if first is None:
            try:
                return self.primary.decode_samplings(*args)
            except SegmentError:
                raise
            except VideoDecodeError as exc:
                first = self.fallback_files[path] = exc.message
                print(f"[raytrain] data.decoder=auto: {self.primary.name} cannot read '{path}' ({first}); "
                      f"reading it with {self.fallback.name} (fallback #{self.fallback_count})", flush=True)
        try:
            return self.fallback.decode_samplings(*args)
        except VideoDecodeError as exc:
            raise VideoDecodeError(path, self.name, f"{self.primary.name}: {first}; "
                                                    f"{self.fallback.name}: {exc.message}") from exc
