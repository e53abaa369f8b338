"""Retrieval metrics: R@1/5/10, median and mean rank, text→video and video→text (pure numpy).

Ties are broken at random *in expectation*: a query whose correct item ties with ``w`` wrong items
gets the expected recall and the expected rank over all orderings of the tie. A constant similarity
matrix therefore scores exactly chance, and no ordering of equal scores is favoured.

Multi-caption: every caption is a text→video query. For video→text the rank of a video is the rank
of its best-placed caption among all texts (the other captions of the same video are not counted
against it).
"""

from __future__ import annotations

import numpy as np

KS = (1, 5, 10)

# Metric names, defined once: every reported, logged, tabled or swept name comes from here.
RANK_METRICS = ("R1", "R5", "R10", "MdR", "MnR")  # per direction
DIRECTIONS = ("t2v", "v2t")  # text→video, video→text
EVAL_METRICS = tuple(f"{d}_{m}" for d in DIRECTIONS for m in RANK_METRICS)
TRAIN_METRICS = ("loss", "step")
REPORTED_METRICS = TRAIN_METRICS + EVAL_METRICS  # what every checkpoint report may carry
LOWER_IS_BETTER = frozenset({"loss", *(f"{d}_{m}" for d in DIRECTIONS for m in ("MdR", "MnR"))})


def is_eval_metric(name: str) -> bool:
    return name in EVAL_METRICS


def _hit_probability(greater: np.ndarray, tied_wrong: np.ndarray, tied_right: np.ndarray, k: int) -> np.ndarray:
    """P(first correct item within the top k) when ``greater`` wrong items score strictly higher and
    the best correct item ties with ``tied_wrong`` wrong and ``tied_right - 1`` other correct ones."""
    m = k - greater  # slots left in the top k for the tied group
    n = tied_wrong + tied_right
    # P(the first m of a random ordering of the tied group are all wrong) = Π_{i<m} (w - i) / (n - i)
    all_wrong = np.ones_like(greater, dtype=np.float64)
    for i in range(k):
        active = i < m
        factor = np.where(active, np.clip(tied_wrong - i, 0, None) / np.maximum(n - i, 1), 1.0)
        all_wrong *= factor
    return np.where(m <= 0, 0.0, 1.0 - all_wrong)


def _rank_queries(scores: np.ndarray, correct: np.ndarray) -> dict[str, np.ndarray]:
    """Rows are queries, columns candidates; ``correct`` marks each row's right answers (>= 1 each)."""
    best = np.where(correct, scores, -np.inf).max(axis=1, keepdims=True)
    wrong = ~correct
    greater = (wrong & (scores > best)).sum(axis=1)
    tied_wrong = (wrong & (scores == best)).sum(axis=1)
    tied_right = (correct & (scores == best)).sum(axis=1)
    expected_rank = 1.0 + greater + tied_wrong / (tied_right + 1.0)
    hits = {k: _hit_probability(greater, tied_wrong, tied_right, k) for k in KS}
    return {"rank": expected_rank, **{f"R{k}": h for k, h in hits.items()}}


def _summary(stats: dict[str, np.ndarray]) -> dict[str, float]:
    out = {f"R{k}": float(100.0 * stats[f"R{k}"].mean()) for k in KS}
    out["MdR"] = float(np.median(stats["rank"]))
    out["MnR"] = float(stats["rank"].mean())
    return out


def _check(sim: np.ndarray, text_to_video: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    sim = np.asarray(sim, dtype=np.float64)
    if sim.ndim != 2 or 0 in sim.shape:
        raise ValueError(f"sim must be a non-empty (num_texts, num_videos) matrix, got shape {sim.shape}")
    if np.isnan(sim).any():
        raise ValueError("sim contains NaN")
    num_texts, num_videos = sim.shape
    if text_to_video is None:
        if num_texts != num_videos:
            raise ValueError(f"sim is {num_texts}x{num_videos}: pass text_to_video for a non-square matrix")
        text_to_video = np.arange(num_texts)
    text_to_video = np.asarray(text_to_video, dtype=np.int64)
    if text_to_video.shape != (num_texts,):
        raise ValueError(f"text_to_video must have one entry per text ({num_texts}), got {text_to_video.shape}")
    if text_to_video.min() < 0 or text_to_video.max() >= num_videos:
        raise ValueError(f"text_to_video holds a video index outside [0, {num_videos})")
    return sim, text_to_video


def retrieval_metrics(sim, text_to_video=None) -> dict[str, float]:
    """Text→video metrics of ``sim: (num_texts, num_videos)``: R1, R5, R10 (percent), MdR, MnR.

    ``text_to_video[i]`` is the index of text i's video (default: the diagonal).
    """
    sim, text_to_video = _check(sim, text_to_video)
    correct = np.zeros(sim.shape, dtype=bool)
    correct[np.arange(sim.shape[0]), text_to_video] = True
    return _summary(_rank_queries(sim, correct))


def video_to_text_metrics(sim, text_to_video=None) -> dict[str, float]:
    """Video→text metrics of the same ``sim``; a hit is any caption of the video. Every video needs
    at least one caption."""
    sim, text_to_video = _check(sim, text_to_video)
    correct = np.zeros(sim.shape, dtype=bool)
    correct[np.arange(sim.shape[0]), text_to_video] = True
    counts = correct.sum(axis=0)
    if (counts == 0).any():
        raise ValueError(f"video {int(np.argmax(counts == 0))} has no caption in text_to_video")
    return _summary(_rank_queries(sim.T, correct.T))


def both_directions(sim, text_to_video=None) -> dict[str, float]:
    """``{"t2v_R1": ..., "v2t_R1": ...}`` for logging and ``metrics.json``."""
    out = {f"t2v_{k}": v for k, v in retrieval_metrics(sim, text_to_video).items()}
    out.update({f"v2t_{k}": v for k, v in video_to_text_metrics(sim, text_to_video).items()})
    return out


def chance_metrics(num_videos: int, num_texts: int | None = None) -> dict[str, float]:
    """Expected text→video metrics of a random ranking (one correct video per text)."""
    out = {f"R{k}": 100.0 * min(k, num_videos) / num_videos for k in KS}
    out["MdR"] = (num_videos + 1) / 2.0
    out["MnR"] = (num_videos + 1) / 2.0
    return out
