"""DiDeMo, paragraph-to-video, as the CLIP4Clip family evaluates it.

Files: ``train_data.json`` / ``val_data.json`` / ``test_data.json``, each a list of moment annotations
``{"video": "<flickr id>.mov", "description": str, "times": [[s, e], ...] (5-second segment indices),
...}``; a video has several moments.

Protocol ``paragraph`` (the only one): each video's descriptions, in file order, stripped and joined
with a space, are one caption; the clip is the whole video (``start_s``/``end_s`` None). Splits train /
val / test. Video ids often carry the original file's extension (``...d8b58466fa.mov``) and characters
such as ``@``; the file is looked up under the id as written (``<id>.mp4``, e.g. ``x.mov.mp4``) and
without a known video extension (``x.mp4``, ``x.mov``). The manifest's ``video_id`` is the id as written.
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
    strip_video_extension,
)

SPLIT_FILES = {"train": "train_data.json", "val": "val_data.json", "test": "test_data.json"}
PROTOCOLS = ("paragraph",)


def read_moments(path: Path) -> dict[str, list[str]]:
    """Video id -> its descriptions in file order."""
    data = read_json(path)
    if not isinstance(data, list):
        raise AnnotationError(f"{path.name}: expected a list of moment annotations, got {type(data).__name__}")
    paragraphs: dict[str, list[str]] = {}
    for i, item in enumerate(data):
        where = f"{path.name}: [{i}]"
        if not isinstance(item, dict):
            raise AnnotationError(f"{where} is not an object (got {type(item).__name__})")
        for key in ("video", "description"):
            if key not in item:
                raise AnnotationError(f"{where} has no '{key}'")
        video = item["video"]
        if not isinstance(video, str) or not video.strip():
            raise AnnotationError(f"{where}: 'video' must be a non-empty string (got {video!r})")
        paragraphs.setdefault(video.strip(), []).append(clean_caption(item["description"], where))
    if not paragraphs:
        raise AnnotationError(f"{path.name}: no annotations (empty list)")
    return paragraphs


def read_didemo(annotations_dir: Path, index: VideoIndex, protocol: str) -> list[dict[str, Any]]:
    paths = {split: require_file(annotations_dir, name, "didemo") for split, name in SPLIT_FILES.items()}
    rows = []
    for split, path in paths.items():
        for vid, texts in read_moments(path).items():
            found = index.find(vid, strip_video_extension(vid))
            rows.append(make_row(vid, found, [" ".join(texts)], split))
    return rows
