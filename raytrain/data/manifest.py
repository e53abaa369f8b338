"""The Parquet manifest: one row per clip, the contract between dataset readers and the pipeline.

Columns: ``video_id`` (str, unique), ``path`` (str, absolute or relative to the manifest's folder),
``captions`` (list<str>, non-empty), ``split`` (str), optional ``start_s``/``end_s`` (float seconds,
null for the whole file). Validation errors name the manifest, the row and the file.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

REQUIRED_COLUMNS = ("video_id", "path", "captions", "split")
OPTIONAL_COLUMNS = ("start_s", "end_s")

SCHEMA = pa.schema(
    [
        ("video_id", pa.string()),
        ("path", pa.string()),
        ("captions", pa.list_(pa.string())),
        ("split", pa.string()),
        ("start_s", pa.float64()),
        ("end_s", pa.float64()),
    ]
)


class ManifestError(ValueError):
    """A manifest that cannot be used; the message names the file and the row."""


@dataclass(frozen=True)
class ClipRow:
    video_id: str
    path: str
    captions: tuple[str, ...]
    split: str
    start_s: float | None = None
    end_s: float | None = None


def write_manifest(rows: Iterable[Mapping[str, Any]], out_path: str | os.PathLike,
                   metadata: Mapping[str, Any] | None = None) -> Path:
    """Write rows (dicts with the manifest columns) to Parquet; extra metadata goes in the schema."""
    rows = list(rows)
    columns = {name: [row.get(name) for row in rows] for name in SCHEMA.names}
    columns["captions"] = [list(c) if c is not None else None for c in columns["captions"]]
    table = pa.table(columns, schema=SCHEMA)
    if metadata:
        table = table.replace_schema_metadata({b"raytrain": json.dumps(dict(metadata)).encode()})
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_name(out_path.name + ".tmp")
    pq.write_table(table, tmp)
    os.replace(tmp, out_path)
    return out_path


def read_manifest_metadata(path: str | os.PathLike) -> dict:
    meta = pq.read_schema(path).metadata or {}
    raw = meta.get(b"raytrain")
    return json.loads(raw) if raw else {}


def _is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def load_manifest(path: str | os.PathLike, split: str | None = None,
                  check_files: bool = True) -> list[ClipRow]:
    """Read and validate a manifest; relative video paths are resolved against its folder.

    Raises ManifestError naming the manifest and the (0-based) row for a missing column, an empty
    caption list, a duplicate id, a bad segment or (with ``check_files``) a missing video file.
    """
    path = Path(path)
    if not path.is_file():
        raise ManifestError(f"manifest '{path}' not found")
    try:
        table = pq.read_table(path)
    except Exception as exc:  # pyarrow raises several types for a file that is not Parquet
        raise ManifestError(f"manifest '{path}' is not a readable Parquet file: {exc}") from exc
    missing = [c for c in REQUIRED_COLUMNS if c not in table.column_names]
    if missing:
        raise ManifestError(f"manifest '{path}' lacks required column(s) {missing}; "
                            f"it has {table.column_names}")
    records = table.to_pylist()
    base = path.resolve().parent
    rows: list[ClipRow] = []
    seen: dict[str, int] = {}
    for i, rec in enumerate(records):
        where = f"{path.name} row {i}"
        vid = rec.get("video_id")
        if _is_missing(vid) or str(vid) == "":
            raise ManifestError(f"{where}: empty video_id")
        vid = str(vid)
        if vid in seen:
            raise ManifestError(f"{where}: video_id '{vid}' repeats row {seen[vid]}")
        seen[vid] = i
        rel = rec.get("path")
        if _is_missing(rel) or str(rel) == "":
            raise ManifestError(f"{where}: video '{vid}' has an empty path")
        caps = rec.get("captions")
        if caps is None or len(caps) == 0:
            raise ManifestError(f"{where}: video '{vid}' has no captions")
        if any(_is_missing(c) or not str(c).strip() for c in caps):
            raise ManifestError(f"{where}: video '{vid}' has an empty caption")
        rec_split = rec.get("split")
        if _is_missing(rec_split) or str(rec_split) == "":
            raise ManifestError(f"{where}: video '{vid}' has no split")
        start = rec.get("start_s")
        end = rec.get("end_s")
        start = None if _is_missing(start) else float(start)
        end = None if _is_missing(end) else float(end)
        if start is not None and start < 0:
            raise ManifestError(f"{where}: video '{vid}' start_s must be >= 0 (got {start})")
        if start is not None and end is not None and end <= start:
            raise ManifestError(f"{where}: video '{vid}' end_s {end} must be > start_s {start}")
        if split is not None and rec_split != split:
            continue
        full = Path(rel) if os.path.isabs(rel) else base / rel
        if check_files and not full.is_file():
            raise ManifestError(f"{where}: video '{rel}' not found (looked for {full})")
        rows.append(ClipRow(vid, str(full), tuple(str(c) for c in caps), str(rec_split), start, end))
    if split is not None and not rows:
        splits = sorted({str(r.get('split')) for r in records})
        raise ManifestError(f"manifest '{path}' has no rows with split '{split}' (splits: {splits})")
    return rows
