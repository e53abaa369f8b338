"""Retrieval metrics: R@1/5/10, median and mean rank, text→video and video→text (pure numpy).

Ties are broken at random *in expectation*: a query whose correct item ties with ``w`` wrong items
gets the expected recall and the expected rank over all orderings of the tie. A constant similarity
matrix therefore scores exactly chance, and no ordering of equal scores is favoured.

Multi-caption: every caption is a text→video query. Video→text has two protocols
(``V2T_PROTOCOLS``, ``eval.v2t_protocol``), equal when every video has one caption:

- ``raytrain``: a video query ranks every text; its rank is that of its best-placed caption, counting
  every wrong *caption* above it (the other captions of the same video are not counted against it).
- ``clip4clip``: CLIP4Clip's multi-sentence protocol (``main_task_retrieval.eval_epoch`` with
  ``tensor_video_to_text_sim``): the texts are grouped by video and each group scored by its best
  caption, giving a videos x videos matrix, so a video query ranks *videos* and counts every wrong
  *video* with some caption above its best one. Never worse than ``raytrain``'s rank; with c captions
  per video its chance R@1 is 1/V instead of about c/T.
"""

from __future__ import annotations

import numpy as np

KS = (1, 5, 10)

# Metric names, defined once: every reported, logged, tabled or swept name comes from here.
RANK_METRICS = ("R1", "R5", "R10", "MdR", "MnR")  # per direction
DIRECTIONS = ("t2v", "v2t")  # text→video, video→text
V2T_PROTOCOLS = ("raytrain", "clip4clip")  # video→text on multi-caption sets (module docstring)
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


def group_max(scores: np.ndarray, owner: np.ndarray, num_groups: int) -> np.ndarray:
    """``(b, texts)`` → ``(b, num_groups)``: each group's (video's) best text score, as CLIP4Clip's
    ``tensor_video_to_text_sim`` (a max over each video's captions). Every group needs a text."""
    owner = np.asarray(owner, dtype=np.int64)
    counts = np.bincount(owner, minlength=num_groups)
    if counts.shape != (num_groups,) or (counts == 0).any():
        raise ValueError(f"every one of the {num_groups} videos needs at least one caption (and no other index)")
    order = np.argsort(owner, kind="stable")
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    return np.maximum.reduceat(np.asarray(scores)[:, order], starts, axis=1)


def clip4clip_video_to_text_metrics(sim, text_to_video=None) -> dict[str, float]:
    """Video→text metrics of ``sim: (num_texts, num_videos)`` under CLIP4Clip's multi-sentence
    protocol: video u's score for candidate video v is v's best caption against u, ranked over videos."""
    sim, text_to_video = _check(sim, text_to_video)
    grouped = group_max(sim.T, text_to_video, sim.shape[1])  # (videos as queries, videos as candidates)
    return _summary(_rank_queries(grouped, np.eye(sim.shape[1], dtype=bool)))


def video_to_text(protocol: str):
    """The video→text metric function of ``protocol`` (one of ``V2T_PROTOCOLS``)."""
    if protocol not in V2T_PROTOCOLS:
        raise ValueError(f"unknown video→text protocol {protocol!r} (one of {', '.join(V2T_PROTOCOLS)})")
    return clip4clip_video_to_text_metrics if protocol == "clip4clip" else video_to_text_metrics


def both_directions(sim, text_to_video=None, v2t_protocol: str = "raytrain") -> dict[str, float]:
    """``{"t2v_R1": ..., "v2t_R1": ...}`` for logging and ``metrics.json``."""
    out = {f"t2v_{k}": v for k, v in retrieval_metrics(sim, text_to_video).items()}
    out.update({f"v2t_{k}": v for k, v in video_to_text(v2t_protocol)(sim, text_to_video).items()})
    return out


def chance_metrics(num_videos: int, num_texts: int | None = None) -> dict[str, float]:
    """Expected text→video metrics of a random ranking (one correct video per text)."""
    out = {f"R{k}": 100.0 * min(k, num_videos) / num_videos for k in KS}
    out["MdR"] = (num_videos + 1) / 2.0
    out["MnR"] = (num_videos + 1) / 2.0
    return out
