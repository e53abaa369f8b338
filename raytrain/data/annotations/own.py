"""Users' own data: one CSV (with a header) or JSONL annotation file -> manifest rows. Pure, no Ray.

Fields (CSV columns, JSONL keys): ``video`` (a path relative to ``--videos``), ``caption`` (one text;
several rows of a clip add captions) or, in JSONL only, ``captions`` (a list of texts), and the
optional ``id`` (the clip's id), ``split``, ``start`` and ``end`` (seconds; a clip is a video plus its
segment). Any other field is an error, as is a missing ``video`` or caption.

Rows of the same clip (same ``id``; without ``id``, the same video and segment) are grouped into one
manifest row, its captions in file order. A clip's id is ``id`` when given, else the video path
without its extension (``clips/a.mp4`` -> ``clips/a``), followed by ``@<start>-<end>`` when the row has a
segment. A clip without a ``split`` goes to ``test`` when :func:`hash_fraction` of its id is below
``test_fraction``, else to ``train``: a pure function of the id, so the split does not depend on row
order, on the other clips, or on the machine, and adding clips never moves an existing one.

Rows are numbered as an editor or spreadsheet shows them: the line number of the row's first line
(the CSV header is row 1; in JSONL every line is a row).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from raytrain.data.annotations.common import AnnotationError, clean_caption, make_row, read_text

FORMATS = ("csv", "jsonl")
FIELDS = ("video", "caption", "captions", "id", "split", "start", "end")
CSV_FIELDS = tuple(f for f in FIELDS if f != "captions")
DEFAULT_TEST_FRACTION = 0.2
SPLIT_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")
MISSING_SHOWN = 5  # missing videos named in the error


@dataclass(frozen=True)
class Record:
    """One annotation row, checked: ``where`` names the file and row for later errors."""

    where: str
    row: int
    video: str
    captions: tuple[str, ...]
    clip_id: str | None = None
    split: str | None = None
    start_s: float | None = None
    end_s: float | None = None


def hash_fraction(clip_id: str) -> float:
    """A number in [0, 1) from the clip id's SHA-256 (the first 8 bytes, big-endian, over 2**64)."""
    return int.from_bytes(hashlib.sha256(clip_id.encode("utf-8")).digest()[:8], "big") / 2.0**64


def default_split(clip_id: str, test_fraction: float) -> str:
    """``test`` if ``hash_fraction(clip_id) < test_fraction``, else ``train``."""
    return "test" if hash_fraction(clip_id) < test_fraction else "train"


def check_test_fraction(test_fraction: float) -> float:
    value = float(test_fraction)
    if not 0.0 <= value < 1.0:
        raise AnnotationError(f"--test-fraction must be in [0, 1) (got {test_fraction})")
    return value


# --------------------------------------------------------------------------------------------------
# Fields


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _seconds(value: Any, where: str, key: str) -> float | None:
    if _blank(value):
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise AnnotationError(f"{where}: '{key}' must be a number of seconds (got {value!r})")
    try:
        out = float(value)
    except ValueError:
        raise AnnotationError(f"{where}: '{key}' must be a number of seconds (got {value!r})") from None
    if not math.isfinite(out):
        raise AnnotationError(f"{where}: '{key}' must be a finite number of seconds (got {value!r})")
    return out


def _text(value: Any, where: str, key: str) -> str | None:
    if _blank(value):
        return None
    if not isinstance(value, (str, int)) or isinstance(value, bool):
        raise AnnotationError(f"{where}: '{key}' must be a string (got {type(value).__name__})")
    return str(value).strip()


