"""CLIP4Clip's frame sampling (``data.frame_sampling=clip4clip``), as pure index functions, and the
padding that turns a clip's real frames into a fixed ``(T, S, S, 3)`` plus its ``frame_mask``.

CLIP4Clip (``dataloaders/rawvideo_util.py`` and its dataset loaders) reads a video with cv2 at
``feature_framerate`` frames per second: with the integer frame rate ``f = int(fps)``, second ``s``
contributes frames ``s * f + i`` for ``i`` in ``range(0, f, f // rate)[:rate]``, for every second from
the segment's start to its end (both included, whole seconds), while the file has frames. When that
gives more than ``max_frames`` it keeps ``linspace(0, L - 1, max_frames)`` of them (``slice_framepos=2``,
the setting of every published command); otherwise all of them, so a short clip has fewer frames,
zero-padded at the end, and the pooling heads read a frame mask (1 = real frame). The same frames are
taken in training and evaluation: no random offsets.

The decoders of ``raytrain.data.decode`` take a :class:`Clip4ClipSampling` where they take a sampling
``rng`` (:func:`raytrain.data.decode.plan_frame_indices` hands it the frame range), so the decoder
classes need no change and the frame cache stores each clip's real frames only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

FRAME_SAMPLINGS = ("segments", "clip4clip")


def clip4clip_second_range(num_video_frames: int, fps: int, start_s: float | None = None,
                           end_s: float | None = None) -> tuple[int, int]:
    """The whole seconds ``[start_sec, end_sec]`` (both included) CLIP4Clip reads: the file's
    ``ceil(frames / fps)`` seconds, or a segment's ``int(start)``, ``int(end)`` (swapped if reversed,
    ``end + 1`` if equal, as its DiDeMo / ActivityNet loaders do), the end capped at the file's."""
    duration = (num_video_frames + fps - 1) // fps
    if start_s is None and end_s is None:
        return 0, duration
    start = max(0, int(start_s or 0))
    end = max(0, int(end_s)) if end_s is not None else duration
    if start > end:
        start, end = end, start
    elif start == end:
        end += 1
    return start, min(end, duration)


def clip4clip_frame_indices(num_video_frames: int, fps: float, max_frames: int, rate: int = 1,
                            start_s: float | None = None, end_s: float | None = None) -> np.ndarray:
    """The frame indices CLIP4Clip reads: ``rate`` frames per second, then at most ``max_frames`` of
    them picked uniformly. Fewer than ``max_frames`` for a clip shorter than ``max_frames / rate``
    seconds; empty when the segment holds no frame. E.g. 300 frames at 30 fps, 12 frames at 1 fps:
    seconds 0..9 -> [0, 30, ..., 270] (10 frames)."""
    if num_video_frames <= 0 or max_frames <= 0 or rate <= 0:
        raise ValueError(f"need frames, max_frames and rate > 0 (got {num_video_frames}, {max_frames}, {rate})")
    if fps is None or not math.isfinite(fps) or int(fps) < 1:
        raise ValueError(f"CLIP4Clip sampling needs a frame rate of at least 1 fps (got {fps})")
    f = int(fps)  # cv2's CAP_PROP_FPS read as an int, as CLIP4Clip does
    offsets = np.arange(0, f, max(1, f // rate))[:rate]
    first, last = clip4clip_second_range(num_video_frames, f, start_s, end_s)
    seconds = np.arange(first, last + 1)
    indices = (seconds[:, None] * f + offsets[None, :]).reshape(-1)
    indices = indices[indices < num_video_frames]  # cv2 stops at the first frame it cannot read
    if len(indices) > max_frames:
        indices = indices[np.linspace(0, len(indices) - 1, num=max_frames, dtype=int)]
    return indices.astype(np.int64)


@dataclass(frozen=True)
class Clip4ClipSampling:
    """Passed to a decoder in place of a sampling ``rng``: take CLIP4Clip's frames (``rate`` per second,
    at most ``max_frames``) of the segment, not ``num_frames`` equal segments."""

    max_frames: int
    rate: int = 1
    max_seconds: int = 0  # > 0: seconds [0, max_seconds] at most (CLIP4Clip's DiDeMo: 31)

    def indices(self, num_video_frames: int, fps: float | None, start_s: float | None,
                end_s: float | None) -> np.ndarray:
        if self.max_seconds > 0:
            start_s = start_s or 0.0
            end_s = self.max_seconds if end_s is None else min(end_s, self.max_seconds)
        return clip4clip_frame_indices(num_video_frames, fps, self.max_frames, self.rate, start_s, end_s)


def pad_frames(frames: np.ndarray, num_frames: int) -> tuple[np.ndarray, np.ndarray]:
    """``(n, S, S, 3)`` real frames, ``n <= num_frames`` -> ``((num_frames, S, S, 3), frame_mask
    (num_frames,) uint8)``: zero frames after the real ones, mask 1 on the real ones."""
    n = len(frames)
    if n > num_frames:
        raise ValueError(f"{n} frames do not fit in {num_frames}")
    mask = np.zeros(num_frames, np.uint8)
    mask[:n] = 1
    if n == num_frames:
        return frames, mask
    out = np.zeros((num_frames, *frames.shape[1:]), np.uint8)
    out[:n] = frames
    return out, mask
