"""Reading clips: one decoder, an optional time limit per file, and the files that failed remembered so
that a bad file costs one failed decode per actor, not one per visit. No Ray here."""

from __future__ import annotations

import concurrent.futures as cf
import math
from collections.abc import Sequence

import numpy as np

from raytrain.data.decode import VideoDecodeError, VideoDecoder, decode_samplings
from raytrain.data.frame_sampling import Clip4ClipSampling


def _seconds(value) -> float | None:
    """A segment bound from a batch (NaN or None: the file's start or end)."""
    return None if value is None or math.isnan(value) else float(value)


class ClipReader:
    """Decodes samplings of one clip, ``(K, T, S, S, 3)`` uint8, with ``decoder``. ``timeout_s`` > 0
    bounds each file's decode: a hung native decoder cannot be interrupted, so its thread is abandoned
    and the next file gets a fresh one."""

    def __init__(self, decoder: VideoDecoder, num_frames: int, image_size: int, train: bool,
                 timeout_s: float = 0.0, sampling: Clip4ClipSampling | None = None):
        self.decoder = decoder
        self.sampling = sampling  # CLIP4Clip's frames instead of segments: (K, n <= T, S, S, 3), unpadded
        self.num_frames = num_frames
        self.image_size = image_size
        self.train = train
        self.timeout_s = timeout_s
        self.known_bad: set[str] = set()  # files that failed once are not decoded again
        self._pool: cf.ThreadPoolExecutor | None = None

    @property
    def name(self) -> str:
        return self.decoder.name

    def mark_bad(self, path: str) -> None:
        self.known_bad.add(path)

    def read(self, path: str, start_s, end_s, rngs: Sequence[np.random.Generator | None]) -> np.ndarray:
        """``(len(rngs), T, S, S, 3)``: one sampling per generator (``[None]`` for eval's centres)."""
        if path in self.known_bad:
            raise VideoDecodeError(path, self.name, "failed earlier in this run")
        if self.sampling is not None:  # deterministic: every sampling is the same frames
            rngs = [self.sampling] * len(rngs)
        kwargs = {"num_frames": self.num_frames, "size": self.image_size, "train": self.train, "rngs": rngs,
                  "start_s": _seconds(start_s), "end_s": _seconds(end_s)}
        if not self.timeout_s:
            return decode_samplings(self.decoder, path, **kwargs)
        if self._pool is None:
            self._pool = cf.ThreadPoolExecutor(max_workers=1, thread_name_prefix="decode")
        future = self._pool.submit(decode_samplings, self.decoder, path, **kwargs)
        try:
            return future.result(timeout=self.timeout_s)
        except cf.TimeoutError:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
            raise VideoDecodeError(path, self.name,
                                   f"timed out after {self.timeout_s:g} s (data.decode_timeout_s)") from None
