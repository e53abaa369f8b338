"""PyAV: FFmpeg's libraries through their Python binding (FFmpeg 8 inside PyAV's wheels)."""

from __future__ import annotations

import numpy as np

from raytrain.data.decoders.base import IndexedDecoder, VideoDecodeError


def clockwise_rotation(frame) -> int:
    """The clockwise turn (0, 90, 180, 270) a player gives ``frame`` (its display matrix side data;
    PyAV's ``rotation`` is counter-clockwise, as FFmpeg's ``av_display_rotation_get``)."""
    ccw = getattr(frame, "rotation", 0) or 0
    return round(-float(ccw) / 90.0) % 4 * 90


def presented_rgb(frame) -> np.ndarray:
    """``(H, W, 3)`` uint8 RGB of a decoded frame, turned as ffmpeg's autorotate turns it."""
    rgb = frame.to_ndarray(format="rgb24")
    turn = clockwise_rotation(frame)
    return np.ascontiguousarray(np.rot90(rgb, k=-turn // 90)) if turn else rgb


class _PyAVVideo:
    """The first video stream of a file, indexed by demuxing (no decoding): the presented frames are
    the packets an edit list does not discard, in presentation (pts) order, so frame ``i`` has a known
    timestamp; reads seek to the keyframe before a wanted frame when that skips decoding, otherwise
    they decode on. Files whose packets carry no timestamps are read sequentially."""

    def __init__(self, path: str, name: str):
        import av

        self.path, self.name = path, name
        self.container = av.open(path)
        if not self.container.streams.video:
            self.container.close()
            raise VideoDecodeError(path, name, "the file has no video stream")
        self.stream = self.container.streams.video[0]
        self.stream.thread_count = 1
        rate = self.stream.average_rate or self.stream.guessed_rate or self.stream.base_rate
        self.fps = float(rate) if rate else None
        pts, keys = [], []
        for packet in self.container.demux(self.stream):
            if packet.size == 0:
                continue
            if packet.is_keyframe and packet.pts is not None:  # an edit list's hidden keyframe is a seek point too
                keys.append(packet.pts)
            if not packet.is_discard:
                pts.append(packet.pts)
        self.timed = bool(pts) and None not in pts and len(set(pts)) == len(pts)
        self.pts = np.sort(np.asarray(pts, np.int64)) if self.timed else None
        self.keys = np.sort(np.asarray(keys, np.int64)) if self.timed and keys else None
        self.num_frames = len(pts)
        self.decoded = 0  # frames decoded by read() (tests check that long clips are seeked)
        self._rewind()

    def _rewind(self, pts: int | None = None) -> None:
        """Decode from the keyframe at ``pts`` on (``None``: from the start; a file that cannot seek
        there is opened again)."""
        if pts is None:
            try:
                self.container.seek(0, backward=True, any_frame=False)
            except Exception:  # noqa: BLE001 - av.error.*: a container without an index; reopen it
                import av

                self.container.close()
                self.container = av.open(self.path)
                self.stream = self.container.streams.video[0]
                self.stream.thread_count = 1
        else:
            self.container.seek(int(pts), backward=True, any_frame=False, stream=self.stream)
        self.frames = self.container.decode(self.stream)
        self.at = None  # pts of the last frame decoded since the seek

    def read(self, indices: np.ndarray) -> np.ndarray:
        if not self.timed or self.keys is None:
            return self._read_sequential(indices)
        out = []
        for i in indices:
            target = int(self.pts[i])
            key = int(self.keys[max(0, np.searchsorted(self.keys, target, side="right") - 1)])
            if self.at is None or self.at >= target or key > self.at:
                self._rewind(key if key > int(self.pts[0]) else None)
            out.append(self._decode_to(target))
        return np.stack(out)

    def _decode_to(self, target: int) -> np.ndarray:
        for frame in self.frames:
            if frame.pts is None:
                continue
            self.at = frame.pts
            self.decoded += 1
            if frame.pts == target:
                return presented_rgb(frame)
            if frame.pts > target:  # the seek landed past the frame (inexact container index): restart
                break
        self._rewind()
        for frame in self.frames:
            self.at = frame.pts
            if frame.pts == target:
                return presented_rgb(frame)
        raise VideoDecodeError(self.path, self.name, f"frame at pts {target} could not be decoded")

    def _read_sequential(self, indices: np.ndarray) -> np.ndarray:
        """Decode from the start and keep the wanted frames; frames past the real end of a file whose
        packets over-count the frames are its last decoded frame."""
        wanted, picked, last = {int(i) for i in indices}, {}, None
        self._rewind()
        for i, frame in enumerate(self.frames):
            last = frame
            if i in wanted:
                picked[i] = presented_rgb(frame)
            if i >= max(wanted):
                break
        if last is None:
            raise VideoDecodeError(self.path, self.name, "no frame could be decoded")
        tail = presented_rgb(last)
        return np.stack([picked.get(int(i), tail) for i in indices])

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.container.close()


class PyAVDecoder(IndexedDecoder):
    """PyAV on one thread: the presented frames (edit lists applied), turned by the rotation metadata
    as ffmpeg's autorotate does, found by timestamp with seeks to keyframes (a long clip is not
    decoded from its start)."""

    name = "pyav"

    def _open(self, path: str) -> _PyAVVideo:
        return _PyAVVideo(path, self.name)
