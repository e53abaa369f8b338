"""Writing frames as a reproducible H.264 mp4 (PyAV, x264 on one thread): SynthVTT's clips and tests' videos."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np


def encode_h264(frames: np.ndarray, path: str | os.PathLike, fps: int, crf: int = 23,
                preset: str = "ultrafast") -> Path:
    """Write ``(T, H, W, 3)`` uint8 RGB frames as an H.264 (yuv420p) mp4 with PyAV, single-threaded.

    H and W must be even. The file is written next to ``path`` and renamed into place.
    """
    import av

    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"encode_h264 expects (T, H, W, 3) uint8 frames, got {frames.shape} {frames.dtype}")
    t_count, h, w, _ = frames.shape
    if t_count == 0 or h % 2 or w % 2:
        raise ValueError(f"encode_h264 needs >= 1 frame and an even frame size, got {t_count}x{h}x{w}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with av.open(str(tmp), "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=int(fps))
        stream.width, stream.height = w, h
        stream.pix_fmt = "yuv420p"
        stream.thread_count = 1
        stream.options = {"crf": str(crf), "preset": preset, "threads": "1"}
        for arr in frames:
            frame = av.VideoFrame.from_ndarray(arr, format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():  # flush the encoder
            container.mux(packet)
    os.replace(tmp, path)
    return path
