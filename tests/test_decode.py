"""Frame sampling, resize/crop and the decord / PyAV decoders on real H.264 clips."""

from __future__ import annotations

import numpy as np
import pytest

from raytrain.data.decode import (
    DecordDecoder,
    PyAVDecoder,
    VideoDecodeError,
    VideoDecoder,
    make_decoder,
    plan_frame_indices,
    resize_center_crop,
    sample_frame_indices,
    segment_frame_range,
)
from raytrain.data.synth import encode_h264, render_frames, sample_clip_spec

DECODER_NAMES = ["decord", "pyav"]
RED, BLUE = (220, 30, 30), (30, 60, 230)
FPS = 25


# --------------------------------------------------------------------------------------------------
# sample_frame_indices


def test_eval_indices_are_segment_centres():
    idx = sample_frame_indices(10, 5, train=False)
    assert idx.dtype == np.int64
    assert idx.tolist() == [1, 3, 5, 7, 9]
    assert sample_frame_indices(12, 3, train=False).tolist() == [2, 6, 10]
    assert sample_frame_indices(100, 1, train=False).tolist() == [50]
    # over a sub-range [first, last]
    assert sample_frame_indices(100, 5, train=False, first=20, last=29).tolist() == [21, 23, 25, 27, 29]


def test_train_indices_fall_inside_their_segments():
    n, k = 37, 8
    bounds = np.arange(k + 1) * (n / k)
    seen = set()
    for seed in range(200):
        idx = sample_frame_indices(n, k, train=True, rng=np.random.default_rng(seed))
        assert idx.dtype == np.int64 and idx.shape == (k,)
        assert np.all(np.diff(idx) >= 0)
        for i, j in enumerate(idx):
            assert np.floor(bounds[i]) <= j <= np.ceil(bounds[i + 1]) - 1
        seen.add(tuple(idx.tolist()))
    assert len(seen) > 50   # really random
    # every frame of a segment can be drawn
    firsts = {int(sample_frame_indices(40, 4, True, np.random.default_rng(s))[0]) for s in range(300)}
    assert firsts == set(range(10))


def test_train_indices_respect_sub_range():
    for seed in range(50):
        idx = sample_frame_indices(300, 6, True, np.random.default_rng(seed), first=100, last=159)
        assert idx.min() >= 100 and idx.max() <= 159
        assert np.all(np.diff(idx) >= 0)


@pytest.mark.parametrize("train", [False, True])
def test_short_videos_repeat_indices(train):
    idx = sample_frame_indices(3, 8, train=train, rng=np.random.default_rng(0))
    assert idx.shape == (8,)
    assert idx.min() >= 0 and idx.max() <= 2
    assert np.all(np.diff(idx) >= 0)
    assert len(set(idx.tolist())) < 8
    assert sample_frame_indices(1, 4, train=train, rng=np.random.default_rng(0)).tolist() == [0, 0, 0, 0]
    if not train:
        assert set(idx.tolist()) == {0, 1, 2}


def test_sampling_is_deterministic_given_rng():
    a = sample_frame_indices(500, 16, True, np.random.default_rng(42))
    b = sample_frame_indices(500, 16, True, np.random.default_rng(42))
    c = sample_frame_indices(500, 16, True, np.random.default_rng(43))
    assert a.tolist() == b.tolist()
    assert a.tolist() != c.tolist()


def test_sampling_bad_arguments():
    with pytest.raises(ValueError, match="num_video_frames"):
        sample_frame_indices(0, 4, train=False)
    with pytest.raises(ValueError, match="num_samples"):
        sample_frame_indices(10, 0, train=False)
    with pytest.raises(ValueError, match="rng"):
        sample_frame_indices(10, 4, train=True)
    with pytest.raises(ValueError, match="range"):
        sample_frame_indices(10, 4, train=False, first=5, last=12)


def test_segment_frame_range():
    assert segment_frame_range(50, 10.0) == (0, 49)
    assert segment_frame_range(50, 10.0, 1.0, 2.0) == (10, 19)        # start <= i / fps < end
    assert segment_frame_range(50, 10.0, 1.05, None) == (11, 49)
    assert segment_frame_range(50, 10.0, None, 99.0) == (0, 49)        # clamped to the video
    assert segment_frame_range(50, 10.0, 0.0, 0.05) == (0, 0)
    with pytest.raises(VideoDecodeError, match=r"clips/a\.mp4.*segment \[7\.0, 8\.0\]"):
        segment_frame_range(50, 10.0, 7.0, 8.0, path="clips/a.mp4")
    with pytest.raises(VideoDecodeError, match="no frame"):
        segment_frame_range(50, 10.0, 1.01, 1.09, path="clips/a.mp4")
    idx = plan_frame_indices(50, 10.0, 4, train=False, start_s=1.0, end_s=2.0)
    assert idx.tolist() == [11, 13, 16, 18]


