"""Readers for the standard text-video retrieval benchmarks: annotation files -> the Parquet manifest.

``prepare("msrvtt", annotations_dir, videos_dir, out)`` (the ``raytrain prepare`` command) runs one
reader, applies the missing-video policy and writes the manifest (one row per clip, absolute paths).
The evaluation protocol lives in the rows' captions: every caption of a test row is a text->video
query (see ``docs/benchmarks.md``).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from raytrain.data.annotations import activitynet, didemo, lsmdc, msrvtt, msvd, own
from raytrain.data.annotations.common import (
    AnnotationError,
    VideoIndex,
    apply_missing_policy,
    check_unique_ids,
)
from raytrain.data.manifest import write_manifest

__all__ = ["DATASETS", "OWN_FORMATS", "READERS", "AnnotationError", "Reader", "VideoIndex", "prepare", "read_rows"]


@dataclass(frozen=True)
class Reader:
    """One benchmark: ``read(annotations_dir, video_index, protocol) -> rows`` (``path`` None = no file)."""

    name: str
    read: Callable[[Path, VideoIndex, str], list[dict[str, Any]]]
    protocols: tuple[str, ...]
    files: tuple[str, ...]  # the annotation files it needs

    @property
    def default_protocol(self) -> str:
        return self.protocols[0]


READERS: dict[str, Reader] = {
    "msrvtt": Reader("msrvtt", msrvtt.read_msrvtt, msrvtt.PROTOCOLS,
                     (msrvtt.DATA_JSON, *msrvtt.TRAIN_CSV.values(), msrvtt.TEST_CSV)),
    "msvd": Reader("msvd", msvd.read_msvd, msvd.PROTOCOLS, (msvd.CAPTIONS_PKL, *msvd.SPLIT_LISTS.values())),
    "didemo": Reader("didemo", didemo.read_didemo, didemo.PROTOCOLS, tuple(didemo.SPLIT_FILES.values())),
    "activitynet": Reader("activitynet", activitynet.read_activitynet, activitynet.PROTOCOLS,
                          tuple(activitynet.SPLIT_FILES.values())),
    "lsmdc": Reader("lsmdc", lsmdc.read_lsmdc, lsmdc.PROTOCOLS, tuple(lsmdc.SPLIT_FILES.values())),
}

OWN_FORMATS = own.FORMATS  # users' own data: one csv/jsonl annotation file (raytrain.data.annotations.own)
DATASETS = (*READERS, *OWN_FORMATS)  # what ``raytrain prepare --dataset`` takes


def get_reader(dataset: str) -> Reader:
    reader = READERS.get(str(dataset).strip().lower())
    if reader is None:
        raise AnnotationError(f"unknown dataset '{dataset}'; valid choices: {sorted(READERS)}")
    return reader


def resolve_protocol(reader: Reader, split_protocol: str | None) -> str:
    if split_protocol is None:
        return reader.default_protocol
    if split_protocol not in reader.protocols:
        raise AnnotationError(f"{reader.name}: unknown split protocol '{split_protocol}'; "
                              f"valid choices: {list(reader.protocols)} (default {reader.default_protocol})")
    return split_protocol


def read_rows(dataset: str, annotations_dir: str | os.PathLike, videos: str | os.PathLike | VideoIndex,
              split_protocol: str | None = None) -> list[dict[str, Any]]:
    """The reader's rows before the missing-video policy (``path`` None where no file was found)."""
    reader = get_reader(dataset)
    protocol = resolve_protocol(reader, split_protocol)
    ann = Path(annotations_dir)
    if not ann.is_dir():
        raise AnnotationError(f"annotations folder '{annotations_dir}' not found")
    index = videos if isinstance(videos, VideoIndex) else VideoIndex.build(videos)
    rows = reader.read(ann, index, protocol)
    if not rows:
        raise AnnotationError(f"{reader.name}: the annotation files in '{ann}' hold no clips")
    check_unique_ids(rows, reader.name)
    return rows


def split_counts(rows: list[dict[str, Any]]) -> dict[str, dict[str, int]]:
    counts: dict[str, dict[str, int]] = {}
    for r in rows:
        c = counts.setdefault(r["split"], {"clips": 0, "captions": 0})
        c["clips"] += 1
        c["captions"] += len(r["captions"])
    return counts


