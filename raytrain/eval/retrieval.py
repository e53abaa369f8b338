"""Embedding extraction and the retrieval evaluation shared by training, ``raytrain eval`` and the demo."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np
import torch

from raytrain.eval.metrics import both_directions


@torch.no_grad()
def embed_texts(model, tokenizer, texts: list[str], batch_size: int, device) -> torch.Tensor:
    """``texts`` → normalised sentence embeddings ``(num_texts, D)`` on the CPU."""
    out = []
    for start in range(0, len(texts), batch_size):
        tokens = tokenizer(texts[start:start + batch_size]).to(device)
        out.append(model.encode_text(tokens).float().cpu())
    return torch.cat(out)


@torch.no_grad()
def embed_videos(model, batches: Iterable[Mapping[str, torch.Tensor]], num_videos: int, device,
                 autocast_dtype: torch.dtype | None = None) -> torch.Tensor:
    """Batches with ``frames: (B, T, H, W, 3) uint8`` and ``video_index: (B,)`` → ``(num_videos, D)``.

    Every index in ``[0, num_videos)`` must arrive exactly once; a missing or repeated clip is an
    error rather than a silently wrong metric.
    """
    emb = None
    seen = torch.zeros(num_videos, dtype=torch.long)
    for batch in batches:
        index = torch.as_tensor(batch["video_index"]).long().cpu()
        frames = torch.as_tensor(batch["frames"]).to(device)
        with torch.autocast(device_type=torch.device(device).type, dtype=autocast_dtype,
                            enabled=autocast_dtype is not None):
            v = model.encode_video(frames).float().cpu()
        if emb is None:
            emb = torch.zeros(num_videos, v.shape[1])
        emb[index] = v
        seen.index_add_(0, index, torch.ones_like(index))
    if emb is None or (seen != 1).any():
        bad = int((seen != 1).nonzero()[0]) if emb is not None else 0
        raise RuntimeError(f"evaluation received clip {bad} {int(seen[bad])} times (expected once each)")
    return emb


def evaluate_embeddings(text_emb: torch.Tensor, video_emb: torch.Tensor,
                        text_to_video: np.ndarray) -> dict[str, float]:
    sim = (text_emb @ video_emb.t()).numpy()
    return both_directions(sim, text_to_video)


def evaluate_model(model, batches, texts: list[str], text_to_video: np.ndarray, num_videos: int,
                   tokenizer, device, text_batch_size: int = 256,
                   autocast_dtype: torch.dtype | None = None) -> dict[str, float]:
    """Embed every eval clip and caption with ``model`` (in eval mode) and score both directions."""
    was_training = model.training
    model.eval()
    try:
        video_emb = embed_videos(model, batches, num_videos, device, autocast_dtype)
        text_emb = embed_texts(model, tokenizer, texts, text_batch_size, device)
    finally:
        model.train(was_training)
    metrics = evaluate_embeddings(text_emb, video_emb, text_to_video)
    metrics["num_videos"] = float(num_videos)
    metrics["num_texts"] = float(len(texts))
    return metrics