# --------------------------------------------------------------------------------------------------
# resize_center_crop


def test_resize_center_crop_shapes_and_colour():
    colour = np.array([37, 200, 91], dtype=np.uint8)
    for (h, w), size in [((120, 160), 112), ((120, 160), 224), ((31, 17), 8), ((64, 64), 64)]:
        frames = np.broadcast_to(colour, (2, h, w, 3)).copy()
        out = resize_center_crop(frames, size)
        assert out.shape == (2, size, size, 3) and out.dtype == np.uint8
        assert np.all(out == colour), (h, w, size)


def test_resize_center_crop_keeps_the_centre():
    frames = np.zeros((1, 200, 600, 3), dtype=np.uint8)
    frames[:, :, 200:400] = 255                 # the central square is white, the sides black
    out = resize_center_crop(frames, 50)
    assert out.shape == (1, 50, 50, 3)
    assert out[:, :, 2:-2].min() >= 250         # only the outermost columns may blend
    tall = np.zeros((1, 300, 100, 3), dtype=np.uint8)
    tall[:, 100:200] = 255
    assert resize_center_crop(tall, 100).min() == 255   # no resize needed: pure crop


def test_resize_center_crop_rejects_bad_input():
    with pytest.raises(ValueError):
        resize_center_crop(np.zeros((4, 4, 3), np.uint8), 2)
    with pytest.raises(ValueError):
        resize_center_crop(np.zeros((1, 4, 4, 3), np.uint8), 0)


# --------------------------------------------------------------------------------------------------
# decoders on real clips


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    root = tmp_path_factory.mktemp("clips")
    spec = sample_clip_spec("s", ("circle", "red"), np.random.default_rng(5))
    synth_frames = render_frames(spec)
    synth_path = encode_h264(synth_frames, root / "synth.mp4", spec.fps)
    # 4 s at 25 fps: red for the first 2 s (frames 0-49), blue for the last 2 s (frames 50-99)
    two = np.empty((100, 120, 160, 3), dtype=np.uint8)
    two[:50] = RED
    two[50:] = BLUE
    two_path = encode_h264(two, root / "red_then_blue.mp4", FPS)
    trunc = root / "truncated.mp4"
    trunc.write_bytes(synth_path.read_bytes()[:1000])
    text = root / "notes.mp4"
    text.write_text("this is not a video\n")
    return {"synth": str(synth_path), "synth_frames": synth_frames, "synth_fps": spec.fps,
            "two": str(two_path), "truncated": str(trunc), "text": str(text),
            "missing": str(root / "missing.mp4")}


def test_make_decoder():
    assert isinstance(make_decoder("decord"), DecordDecoder)
    assert isinstance(make_decoder("pyav"), PyAVDecoder)
    for name in DECODER_NAMES:
        d = make_decoder(name)
        assert isinstance(d, VideoDecoder) and d.name == name
    with pytest.raises(ValueError, match=r"decord.*pyav"):
        make_decoder("ffmpeg-cli")


@pytest.mark.parametrize("name", DECODER_NAMES)
def test_decoder_output_matches_source_frames(clips, name):
    frames = clips["synth_frames"]
    out = make_decoder(name).decode(clips["synth"], 8, 112, train=False)
    assert out.shape == (8, 112, 112, 3) and out.dtype == np.uint8
    expected = resize_center_crop(frames[sample_frame_indices(len(frames), 8, train=False)], 112)
    assert np.abs(out.astype(np.int16) - expected).mean() < 10


@pytest.mark.parametrize("name", DECODER_NAMES)
def test_train_decode_is_deterministic(clips, name):
    d = make_decoder(name)
    a = d.decode(clips["synth"], 6, 64, train=True, rng=np.random.default_rng(9))
    b = d.decode(clips["synth"], 6, 64, train=True, rng=np.random.default_rng(9))
    assert a.shape == (6, 64, 64, 3)
    assert np.array_equal(a, b)


