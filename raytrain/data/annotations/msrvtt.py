"""MSR-VTT, as the CLIP4Clip family splits it.

Files: ``MSRVTT_data.json`` (``videos`` [{video_id, split, ...}], ``sentences`` [{video_id, caption,
sen_id}], 20 captions per video), ``MSRVTT_train.9k.csv`` / ``MSRVTT_train.7k.csv`` (a ``video_id``
column), ``MSRVTT_JSFUSION_test.csv`` (the 1k-A test: key, vid_key, video_id, sentence).

Protocols:
  * ``9k`` (default): train = the 9k ids with all their json captions; test = 1k-A, one caption each.
  * ``7k``: the same with the 7k training ids.
  * ``full``: the official split from the json's ``videos[].split`` (train 6513 / val 497 / test 2990),
    every caption of a test video a query.
Video files: ``<video_id>.mp4`` (e.g. ``video7020.mp4``).
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

from raytrain.data.annotations.common import (
    AnnotationError,
    VideoIndex,
    clean_caption,
    make_row,
    read_csv_columns,
    read_json,
    require_file,
)

DATA_JSON = "MSRVTT_data.json"
TRAIN_CSV = {"9k": "MSRVTT_train.9k.csv", "7k": "MSRVTT_train.7k.csv"}
TEST_CSV = "MSRVTT_JSFUSION_test.csv"
PROTOCOLS = ("9k", "7k", "full")
FULL_SPLITS = {"train": "train", "validate": "val", "val": "val", "test": "test"}


def _load_data(path: Path) -> dict[str, Any]:
    data = read_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("sentences"), list):
        got = sorted(data)[:8] if isinstance(data, dict) else type(data).__name__
        raise AnnotationError(f"{path.name}: expected an object with a 'sentences' list (and 'videos'); "
                              f"got {got}")
    return data


def _captions_by_video(path: Path, data: dict[str, Any]) -> dict[str, list[str]]:
    captions: dict[str, list[str]] = defaultdict(list)
    for i, sent in enumerate(data["sentences"]):
        where = f"{path.name}: sentences[{i}]"
        if not isinstance(sent, dict):
            raise AnnotationError(f"{where} is not an object (got {type(sent).__name__})")
        for key in ("video_id", "caption"):
            if key not in sent:
                raise AnnotationError(f"{where} has no '{key}'")
        captions[str(sent["video_id"]).strip()].append(clean_caption(sent["caption"], where))
    return captions


def _train_ids(path: Path) -> list[tuple[int, str]]:
    ids: list[tuple[int, str]] = []
    seen: set[str] = set()
    for lineno, row in read_csv_columns(path, ["video_id"]):
        vid = row["video_id"].strip()
        if not vid:
            raise AnnotationError(f"{path.name} line {lineno}: empty video_id")
        if vid not in seen:
            seen.add(vid)
            ids.append((lineno, vid))
    if not ids:
        raise AnnotationError(f"{path.name}: no video ids (only a header?)")
    return ids


def _test_1ka(path: Path) -> dict[str, list[str]]:
    captions: dict[str, list[str]] = {}
    for lineno, row in read_csv_columns(path, ["video_id", "sentence"]):
        where = f"{path.name} line {lineno}"
        vid = row["video_id"].strip()
        if not vid:
            raise AnnotationError(f"{where}: empty video_id")
        captions.setdefault(vid, []).append(clean_caption(row["sentence"], where))
    if not captions:
        raise AnnotationError(f"{path.name}: no test rows (only a header?)")
    return captions


def read_msrvtt(annotations_dir: Path, index: VideoIndex, protocol: str) -> list[dict[str, Any]]:
    data_path = require_file(annotations_dir, DATA_JSON, "msrvtt")
    if protocol == "full":
        return _read_full(data_path, index)
    train_path = require_file(annotations_dir, TRAIN_CSV[protocol], "msrvtt")
    test_path = require_file(annotations_dir, TEST_CSV, "msrvtt")
    captions = _captions_by_video(data_path, _load_data(data_path))
    rows = []
    for lineno, vid in _train_ids(train_path):
        if not captions.get(vid):
            raise AnnotationError(f"{train_path.name} line {lineno}: video '{vid}' has no captions in "
                                  f"{DATA_JSON}")
        rows.append(make_row(vid, index.find(vid), captions[vid], "train"))
    for vid, caps in _test_1ka(test_path).items():
        rows.append(make_row(vid, index.find(vid), caps, "test"))
    return rows


def _read_full(data_path: Path, index: VideoIndex) -> list[dict[str, Any]]:
    data = _load_data(data_path)
    captions = _captions_by_video(data_path, data)
    videos = data.get("videos")
    if not isinstance(videos, list):
        raise AnnotationError(f"{data_path.name}: the 'full' protocol needs a 'videos' list with each "
                              f"video's split")
    rows = []
    for i, video in enumerate(videos):
        where = f"{data_path.name}: videos[{i}]"
        if not isinstance(video, dict) or "video_id" not in video or "split" not in video:
            raise AnnotationError(f"{where} needs 'video_id' and 'split'")
        vid = str(video["video_id"]).strip()
        split = FULL_SPLITS.get(str(video["split"]))
        if split is None:
            raise AnnotationError(f"{where}: unknown split {video['split']!r} "
                                  f"(expected one of {sorted(FULL_SPLITS)})")
        if not captions.get(vid):
            raise AnnotationError(f"{where}: video '{vid}' has no sentences")
        rows.append(make_row(vid, index.find(vid), captions[vid], split))
    return rows
