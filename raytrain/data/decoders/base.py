"""What every decoder shares: frame sampling, resize + centre crop, the decoder protocol and its errors.

Everything here is plain numpy/torch (no Ray), so it can be unit-tested and used inside any worker.
Decoders return ``(num_frames, size, size, 3)`` uint8 RGB arrays; every failure to read a file is a
:class:`VideoDecodeError` whose message names the path and the underlying decoder's message.

Frame sampling follows CLIP4Clip: the frame range is split into ``num_samples`` equal segments and one
frame is taken per segment (a uniformly random one when training, the centre one for evaluation).
A ``start_s``/``end_s`` segment is turned into a frame range with the video's average fps: frame ``i``
(timestamp ``i / fps``) belongs to the segment when ``start_s <= i / fps < end_s``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np
import torch
import torch.nn.functional as F

from raytrain.data.frame_sampling import Clip4ClipSampling

__all__ = [
    "IndexedDecoder",
    "OpenVideo",
    "SamplingsDecoder",
    "SegmentError",
    "VideoDecodeError",
    "VideoDecoder",
    "decode_samplings",
    "plan_frame_indices",
    "resize_center_crop",
    "sample_frame_indices",
    "segment_frame_range",
]


class VideoDecodeError(RuntimeError):
    """A video that cannot be decoded; the message names the file and the decoder's own message."""

    def __init__(self, path: str | os.PathLike, decoder: str, message: str):
        self.path = str(path)
        self.decoder = decoder
        self.message = message
        super().__init__(f"cannot decode '{self.path}' with {decoder}: {message}")


class SegmentError(VideoDecodeError):
    """The clip's segment (``start_s``/``end_s``) holds no frame of a readable video."""


# --------------------------------------------------------------------------------------------------
# Frame-index sampling


def sample_frame_indices(num_video_frames: int, num_samples: int, train: bool,
                         rng: np.random.Generator | None = None, first: int = 0,
                         last: int | None = None) -> np.ndarray:
    """Pick ``num_samples`` frame indices from the inclusive range ``[first, last]`` (CLIP4Clip style).

    The range is split into ``num_samples`` equal (real-valued) segments. For training a uniformly random
    frame inside each segment is taken (``rng`` is required); for evaluation each segment's centre frame.
    The result is sorted (non-decreasing) int64 and lies inside the range; a range shorter than
    ``num_samples`` frames yields repeated indices. E.g. 10 frames, 5 samples, eval -> [1, 3, 5, 7, 9].
    """
    num_video_frames = int(num_video_frames)
    num_samples = int(num_samples)
    if num_video_frames <= 0:
        raise ValueError(f"num_video_frames must be > 0 (got {num_video_frames}); the video has no frames")
    if num_samples <= 0:
        raise ValueError(f"num_samples must be > 0 (got {num_samples})")
    if last is None:
        last = num_video_frames - 1
    first, last = int(first), int(last)
    if not 0 <= first <= last < num_video_frames:
        raise ValueError(f"frame range [{first}, {last}] is empty or outside the video's "
                         f"{num_video_frames} frames [0, {num_video_frames - 1}]")
    span = last - first + 1
    bounds = first + np.arange(num_samples + 1, dtype=np.float64) * (span / num_samples)
    lo, hi = bounds[:-1], bounds[1:]
    if train:
        if rng is None:
            raise ValueError("sample_frame_indices(train=True) needs an rng (numpy.random.Generator)")
        pos = lo + rng.random(num_samples) * (hi - lo)
    else:
        pos = (lo + hi) / 2.0
    idx = np.floor(pos).astype(np.int64)
    # floor(hi) can only be reached through floating-point rounding; keep each index in its segment
    idx = np.clip(idx, np.floor(lo).astype(np.int64), np.ceil(hi).astype(np.int64) - 1)
    idx = np.clip(idx, first, last)
    return np.maximum.accumulate(idx)


