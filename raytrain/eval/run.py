"""The one evaluation function: in-run eval (rank 0 of the Train run), ``raytrain eval`` and the demo.

Same batches (``eval.batch_size``, the eval batch schema), same tokenizer, same precision rule as
training (``autocast_dtype``: bf16 autocast for ``train.precision=bf16``, or ``auto`` on CUDA).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from raytrain.config import Config
from raytrain.data.batch import eval_batch_dtypes
from raytrain.eval.retrieval import evaluate_model
from raytrain.model.clip_video import get_tokenizer
from raytrain.train.step import autocast_dtype


def eval_batches(cfg: Config, dataset):
    """Torch batches of a Ray dataset (or a Train worker's dataset shard) of decoded eval clips."""
    return dataset.iter_torch_batches(batch_size=cfg.eval.batch_size, dtypes=eval_batch_dtypes(cfg))


def evaluate(cfg: Config, model: torch.nn.Module, dataset, texts: Sequence[str],
             text_to_video: Sequence[int], num_clips: int, device: torch.device,
             video_names: Sequence[str] | None = None) -> dict[str, float]:
    """Embed every eval clip of ``dataset`` and every caption with ``model`` (a retrieval model: the
    dual encoder, or a method's own similarity) on ``device``; the metrics of both directions.
    ``video_names`` (the clips' files) name the eval clips replaced under ``data.on_bad_video=skip``."""
    tokenizer = get_tokenizer(cfg.model.arch, cfg.data.max_words)
    return evaluate_model(model, eval_batches(cfg, dataset), list(texts), np.asarray(text_to_video), num_clips,
                          tokenizer, device, cfg.eval.text_batch_size, autocast_dtype(cfg, device),
                          cfg.eval.sim_block, video_names)
