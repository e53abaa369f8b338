"""Video decoders behind one interface (:class:`VideoDecoder`): decord (or decord2), PyAV, torchcodec
(CPU, or NVDEC with ``torchcodec-cuda``) and ``auto`` (decord, PyAV for the files decord cannot read).
Each gives, for the same frame indices, the frames the ffmpeg program presents: edit lists applied,
rotation metadata applied (docs/decoders.md has the format table)."""

from __future__ import annotations

from raytrain.data.decoders.auto import AutoDecoder
from raytrain.data.decoders.base import (
    IndexedDecoder,
    SegmentError,
    VideoDecodeError,
    VideoDecoder,
    decode_samplings,
    plan_frame_indices,
    resize_center_crop,
    sample_frame_indices,
    segment_frame_range,
)
from raytrain.data.decoders.decord_decoder import DecordDecoder
from raytrain.data.decoders.pyav_decoder import PyAVDecoder
from raytrain.data.decoders.torchcodec_decoder import TorchCodecDecoder

__all__ = [
    "DECODERS",
    "AutoDecoder",
    "DecordDecoder",
    "IndexedDecoder",
    "PyAVDecoder",
    "SegmentError",
    "TorchCodecDecoder",
    "VideoDecodeError",
    "VideoDecoder",
    "decode_samplings",
    "make_decoder",
    "plan_frame_indices",
    "resize_center_crop",
    "sample_frame_indices",
    "segment_frame_range",
]

DECODERS = {
    "auto": lambda: AutoDecoder(DecordDecoder(), PyAVDecoder()),
    "decord": DecordDecoder,
    "pyav": PyAVDecoder,
    "torchcodec": TorchCodecDecoder,
    "torchcodec-cuda": lambda: TorchCodecDecoder(device="cuda"),
}


def make_decoder(name: str) -> VideoDecoder:
    """A decoder by name (``data.decoder``): one of :data:`DECODERS`. ``torchcodec`` raises an
    ImportError saying what to install when torchcodec or FFmpeg's libraries are missing."""
    key = str(name).strip().lower()
    if key not in DECODERS:
        raise ValueError(f"unknown video decoder '{name}'; valid choices: {sorted(DECODERS)}")
    return DECODERS[key]()
