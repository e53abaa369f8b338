"""Embedding extraction and the retrieval evaluation shared by training, ``raytrain eval`` and the demo."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence

import numpy as np
import torch

from raytrain.data.batch import BAD_VIDEO
from raytrain.eval.examples import RetrievalExamples
from raytrain.eval.rerank import RerankParams
from raytrain.eval.sharded import Bank, sharded_both_directions, sharded_scores


@torch.no_grad()
def embed_texts(model, tokenizer, texts: list[str], batch_size: int, device) -> torch.Tensor:
    """``texts`` → normalised sentence embeddings ``(num_texts, D)`` on the CPU."""
    out = []
    for start in range(0, len(texts), batch_size):
        tokens = tokenizer(texts[start:start + batch_size]).to(device)
        out.append(model.encode_text(tokens).float().cpu())
    return torch.cat(out)


def _to_cpu(features: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.float().cpu() if v.is_floating_point() else v.cpu() for k, v in features.items()}


@torch.no_grad()
def embed_video_features(encode: Callable[..., dict[str, torch.Tensor]],
                         batches: Iterable[Mapping[str, torch.Tensor]], num_videos: int, device,
                         autocast_dtype: torch.dtype | None = None) -> dict[str, torch.Tensor]:
    """Batches with ``frames: (B, T, H, W, 3) uint8``, ``video_index: (B,)`` and optionally
    ``frame_mask: (B, T)`` (1 = a real frame; absent = all real) → every feature that
    ``encode(frames, frame_mask)`` returns (``encode(frames)`` for batches without the column, so a
    model without frame masks still works), ``(num_videos, ...)`` on the CPU, in video-index order.

    Every index in ``[0, num_videos)`` must arrive exactly once; a missing or repeated clip is an
    error rather than a silently wrong metric.
    """
    out: dict[str, torch.Tensor] | None = None
    seen = torch.zeros(num_videos, dtype=torch.long)
    for batch in batches:
        index = torch.as_tensor(batch["video_index"]).long().cpu()
        frames = torch.as_tensor(batch["frames"]).to(device)
        frame_mask = batch.get("frame_mask")
        frame_mask = torch.as_tensor(frame_mask).to(device).bool() if frame_mask is not None else None
        with torch.autocast(device_type=torch.device(device).type, dtype=autocast_dtype,
                            enabled=autocast_dtype is not None):
            feats = _to_cpu(encode(frames) if frame_mask is None else encode(frames, frame_mask))
        if out is None:
            out = {k: torch.zeros(num_videos, *v.shape[1:], dtype=v.dtype) for k, v in feats.items()}
        for k, v in feats.items():
            out[k][index] = v
        seen.index_add_(0, index, torch.ones_like(index))
    if out is None or (seen != 1).any():
        bad = int((seen != 1).nonzero()[0]) if out is not None else 0
        raise RuntimeError(f"evaluation received clip {bad} {int(seen[bad])} times (expected once each)")
    return out


def embed_videos(model, batches: Iterable[Mapping[str, torch.Tensor]], num_videos: int, device,
                 autocast_dtype: torch.dtype | None = None) -> torch.Tensor:
    """Pooled normalised video embeddings ``(num_videos, D)`` (see ``embed_video_features``)."""
    return embed_video_features(lambda *frames_mask: {"video": model.encode_video(*frames_mask)}, batches, num_videos,
                                device, autocast_dtype)["video"]


@torch.no_grad()
def embed_text_features(model, tokenizer, texts: list[str], batch_size: int, device) -> dict[str, torch.Tensor]:
    """``texts`` → the method's text features (``model.text_features``), concatenated on the CPU."""
    parts = [_to_cpu(model.text_features(tokenizer(texts[i:i + batch_size]).to(device)))
             for i in range(0, len(texts), batch_size)]
    return {k: torch.cat([p[k] for p in parts]) for k in parts[0]}


class BadVideos:
    """The eval batches without their ``bad_video`` column (``data.on_bad_video=skip``), keeping the
    video indices it marks: clips that could not be decoded and are scored as black videos."""

    def __init__(self, batches: Iterable[Mapping[str, torch.Tensor]]):
        self.batches = batches
        self.marked = False  # the batches carried the column (skip mode)
        self.indices: set[int] = set()

    def __iter__(self) -> Iterator[Mapping[str, torch.Tensor]]:
        for batch in self.batches:
            if BAD_VIDEO.name in batch:
                batch = dict(batch)
                flags = torch.as_tensor(batch.pop(BAD_VIDEO.name)).bool().cpu()
                self.marked = True
                self.indices.update(int(i) for i in torch.as_tensor(batch["video_index"]).cpu()[flags])
            yield batch

    def report(self, metrics: dict[str, float], names: Sequence[str] | None = None) -> None:
        """Add ``bad_eval_videos`` (skip mode only) and warn naming the replaced clips."""
        if not self.marked:
            return
        metrics["bad_eval_videos"] = float(len(self.indices))
        if self.indices:
            which = [names[i] if names is not None else f"clip {i}" for i in sorted(self.indices)]
            print(f"[raytrain] eval: {len(which)} of {int(metrics['num_videos'])} clips could not be decoded "
                  f"and were scored as black videos (data.on_bad_video=skip): {', '.join(which)}", flush=True)


