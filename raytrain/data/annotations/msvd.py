"""MSVD (YouTube2Text), as the CLIP4Clip family splits it.

Files: ``raw-captions.pkl`` (a pickled dict: video id -> list of captions, each a list of tokens, e.g.
``{"-4wsuPCjDBc_5_15": [["a", "man", "is", "cooking"], ...]}``; a caption is its tokens joined by
spaces), ``train_list.txt`` / ``val_list.txt`` / ``test_list.txt`` (one id per line; 1200 / 100 / 670).

Protocol ``multi-caption`` (the only one): every caption of a test video is a query over the 670 test
videos (about 27k queries). Video files: ``<id>.avi`` (YouTubeClips) or any indexed extension.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

from raytrain.data.annotations.common import (
    AnnotationError,
    VideoIndex,
    clean_caption,
    make_row,
    read_id_list,
    require_file,
)

CAPTIONS_PKL = "raw-captions.pkl"
SPLIT_LISTS = {"train": "train_list.txt", "val": "val_list.txt", "test": "test_list.txt"}
PROTOCOLS = ("multi-caption",)


class _PlainUnpickler(pickle.Unpickler):
    """Loads only plain containers and strings: the captions file needs no classes, so none are built."""

    def find_class(self, module: str, name: str):
        raise pickle.UnpicklingError(f"it holds a Python object of type {module}.{name}")


def load_caption_pickle(path: Path) -> dict[str, list[str]]:
    try:
        with open(path, "rb") as fh:
            data = _PlainUnpickler(fh, encoding="utf-8").load()
    except (pickle.UnpicklingError, EOFError, ValueError, UnicodeDecodeError, IndexError, KeyError) as exc:
        raise AnnotationError(f"{path.name}: not a pickle of a dict (video id -> list of token lists): "
                              f"{exc or type(exc).__name__}") from exc
    if not isinstance(data, dict):
        raise AnnotationError(f"{path.name}: expected a dict (video id -> list of token lists), "
                              f"got {type(data).__name__}")
    out: dict[str, list[str]] = {}
    for key, caps in data.items():
        vid = key.decode("utf-8") if isinstance(key, bytes) else str(key)
        if not isinstance(caps, (list, tuple)) or not caps:
            raise AnnotationError(f"{path.name}: video '{vid}': expected a non-empty list of captions "
                                  f"(token lists), got {type(caps).__name__}"
                                  + (" (empty)" if isinstance(caps, (list, tuple)) else ""))
        texts = []
        for j, cap in enumerate(caps):
            where = f"{path.name}: video '{vid}' caption {j}"
            if isinstance(cap, (list, tuple)):
                if not all(isinstance(t, (str, bytes)) for t in cap):
                    raise AnnotationError(f"{where}: expected a list of string tokens, got {cap!r:.80}")
                cap = " ".join(t.decode("utf-8") if isinstance(t, bytes) else t for t in cap)
            elif isinstance(cap, bytes):
                cap = cap.decode("utf-8")
            elif not isinstance(cap, str):
                raise AnnotationError(f"{where}: expected a list of tokens, got {type(cap).__name__}")
            texts.append(clean_caption(cap, where))
        out[vid.strip()] = texts
    return out


def read_msvd(annotations_dir: Path, index: VideoIndex, protocol: str) -> list[dict[str, Any]]:
    pkl = require_file(annotations_dir, CAPTIONS_PKL, "msvd")
    lists = {split: require_file(annotations_dir, name, "msvd") for split, name in SPLIT_LISTS.items()}
    captions = load_caption_pickle(pkl)
    rows = []
    for split, path in lists.items():
        seen: set[str] = set()
        for lineno, vid in read_id_list(path):
            if vid in seen:
                continue
            seen.add(vid)
            if vid not in captions:
                raise AnnotationError(f"{path.name} line {lineno}: video '{vid}' has no captions in "
                                      f"{CAPTIONS_PKL}")
            rows.append(make_row(vid, index.find(vid), captions[vid], split))
    return rows
