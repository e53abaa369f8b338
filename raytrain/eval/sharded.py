"""Retrieval metrics without the full similarity matrix: blocks of queries at a time, exact results.

A 100k x 100k matrix is 40 GB in float32; the metrics need only, per query, how many wrong candidates
score above (and tie with) its best correct one. Each block of ``block`` text queries (text→video) or
video queries (video→text) is scored against every candidate, reduced to those counts by the same
``_rank_queries`` as ``metrics.py``, and dropped, so peak memory is ``block x num_candidates`` scores
plus a few numbers per query, and the metrics equal the full-matrix ones on the same scores (ties
included).
"""

from __future__ import annotations

import numpy as np
import torch

from raytrain.eval.metrics import _rank_queries, _summary


def _check_inputs(text_emb: torch.Tensor, video_emb: torch.Tensor, text_to_video) -> np.ndarray:
    if text_emb.ndim != 2 or video_emb.ndim != 2 or text_emb.shape[1] != video_emb.shape[1]:
        raise ValueError(f"embeddings must be (texts, D) and (videos, D), got {tuple(text_emb.shape)} and "
                         f"{tuple(video_emb.shape)}")
    owner = np.asarray(text_to_video, dtype=np.int64)
    if owner.shape != (text_emb.shape[0],):
        raise ValueError(f"text_to_video must have one entry per text ({text_emb.shape[0]}), got {owner.shape}")
    return owner  # its video indices are checked by sharded_scores


def _collect(parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    return {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}


@torch.no_grad()
def sharded_both_directions(text_emb: torch.Tensor, video_emb: torch.Tensor, text_to_video,
                            block: int = 1024) -> dict[str, float]:
    """``both_directions(text_emb @ video_emb.T, text_to_video)`` computed ``block`` queries at a time."""
    owner = _check_inputs(text_emb, video_emb, text_to_video)
    text_emb, video_emb = text_emb.float(), video_emb.float()
    return sharded_scores(lambda a, b: text_emb[a:b] @ video_emb.T, lambda a, b: video_emb[a:b] @ text_emb.T,
                          video_emb.shape[0], owner, block)


@torch.no_grad()
def sharded_scores(score_texts, score_videos, num_videos: int, text_to_video, block: int = 1024) -> dict[str, float]:
    """Both directions from score functions instead of embeddings (a method's own similarity, e.g.
    DMAE's token-wise one): ``score_texts(a, b)`` gives texts ``a:b`` against every video ``(b - a, V)``,
    ``score_videos(a, b)`` videos ``a:b`` against every text ``(b - a, T)``; each is called on blocks
    of ``block`` queries, so no full matrix is held."""
    owner = np.asarray(text_to_video, dtype=np.int64)
    num_texts = owner.shape[0]
    if owner.ndim != 1:
        raise ValueError(f"text_to_video must list one video index per text, got shape {owner.shape}")
    if owner.size and (owner.min() < 0 or owner.max() >= num_videos):
        raise ValueError(f"text_to_video holds a video index outside [0, {num_videos})")
    counts = np.bincount(owner, minlength=num_videos)
    if (counts == 0).any():
        raise ValueError(f"video {int(np.argmax(counts == 0))} has no caption in text_to_video")

    t2v = []
    for start in range(0, num_texts, block):
        scores = score_texts(start, min(start + block, num_texts)).float().cpu().numpy()
        correct = np.zeros(scores.shape, dtype=bool)
        correct[np.arange(scores.shape[0]), owner[start:start + block]] = True
        t2v.append(_rank_queries(scores, correct))

    v2t = []
    for start in range(0, num_videos, block):
        scores = score_videos(start, min(start + block, num_videos)).float().cpu().numpy()
        correct = owner[None, :] == np.arange(start, start + scores.shape[0])[:, None]
        v2t.append(_rank_queries(scores, correct))

    out = {f"t2v_{k}": v for k, v in _summary(_collect(t2v)).items()}
    out.update({f"v2t_{k}": v for k, v in _summary(_collect(v2t)).items()})
    return out
