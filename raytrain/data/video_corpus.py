"""A tiny corpus of video formats for the decoder tests and ``bench/decoder_formats.py``.

Every clip shows a frame-index-coded pattern (:func:`pattern`): a 4x4 grid whose first 12 cells hold
the frame index in binary (white = 1, black = 0) and whose last row holds colour marks (red, green,
blue, grey) so a swapped channel order, a flip or a missing rotation shows. A decoded frame can be
checked without any other decoder: :func:`identify` says which frame index (and orientation) it shows.
Every clip is written with PyAV: rotation metadata into the mp4's track header (``tkhd`` display
matrix), an edit list by muxing the first frames before time 0, so the corpus needs no ffmpeg program;
it is needed only for the reference decode (:func:`ffmpeg_frames`). Broken files are made from a good
clip.
"""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np

os.environ.setdefault("SVT_LOG", "1")  # SVT-AV1: errors only
GRID = 4
MARKS = ((220, 30, 30), (30, 200, 40), (30, 50, 220), (128, 128, 128))


def pattern(index: int, height: int, width: int, gray: bool = False) -> np.ndarray:
    """``(height, width, 3)`` uint8: frame ``index`` as 12 binary cells + 4 colour marks."""
    if not 0 <= index < 4096:
        raise ValueError(f"the pattern holds frame indices 0..4095, not {index}")
    img = np.full((height, width, 3), 128, np.uint8)
    ys = np.linspace(0, height, GRID + 1).round().astype(int)
    xs = np.linspace(0, width, GRID + 1).round().astype(int)
    for cell in range(GRID * GRID):
        r, c = divmod(cell, GRID)
        if cell < 12:
            colour = (235, 235, 235) if (index >> cell) & 1 else (16, 16, 16)
        else:
            colour = MARKS[cell - 12]
        img[ys[r]:ys[r + 1], xs[c]:xs[c + 1]] = colour
    if gray:
        img[...] = img.mean(axis=-1, keepdims=True).astype(np.uint8)
    return img