def prepare(dataset: str, annotations_dir: str | os.PathLike, videos_dir: str | os.PathLike,
            out: str | os.PathLike, split_protocol: str | None = None, allow_missing: bool = False,
            quiet: bool = False, test_fraction: float | None = None) -> Path:
    """Read a benchmark's annotations, find its videos, write the manifest at ``out``; return its path.

    ``dataset`` ``csv``/``jsonl``: ``annotations_dir`` is the user's one annotation file (see
    :func:`prepare_own`). Raises AnnotationError (a ValueError) naming the file and the record for
    malformed annotations, and listing the first ids when videos are missing (unless
    ``allow_missing``: then those clips are dropped and the count goes into the manifest's metadata).
    """
    if str(dataset).strip().lower() in OWN_FORMATS:
        if split_protocol is not None:
            raise AnnotationError(f"{dataset}: --split-protocol is for the benchmarks; give a 'split' column "
                                  f"or --test-fraction")
        return prepare_own(str(dataset).strip().lower(), annotations_dir, videos_dir, out, allow_missing, quiet,
                           own.DEFAULT_TEST_FRACTION if test_fraction is None else test_fraction)
    if test_fraction is not None:
        raise AnnotationError(f"{dataset}: --test-fraction is for csv/jsonl; a benchmark's splits come from "
                              f"its files (--split-protocol)")
    reader = get_reader(dataset)
    protocol = resolve_protocol(reader, split_protocol)
    if not Path(annotations_dir).is_dir():
        raise AnnotationError(f"annotations folder '{annotations_dir}' not found")
    index = VideoIndex.build(videos_dir)
    rows = read_rows(reader.name, annotations_dir, index, protocol)
    splits_read = list(dict.fromkeys(r["split"] for r in rows))
    rows, missing = apply_missing_policy(rows, reader.name, videos_dir, allow_missing, len(index))
    if not rows:
        raise AnnotationError(f"{reader.name}: none of the videos were found under '{videos_dir}' "
                              f"(e.g. {', '.join(missing.examples[:3])})")
    counts = split_counts(rows)
    metadata = {
        "dataset": reader.name,
        "protocol": protocol,
        "annotations_dir": str(Path(annotations_dir).absolute()),
        "videos_dir": str(Path(videos_dir).absolute()),
        "split_counts": counts,
        "missing_videos": missing.count,
        "missing_examples": missing.examples,
    }
    path = write_manifest(rows, out, metadata=metadata)
    if not quiet:
        parts = ", ".join(f"{s} {c['clips']} clips / {c['captions']} captions" for s, c in counts.items())
        note = f"; {missing.count} missing videos dropped (e.g. {', '.join(missing.examples[:3])})" \
            if missing.count else "; no missing videos"
        emptied = [s for s in splits_read if s not in counts]
        if emptied:
            note += f"; split(s) {emptied} lost every clip"
        print(f"{reader.name} ({protocol}): wrote {path}: {parts}{note}", flush=True)
    return path


def prepare_own(fmt: str, annotations: str | os.PathLike, videos_dir: str | os.PathLike, out: str | os.PathLike,
                allow_missing: bool = False, quiet: bool = False,
                test_fraction: float = own.DEFAULT_TEST_FRACTION) -> Path:
    """Users' own data: a csv/jsonl annotation file and its videos folder -> the manifest at ``out``.
    Clips without a ``split`` are split by the hash of their id (``own.default_split``)."""
    rows, missing = own.read_own(fmt, annotations, videos_dir, test_fraction, allow_missing)
    counts = split_counts(rows)
    metadata = {"dataset": fmt, "protocol": f"split column, else sha256(id) < {test_fraction:g} -> test",
                "test_fraction": test_fraction, "annotations": str(Path(annotations).absolute()),
                "videos_dir": str(Path(videos_dir).absolute()), "split_counts": counts,
                "missing_videos": len(missing), "missing_examples": missing[:10]}
    path = write_manifest(rows, out, metadata=metadata)
    if not quiet:
        parts = ", ".join(f"{s} {c['clips']} clips / {c['captions']} captions" for s, c in sorted(counts.items()))
        note = (f"; {len(missing)} missing videos dropped (e.g. {', '.join(missing[:3])})" if missing
                else "; no missing videos")
        if "test" not in counts:
            note += "; no 'test' clips (the default data.eval_split)"
        print(f"{fmt}: wrote {path}: {parts}{note}", flush=True)
    return path
