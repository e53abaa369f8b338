"""torchcodec (PyTorch's decoder over FFmpeg's shared libraries; optional: ``pip install
'raytrain[torchcodec]'`` plus FFmpeg's libraries, e.g. ``apt-get install ffmpeg``). ``torchcodec-cuda``
decodes with NVDEC on the GPU."""

from __future__ import annotations

import sys

import numpy as np

from raytrain.data.decoders.base import IndexedDecoder


def import_torchcodec():
    """torchcodec's ``VideoDecoder`` class, or an ImportError that says how to get it: torchcodec
    loads FFmpeg's shared libraries when imported, so a missing FFmpeg fails here too. A process that
    loaded decord first is refused: decord2's wheel carries its own FFmpeg, and torchcodec decoding
    after it crashed the process (SIGSEGV on an AV1 clip, docs/decoders.md)."""
    if "decord" in sys.modules and "torchcodec" not in sys.modules:
        raise ImportError("data.decoder=torchcodec: decord was loaded first in this process, and torchcodec "
                          "decoding after decord2's bundled FFmpeg crashes the process; load torchcodec "
                          "first (make_decoder('torchcodec') before any decord use) or use one decoder per process")
    try:
        from torchcodec.decoders import VideoDecoder
    except Exception as exc:  # ImportError, or RuntimeError/OSError when FFmpeg's libraries are absent
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ImportError(
            "data.decoder=torchcodec needs the optional extra (pip install 'raytrain[torchcodec]') and "
            "FFmpeg's shared libraries (libavcodec, e.g. apt-get install ffmpeg); importing torchcodec "
            f"failed: {type(exc).__name__}: {first[:300]}") from exc
    return VideoDecoder


class _TorchCodecVideo:
    def __init__(self, path: str, device: str):
        self.decoder = import_torchcodec()(path, device=device, seek_mode="exact", dimension_order="NHWC",
                                           num_ffmpeg_threads=1)
        self.num_frames = len(self.decoder)
        fps = self.decoder.metadata.average_fps
        self.fps = float(fps) if fps else None

    def read(self, indices: np.ndarray) -> np.ndarray:
        return self.decoder.get_frames_at(indices.tolist()).data.cpu().numpy()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.decoder = None


class TorchCodecDecoder(IndexedDecoder):
    """torchcodec in exact seek mode (its index of the presented frames: edit lists and rotation as
    ffmpeg applies them). ``device="cuda"`` decodes on the GPU (NVDEC); frames come back to the CPU for
    the crop, as every decoder's do."""

    name = "torchcodec"

    def __init__(self, device: str = "cpu"):
        import_torchcodec()  # fail when the decoder is chosen, not at the first clip
        self.device = device
        if device != "cpu":
            self.name = f"torchcodec-{device}"

    def _open(self, path: str) -> _TorchCodecVideo:
        return _TorchCodecVideo(path, self.device)
