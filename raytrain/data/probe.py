"""``--probe`` / ``data.probe_videos``: open every video of a manifest and decode its first frame, in
parallel, before anything trains, so a truncated, empty or foreign file is named up front instead of
failing a run minutes in. It reads the container's header and one frame with PyAV (every decoder's
common ground), not the whole file: a file broken only in its middle still passes."""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from raytrain.data.manifest import ClipRow, ManifestError, load_manifest

SHOWN = 10  # failures listed in the error (all of them are counted)


@dataclass(frozen=True)
class ProbeFailure:
    row: int  # the manifest row (0-based)
    video_id: str
    path: str
    why: str


def probe_file(path: str | os.PathLike) -> str | None:
    """None when ``path`` opens as a video and its first frame decodes; else why not."""
    import av

    try:
        with av.open(os.fspath(path)) as container:
            if not container.streams.video:
                return "no video stream"
            stream = container.streams.video[0]
            for frame in container.decode(stream):
                if frame.width <= 0 or frame.height <= 0:
                    return f"first frame is {frame.width}x{frame.height}"
                return None
            return "no frame decodes"
    except Exception as exc:  # noqa: BLE001 -- av.error.*, OSError, a codec PyAV lacks: all say "broken"
        return f"{type(exc).__name__}: {exc}"


def probe_rows(rows: Sequence[ClipRow], row_numbers: Sequence[int] | None = None,
               workers: int | None = None) -> list[ProbeFailure]:
    """Probe each distinct file of ``rows`` (threads: the work is in FFmpeg's C code); one failure per
    row whose file fails, in row order. ``row_numbers``: each row's number in its manifest."""
    numbers = list(range(len(rows))) if row_numbers is None else list(row_numbers)
    paths = list(dict.fromkeys(r.path for r in rows))
    with ThreadPoolExecutor(max_workers=workers or min(16, (os.cpu_count() or 1) * 2)) as pool:
        why = dict(zip(paths, pool.map(probe_file, paths)))
    return [ProbeFailure(n, r.video_id, r.path, why[r.path]) for n, r in zip(numbers, rows) if why[r.path]]


def probe_manifest(manifest: str | os.PathLike, splits: Sequence[str] | None = None,
                   workers: int | None = None) -> int:
    """Probe the videos of ``manifest``'s rows (of ``splits``; None: every row). Returns how many
    files were probed; raises ManifestError naming the manifest and each failing row (the first
    ``SHOWN``, and the count of all)."""
    rows = load_manifest(manifest)
    picked = [(i, r) for i, r in enumerate(rows) if splits is None or r.split in splits]
    failures = probe_rows([r for _, r in picked], [i for i, _ in picked], workers)
    if failures:
        name = Path(manifest).name
        listed = "\n".join(f"  {name} row {f.row} (video_id '{f.video_id}'): '{f.path}': {f.why}"
                           for f in failures[:SHOWN])
        more = f"\n  ... and {len(failures) - SHOWN} more" if len(failures) > SHOWN else ""
        raise ManifestError(f"{len(failures)} of {len(picked)} clips of '{manifest}' failed the video probe "
                            f"(header and first frame):\n{listed}{more}\nFix or remove these files, or train with "
                            f"data.on_bad_video=skip to replace them")
    return len({r.path for _, r in picked})
