"""What the benchmark readers share: the error type, the video index, file helpers, the missing-video policy.

A reader turns a benchmark's annotation files into manifest rows (dicts with ``video_id``, ``path``,
``captions``, ``split``, ``start_s``, ``end_s``). It looks every clip up in a :class:`VideoIndex`
(built once per folder: file stem -> path, recursive) and leaves ``path`` as ``None`` when no file
exists; :func:`apply_missing_policy` then fails naming the missing ids, or drops them.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Extensions the video index picks up (lower case). The first five are what the benchmarks ship as;
# the rest appear in DiDeMo's Flickr originals.
VIDEO_EXTENSIONS = (".mp4", ".avi", ".webm", ".mkv", ".mov", ".m4v", ".3gp", ".mpg", ".mpeg", ".wmv",
                    ".flv", ".mts", ".ogv")
MISSING_EXAMPLES = 10  # how many missing ids an error or the manifest metadata lists


class AnnotationError(ValueError):
    """Annotation files that cannot be read; the message names the file and the record."""


# --------------------------------------------------------------------------------------------------
# The video index


@dataclass
class VideoIndex:
    """Video files under a folder by stem (``video7020.mp4`` -> ``video7020``); lookups are O(1).

    Built by one recursive walk (symlinked folders followed once). When two files share a stem the one
    nearer the top wins, then the extension earlier in :data:`VIDEO_EXTENSIONS`, then the path order.
    """

    root: Path
    by_stem: dict[str, str] = field(default_factory=dict)

    @classmethod
    def build(cls, videos_dir: str | os.PathLike) -> VideoIndex:
        root = Path(videos_dir).absolute()
        if not root.is_dir():
            raise AnnotationError(f"videos folder '{videos_dir}' not found")
        ranked: dict[str, tuple[tuple[int, int, str], str]] = {}
        seen_dirs: set[str] = set()
        for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
            real = os.path.realpath(dirpath)
            if real in seen_dirs:  # a symlink loop or a folder linked twice
                dirnames[:] = []
                continue
            seen_dirs.add(real)
            dirnames.sort()
            depth = len(Path(dirpath).relative_to(root).parts)
            for name in filenames:
                stem, ext = os.path.splitext(name)
                ext = ext.lower()
                if ext not in VIDEO_EXTENSIONS or not stem or name.startswith("._"):
                    continue
                path = os.path.join(dirpath, name)
                rank = (depth, VIDEO_EXTENSIONS.index(ext), path)
                if stem not in ranked or rank < ranked[stem][0]:
                    ranked[stem] = (rank, path)
        return cls(root, {stem: path for stem, (_, path) in ranked.items()})

    def __len__(self) -> int:
        return len(self.by_stem)

    def find(self, *candidates: str) -> str | None:
        """The path of the first candidate id that has a file, else None."""
        for cand in candidates:
            path = self.by_stem.get(cand)
            if path is not None:
                return path
        return None


def strip_video_extension(video_id: str) -> str:
    """``"abc.mov"`` -> ``"abc"``; an id without a known video extension is returned unchanged."""
    stem, ext = os.path.splitext(video_id)
    return stem if stem and ext.lower() in VIDEO_EXTENSIONS else video_id


# --------------------------------------------------------------------------------------------------
# Reading annotation files


def require_file(folder: Path, name: str, dataset: str) -> Path:
    path = Path(folder) / name
    if not path.is_file():
        present = sorted(p.name for p in Path(folder).iterdir()) if Path(folder).is_dir() else []
        shown = ", ".join(present[:12]) + (", ..." if len(present) > 12 else "")
        raise AnnotationError(f"{dataset}: annotation file '{name}' not found in '{folder}'"
                              f" (the folder has: {shown or 'nothing'})")
    return path


def read_text(path: Path) -> str:
    """A text file as str: UTF-8 (with or without BOM), else Windows-1252 (some LSMDC copies)."""
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return data.decode("cp1252", errors="replace")


def read_json(path: Path) -> Any:
    try:
        return json.loads(read_text(path))
    except json.JSONDecodeError as exc:
        raise AnnotationError(f"{path.name}: not valid JSON at line {exc.lineno} column {exc.colno}: "
                              f"{exc.msg} (truncated or corrupt file?)") from exc


def read_id_list(path: Path) -> list[tuple[int, str]]:
    """``(line number, id)`` for each non-blank line of a one-id-per-line file."""
    out = []
    for lineno, line in enumerate(read_text(path).splitlines(), start=1):
        item = line.strip()
        if item:
            out.append((lineno, item))
    if not out:
        raise AnnotationError(f"{path.name}: no video ids (the file is empty)")
    return out


def read_csv_columns(path: Path, columns: Sequence[str]) -> Iterator[tuple[int, dict[str, str]]]:
    """``(line number, row)`` for each data row of a CSV with a header; the named columns must exist."""
    reader = csv.DictReader(io.StringIO(read_text(path), newline=""))
    header = reader.fieldnames or []
    header_clean = [h.strip() for h in header]
    missing = [c for c in columns if c not in header_clean]
    if missing:
        raise AnnotationError(f"{path.name}: missing column(s) {missing} in the header line "
                              f"(found {header_clean or 'no header'})")
    reader.fieldnames = header_clean
    for row in reader:
        lineno = reader.line_num
        for c in columns:
            if row.get(c) is None:
                raise AnnotationError(f"{path.name} line {lineno}: no value for column '{c}' "
                                      f"(the line has fewer fields than the header)")
        yield lineno, row


def clean_caption(text: Any, where: str) -> str:
    if not isinstance(text, str):
        raise AnnotationError(f"{where}: caption must be a string (got {type(text).__name__})")
    text = " ".join(text.split())
    if not text:
        raise AnnotationError(f"{where}: empty caption")
    return text


def make_row(video_id: str, path: str | None, captions: Iterable[str], split: str,
             start_s: float | None = None, end_s: float | None = None) -> dict[str, Any]:
    return {"video_id": video_id, "path": path, "captions": list(captions), "split": split,
            "start_s": start_s, "end_s": end_s}


# --------------------------------------------------------------------------------------------------
# The missing-video policy


@dataclass(frozen=True)
class MissingReport:
    count: int
    examples: list[str]


def apply_missing_policy(rows: list[dict[str, Any]], dataset: str, videos_dir: str | os.PathLike,
                         allow_missing: bool, num_indexed: int | None = None
                         ) -> tuple[list[dict[str, Any]], MissingReport]:
    """Rows whose ``path`` is None have no video file: fail listing them, or (allow_missing) drop them."""
    missing = [r["video_id"] for r in rows if r["path"] is None]
    report = MissingReport(len(missing), missing[:MISSING_EXAMPLES])
    if not missing:
        return rows, report
    if not allow_missing:
        more = f", ... ({len(missing) - MISSING_EXAMPLES} more)" if len(missing) > MISSING_EXAMPLES else ""
        exts = ",".join(e.lstrip(".") for e in VIDEO_EXTENSIONS[:5])
        held = f"; the folder holds {num_indexed} video files" if num_indexed is not None else ""
        raise AnnotationError(
            f"{dataset}: {len(missing)} of {len(rows)} videos have no file under '{videos_dir}' "
            f"(looked for <id>.{{{exts},...}} recursively{held}): {', '.join(report.examples)}{more}; "
            f"pass --allow-missing to drop them")
    return [r for r in rows if r["path"] is not None], report


def check_unique_ids(rows: list[dict[str, Any]], dataset: str) -> None:
    seen: dict[str, str] = {}
    for r in rows:
        vid = r["video_id"]
        if vid in seen:
            raise AnnotationError(f"{dataset}: video '{vid}' appears in split '{seen[vid]}' and again in "
                                  f"split '{r['split']}' (a clip must belong to one split)")
        seen[vid] = r["split"]
