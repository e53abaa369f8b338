"""decord (0.6.0, or its maintained fork decord2, which installs as ``import decord``)."""

from __future__ import annotations

import sys

import numpy as np

from raytrain.data.decoders.base import IndexedDecoder


def import_decord():
    """``import decord`` without decord2's CUDA preload: at import decord2 dlopens every library under
    ``site-packages/nvidia/*/lib`` (for its GPU reader), which in a venv with torch's CUDA wheels adds
    ~400 MB to every process's RSS (measured: +421 MB, against +27 MB without them; docs/decoders.md).
    raytrain decodes with decord on the CPU, so the ``nvidia`` package is hidden while decord loads
    (decord2 finds it with ``importlib.util.find_spec``, which then says there is none)."""
    if "decord" in sys.modules:
        return sys.modules["decord"]
    missing = object()
    saved = sys.modules.get("nvidia", missing)
    sys.modules["nvidia"] = None
    try:
        import decord
    finally:
        if saved is missing:
            del sys.modules["nvidia"]
        else:
            sys.modules["nvidia"] = saved
    return decord


def unpad_rows(frame: np.ndarray) -> np.ndarray:
    """``(h, w, 3)`` from a frame decord shaped ``(h, w, c)`` over rows padded to ``w * c`` bytes."""
    h, w, c = frame.shape
    if c == 3:
        return frame
    if (w * c) < w * 3:
        raise ValueError(f"a decoded frame of shape {frame.shape} holds fewer than 3 bytes a pixel")
    return np.ascontiguousarray(frame.reshape(h, w * c)[:, : w * 3]).reshape(h, w, 3)


class _DecordVideo:
    """A ``VideoReader(path, num_threads=1)``. decord counts the frames an mp4 edit list hides (it
    reports 100 where a player shows 75) but reads index ``k`` as the ``k``-th presented frame, and the
    hidden ones are exactly those with a negative timestamp: they are left out of ``num_frames``."""

    def __init__(self, path: str):
        self.reader = import_decord().VideoReader(path, num_threads=1)
        self.padded_rows = False  # set once get_batch has refused this file's padded frames
        n = len(self.reader)
        self.fps = float(self.reader.get_avg_fps()) if n > 0 else None
        hidden = 0
        if n > 1:
            starts = np.asarray(self.reader.get_frame_timestamp(list(range(n))))[:, 0]
            hidden = int((starts < -1e-6).sum())
        self.num_frames = n - hidden

    def read(self, indices: np.ndarray) -> np.ndarray:
        """The frames at ``indices``, ``(n, h, w, 3)``. On CPUs with AVX-512, decord2 3.4.0 keeps
        FFmpeg's padded rows for some widths (16, 24, 32, 48, 96, 144, ... pixels): ``get_batch``
        then fails its size check and a single frame comes back as ``(h, w, stride / w)``. Such a
        file is read frame by frame and each frame's padding cut off (exactly PyAV's frames)."""
        if not self.padded_rows:
            try:
                return self.reader.get_batch(indices.tolist()).asnumpy()
            except Exception as exc:  # decord.DECORDError (its module path differs between builds)
                if "must exactly match" not in str(exc):
                    raise
                self.padded_rows = True
        return np.stack([unpad_rows(self.reader[int(i)].asnumpy()) for i in indices])

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.reader = None  # release the native reader (and its file) now


class DecordDecoder(IndexedDecoder):
    """decord: one reader per call, a batch read of the planned frames. decord applies rotation
    metadata itself."""

    name = "decord"

    def _open(self, path: str) -> _DecordVideo:
        return _DecordVideo(path)