def make_record(fields: dict[str, Any], where: str, row: int) -> Record:
    """Check one row's fields (a CSV row's cells or a JSONL object) and return its :class:`Record`."""
    unknown = [k for k in fields if k not in FIELDS]
    if unknown:
        raise AnnotationError(f"{where}: unknown field(s) {unknown}; the fields are {list(FIELDS)}")
    video = _text(fields.get("video"), where, "video")
    if video is None:
        raise AnnotationError(f"{where}: no 'video' (a path relative to --videos)")
    if "caption" in fields and "captions" in fields:
        raise AnnotationError(f"{where}: give 'caption' or 'captions', not both")
    if "captions" in fields:
        caps = fields["captions"]
        if not isinstance(caps, list) or not caps:
            raise AnnotationError(f"{where}: 'captions' must be a non-empty list of strings (got {caps!r:.60})")
        captions = tuple(clean_caption(c, f"{where} captions[{j}]") for j, c in enumerate(caps))
    elif "caption" in fields:
        captions = (clean_caption("" if fields["caption"] is None else fields["caption"], where),)
    else:
        raise AnnotationError(f"{where}: no 'caption'")
    split = _text(fields.get("split"), where, "split")
    if split is not None and not SPLIT_NAME.match(split):
        raise AnnotationError(f"{where}: split {split!r} must be a name of letters, digits, '_', '-' or '.'")
    start, end = _seconds(fields.get("start"), where, "start"), _seconds(fields.get("end"), where, "end")
    if start is not None and start < 0:
        raise AnnotationError(f"{where}: start {start:g} must be >= 0")
    if end is not None and end <= (start or 0.0):
        raise AnnotationError(f"{where}: end {end:g} must be > start {start or 0.0:g}")
    return Record(where, row, video, captions, _text(fields.get("id"), where, "id"), split, start, end)


# --------------------------------------------------------------------------------------------------
# Files


def read_csv_records(path: str | os.PathLike) -> list[Record]:
    """The rows of a CSV annotation file with a header line (``video``, ``caption`` required)."""
    path = Path(path)
    reader = csv.reader(io.StringIO(read_text(path), newline=""))
    try:
        header = [h.strip() for h in next(reader)]
    except StopIteration:
        raise AnnotationError(f"{path.name}: empty file (expected a header line, e.g. video,caption)") from None
    except csv.Error as exc:
        raise AnnotationError(f"{path.name} row 1: not valid CSV: {exc}") from exc
    unknown = [h for h in header if h not in CSV_FIELDS]
    if unknown:
        hint = " (one caption per row in CSV: repeat the row for more)" if "captions" in unknown else ""
        raise AnnotationError(f"{path.name} row 1: unknown column(s) {unknown}{hint}; "
                              f"the columns are {list(CSV_FIELDS)}")
    missing = [c for c in ("video", "caption") if c not in header]
    if missing:
        raise AnnotationError(f"{path.name} row 1: missing column(s) {missing} (the header is {header})")
    repeated = sorted({h for h in header if header.count(h) > 1})
    if repeated:
        raise AnnotationError(f"{path.name} row 1: column(s) {repeated} appear more than once")
    records, line = [], reader.line_num
    while True:
        row_no = line + 1
        try:
            cells = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            raise AnnotationError(f"{path.name} row {row_no}: not valid CSV: {exc}") from exc
        line = reader.line_num
        if not any(c.strip() for c in cells):
            continue  # a blank line
        where = f"{path.name} row {row_no}"
        if len(cells) != len(header):
            raise AnnotationError(f"{where}: {len(cells)} fields, the header has {len(header)} ({','.join(header)}); "
                                  f"quote a caption that holds a comma")
        records.append(make_record(dict(zip(header, cells)), where, row_no))
    if not records:
        raise AnnotationError(f"{path.name}: no rows after the header")
    return records


def read_jsonl_records(path: str | os.PathLike) -> list[Record]:
    """The rows of a JSONL annotation file: one JSON object per line (blank lines skipped)."""
    path = Path(path)
    records = []
    for row_no, line in enumerate(read_text(path).splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path.name} row {row_no}"
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise AnnotationError(f"{where}: not valid JSON at column {exc.colno}: {exc.msg}") from exc
        if not isinstance(obj, dict):
            raise AnnotationError(f"{where}: expected a JSON object, got {type(obj).__name__}")
        records.append(make_record(obj, where, row_no))
    if not records:
        raise AnnotationError(f"{path.name}: no rows (the file is empty)")
    return records


def read_records(fmt: str, path: str | os.PathLike) -> list[Record]:
    if fmt not in FORMATS:
        raise AnnotationError(f"unknown annotation format '{fmt}'; valid: {list(FORMATS)}")
    if not Path(path).is_file():
        raise AnnotationError(f"annotation file '{path}' not found"
                              + (" (for csv/jsonl, --annotations is a file, not a folder)" if Path(path).is_dir() else ""))
    return read_csv_records(path) if fmt == "csv" else read_jsonl_records(path)


# --------------------------------------------------------------------------------------------------
# Clips


def _segment(start: float | None, end: float | None) -> str:
    if start is None and end is None:
        return ""
    return f"@{'' if start is None else f'{start:g}'}-{'' if end is None else f'{end:g}'}"


