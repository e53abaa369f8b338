"""The one evaluation function: in-run eval (rank 0 of the Train run), ``raytrain eval`` and the demo.

Same batches (``eval.batch_size``, the eval batch schema), same tokenizer, same precision rule as
training (``autocast_dtype``: bf16 autocast for ``train.precision=bf16``, or ``auto`` on CUDA). The
``eval.v2t_protocol`` and ``eval.rerank`` keys pick the video→text protocol and the test-time
re-ranking; ``eval.rerank=qb_norm`` also embeds a query bank of train captions and train clips.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from raytrain.config import Config, EvalSection
from raytrain.data.batch import eval_batch_dtypes
from raytrain.data.manifest import ClipRow
from raytrain.eval.examples import RetrievalExamples
from raytrain.eval.rerank import RerankParams
from raytrain.eval.retrieval import evaluate_model
from raytrain.model.clip_video import get_tokenizer
from raytrain.train.step import autocast_dtype


def rerank_params(section: EvalSection) -> RerankParams:
    """The ``eval.rerank`` method with its ``eval.*`` knobs."""
    return RerankParams(section.rerank, section.dsl_temperature, section.inverted_softmax_temperature,
                        section.qb_norm_beta, section.qb_norm_k)


def bank_rows(section: EvalSection, train_rows: Sequence[ClipRow]) -> tuple[list[str], list[ClipRow]]:
    """QB-Norm's query banks: ``eval.qb_norm_bank_size`` train captions (all if fewer) and
    ``eval.qb_norm_video_bank_size`` train clips, drawn with ``eval.qb_norm_bank_seed``, in manifest order."""
    if not train_rows:
        raise ValueError("eval.rerank=qb_norm needs a query bank, but the train split has no clips")
    rng = np.random.default_rng(section.qb_norm_bank_seed)
    pairs = [caption for row in train_rows for caption in row.captions]
    texts = [pairs[i] for i in np.sort(rng.permutation(len(pairs))[:section.qb_norm_bank_size])]
    videos = [train_rows[i] for i in np.sort(rng.permutation(len(train_rows))[:section.qb_norm_video_bank_size])]
    return texts, videos


@dataclass(frozen=True)
class QueryBank:
    """QB-Norm's banks as the evaluation reads them: caption strings and a dataset of decoded clips
    (``eval_dataset`` of the bank's train rows, or a Train worker's shard of it)."""
    texts: list[str]
    videos: Any
    num_videos: int


def eval_batches(cfg: Config, dataset):
    """Torch batches of a Ray dataset (or a Train worker's dataset shard) of decoded eval clips."""
    return dataset.iter_torch_batches(batch_size=cfg.eval.batch_size, dtypes=eval_batch_dtypes(cfg))


def evaluate(cfg: Config, model: torch.nn.Module, dataset, texts: Sequence[str],
             text_to_video: Sequence[int], num_clips: int, device: torch.device,
             video_names: Sequence[str] | None = None, bank: QueryBank | None = None,
             examples: RetrievalExamples | None = None) -> dict[str, float]:
    """Embed every eval clip of ``dataset`` and every caption with ``model`` (a retrieval model: the
    dual encoder, or a method's own similarity) on ``device``; the metrics of both directions.
    ``video_names`` (the clips' files) name the eval clips replaced under ``data.on_bad_video=skip``;
    ``bank``: the query banks, needed by ``eval.rerank=qb_norm`` (an error without them); ``examples``:
    filled with a few captions' top clips (``raytrain.eval.examples``)."""
    tokenizer = get_tokenizer(cfg.model.arch, cfg.data.max_words)
    rerank = rerank_params(cfg.eval)
    if rerank.method == "qb_norm" and bank is None:
        raise ValueError("config key 'eval.rerank' is qb_norm, but no query bank was built for this evaluation")
    bank_args = {}
    if rerank.method == "qb_norm":
        bank_args = {"bank_texts": list(bank.texts), "bank_batches": eval_batches(cfg, bank.videos),
                     "num_bank_videos": bank.num_videos}
    print(f"[raytrain] eval: embedding {num_clips} clips and {len(texts)} captions ...", flush=True)
    t0 = time.perf_counter()
    metrics = evaluate_model(model, eval_batches(cfg, dataset), list(texts), np.asarray(text_to_video), num_clips,
                             tokenizer, device, cfg.eval.text_batch_size, autocast_dtype(cfg, device),
                             cfg.eval.sim_block, video_names, v2t_protocol=cfg.eval.v2t_protocol, rerank=rerank,
                             examples=examples, **bank_args)
    print(f"[raytrain] eval: done in {time.perf_counter() - t0:.1f} s", flush=True)
    return metrics
