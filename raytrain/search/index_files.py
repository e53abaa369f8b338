"""The search index on disk, without Ray or torch: its Parquet schema, its ``index.json`` (which
checkpoint produced it), the resume diff (which clips still need embedding) and thumbnail strips.

An index folder holds ``index.json`` and ``shard-NNNNN.parquet`` files, each written whole under a
temporary name and renamed, so an interrupted ``raytrain index`` leaves only complete shards and a
rerun embeds exactly the clips no shard holds yet (docs/search.md).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

INDEX_FILE = "index.json"
SHARD_GLOB = "shard-*.parquet"
FORMAT_VERSION = 1


def shard_schema(dim: int) -> pa.Schema:
    """One row per clip: its normalised video embedding and what a result shows."""
    return pa.schema([
        ("key", pa.string()),                          # video_id, or video_id@start-end for a segment
        ("video_id", pa.string()),
        ("path", pa.string()),                         # the video file (absolute)
        ("start_s", pa.float64()), ("end_s", pa.float64()),  # the segment; null = whole file
        ("captions", pa.list_(pa.string())),
        ("split", pa.string()),
        ("embedding", pa.list_(pa.float32(), dim)),    # L2-normalised; score = dot product
        ("thumbnail", pa.binary()),                    # PNG strip of a few frames
    ])


class IndexMismatchError(ValueError):
    """The index folder was built by another checkpoint, config or model width."""


def clip_key(video_id: str, start_s: float | None, end_s: float | None) -> str:
    if start_s is None and end_s is None:
        return video_id
    return f"{video_id}@{start_s}-{end_s}"


def hash_files(paths: Iterable[str | os.PathLike]) -> str:
    """sha256 over the files' bytes, in the given order (the weights and config of a checkpoint)."""
    digest = hashlib.sha256()
    for path in paths:
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()


def index_identity(checkpoint: str, weights_hash: str, arch: str, num_frames: int, dim: int) -> dict:
    """What ``index.json`` records; two runs may fill one index only when these agree."""
    return {"format": FORMAT_VERSION, "checkpoint": str(checkpoint), "weights_sha256": weights_hash,
            "arch": arch, "num_frames": int(num_frames), "dim": int(dim)}


def open_index(out: str | os.PathLike, identity: dict) -> Path:
    """Create ``out`` with ``identity``, or check that the existing index was built the same way."""
    out = Path(out)
    path = out / INDEX_FILE
    if path.is_file():
        recorded = read_identity(out)
        compared = ("weights_sha256", "arch", "num_frames", "dim", "format")
        diff = [k for k in compared if recorded.get(k) != identity.get(k)]
        if diff:
            raise IndexMismatchError(
                f"index '{out}' was built from checkpoint '{recorded.get('checkpoint')}' "
                f"({', '.join(f'{k}={recorded.get(k)}' for k in diff)}), not from '{identity['checkpoint']}' "
                f"({', '.join(f'{k}={identity.get(k)}' for k in diff)}): mixing embeddings of two models is "
                f"meaningless; use a new --out folder")
        return out
    out.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(identity, indent=2, sort_keys=True))
    os.replace(tmp, path)
    return out


def read_identity(index_dir: str | os.PathLike) -> dict:
    path = Path(index_dir) / INDEX_FILE
    if not path.is_file():
        raise FileNotFoundError(f"'{index_dir}' is not a search index (no {INDEX_FILE}; build it with raytrain index)")
    return json.loads(path.read_text())


def shard_paths(index_dir: str | os.PathLike) -> list[Path]:
    return sorted(Path(index_dir).glob(SHARD_GLOB))


def indexed_keys(index_dir: str | os.PathLike) -> set[str]:
    """The clip keys every complete shard holds (only the ``key`` column is read)."""
    keys: set[str] = set()
    for path in shard_paths(index_dir):
        keys.update(pq.read_table(path, columns=["key"]).column("key").to_pylist())
    return keys


def missing_rows(rows: Sequence, done: set[str]) -> list:
    """The manifest rows (``ClipRow``) whose key no shard holds, in manifest order, each once."""
    out, seen = [], set(done)
    for row in rows:
        key = clip_key(row.video_id, row.start_s, row.end_s)
        if key not in seen:
            seen.add(key)
            out.append(row)
    return out


def write_shard(index_dir: str | os.PathLike, records: dict[str, list], dim: int) -> Path:
    """Write one shard (columns of ``shard_schema``) atomically, numbered after the existing ones."""
    index_dir = Path(index_dir)
    existing = shard_paths(index_dir)
    number = int(existing[-1].stem.split("-")[1]) + 1 if existing else 0
    path = index_dir / f"shard-{number:05d}.parquet"
    table = pa.table(records, schema=shard_schema(dim))
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    pq.write_table(table, tmp)
    os.replace(tmp, path)
    return path


def read_index(index_dir: str | os.PathLike, columns: Sequence[str] | None = None) -> pa.Table:
    """Every shard concatenated (``columns`` only), in shard order."""
    paths = shard_paths(index_dir)
    if not paths:
        raise FileNotFoundError(f"index '{index_dir}' has no shards yet (run raytrain index)")
    return pa.concat_tables([pq.read_table(p, columns=list(columns) if columns else None) for p in paths])


def embedding_matrix(table: pa.Table) -> np.ndarray:
    """The ``embedding`` column as a ``(clips, D)`` float32 array (no copy per row)."""
    column = table.column("embedding").combine_chunks()
    dim = column.type.list_size
    return column.flatten().to_numpy(zero_copy_only=False).reshape(-1, dim).astype(np.float32, copy=False)


def thumbnail_strip(frames: np.ndarray, count: int = 4, height: int = 64) -> bytes:
    """``count`` evenly spaced frames of ``(T, H, W, 3) uint8``, each scaled to ``height`` px, side by
    side, as PNG bytes."""
    from PIL import Image

    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.shape[0] == 0:
        raise ValueError(f"thumbnail_strip needs (T, H, W, 3) frames, got {frames.shape}")
    picks = np.unique(np.linspace(0, frames.shape[0] - 1, num=min(count, frames.shape[0])).round().astype(int))
    width = max(1, round(frames.shape[2] * height / frames.shape[1]))
    tiles = [np.asarray(Image.fromarray(frames[i].astype(np.uint8)).resize((width, height))) for i in picks]
    buf = io.BytesIO()
    Image.fromarray(np.concatenate(tiles, axis=1)).save(buf, format="PNG")
    return buf.getvalue()