def derived_id(video: str, start: float | None, end: float | None) -> str:
    """``clips/a.mp4`` (12.5 s to 20 s) -> ``clips/a@12.5-20``; the whole file -> ``clips/a``."""
    stem = os.path.splitext(Path(video).as_posix())[0] or video
    return stem + _segment(start, end)


def group_clips(records: list[Record], videos_dir: str | os.PathLike,
                test_fraction: float = DEFAULT_TEST_FRACTION) -> list[dict[str, Any]]:
    """One manifest row per clip, in order of first appearance, captions in file order. ``path`` is
    the absolute file path, or None where no file exists (see ``apply_missing_policy``); each row's
    ``row`` is the first annotation row of the clip (for error messages)."""
    test_fraction = check_test_fraction(test_fraction)
    root = Path(videos_dir).absolute()
    clips: dict[str, dict[str, Any]] = {}
    for rec in records:
        clip_id = rec.clip_id or derived_id(rec.video, rec.start_s, rec.end_s)
        clip = clips.get(clip_id)
        if clip is None:
            full = root / rec.video
            clips[clip_id] = {**make_row(clip_id, str(full) if full.is_file() else None, rec.captions, rec.split,
                                         rec.start_s, rec.end_s),
                              "video": rec.video, "where": rec.where, "row": rec.row}
            continue
        first = f"row {clip['row']}"
        if (rec.video, rec.start_s, rec.end_s) != (clip["video"], clip["start_s"], clip["end_s"]):
            raise AnnotationError(
                f"{rec.where}: clip id '{clip_id}' is '{rec.video}'{_segment(rec.start_s, rec.end_s)} here but "
                f"'{clip['video']}'{_segment(clip['start_s'], clip['end_s'])} at {first} (one id, one file and segment"
                + ("; add an 'id' column to tell them apart)" if rec.clip_id is None else ")"))
        if rec.split is not None and clip["split"] is not None and rec.split != clip["split"]:
            raise AnnotationError(f"{rec.where}: clip '{clip_id}' has split '{rec.split}' here but "
                                  f"'{clip['split']}' at {first} (a clip belongs to one split)")
        clip["split"] = clip["split"] or rec.split
        clip["captions"].extend(rec.captions)
    rows = []
    for clip_id, clip in clips.items():
        split = clip["split"] or default_split(clip_id, test_fraction)
        rows.append({**make_row(clip_id, clip["path"], clip["captions"], split, clip["start_s"], clip["end_s"]),
                     "video": clip["video"], "where": clip["where"]})
    return rows


def check_files(rows: list[dict[str, Any]], videos_dir: str | os.PathLike, allow_missing: bool
                ) -> tuple[list[dict[str, Any]], list[str]]:
    """``(rows with a file, the missing videos)``; without ``allow_missing`` a missing video is an
    error naming the first one's row, and how many more are missing."""
    missing = [r for r in rows if r["path"] is None]
    if missing and not allow_missing:
        first = missing[0]
        more = (f"; {len(missing)} of {len(rows)} clips have no file (e.g. "
                f"{', '.join(repr(r['video']) for r in missing[1:MISSING_SHOWN + 1])})") if len(missing) > 1 else ""
        raise AnnotationError(f"{first['where']}: video '{first['video']}' not found under '{videos_dir}'{more}; "
                              f"pass --allow-missing to drop such clips")
    return [r for r in rows if r["path"] is not None], [r["video"] for r in missing]


def read_own(fmt: str, annotations: str | os.PathLike, videos_dir: str | os.PathLike,
             test_fraction: float = DEFAULT_TEST_FRACTION, allow_missing: bool = False
             ) -> tuple[list[dict[str, Any]], list[str]]:
    """``(manifest rows, missing videos)`` of a csv/jsonl annotation file (see the module docstring)."""
    if not Path(videos_dir).is_dir():
        raise AnnotationError(f"videos folder '{videos_dir}' not found")
    rows = group_clips(read_records(fmt, annotations), videos_dir, test_fraction)
    rows, missing = check_files(rows, videos_dir, allow_missing)
    if not rows:
        raise AnnotationError(f"{Path(annotations).name}: none of the videos were found under '{videos_dir}'")
    return [{k: r[k] for k in ("video_id", "path", "captions", "split", "start_s", "end_s")} for r in rows], missing
