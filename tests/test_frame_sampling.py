"""CLIP4Clip's frame sampling (``data.frame_sampling=clip4clip``) without Ray: the index rule against
a restatement of CLIP4Clip's cv2 loop, the padding and the ``frame_mask`` column in train and eval
batches, through the frame cache too."""

import numpy as np
import pytest
import torch

from raytrain.config import Config, apply_overrides
from raytrain.data import frame_cache
from raytrain.data.batch import FRAME_MASK, eval_batch_dtypes, train_batch_dtypes
from raytrain.data.decode import VideoDecodeError, plan_frame_indices
from raytrain.data.decode_clips import DecodeClips
from raytrain.data.frame_sampling import Clip4ClipSampling, clip4clip_frame_indices, pad_frames
from raytrain.data.manifest import ClipRow
from raytrain.data.spec import DecodeSpec


def clip4clip_loop(frame_count, fps, max_frames, rate=1, start=None, end=None):
    """CLIP4Clip's RawVideoExtractorCV2.video_to_tensor + slice_framepos=2, restated on frame numbers."""
    fps = int(fps)
    total_duration = (frame_count + fps - 1) // fps
    start_sec, end_sec = 0, total_duration
    if start is not None:
        start_sec, end_sec = start, min(end, total_duration)
    interval = max(1, fps // rate)
    inds = list(np.arange(0, fps, interval))[:rate]
    read, ok = [], True
    for sec in np.arange(start_sec, end_sec + 1):
        if not ok:
            break
        for ind in inds:
            frame = int(sec * fps) + ind
            if frame >= frame_count:  # cap.read() fails past the end
                ok = False
                break
            read.append(frame)
    if len(read) > max_frames:
        read = [read[i] for i in np.linspace(0, len(read) - 1, num=max_frames, dtype=int)]
    return read


@pytest.mark.parametrize("frames,fps,max_frames,rate,start,end", [
    (300, 30.0, 12, 1, None, None),   # 10 s: 10 frames, fewer than 12
    (301, 30.0, 12, 1, None, None),   # one frame into second 10: 11
    (750, 25.0, 12, 1, None, None),   # 30 s: 30 frames at 1 fps, 12 picked uniformly
    (899, 29.97, 12, 1, None, None),  # cv2's fps read as int: 29
    (4500, 30.0, 64, 1, None, None),  # ActivityNet-like: 64 of 150
    (900, 30.0, 12, 2, None, None),   # 2 fps
    (3000, 30.0, 64, 1, 5, 40),       # a segment (DiDeMo / ActivityNet): seconds 5..40
    (3000, 30.0, 12, 1, 90, 200),     # a segment past the end: capped at the file
])
def test_indices_equal_clip4clips_loop(frames, fps, max_frames, rate, start, end):
    ours = clip4clip_frame_indices(frames, fps, max_frames, rate, start, end)
    assert ours.tolist() == clip4clip_loop(frames, fps, max_frames, rate, start, end)


def test_indices_examples_and_segment_rules():
    assert clip4clip_frame_indices(300, 30.0, 12).tolist() == list(range(0, 300, 30))
    long = clip4clip_frame_indices(750, 25.0, 12)
    assert len(long) == 12 and long[0] == 0 and long[-1] == 29 * 25  # first and last second kept
    # fractional segment bounds are truncated, as CLIP4Clip's int(s), int(e); equal ends take one more second
    assert clip4clip_frame_indices(3000, 30.0, 12, start_s=2.7, end_s=5.2).tolist() == [60, 90, 120, 150]
    assert clip4clip_frame_indices(3000, 30.0, 12, start_s=4.0, end_s=4.5).tolist() == [120, 150]
    assert clip4clip_frame_indices(3000, 30.0, 12, start_s=6, end_s=4).tolist() == [120, 150, 180]
    with pytest.raises(ValueError, match="frame rate"):
        clip4clip_frame_indices(100, 0.5, 12)


def test_max_seconds_reads_didemos_first_31_seconds():
    didemo = Clip4ClipSampling(max_frames=64, max_seconds=31)
    assert didemo.indices(30 * 60, 30.0, None, None).tolist() == clip4clip_loop(30 * 60, 30.0, 64, 1, 0, 31)
    assert len(didemo.indices(30 * 60, 30.0, None, None)) == 32  # seconds 0..31 of a 60 s video
    assert didemo.indices(30 * 20, 30.0, None, None).tolist() == list(range(0, 600, 30))  # a 20 s video: all
    assert len(Clip4ClipSampling(max_frames=64).indices(30 * 60, 30.0, None, None)) == 60


def test_decoders_take_the_sampling_in_place_of_the_rng():
    sampling = Clip4ClipSampling(max_frames=12)
    picked = plan_frame_indices(300, 30.0, 12, train=True, rng=sampling)
    assert picked.tolist() == list(range(0, 300, 30))  # not 12 segments: no rng, the same in eval
    assert plan_frame_indices(300, 30.0, 12, train=False, rng=sampling).tolist() == picked.tolist()
    with pytest.raises(VideoDecodeError, match="holds no frame"):
        plan_frame_indices(300, 30.0, 12, train=False, rng=sampling, start_s=20.0, end_s=30.0, path="v.mp4")


def test_pad_frames_zero_pads_and_masks():
    frames = np.full((3, 2, 2, 3), 7, np.uint8)
    padded, mask = pad_frames(frames, 5)
    assert padded.shape == (5, 2, 2, 3) and mask.dtype == np.uint8
    assert mask.tolist() == [1, 1, 1, 0, 0]
    assert (padded[:3] == 7).all() and (padded[3:] == 0).all()
    full, mask = pad_frames(np.ones((5, 2, 2, 3), np.uint8), 5)
    assert mask.tolist() == [1] * 5 and full.shape == (5, 2, 2, 3)
    with pytest.raises(ValueError):
        pad_frames(frames, 2)


class FileDecoder:
    """A decoder over fake files of known length at 30 fps: each frame is filled with (index % 250) + 1,
    read through the real ``plan_frame_indices`` (the dispatch the decord and PyAV decoders use)."""

    name = "fake"

    def __init__(self, lengths):
        self.lengths = lengths

    def decode(self, path, num_frames, size, train, rng=None, start_s=None, end_s=None):
        idx = plan_frame_indices(self.lengths[path], 30.0, num_frames, train, rng, start_s, end_s, path, self.name)
        return np.stack([np.full((size, size, 3), i % 250 + 1, np.uint8) for i in idx])


ARCH = "RT-Micro-ViT"
LENGTHS = {"short.mp4": 90, "long.mp4": 3000}  # 3 s and 100 s at 30 fps


def cfg(*overrides):
    return apply_overrides(Config(), [f"model.arch={ARCH}", "data.num_frames=6", "data.max_words=16",
                                      "data.frame_sampling=clip4clip", *overrides])


def batch(train, clips=(0, 1)):
    paths = np.asarray(["short.mp4", "long.mp4"], dtype=object)
    out = {"path": paths, "start_s": np.full(2, np.nan), "end_s": np.full(2, np.nan)}
    if train:
        out.update(clip=np.asarray(clips), sampling=np.zeros(2, np.int32), sample_seed=np.asarray([5, 6]),
                   caption=np.asarray(["a", "b"], dtype=object))
    else:
        out["video_index"] = np.asarray(clips)
    return out


def check_frames_and_mask(out):
    assert out["frame_mask"].dtype == np.uint8 and out["frame_mask"].shape == (2, 6)
    assert out["frame_mask"].tolist() == [[1, 1, 1, 0, 0, 0], [1] * 6]  # 3 s at 1 fps: 3 real frames
    short, long = out["frames"][0], out["frames"][1]
    assert [int(f[0, 0, 0]) for f in short[:3]] == [1, 31, 61] and not short[3:].any()  # zero padding
    picked = np.linspace(0, 99, 6, dtype=int) * 30 % 250 + 1
    assert [int(f[0, 0, 0]) for f in long] == picked.tolist()


@pytest.mark.parametrize("train", [True, False])
def test_train_and_eval_batches_carry_the_frame_mask(train):
    c = cfg()
    spec = DecodeSpec.from_config(c, image_size=8, train=train)
    assert FRAME_MASK in spec.columns
    out = DecodeClips(spec, decoder=FileDecoder(LENGTHS))(batch(train))
    check_frames_and_mask(out)
    dtypes = (train_batch_dtypes if train else eval_batch_dtypes)(c)
    assert dtypes["frame_mask"] == torch.uint8 and set(out) == set(dtypes)


def test_segments_sampling_has_no_frame_mask_column():
    c = cfg("data.frame_sampling=segments")
    spec = DecodeSpec.from_config(c, image_size=8, train=False)
    out = DecodeClips(spec, decoder=FileDecoder(LENGTHS))(batch(False))
    assert "frame_mask" not in out and "frame_mask" not in eval_batch_dtypes(c)
    assert out["frames"].shape == (2, 6, 8, 8, 3) and out["frames"][0].all()  # six frames of 90, repeated


def test_the_frame_cache_keeps_the_real_frames_and_the_mask_survives_a_hit(tmp_path):
    c = cfg("data.cache=frames")
    spec = DecodeSpec.from_config(c, image_size=8, train=True, cache_location=str(tmp_path))
    assert spec.cache_samplings == 1  # the same frames every epoch: one sampling
    decoder = FileDecoder(LENGTHS)
    first = DecodeClips(spec, decoder=decoder)(batch(True))
    again = DecodeClips(spec, decoder=FileDecoder({}))(batch(True))  # every clip from the cache
    assert again["cache_hit"].all()
    check_frames_and_mask(first)
    check_frames_and_mask(again)


def test_the_cache_key_includes_the_sampling_mode():
    rows = [ClipRow("v", "/nonexistent/v.mp4", ("a",), "train")]
    key = {mode: frame_cache.cache_key(frame_cache.fingerprint(cfg(f"data.frame_sampling={mode}"), rows, "train",
                                                               8, True)) for mode in ("segments", "clip4clip")}
    assert key["segments"] != key["clip4clip"]
    for other in ("data.sample_fps=2", "data.max_seconds=31"):
        changed = frame_cache.fingerprint(cfg(other), rows, "train", 8, True)
        assert frame_cache.cache_key(changed) != key["clip4clip"], other
