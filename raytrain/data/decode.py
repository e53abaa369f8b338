"""The decoders' public names, where the data path has always imported them from (the code lives in
:mod:`raytrain.data.decoders`)."""

from raytrain.data.decoders import (
    DECODERS,
    AutoDecoder,
    DecordDecoder,
    IndexedDecoder,
    PyAVDecoder,
    SegmentError,
    TorchCodecDecoder,
    VideoDecodeError,
    VideoDecoder,
    decode_samplings,
    make_decoder,
    plan_frame_indices,
    resize_center_crop,
    sample_frame_indices,
    segment_frame_range,
)

__all__ = ["DECODERS", "AutoDecoder", "DecordDecoder", "IndexedDecoder", "PyAVDecoder", "SegmentError",
           "TorchCodecDecoder", "VideoDecodeError", "VideoDecoder", "decode_samplings", "make_decoder",
           "plan_frame_indices", "resize_center_crop", "sample_frame_indices", "segment_frame_range"]
