"""Every decoder on a generated corpus of formats (raytrain/data/video_corpus.py): for the same
indices, the frames the ffmpeg program presents (autorotated, edit lists applied), checked against the
frame-index-coded pattern each clip shows and, where the ffmpeg program is installed, its own decode.
Broken files are a VideoDecodeError naming the file, from every decoder."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from raytrain.data import video_corpus as vc
from raytrain.data.decode import (
    AutoDecoder,
    PyAVDecoder,
    SegmentError,
    VideoDecodeError,
    make_decoder,
    resize_center_crop,
    sample_frame_indices,
)

CASES = {c.name: c for c in vc.CASES}


def _torchcodec_usable() -> bool:
    try:
        make_decoder("torchcodec")
    except ImportError:
        return False
    return True


DECODERS = ["decord", "pyav", "auto",
            pytest.param("torchcodec", marks=pytest.mark.skipif(
                not _torchcodec_usable(), reason="torchcodec or FFmpeg's shared libraries not installed"))]
# decord may refuse a file (then data.decoder=auto reads it with PyAV) but must never return wrong frames
MAY_REFUSE = {"decord"}


@pytest.fixture(scope="session")
def corpus(tmp_path_factory):
    return vc.write_corpus(tmp_path_factory.mktemp("video_corpus"))


@pytest.fixture(scope="session")
def reference(corpus):
    cache = {}

    def frames(name):  # None without the ffmpeg program: then only the pattern is checked
        if not vc.has_ffmpeg_cli():
            return None
        if name not in cache:
            cache[name] = vc.ffmpeg_frames(corpus[name])
        return cache[name]
    return frames


def _indices(n: int) -> list[int]:
    return sorted(set(sample_frame_indices(n, 12, train=False).tolist()))


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("name", DECODERS)
def test_presented_frames_match_the_pattern_and_the_ffmpeg_program(corpus, reference, name, case):
    c = CASES[case]
    status, detail = vc.check_case(make_decoder(name), corpus[case], c, reference(case))
    if status == "refused" and name in MAY_REFUSE:
        pytest.skip(f"{name} cannot read {case}: {detail} (data.decoder=auto reads it with PyAV)")
    assert status == "pass", detail
    out = make_decoder(name).decode(str(corpus[case]), 12, 32, train=False)  # 12 even from a 1-frame clip
    assert out.shape == (12, 32, 32, 3) and out.dtype == np.uint8


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("name", ["pyav", "auto"])
def test_public_decode_equals_the_ffmpeg_program(corpus, reference, name, case):
    c = CASES[case]
    ref = reference(case)
    if ref is None:
        pytest.skip("the ffmpeg program is not installed: no reference decode (the pattern is checked)")
    assert len(ref) == c.presented
    idx = _indices(len(ref))
    decoder = make_decoder(name)
    out = decoder.decode(str(corpus[case]), len(idx), 32, train=False)  # same planning, every decoder
    picked = sample_frame_indices(len(ref), len(idx), train=False)
    expected = resize_center_crop(ref[picked], 32)
    assert np.abs(out.astype(np.int16) - expected).mean() < 3


@pytest.mark.parametrize("kind", vc.BROKEN)
@pytest.mark.parametrize("name", DECODERS)
def test_broken_files_raise_decode_error_naming_the_file(corpus, name, kind):
    path = str(corpus[f"broken_{kind}"])
    with pytest.raises(VideoDecodeError) as err:
        make_decoder(name).decode(path, 4, 32, train=False)
    assert f"'{path}'" in str(err.value)


def test_pyav_seeks_instead_of_decoding_from_the_start(corpus):
    video = PyAVDecoder()._open(str(corpus["long_3min"]))
    with video:
        n = video.num_frames
        frames = video.read(np.array([n // 2, n - 1]))
        decoded = video.decoded
    assert [vc.identify(f)[0] for f in frames] == [n // 2, n - 1]
    assert decoded <= 2 * 50 + 2  # at most a GOP (g=50) before each frame, not the 1800 frames before


class _Failing:
    name = "fast"

    def __init__(self, error=VideoDecodeError):
        self.calls, self.error = 0, error

    def decode_samplings(self, path, *args):
        self.calls += 1
        raise self.error(path, self.name, "cannot read this one")


def test_auto_falls_back_once_per_file_counted_and_logged(corpus, capsys):
    primary = _Failing()
    auto = AutoDecoder(primary, PyAVDecoder())
    path = str(corpus["h264"])
    a = auto.decode(path, 4, 32, train=False)
    b = auto.decode(path, 4, 32, train=False)
    assert np.array_equal(a, b) and a.shape == (4, 32, 32, 3)
    assert primary.calls == 1 and auto.fallback_count == 1
    assert auto.fallback_files == {path: "cannot read this one"}
    log = capsys.readouterr().out
    assert log.count("fallback #1") == 1 and f"'{path}'" in log and "cannot read this one" in log
    with pytest.raises(VideoDecodeError, match=r"fast: cannot read this one; pyav: .*empty"):
        auto.decode(str(corpus["broken_zero_bytes"]), 4, 32, train=False)
    assert auto.fallback_count == 2


def test_auto_does_not_fall_back_for_an_empty_segment(corpus):
    primary = _Failing(SegmentError)
    auto = AutoDecoder(primary, PyAVDecoder())
    with pytest.raises(SegmentError):
        auto.decode(str(corpus["h264"]), 4, 32, train=False)
    assert auto.fallback_count == 0


def test_torchcodec_missing_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "torchcodec", None)
    monkeypatch.setitem(sys.modules, "torchcodec.decoders", None)
    for name in ("torchcodec", "torchcodec-cuda"):
        with pytest.raises(ImportError, match=r"raytrain\[torchcodec\].*FFmpeg"):
            make_decoder(name)


def test_torchcodec_after_decord_in_one_process_is_refused(monkeypatch):
    monkeypatch.setitem(sys.modules, "decord", object())
    monkeypatch.delitem(sys.modules, "torchcodec", raising=False)
    with pytest.raises(ImportError, match="decord was loaded first"):
        make_decoder("torchcodec")


def test_decord_loads_no_cuda_library(corpus):
    """decord2 dlopens every library of the nvidia wheels at import (+~400 MB per process); raytrain
    hides them while decord loads: decoding with decord maps no more of them (in a fresh process)."""
    import importlib.util
    import subprocess

    decord_spec = importlib.util.find_spec("decord")
    if importlib.util.find_spec("nvidia") is None or decord_spec is None:
        pytest.skip("no nvidia wheels in this venv: nothing for decord2 to preload")
    code = ("from raytrain.data.decode import make_decoder; "  # torch itself maps a few nvidia libraries
            "n = lambda: sum('/nvidia/' in line for line in open('/proc/self/maps')); before = n(); "
            f"make_decoder('decord').decode({str(corpus['h264'])!r}, 4, 32, train=False); "
            "import decord; print(decord.__version__, n() - before)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    if not out[0].startswith("3."):
        pytest.skip(f"decord {out[0]} is not decord2 (it preloads nothing)")
    assert out[1] == "0"