def segment_frame_range(num_video_frames: int, fps: float | None, start_s: float | None = None,
                        end_s: float | None = None, path: str = "<video>",
                        decoder: str = "decoder") -> tuple[int, int]:
    """The inclusive frame range ``[first, last]`` of the frames with ``start_s <= i / fps < end_s``.

    ``None`` bounds mean the start/end of the file; the range is clamped to the video's frames. Raises
    VideoDecodeError (naming ``path`` and the segment) when the segment holds no frame.
    """
    if num_video_frames <= 0:
        raise VideoDecodeError(path, decoder, "the video has no frames")
    first, last = 0, num_video_frames - 1
    if start_s is None and end_s is None:
        return first, last
    if fps is None or not math.isfinite(fps) or fps <= 0:
        raise SegmentError(path, decoder, f"cannot locate segment [{start_s}, {end_s}] s: "
                                              f"the video has no usable frame rate ({fps})")
    eps = 1e-6
    if start_s is not None:
        first = max(first, math.ceil(float(start_s) * fps - eps))
    if end_s is not None:
        last = min(last, math.ceil(float(end_s) * fps - eps) - 1)
    if first > last:
        duration = num_video_frames / fps
        raise SegmentError(path, decoder, f"segment [{start_s}, {end_s}] s contains no frame "
                                              f"(video has {num_video_frames} frames at {fps:.3f} fps, "
                                              f"{duration:.3f} s)")
    return first, last


def plan_frame_indices(num_video_frames: int, fps: float | None, num_frames: int, train: bool,
                       rng: np.random.Generator | None = None, start_s: float | None = None,
                       end_s: float | None = None, path: str = "<video>",
                       decoder: str = "decoder") -> np.ndarray:
    """The frame indices a decoder reads: the segment's frame range, then :func:`sample_frame_indices`;
    or, when ``rng`` is a ``Clip4ClipSampling`` (``data.frame_sampling=clip4clip``), CLIP4Clip's frames."""
    if isinstance(rng, Clip4ClipSampling):
        return _clip4clip_indices(rng, num_video_frames, fps, start_s, end_s, path, decoder)
    first, last = segment_frame_range(num_video_frames, fps, start_s, end_s, path, decoder)
    return sample_frame_indices(num_video_frames, num_frames, train, rng, first=first, last=last)


def _clip4clip_indices(sampling: Clip4ClipSampling, num_video_frames: int, fps: float | None,
                       start_s: float | None, end_s: float | None, path: str, decoder: str) -> np.ndarray:
    try:
        indices = sampling.indices(num_video_frames, fps, start_s, end_s)
    except ValueError as exc:
        raise SegmentError(path, decoder, str(exc)) from None
    if len(indices) == 0:
        raise SegmentError(path, decoder, f"segment [{start_s}, {end_s}] s holds no frame at "
                                              f"{sampling.rate} fps ({num_video_frames} frames at {fps} fps)")
    return indices


# --------------------------------------------------------------------------------------------------
# Resize + centre crop


def resize_center_crop(frames: np.ndarray, size: int) -> np.ndarray:
    """Resize ``(T, H, W, 3)`` uint8 frames so the short side is ``size``, then centre-crop to a square.

    Bilinear with antialiasing (torch ``interpolate`` on uint8, channels last).
    """
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"resize_center_crop expects (T, H, W, 3) frames, got shape {frames.shape}")
    size = int(size)
    if size <= 0:
        raise ValueError(f"size must be > 0 (got {size})")
    t, h, w, _ = frames.shape
    if h <= 0 or w <= 0:
        raise ValueError(f"frames have an empty spatial size {h}x{w}")
    scale = size / min(h, w)
    new_h = size if h <= w else max(size, round(h * scale))
    new_w = size if w <= h else max(size, round(w * scale))
    if (new_h, new_w) != (h, w) and t > 0:
        # uint8 in, channels-last: torch's integer antialiased kernel, ~25x faster than the same resize
        # in float32 on one CPU thread and within 1 grey level of it.
        x = torch.from_numpy(np.ascontiguousarray(frames, dtype=np.uint8)).permute(0, 3, 1, 2)
        x = F.interpolate(x, size=(new_h, new_w), mode="bilinear", align_corners=False, antialias=True)
        out = x.permute(0, 2, 3, 1).numpy()
    else:
        out = frames.astype(np.uint8, copy=False).reshape(t, new_h, new_w, 3)
    top = (new_h - size) // 2
    left = (new_w - size) // 2
    return np.ascontiguousarray(out[:, top:top + size, left:left + size, :])


# --------------------------------------------------------------------------------------------------
# Decoders


@runtime_checkable
class VideoDecoder(Protocol):
    """Decodes ``num_frames`` sampled frames of a file into ``(num_frames, size, size, 3)`` uint8 RGB."""

    name: str

    def decode(self, path: str, num_frames: int, size: int, train: bool,
               rng: np.random.Generator | None = None, start_s: float | None = None,
               end_s: float | None = None) -> np.ndarray: ...


