"""Test-time re-ranking of a ``(queries, gallery)`` score matrix, block by block (pure numpy).

Every method rescales each gallery item's column by statistics gathered over a set of queries, then
ranks each query's row as before:

- ``dsl`` (dual softmax, CAMoE, Cheng et al. 2021): ``s' = s * softmax_q(s / T)``, the softmax taken
  over the *queries* of each gallery column (the prior "how much does this item prefer this query").
- ``inverted_softmax`` (Smith et al. 2017; Bogolin et al. 2022 §3):
  ``s' = exp(s / T) / sum_q exp(s_q / T)`` over the queries of each gallery column.
- ``qb_norm`` (querybank normalisation with dynamic inverted softmax, Bogolin et al. CVPR 2022): the
  column sums come from a *query bank* (train captions for text→video, train videos for video→text),
  ``s' = exp(beta s) / sum_b exp(beta s_b)``, and only for the queries whose top-1 gallery item is in
  the bank's *activation set* (the items some bank query ranks in its top k); other rows keep ``s``.

``dsl`` and ``inverted_softmax`` are transductive: their statistics are over the test queries
themselves, so they need all queries at once (a deployed search engine answering one query at a time
cannot use them). ``qb_norm`` needs only the bank.

Inverted softmax and QB-Norm return the *logarithm* of the published score, ``s / T - log sum``: a
strictly increasing function of it, so every rank is the same, and it neither overflows for logit-scaled
scores nor underflows into ties. Rows are ranked one at a time, so QB-Norm's mix of log scores
(normalised rows) and raw scores (the others) changes no rank.

Blocked use: ``column_stats`` reads the query (or bank) blocks once and keeps one or two numbers per
gallery item; ``apply_rerank`` then re-ranks any block of rows exactly as on the full matrix.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

METHODS = ("none", "dsl", "inverted_softmax", "qb_norm")
TRANSDUCTIVE = frozenset({"dsl", "inverted_softmax"})  # statistics over the test queries themselves


@dataclass(frozen=True)
class RerankParams:
    """One re-ranking method and its knobs (``eval.rerank`` and its ``eval.*`` keys)."""
    method: str = "none"
    dsl_temperature: float = 0.01  # T of dsl on cosine scores (0.01 = CLIP's logit scale of 100)
    inverted_softmax_temperature: float = 0.05  # T of inverted_softmax (1/20: the beta of QB-Norm)
    qb_norm_beta: float = 20.0  # inverse temperature of QB-Norm (its paper and code: 20)
    qb_norm_k: int = 1  # a bank query activates its top-k gallery items

    def __post_init__(self):
        if self.method not in METHODS:
            raise ValueError(f"unknown re-ranking method {self.method!r} (one of {', '.join(METHODS)})")

    @property
    def scale(self) -> float:
        """The factor applied to scores inside the exponential."""
        return {"dsl": 1.0 / self.dsl_temperature, "inverted_softmax": 1.0 / self.inverted_softmax_temperature,
                "qb_norm": self.qb_norm_beta}.get(self.method, 1.0)


@dataclass
class ColumnStats:
    """Per gallery item: ``log_norm = log sum_rows exp(scale * s)`` over the queries (dsl, inverted
    softmax) or the bank (qb_norm), and for qb_norm the activation set ``active`` (bool)."""
    log_norm: np.ndarray
    active: np.ndarray | None = None


def _logsumexp_rows(x: np.ndarray) -> np.ndarray:
    """``log sum_i exp(x[i, j])`` for each column j, without overflow."""
    top = x.max(axis=0)
    top = np.where(np.isfinite(top), top, 0.0)
    with np.errstate(divide="ignore"):
        return top + np.log(np.exp(x - top).sum(axis=0))


def column_stats(params: RerankParams, blocks: Iterable[np.ndarray], num_gallery: int) -> ColumnStats | None:
    """The column statistics of ``blocks`` (row blocks ``(b, num_gallery)`` of the queries for dsl /
    inverted_softmax, of the bank for qb_norm); None for ``none``."""
    if params.method == "none":
        return None
    log_norm = np.full(num_gallery, -np.inf)
    active = np.zeros(num_gallery, dtype=bool) if params.method == "qb_norm" else None
    rows = 0
    for scores in blocks:
        scores = np.asarray(scores, dtype=np.float64)
        if scores.ndim != 2 or scores.shape[1] != num_gallery:
            raise ValueError(f"a score block must be (rows, {num_gallery}), got {scores.shape}")
        rows += scores.shape[0]
        log_norm = np.logaddexp(log_norm, _logsumexp_rows(params.scale * scores))
        if active is not None:
            k = min(params.qb_norm_k, num_gallery)
            top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
            active[top.ravel()] = True
    if rows == 0:
        raise ValueError(f"re-ranking '{params.method}' needs at least one "
                         f"{'bank' if params.method == 'qb_norm' else 'query'} row")
    return ColumnStats(log_norm, active)


def apply_rerank(params: RerankParams, stats: ColumnStats | None, scores: np.ndarray) -> np.ndarray:
    """Rows ``scores: (b, G)`` re-ranked with the statistics of the whole query set (or bank)."""
    scores = np.asarray(scores, dtype=np.float64)
    if params.method == "none":
        return scores
    if stats is None or stats.log_norm.shape != (scores.shape[1],):
        raise ValueError(f"re-ranking '{params.method}' needs column statistics for {scores.shape[1]} items")
    logits = params.scale * scores - stats.log_norm  # log of the column-normalised exp(scale * s)
    if params.method == "dsl":
        return scores * np.exp(logits)
    if params.method == "inverted_softmax":
        return logits
    normalise = stats.active[np.argmax(scores, axis=1)]  # dynamic: only rows whose top-1 is activated
    return np.where(normalise[:, None], logits, scores)


def rerank_matrix(params: RerankParams, scores: np.ndarray, bank: np.ndarray | None = None) -> np.ndarray:
    """The whole ``(queries, gallery)`` matrix re-ranked at once; ``bank: (bank, gallery)`` for qb_norm."""
    scores = np.asarray(scores, dtype=np.float64)
    if params.method == "qb_norm":
        if bank is None:
            raise ValueError("qb_norm needs the bank's scores against the gallery")
        source = [bank]
    else:
        source = [scores]
    return apply_rerank(params, column_stats(params, source, scores.shape[1]), scores)

