"""ActivityNet Captions, paragraph-to-video, as the CLIP4Clip family evaluates it.

Files: ``train.json`` and ``val_1.json``, each a dict ``video id -> {"duration": float, "timestamps":
[[s, e], ...], "sentences": [str, ...]}`` (ids look like ``v_QOlSCBRmfWY``).

Protocol ``paragraph`` (the only one): a video's sentences, stripped and joined with a space in file
order, are one caption; the clip is the whole video. Split ``train`` from train.json, ``test`` from
val_1.json (4917 videos). The file is looked up as ``<id>.*`` and, like CLIP4Clip, without the ``v_``
prefix (``QOlSCBRmfWY.mp4``); the manifest's ``video_id`` is the id as written.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from raytrain.data.annotations.common import (
    AnnotationError,
    VideoIndex,
    clean_caption,
    make_row,
    read_json,
    require_file,
)

SPLIT_FILES = {"train": "train.json", "test": "val_1.json"}
PROTOCOLS = ("paragraph",)


def read_paragraphs(path: Path) -> dict[str, list[str]]:
    data = read_json(path)
    if not isinstance(data, dict):
        raise AnnotationError(f"{path.name}: expected an object (video id -> annotation), "
                              f"got {type(data).__name__}")
    out: dict[str, list[str]] = {}
    for vid, ann in data.items():
        where = f"{path.name}: '{vid}'"
        if not isinstance(ann, dict):
            raise AnnotationError(f"{where} is not an object (got {type(ann).__name__})")
        sentences = ann.get("sentences")
        if not isinstance(sentences, list) or not sentences:
            raise AnnotationError(f"{where} has no 'sentences' list" if sentences is None else
                                  f"{where}: 'sentences' must be a non-empty list of strings")
        out[str(vid).strip()] = [clean_caption(s, f"{where} sentences[{j}]") for j, s in enumerate(sentences)]
    if not out:
        raise AnnotationError(f"{path.name}: no videos (empty object)")
    return out


def _file_candidates(vid: str) -> tuple[str, ...]:
    return (vid, vid[2:]) if vid.startswith("v_") and len(vid) > 2 else (vid,)


def read_activitynet(annotations_dir: Path, index: VideoIndex, protocol: str) -> list[dict[str, Any]]:
    paths = {split: require_file(annotations_dir, name, "activitynet") for split, name in SPLIT_FILES.items()}
    rows = []
    for split, path in paths.items():
        for vid, sentences in read_paragraphs(path).items():
            rows.append(make_row(vid, index.find(*_file_candidates(vid)), [" ".join(sentences)], split))
    return rows