def rotate(frame: np.ndarray, degrees: int) -> np.ndarray:
    """``frame`` turned clockwise by ``degrees`` (what a player shows for that rotation metadata)."""
    return np.ascontiguousarray(np.rot90(frame, k=-(degrees // 90) % 4))


def identify(frame: np.ndarray, rotation: int = 0, gray: bool = False) -> tuple[int, float]:
    """``(index, mean abs error)``: the frame index the pattern ``frame`` (H, W, 3) shows when turned
    back by ``rotation``, read from its cells, and how far ``frame`` is from that pattern (a wrong
    orientation, channel order or a garbage frame gives a large error)."""
    upright = rotate(frame, -rotation % 360)
    h, w = upright.shape[:2]
    ys = np.linspace(0, h, GRID + 1)
    xs = np.linspace(0, w, GRID + 1)
    index = 0
    for cell in range(12):
        r, c = divmod(cell, GRID)
        y, x = int((ys[r] + ys[r + 1]) / 2), int((xs[c] + xs[c + 1]) / 2)
        if upright[y, x].astype(float).mean() > 128:
            index |= 1 << cell
    err = float(np.abs(upright.astype(np.int16) - pattern(index, h, w, gray)).mean())
    return index, err


@dataclass(frozen=True)
class Case:
    """One clip: how it is written and which presented frames it holds."""

    name: str
    ext: str = "mp4"
    codec: str = "libx264"
    size: tuple[int, int] = (64, 96)  # (height, width) as stored
    frames: int = 20
    fps: int = 25
    pix_fmt: str = "yuv420p"
    options: dict = field(default_factory=dict)
    rotation: int = 0  # clockwise degrees a player turns the stored frames
    hidden: int = 0  # leading frames an edit list hides
    vfr: bool = False
    start_s: float = 0.0
    audio_first: bool = False
    gray: bool = False

    @property
    def presented(self) -> int:
        return self.frames - self.hidden


X264 = {"preset": "ultrafast", "crf": "18", "threads": "1"}
CASES = [
    Case("h264"),
    Case("h264_10bit", pix_fmt="yuv420p10le", options={"crf": "18", "preset": "fast"}),
    Case("h264_bframes", frames=40, options={"preset": "medium", "bf": "8", "b-pyramid": "normal",
                                              "crf": "18", "g": "20"}),
    Case("hevc_mkv", ext="mkv", codec="libx265", options={"crf": "18", "preset": "ultrafast",
                                                          "x265-params": "log-level=none"}),
    Case("vp8_webm", ext="webm", codec="libvpx", options={"crf": "4", "b": "2M"}),
    Case("vp9_webm", ext="webm", codec="libvpx-vp9", options={"crf": "10", "b": "0", "deadline": "realtime"}),
    Case("av1_mp4", codec="libsvtav1", size=(64, 64), options={"crf": "20", "preset": "12"}),
    Case("mpeg4_avi", ext="avi", codec="mpeg4", options={"qscale": "2"}),
    Case("msmpeg4v3_avi", ext="avi", codec="msmpeg4", options={"qscale": "2"}),
    Case("mjpeg_avi", ext="avi", codec="mjpeg", pix_fmt="yuvj420p", options={"qscale": "2"}),
    Case("prores_mov", ext="mov", codec="prores_ks", pix_fmt="yuv422p10le"),
    Case("ffv1_gray_mkv", ext="mkv", codec="ffv1", pix_fmt="gray", gray=True),
    Case("h264_mpegts", ext="ts"),
    Case("rotate_90", rotation=90),
    Case("rotate_180", rotation=180),
    Case("rotate_270", rotation=270),
    Case("odd_yuv444", size=(47, 63), pix_fmt="yuv444p"),
    Case("portrait", size=(96, 64)),
    Case("narrow_48", size=(64, 48)),
    Case("one_frame", frames=1),
    Case("three_frames", frames=3),
    Case("vfr", frames=30, vfr=True),
    Case("fps120", frames=60, fps=120),
    Case("long_3min", frames=1800, fps=10, options={**X264, "g": "50"}),
    Case("audio_stream0", ext="mkv", audio_first=True),
    Case("start_10s_mkv", ext="mkv", start_s=10.0),
    Case("edit_list", frames=100, hidden=25, options={**X264, "g": "100", "bf": "0"}),
]
# bench/decoder_formats.py only: five minutes at 320x240, a keyframe every 10 s, as downloaded clips are
# (13 fps: the pattern holds 12 bits, so a clip has at most 4096 distinguishable frames)
LONG_BENCH = Case("long_5min_320x240", size=(240, 320), frames=3900, fps=13, options={**X264, "g": "130"})
BROKEN = ["truncated", "zero_bytes", "text", "random_bytes", "corrupt_middle", "audio_only"]


def has_ffmpeg_cli() -> bool:
    return shutil.which("ffmpeg") is not None


def _frame_pts(case: Case) -> tuple[list[int], Fraction]:
    """Presentation timestamps of the written frames and their time base."""
    if case.vfr:  # 40, 80 or 120 ms apart, deterministic
        steps = [40, 80, 120]
        pts = np.cumsum([0] + [steps[i % 3] for i in range(case.frames - 1)])
        return [int(p) for p in pts], Fraction(1, 1000)
    offset = round(case.start_s * case.fps)
    return [offset + i for i in range(case.frames)], Fraction(1, case.fps)


def _encode(case: Case, path: Path, audio: bool = False) -> None:
    import av

    h, w = case.size
    fmt = {"ts": "mpegts", "mkv": "matroska"}.get(case.ext)
    pts, tb = _frame_pts(case)
    with av.open(str(path), "w", format=fmt) as c:
        a = c.add_stream("aac", rate=8000) if (case.audio_first or audio) else None
        s = c.add_stream(case.codec, rate=case.fps)
        s.width, s.height, s.pix_fmt = w, h, case.pix_fmt
        s.time_base = tb
        s.codec_context.time_base = tb
        s.thread_count = 1
        s.options = dict(case.options or X264) if case.codec == "libx264" else dict(case.options)
        for i in range(case.frames):
            img = pattern(i, h, w, case.gray)
            vf = (av.VideoFrame.from_ndarray(img[..., 0], format="gray") if case.gray
                  else av.VideoFrame.from_ndarray(img, format="rgb24"))
            vf.pts, vf.time_base = pts[i], tb
            _mux(c, s.encode(vf), case)
        _mux(c, s.encode(), case)
        if a is not None:
            _mux_silence(av, c, a, seconds=case.frames / case.fps)


def _mux(container, packets, case: Case) -> None:
    """Mux ``packets``; with ``case.hidden`` shifted so the first ``hidden`` frames fall before time 0,
    which the mp4 muxer writes as an edit list that starts at frame ``hidden`` (100 samples, 75 shown)."""
    for packet in packets:
        if case.hidden:
            shift = int(Fraction(case.hidden, case.fps) / packet.time_base)
            packet.pts -= shift
            packet.dts -= shift
        container.mux(packet)


def _mux_silence(av, container, stream, seconds: float) -> None:
    n = 1024
    for k in range(max(1, int(seconds * stream.rate / n))):
        af = av.AudioFrame.from_ndarray(np.zeros((1, n), np.float32), format="fltp", layout="mono")
        af.sample_rate, af.pts = stream.rate, k * n
        container.mux(stream.encode(af))
    container.mux(stream.encode())


def _set_rotation(path: Path, degrees: int) -> None:
    """Write the clockwise ``degrees`` display matrix into the video track's ``tkhd`` box (as
    ``ffmpeg -metadata:s:v rotate=N`` does); the stored frames are left as they are."""
    cos, sin = {90: (0, 1), 180: (-1, 0), 270: (0, -1)}[degrees]
    one = 1 << 16
    matrix = struct.pack(">9i", cos * one, sin * one, 0, -sin * one, cos * one, 0, 0, 0, 1 << 30)
    data = bytearray(path.read_bytes())
    at = data.find(b"tkhd")
    if at < 0:
        raise ValueError(f"{path}: no tkhd box")
    version = data[at + 4]
    body = at + 8 + (32 if version == 1 else 20) + 16  # times, track id, duration, reserved, layer...
    data[body:body + 36] = matrix
    path.write_bytes(bytes(data))


def write_case(case: Case, root: str | os.PathLike) -> Path:
    path = Path(root) / f"{case.name}.{case.ext}"
    _encode(case, path)
    if case.rotation:
        _set_rotation(path, case.rotation)
    return path


def write_broken(kind: str, root: str | os.PathLike, good: Path) -> Path:
    """A file no decoder should read, made from the good clip ``good`` where that helps."""
    root = Path(root)
    path = root / f"broken_{kind}.mp4"
    data = good.read_bytes()
    rng = np.random.default_rng(0)
    if kind == "truncated":
        path.write_bytes(data[: len(data) // 3])
    elif kind == "zero_bytes":
        path.write_bytes(b"")
    elif kind == "text":
        path.write_text("this is not a video\n" * 20)
    elif kind == "random_bytes":
        path.write_bytes(rng.integers(0, 256, 4096, dtype=np.uint8).tobytes())
    elif kind == "corrupt_middle":
        buf = bytearray(data)
        lo, hi = len(buf) // 3, 2 * len(buf) // 3
        buf[lo:hi] = rng.integers(0, 256, hi - lo, dtype=np.uint8).tobytes()
        path.write_bytes(bytes(buf))
    elif kind == "audio_only":
        import av

        path = root / "broken_audio_only.m4a"
        with av.open(str(path), "w", format="mp4") as c:
            _mux_silence(av, c, c.add_stream("aac", rate=8000), seconds=1.0)
    else:
        raise ValueError(f"unknown broken kind '{kind}'; valid: {BROKEN}")
    return path


def write_corpus(root: str | os.PathLike, cases=None) -> dict[str, Path]:
    """Write every case and every broken file under ``root``; ``{name: path}``."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    out = {c.name: write_case(c, root) for c in (cases or CASES)}
    good = out.get("h264") or write_case(CASES[0], root)
    out.update({f"broken_{k}": write_broken(k, root, good) for k in BROKEN})
    return out


def ffmpeg_frames(path: str | os.PathLike) -> np.ndarray:
    """``(N, H, W, 3)`` uint8 RGB: every presented frame as the ffmpeg program decodes it (autorotated,
    one output frame per decoded frame: ``-fps_mode passthrough``)."""
    probe = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries",
                            "stream=width,height:stream_side_data=rotation:stream_tags=rotate",
                            "-of", "default=nw=1", str(path)], capture_output=True, text=True, check=True)
    info = dict(line.split("=", 1) for line in probe.stdout.split() if "=" in line)
    w, h = int(info["width"]), int(info["height"])
    rot = int(float(info.get("rotation", info.get("rotate", 0)))) % 180
    if rot:
        w, h = h, w
    raw = subprocess.run(["ffmpeg", "-v", "error", "-i", str(path), "-map", "0:v:0", "-fps_mode", "passthrough",
                          "-f", "rawvideo", "-pix_fmt", "rgb24", "-"], capture_output=True, check=True).stdout
    return np.frombuffer(raw, np.uint8).reshape(-1, h, w, 3)


def _presented(decoder, path: str, indices) -> tuple[int, np.ndarray]:
    video = decoder._open(path)
    with video:
        return video.num_frames, video.read(np.asarray(indices))


def check_case(decoder, path: str | os.PathLike, case: Case, reference: np.ndarray | None = None) -> tuple[str, str]:
    """``(status, detail)`` of ``decoder`` (an ``IndexedDecoder`` or ``AutoDecoder``) on a corpus clip:
    ``pass`` when it presents ``case.presented`` frames and the 12 sampled ones (full size) show the
    right frame index the right way up (and, with ``reference`` from :func:`ffmpeg_frames`, are within
    3 grey levels of the ffmpeg program's on average); ``refused`` when it raises a VideoDecodeError
    (the file is then unreadable to it, never silently wrong); ``FAIL`` otherwise."""
    from raytrain.data.decode import VideoDecodeError, sample_frame_indices

    path = str(path)
    inner = getattr(decoder, "primary", decoder)
    try:
        _presented(inner, path, [0])
    except Exception as exc:  # noqa: BLE001 - any failure to open: does the public decode refuse it?
        if inner is decoder:
            try:
                decoder.decode(path, 12, 32, train=False)
            except VideoDecodeError:
                return "refused", str(exc).splitlines()[0][:160]
            return "FAIL", f"_open failed ({exc}) but decode() returned frames"
        inner = decoder.fallback
    try:
        n, _ = _presented(inner, path, [0])
        idx = sorted(set(sample_frame_indices(n, 12, train=False).tolist()))
        _, frames = _presented(inner, path, idx)
    except Exception as exc:  # noqa: BLE001 - any failure here is the decoder's FAIL, reported
        return "FAIL", f"{type(exc).__name__}: {str(exc).splitlines()[0][:160]}"
    if n != case.presented:
        return "FAIL", f"{n} frames where a player shows {case.presented}"
    got = [identify(f, case.rotation, case.gray) for f in frames]
    want = [case.hidden + i for i in idx]
    if [i for i, _ in got] != want or max(e for _, e in got) >= 12:
        return "FAIL", f"frames {[i for i, _ in got][:6]} (pattern error {max(e for _, e in got):.1f}) where {want[:6]}"
    if reference is not None:
        if len(reference) != n or reference.shape[1:] != frames.shape[1:]:
            return "FAIL", f"ffmpeg presents {reference.shape}, the decoder {n} x {frames.shape[1:]}"
        diff = float(np.abs(frames.astype(np.int16) - reference[idx]).mean())
        if diff >= 3:
            return "FAIL", f"mean abs difference to the ffmpeg program {diff:.2f}"
        return "pass", f"ffmpeg diff {diff:.2f}"
    return "pass", "pattern"