def test_decord_and_pyav_agree(clips):
    a = make_decoder("decord").decode(clips["synth"], 8, 96, train=False)
    b = make_decoder("pyav").decode(clips["synth"], 8, 96, train=False)
    assert np.abs(a.astype(np.int16) - b).mean() < 10
    c = make_decoder("decord").decode(clips["two"], 4, 32, train=False)
    d = make_decoder("pyav").decode(clips["two"], 4, 32, train=False)
    assert np.abs(c.astype(np.int16) - d).mean() < 10


def _is(frames: np.ndarray, colour) -> bool:
    mean = frames.reshape(-1, 3).astype(float).mean(axis=0)
    return bool(np.abs(mean - np.array(colour)).max() < 25)


@pytest.mark.parametrize("name", DECODER_NAMES)
def test_segment_restricts_sampling(clips, name):
    d = make_decoder(name)
    path = clips["two"]
    whole = d.decode(path, 4, 32, train=False)
    assert _is(whole[:2], RED) and _is(whole[2:], BLUE)
    early = d.decode(path, 6, 32, train=False, end_s=1.9)
    late = d.decode(path, 6, 32, train=False, start_s=2.1, end_s=3.9)
    assert all(_is(f, RED) for f in early)
    assert all(_is(f, BLUE) for f in late)
    for seed in range(3):
        rng = np.random.default_rng(seed)
        assert all(_is(f, BLUE) for f in d.decode(path, 5, 32, train=True, rng=rng, start_s=2.0))
    # a segment past the end of the 4 s file holds no frame
    with pytest.raises(VideoDecodeError) as err:
        d.decode(path, 4, 32, train=False, start_s=10.0, end_s=12.0)
    assert path in str(err.value) and "10.0" in str(err.value)


@pytest.mark.parametrize("name", DECODER_NAMES)
@pytest.mark.parametrize("which", ["truncated", "text", "missing"])
def test_unreadable_files_raise_decode_error(clips, name, which):
    path = clips[which]
    with pytest.raises(VideoDecodeError) as err:
        make_decoder(name).decode(path, 4, 32, train=False)
    msg = str(err.value)
    assert f"'{path}'" in msg and name in msg
    assert isinstance(err.value, RuntimeError)


@pytest.mark.parametrize("name", DECODER_NAMES)
def test_several_samplings_from_one_open_equal_separate_decodes(clips, name):
    d = make_decoder(name)
    seeds = [3, 4, 5]
    many = d.decode_samplings(clips["synth"], 5, 48, True, [np.random.default_rng(s) for s in seeds])
    assert many.shape == (3, 5, 48, 48, 3) and many.dtype == np.uint8
    for k, s in enumerate(seeds):
        assert np.array_equal(many[k], d.decode(clips["synth"], 5, 48, train=True, rng=np.random.default_rng(s)))
    assert not np.array_equal(many[0], many[1])  # different offsets, different frames
    centre = d.decode_samplings(clips["synth"], 4, 32, False, [None])
    assert np.array_equal(centre[0], d.decode(clips["synth"], 4, 32, train=False))


def test_unpad_rows_cuts_the_row_padding_off():
    from raytrain.data.decoders.decord_decoder import unpad_rows

    frame = np.random.default_rng(0).integers(0, 256, (5, 96, 3), dtype=np.uint8)
    padded = np.zeros((5, 128 * 3), np.uint8)  # rows padded from 288 to 384 bytes
    padded[:, : 96 * 3] = frame.reshape(5, -1)
    assert np.array_equal(unpad_rows(padded.reshape(5, 96, 4)), frame)
    assert unpad_rows(frame) is frame


@pytest.mark.parametrize("width", [48, 96, 144, 160])
def test_decord_reads_widths_whose_rows_ffmpeg_pads(tmp_path, width):
    # On AVX-512 CPUs decord2 3.4.0 refuses get_batch for these widths (and shapes single frames
    # wrongly); elsewhere they read directly. Either way: PyAV's frames, exactly.
    frames = np.random.default_rng(width).integers(0, 256, (6, 32, width, 3), dtype=np.uint8)
    path = encode_h264(frames, tmp_path / f"w{width}.mp4", 10)
    a = make_decoder("decord").decode(str(path), 4, 32, train=False)
    b = make_decoder("pyav").decode(str(path), 4, 32, train=False)
    assert a.shape == (4, 32, 32, 3) and np.array_equal(a, b)
