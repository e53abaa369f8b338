"""Retrieval metrics without the full similarity matrix: blocks of queries at a time, exact results.

A 100k x 100k matrix is 40 GB in float32; the metrics need only, per query, how many wrong candidates
score above (and tie with) its best correct one. Each block of ``block`` text queries (text→video) or
video queries (video→text) is scored against every candidate, reduced to those counts by the same
``_rank_queries`` as ``metrics.py``, and dropped, so peak memory is ``block x num_candidates`` scores
plus a few numbers per query, and the metrics equal the full-matrix ones on the same scores (ties
included). Re-ranking (``rerank.py``) adds a first pass per direction that keeps one or two numbers
per gallery item, so memory stays ``block x num_candidates``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

import numpy as np
import torch

from raytrain.eval.metrics import _rank_queries, _summary, group_max, video_to_text
from raytrain.eval.rerank import ColumnStats, RerankParams, apply_rerank, column_stats


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
                            block: int = 1024, v2t_protocol: str = "raytrain", rerank: RerankParams | None = None,
                            bank_text_emb: torch.Tensor | None = None,
                            bank_video_emb: torch.Tensor | None = None) -> dict[str, float]:
    """``both_directions(text_emb @ video_emb.T, text_to_video)`` computed ``block`` queries at a time;
    with ``rerank``, re-ranked (qb_norm: the banks are embedded train captions / videos, see
    ``sharded_scores``)."""
    owner = _check_inputs(text_emb, video_emb, text_to_video)
    text_emb, video_emb = text_emb.float(), video_emb.float()
    banks = {}
    if bank_text_emb is not None:
        bank_t = bank_text_emb.float()
        banks["t2v"] = Bank(lambda a, b: bank_t[a:b] @ video_emb.T, bank_t.shape[0])
    if bank_video_emb is not None:
        bank_v = bank_video_emb.float()
        banks["v2t"] = Bank(lambda a, b: bank_v[a:b] @ text_emb.T, bank_v.shape[0])
    return sharded_scores(lambda a, b: text_emb[a:b] @ video_emb.T, lambda a, b: video_emb[a:b] @ text_emb.T,
                          video_emb.shape[0], owner, block, v2t_protocol=v2t_protocol, rerank=rerank, banks=banks)


@dataclass(frozen=True)
class Bank:
    """A QB-Norm query bank for one direction: ``score(a, b)`` gives bank queries ``a:b`` against the
    whole test gallery of that direction, ``(b - a, gallery)``."""
    score: Callable[[int, int], torch.Tensor]
    size: int


def _blocks(score: Callable[[int, int], torch.Tensor], num_rows: int, block: int) -> Iterator[tuple[int, np.ndarray]]:
    for start in range(0, num_rows, block):
        yield start, score(start, min(start + block, num_rows)).float().cpu().numpy()


def _direction_stats(params: RerankParams | None, direction: str, score, num_queries: int, num_gallery: int,
                     block: int, banks: Mapping[str, Bank]) -> ColumnStats | None:
    """The first pass: the column statistics of one direction (over its queries, or its bank)."""
    if params is None or params.method == "none":
        return None
    if params.method != "qb_norm":
        return column_stats(params, (s for _, s in _blocks(score, num_queries, block)), num_gallery)
    if direction not in banks:
        raise ValueError(f"qb_norm needs a query bank for {direction} (train captions for t2v, train videos for v2t)")
    bank = banks[direction]
    return column_stats(params, (s for _, s in _blocks(bank.score, bank.size, block)), num_gallery)


@torch.no_grad()
def sharded_scores(score_texts, score_videos, num_videos: int, text_to_video, block: int = 1024,
                   v2t_protocol: str = "raytrain", rerank: RerankParams | None = None,
                   banks: Mapping[str, Bank] | None = None) -> dict[str, float]:
    """Both directions from score functions instead of embeddings (a method's own similarity, e.g.
    DMAE's token-wise one): ``score_texts(a, b)`` gives texts ``a:b`` against every video ``(b - a, V)``,
    ``score_videos(a, b)`` videos ``a:b`` against every text ``(b - a, T)``; each is called on blocks
    of ``block`` queries, so no full matrix is held.

    ``v2t_protocol``: ``raytrain`` or ``clip4clip`` (``metrics.py``). ``rerank``: each direction's query
    x gallery scores re-ranked (``rerank.py``) in two passes, the first gathering one or two numbers
    per gallery item over every query block (dsl, inverted_softmax) or over the blocks of
    ``banks[direction]`` (qb_norm; ``"t2v"``: bank texts x test videos, ``"v2t"``: bank videos x test
    texts), the second re-ranking each block before its ranks are counted: exactly the full-matrix
    result. For video→text the re-ranking is applied to the videos x texts scores, before CLIP4Clip's
    grouping by video.
    """
    owner = np.asarray(text_to_video, dtype=np.int64)
    num_texts = owner.shape[0]
    if owner.ndim != 1:
        raise ValueError(f"text_to_video must list one video index per text, got shape {owner.shape}")
    if owner.size and (owner.min() < 0 or owner.max() >= num_videos):
        raise ValueError(f"text_to_video holds a video index outside [0, {num_videos})")
    counts = np.bincount(owner, minlength=num_videos)
    if (counts == 0).any():
        raise ValueError(f"video {int(np.argmax(counts == 0))} has no caption in text_to_video")
    video_to_text(v2t_protocol)  # an unknown protocol name is an error here, before any scoring
    banks = banks or {}

    stats = _direction_stats(rerank, "t2v", score_texts, num_texts, num_videos, block, banks)
    t2v = []
    for start, scores in _blocks(score_texts, num_texts, block):
        scores = apply_rerank(rerank, stats, scores) if stats is not None else scores
        correct = np.zeros(scores.shape, dtype=bool)
        correct[np.arange(scores.shape[0]), owner[start:start + block]] = True
        t2v.append(_rank_queries(scores, correct))

    stats = _direction_stats(rerank, "v2t", score_videos, num_videos, num_texts, block, banks)
    v2t = []
    for start, scores in _blocks(score_videos, num_videos, block):
        scores = apply_rerank(rerank, stats, scores) if stats is not None else scores
        queries = np.arange(start, start + scores.shape[0])
        if v2t_protocol == "clip4clip":
            scores = group_max(scores, owner, num_videos)  # (b, videos): each video's best caption
            correct = queries[:, None] == np.arange(num_videos)[None, :]
        else:
            correct = owner[None, :] == queries[:, None]
        v2t.append(_rank_queries(scores, correct))

    out = {f"t2v_{k}": v for k, v in _summary(_collect(t2v)).items()}
    out.update({f"v2t_{k}": v for k, v in _summary(_collect(v2t)).items()})
    return out
