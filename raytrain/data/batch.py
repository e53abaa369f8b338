"""The batch schema: which columns a train or eval batch carries and their dtypes, defined once. The
decode actors emit exactly these columns (:func:`assemble`) and the training loop and the evaluation
read them with these dtypes (Ray Data needs a torch dtype for every column, and no others). Which mask
columns a run needs is the method's to say (``raytrain.methods.data_columns``); the data layer only
knows how to build them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from raytrain.config import Config


@dataclass(frozen=True)
class Column:
    """One batch column: its name, the numpy dtype the decode actors emit, the torch dtype it is read as."""

    name: str
    numpy: type
    torch: torch.dtype


FRAMES = Column("frames", np.uint8, torch.uint8)  # (B, T, S, S, 3): frames stay uint8 until the device
TOKENS = Column("tokens", np.int64, torch.int64)  # (B, max_words): the planned caption (train)
VIDEO_INDEX = Column("video_index", np.int64, torch.int64)  # (B,): the clip's column in the sim matrix (eval)
BAD_CLIP = Column("bad_clip", np.int64, torch.int64)  # (B,): the plan clip a substitute replaced, or -1
BAD_VIDEO = Column("bad_video", np.bool_, torch.bool)  # (B,): an eval clip that could not be decoded (black)
CACHE_HIT = Column("cache_hit", np.bool_, torch.bool)  # (B,): the clip's frames came from the frame cache
# (B,): data.decoder=auto: the fast decoder could not read the clip's file, the fallback (PyAV) decoded it
FALLBACK = Column("fallback_decoded", np.bool_, torch.bool)
MASK_HIGH = Column("mask_high", np.bool_, torch.bool)  # (B, T, N): MASCOT's random "high-informed" ablation
MASK_LOW = Column("mask_low", np.bool_, torch.bool)  # (B, T, N): ... and its "low-informed" one
MASK_TUBE = Column("mask_tube", np.bool_, torch.bool)  # (B, N): MILES's tube, shared by every frame
# (B, T): data.frame_sampling=clip4clip, 1 = a real frame, 0 = zero padding after a short clip's frames
FRAME_MASK = Column("frame_mask", np.uint8, torch.uint8)

_MASKS = {c.name: c for c in (MASK_HIGH, MASK_LOW, MASK_TUBE)}
MASK_COLUMNS = tuple(_MASKS)  # the masks the decode actors can build


def check_mask_columns(mask_columns: Sequence[str]) -> tuple[str, ...]:
    unknown = set(mask_columns) - set(MASK_COLUMNS)
    if unknown:
        raise ValueError(f"the data workers cannot build mask columns {sorted(unknown)}; "
                         f"they build {list(MASK_COLUMNS)}")
    return tuple(mask_columns)


def train_columns(mask_columns: Sequence[str] = (), skip_bad: bool = False,
                  cache: bool = False, frame_mask: bool = False, fallback: bool = False) -> tuple[Column, ...]:
    """A train batch: frames, tokens, the method's masks, ``bad_clip`` under ``data.on_bad_video=skip``,
    ``cache_hit`` with the frame cache on, ``frame_mask`` with ``data.frame_sampling=clip4clip`` and
    ``fallback_decoded`` with ``data.decoder=auto`` (the run counts the clips its fallback read)."""
    columns = [FRAMES, TOKENS, *(_MASKS[name] for name in check_mask_columns(mask_columns))]
    return (*columns, *([BAD_CLIP] if skip_bad else []), *([CACHE_HIT] if cache else []),
            *([FRAME_MASK] if frame_mask else []), *([FALLBACK] if fallback else []))


def eval_columns(skip_bad: bool = False, frame_mask: bool = False) -> tuple[Column, ...]:
    """An eval batch: frames, the video index, ``bad_video`` under ``data.on_bad_video=skip`` and
    ``frame_mask`` with ``data.frame_sampling=clip4clip``."""
    return (FRAMES, VIDEO_INDEX, *([BAD_VIDEO] if skip_bad else []), *([FRAME_MASK] if frame_mask else []))


def dtypes(columns: Sequence[Column]) -> dict[str, torch.dtype]:
    return {c.name: c.torch for c in columns}


def train_batch_dtypes(cfg: Config, mask_columns: Sequence[str] = ()) -> dict[str, torch.dtype]:
    return dtypes(train_columns(mask_columns, cfg.data.on_bad_video == "skip", cfg.data.cache == "frames",
                                cfg.data.frame_sampling == "clip4clip", cfg.data.decoder == "auto"))


def eval_batch_dtypes(cfg: Config) -> dict[str, torch.dtype]:
    return dtypes(eval_columns(cfg.data.on_bad_video == "skip", cfg.data.frame_sampling == "clip4clip"))


def assemble(columns: Sequence[Column], values: Mapping[str, object]) -> dict[str, np.ndarray]:
    """The batch of exactly ``columns`` from ``values`` (a superset), each cast to its numpy dtype."""
    missing = [c.name for c in columns if c.name not in values]
    if missing:
        raise KeyError(f"the decode step produced no {missing} for the batch schema {[c.name for c in columns]}")
    return {c.name: np.asarray(values[c.name], dtype=c.numpy) for c in columns}