def _rows(features: dict[str, torch.Tensor], start: int, stop: int) -> dict[str, torch.Tensor]:
    """Items ``start:stop`` of a feature dict (every tensor has the item axis first)."""
    return {k: v[start:stop] for k, v in features.items()}


def evaluate_embeddings(text_emb: torch.Tensor, video_emb: torch.Tensor, text_to_video: np.ndarray,
                        block: int = 1024, **options) -> dict[str, float]:
    """Both directions, ``block`` queries at a time (exact; memory ``block x candidates``); ``options``:
    ``sharded_both_directions``'s protocol, re-ranking and bank embeddings."""
    return sharded_both_directions(text_emb, video_emb, text_to_video, block=block, **options)


def evaluate_model(model, batches, texts: list[str], text_to_video: np.ndarray, num_videos: int,
                   tokenizer, device, text_batch_size: int = 256,
                   autocast_dtype: torch.dtype | None = None, sim_block: int = 1024,
                   video_names: Sequence[str] | None = None, v2t_protocol: str = "raytrain",
                   rerank: RerankParams | None = None, bank_texts: list[str] | None = None,
                   bank_batches=None, num_bank_videos: int = 0,
                   examples: RetrievalExamples | None = None) -> dict[str, float]:
    """Embed every eval clip and caption with ``model`` (in eval mode) and score both directions.

    A ``model`` with its own ``similarity`` (a method objective such as DMAE) is scored with it on the
    features of its ``video_features`` / ``text_features``; any other uses the dot product of
    ``encode_video`` and ``encode_text``. Batches with a ``bad_video`` column (``data.on_bad_video=skip``)
    add ``bad_eval_videos`` to the metrics, and a warning naming them (``video_names``, by video index).
    ``v2t_protocol`` and ``rerank``: see ``sharded_scores``; QB-Norm's banks are ``bank_texts`` (train
    captions) and ``bank_batches`` (``num_bank_videos`` train clips, eval batches), embedded here too.
    ``examples``: filled with its captions' top clips by the raw similarity (``raytrain.eval.examples``).
    """
    bad = BadVideos(batches)
    batches = bad
    was_training = model.training
    model.eval()
    use_bank = rerank is not None and rerank.method == "qb_norm"
    if use_bank and (not bank_texts or bank_batches is None or num_bank_videos < 1):
        raise ValueError("qb_norm re-ranking needs bank_texts and bank_batches (train captions and clips)")
    options = {"v2t_protocol": v2t_protocol, "rerank": rerank}
    try:
        if hasattr(model, "similarity"):
            videos = embed_video_features(model.video_features, batches, num_videos, device, autocast_dtype)
            text_feats = embed_text_features(model, tokenizer, texts, text_batch_size, device)
            banks = {}
            if use_bank:
                bank_t = embed_text_features(model, tokenizer, bank_texts, text_batch_size, device)
                bank_v = embed_video_features(model.video_features, bank_batches, num_bank_videos, device,
                                              autocast_dtype)
                banks = {"t2v": Bank(lambda a, b: model.similarity(_rows(bank_t, a, b), videos), len(bank_texts)),
                         "v2t": Bank(lambda a, b: model.similarity(text_feats, _rows(bank_v, a, b)).T,
                                     num_bank_videos)}
            for q in examples.queries if examples else ():
                examples.add(q, model.similarity(_rows(text_feats, q, q + 1), videos).detach().float().numpy())
            metrics = sharded_scores(
                lambda a, b: model.similarity(_rows(text_feats, a, b), videos),
                lambda a, b: model.similarity(text_feats, _rows(videos, a, b)).T,
                num_videos, text_to_video, block=sim_block, banks=banks, **options)
        else:
            video_emb = embed_videos(model, batches, num_videos, device, autocast_dtype)
            text_emb = embed_texts(model, tokenizer, texts, text_batch_size, device)
            if use_bank:
                options["bank_text_emb"] = embed_texts(model, tokenizer, bank_texts, text_batch_size, device)
                options["bank_video_emb"] = embed_videos(model, bank_batches, num_bank_videos, device, autocast_dtype)
            for q in examples.queries if examples else ():
                examples.add(q, (text_emb[q:q + 1] @ video_emb.T).detach().numpy())
            metrics = evaluate_embeddings(text_emb, video_emb, text_to_video, block=sim_block, **options)
    finally:
        model.train(was_training)
    metrics["num_videos"] = float(num_videos)
    metrics["num_texts"] = float(len(texts))
    if use_bank:
        metrics["qb_norm_bank_texts"] = float(len(bank_texts))
        metrics["qb_norm_bank_videos"] = float(num_bank_videos)
    bad.report(metrics, video_names)
    return metrics