def decode_samplings(decoder: VideoDecoder, path: str, num_frames: int, size: int, train: bool,
                     rngs: Sequence[np.random.Generator | None], start_s: float | None = None,
                     end_s: float | None = None) -> np.ndarray:
    """``(len(rngs), num_frames, size, size, 3)``: one sampling per generator. Decoders that can read
    several samplings from one open of the file (every :class:`IndexedDecoder`) provide ``decode_samplings``;
    for any other :class:`VideoDecoder` this calls ``decode`` once per sampling."""
    if hasattr(decoder, "decode_samplings"):
        return decoder.decode_samplings(path, num_frames, size, train, rngs, start_s, end_s)
    return np.stack([decoder.decode(path, num_frames, size, train, rng, start_s, end_s) for rng in rngs])


def _check_file(path: str, decoder: str) -> None:
    if not os.path.exists(path):
        raise VideoDecodeError(path, decoder, "file not found")
    if not os.path.isfile(path):
        raise VideoDecodeError(path, decoder, "not a regular file")
    if os.path.getsize(path) == 0:
        raise VideoDecodeError(path, decoder, "the file is empty (0 bytes)")


def _exc_message(exc: BaseException) -> str:
    msg = str(exc).strip() or type(exc).__name__
    # decord's messages carry a long C++ backtrace; the first line is the useful part
    first = msg.splitlines()[0] if msg else msg
    return f"{type(exc).__name__}: {first}"


def _gather_samplings(index_sets: list[np.ndarray], read, size: int) -> np.ndarray:
    """Read the union of several samplings' frame indices once (``read(sorted unique indices)`` gives
    ``(U, H, W, 3)``), resize once, then gather each sampling: ``(K, T, size, size, 3)``."""
    union = np.unique(np.concatenate(index_sets))
    frames = resize_center_crop(read(union), size)
    return np.stack([frames[np.searchsorted(union, idx)] for idx in index_sets])


class OpenVideo(Protocol):
    """One open file as a decoder presents it: ``num_frames`` presented frames (an edit list's hidden
    frames not counted), their average ``fps``, and ``read(sorted unique indices)`` -> ``(U, H, W, 3)``
    uint8 RGB frames, turned as the file's rotation metadata says."""

    num_frames: int
    fps: float | None

    def read(self, indices: np.ndarray) -> np.ndarray: ...


class SamplingsDecoder:
    """A decoder whose ``decode`` is one sampling of its ``decode_samplings``."""

    name = "decoder"

    def decode(self, path: str, num_frames: int, size: int, train: bool,
               rng: np.random.Generator | None = None, start_s: float | None = None,
               end_s: float | None = None) -> np.ndarray:
        return self.decode_samplings(path, num_frames, size, train, [rng], start_s, end_s)[0]

    def decode_samplings(self, path: str, num_frames: int, size: int, train: bool,
                         rngs: Sequence[np.random.Generator | None], start_s: float | None = None,
                         end_s: float | None = None) -> np.ndarray:  # pragma: no cover - subclasses define it
        raise NotImplementedError


class IndexedDecoder(SamplingsDecoder):
    """The shared frame: a subclass opens a file (``_open(path)`` -> :class:`OpenVideo`, a context
    manager); this plans the indices, reads them once for all samplings, resizes and crops, and turns
    every failure into a :class:`VideoDecodeError` naming the file."""

    def decode_samplings(self, path: str, num_frames: int, size: int, train: bool,
                         rngs: Sequence[np.random.Generator | None], start_s: float | None = None,
                         end_s: float | None = None) -> np.ndarray:
        """Several temporal samplings of one clip from one open file (one ``rng`` each, train) as
        ``(K, num_frames, size, size, 3)``: frames shared by samplings are decoded once."""
        path = os.fspath(path)
        _check_file(path, self.name)
        try:
            with self._open(path) as video:
                if video.num_frames <= 0:
                    raise VideoDecodeError(path, self.name, "the video stream has no frame")
                index_sets = [plan_frame_indices(video.num_frames, video.fps, num_frames, train, rng,
                                                 start_s, end_s, path, self.name) for rng in rngs]
                return _gather_samplings(index_sets, lambda idx: self._checked(path, video.read(idx), idx), size)
        except VideoDecodeError:
            raise
        except Exception as exc:
            raise VideoDecodeError(path, self.name, _exc_message(exc)) from exc

    def _checked(self, path: str, frames: np.ndarray, indices: np.ndarray) -> np.ndarray:
        if frames.ndim != 4 or frames.shape[0] != len(indices) or frames.shape[-1] != 3 or frames.dtype != np.uint8:
            raise VideoDecodeError(path, self.name, f"unexpected frame batch {frames.shape} {frames.dtype} "
                                                    f"for {len(indices)} frames")
        return frames

    def _open(self, path: str):  # pragma: no cover - every decoder defines it
        raise NotImplementedError
