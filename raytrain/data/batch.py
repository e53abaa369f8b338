"""The batch schema: which columns a train or eval batch carries and their dtypes. The decode actors
emit exactly these columns and the training loop reads them with these dtypes (Ray Data needs a
dtype for every column, and no others). Which mask columns a run needs is the method's to say
(``raytrain.methods.data_columns``); the data layer only knows how to build them."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from raytrain.config import Config

# Masks the decode actors can build: MASCOT's random ablation (high, low: (T, N)) and MILES's tube (N,).
MASK_COLUMNS = ("mask_high", "mask_low", "mask_tube")


def train_batch_dtypes(cfg: Config, mask_columns: Sequence[str] = ()) -> dict[str, torch.dtype]:
    unknown = set(mask_columns) - set(MASK_COLUMNS)
    if unknown:
        raise ValueError(f"the data workers cannot build mask columns {sorted(unknown)}; "
                         f"they build {list(MASK_COLUMNS)}")
    dtypes = {"frames": torch.uint8, "tokens": torch.int64}
    dtypes.update({column: torch.bool for column in mask_columns})
    if cfg.data.on_bad_video == "skip":
        dtypes["bad_clip"] = torch.int64  # the plan clip a substitute replaced, or -1
    if cfg.data.cache == "frames":
        dtypes["cache_hit"] = torch.bool  # the clip's frames came from the frame cache
    return dtypes


def eval_batch_dtypes(cfg: Config) -> dict[str, torch.dtype]:
    return {"frames": torch.uint8, "video_index": torch.int64}
