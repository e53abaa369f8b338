"""LSMDC (the 2016 challenge release), as the CLIP4Clip family splits it.

Files (tab-separated, no header; fields: clip id, aligned start, aligned end, extracted start,
extracted end, sentence): ``LSMDC16_annos_training.csv`` (train), ``LSMDC16_annos_val.csv`` (val),
``LSMDC16_challenge_1000_publictect.csv`` (test: the 1000 public test clips).

Protocol ``standard`` (the only one). Each clip is its own file, ``<clip id>.<ext>``, flat or inside a
per-movie folder named by the clip id minus its ``_<start>-<end>`` tail (``1004_Juno/1004_Juno_00.00.32
.849-00.00.35.458.avi``); the recursive video index finds both. ``start_s``/``end_s`` are None (the
file is the segment). A clip id on several lines gets all those sentences as captions (file order).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from raytrain.data.annotations.common import (
    AnnotationError,
    VideoIndex,
    clean_caption,
    make_row,
    read_text,
    require_file,
)

SPLIT_FILES = {"train": "LSMDC16_annos_training.csv", "val": "LSMDC16_annos_val.csv",
               "test": "LSMDC16_challenge_1000_publictect.csv"}
PROTOCOLS = ("standard",)
NUM_FIELDS = 6


def read_clips(path: Path) -> dict[str, list[str]]:
    """Clip id -> its sentences in file order."""
    clips: dict[str, list[str]] = {}
    for lineno, line in enumerate(read_text(path).splitlines(), start=1):
        line = line.strip()  # like CLIP4Clip: a trailing tab or space is not a seventh field
        if not line:
            continue
        fields = line.split("\t")
        if len(fields) != NUM_FIELDS:
            raise AnnotationError(f"{path.name} line {lineno}: expected {NUM_FIELDS} tab-separated fields "
                                  f"(clip id, 4 times, sentence), got {len(fields)}")
        clip_id = fields[0].strip()
        if not clip_id:
            raise AnnotationError(f"{path.name} line {lineno}: empty clip id")
        clips.setdefault(clip_id, []).append(clean_caption(fields[5], f"{path.name} line {lineno}"))
    if not clips:
        raise AnnotationError(f"{path.name}: no clips (the file is empty)")
    return clips


def read_lsmdc(annotations_dir: Path, index: VideoIndex, protocol: str) -> list[dict[str, Any]]:
    paths = {split: require_file(annotations_dir, name, "lsmdc") for split, name in SPLIT_FILES.items()}
    rows = []
    for split, path in paths.items():
        for clip_id, sentences in read_clips(path).items():
            rows.append(make_row(clip_id, index.find(clip_id), sentences, split))
    return rows
