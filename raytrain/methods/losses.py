"""Contrastive losses with an explicit all-gather (pure torch; ``torch.distributed`` if initialised).

Two visible choices, as in open_clip's ``ClipLoss`` (``ContrastiveLoss(local_loss=...)``):

- full (the default): every rank builds the **full G×G** similarity matrix from the gathered
  embeddings and computes the same global loss. Only the local shard carries gradient, scaled by the
  world size W (``gather_features``), so that after DDP averages gradients over W ranks each parameter
  gets exactly the gradient that one process would get on the global batch.
- ``local_loss``: each rank scores only its B local queries against the G gathered candidates, in both
  directions (two B×G matrices instead of one G×G), and averages over its B rows. The candidates are
  gathered *with* gradient (``gather_with_grad``: the backward pass sums every rank's gradient for a
  shard back to its owner), so the DDP-averaged gradients are again those of the global loss.
  InfoNCE only: NegNCE's hard-negative set is defined on the whole matrix.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
import torch.distributed as dist
import torch.nn.functional as F

from raytrain.config import NegNCESection


def world_info() -> tuple[int, int]:
    """(rank, world size); (0, 1) when torch.distributed is not initialised."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _scale_grad(x: torch.Tensor, factor: float) -> torch.Tensor:
    """Identity in value; the gradient flowing back through it is multiplied by ``factor``."""
    if factor == 1:
        return x
    return x * factor - x.detach() * (factor - 1)


def gather_features(x: torch.Tensor) -> torch.Tensor:
    """``x: (B, ...)`` on each of W ranks → ``(W*B, ...)``, rank-ordered; local slice keeps its grad.

    All ranks must pass the same shape (pad variable-length tensors first).
    """
    rank, world = world_info()
    if world == 1:
        return x
    parts = [torch.empty_like(x) for _ in range(world)]
    dist.all_gather(parts, x.detach().contiguous())
    parts[rank] = _scale_grad(x, world)
    return torch.cat(parts, dim=0)


def symmetric_infonce(logits: torch.Tensor) -> torch.Tensor:
    """½[CE(S, diag) + CE(Sᵀ, diag)] for a square ``logits: (G, G)`` whose diagonal are the positives."""
    if logits.ndim != 2 or logits.shape[0] != logits.shape[1]:
        raise ValueError(f"symmetric InfoNCE needs a square matrix, got {tuple(logits.shape)}")
    target = torch.arange(logits.shape[0], device=logits.device)
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.t(), target))


class _AllGatherWithGrad(torch.autograd.Function):
    """all_gather whose backward sums the gradient of every rank's copy and returns this rank's slice."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        rank, world = world_info()
        ctx.rank, ctx.size = rank, x.shape[0]
        parts = [torch.empty_like(x) for _ in range(world)]
        dist.all_gather(parts, x.contiguous())
        return torch.cat(parts, dim=0)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous()
        dist.all_reduce(grad)  # gloo has no reduce_scatter; the sum of all ranks, then our slice
        return grad[ctx.rank * ctx.size:(ctx.rank + 1) * ctx.size]


def gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """``x: (B, ...)`` on each of W ranks → ``(W*B, ...)``, rank-ordered; every slice carries gradient
    back to the rank that owns it (the sum over the ranks that used it). For ``local_loss``."""
    _, world = world_info()
    return x if world == 1 else _AllGatherWithGrad.apply(x)


Features = Any  # a tensor (B, D), or a method's dict of tensors with the item axis first


def dot_similarity(text: torch.Tensor, video: torch.Tensor) -> torch.Tensor:
    """``text: (A, D)``, ``video: (B, D)`` → ``T Vᵀ: (A, B)``."""
    return text @ video.t()


@dataclass(frozen=True)
class PairScores:
    """One view's similarities, rows = queries, positives at columns ``offset + row``:
    ``t2v: (R, G)`` (texts → videos) and ``v2t: (R, G)`` (videos → texts). Full (``local`` false):
    ``R = G``, offset 0, ``v2t = t2vᵀ``; local: ``R = B`` (this rank's queries), offset ``rank · B``."""

    t2v: torch.Tensor
    v2t: torch.Tensor
    offset: int = 0
    local: bool = False


@dataclass(frozen=True)
class ContrastiveLoss:
    """The main contrastive loss on text/video features gathered over the ranks.

    ``kind``: ``infonce`` (symmetric InfoNCE on ``scale · S``, the learnable CLIP scale) or ``negnce``
    (``negnce_loss`` on the unscaled S, with its fixed scale). ``local_loss``: see the module docstring.
    ``similarity(texts, videos) → (A, B)`` and ``gather(features, with_grad)`` default to the dot product
    of ``(B, D)`` embeddings; a method with its own similarity (DMAE) passes both.
    """

    kind: Literal["infonce", "negnce"] = "infonce"
    negnce: NegNCESection = field(default_factory=NegNCESection)
    local_loss: bool = False

    def __post_init__(self):
        if self.kind not in ("infonce", "negnce"):
            raise ValueError(f"contrastive loss: unknown kind {self.kind!r} (infonce or negnce)")
        if self.local_loss and self.kind == "negnce":
            raise ValueError("config key 'method.local_loss' must be false with NegNCE (its hard-negative "
                             "set needs the full G×G matrix; set method.contrastive=infonce to use it)")

    def scores(self, text: Features, video: Features,
               similarity: Callable[[Features, Features], torch.Tensor] = dot_similarity,
               gather: Callable[[Features, bool], Features] | None = None) -> PairScores:
        """The unscaled similarities this rank needs, gathered from every rank: the G×G matrix, or with
        ``local_loss`` its B local rows in each direction."""
        gather = gather or gather_tensor
        if not self.local_loss:
            sim = similarity(gather(text, False), gather(video, False))
            return PairScores(sim, sim.t())
        rank, _ = world_info()
        t2v = similarity(text, gather(video, True))
        v2t = similarity(gather(text, True), video).t()
        return PairScores(t2v, v2t, rank * t2v.shape[0], local=True)

    def loss(self, scores: PairScores, scale: torch.Tensor) -> torch.Tensor:
        """The loss on ``scores`` (``scale`` is the learnable CLIP scale, read by InfoNCE only)."""
        if self.kind == "negnce":
            n = self.negnce
            return negnce_loss(scores.t2v, n.scale, n.c_pos, n.c_neg, n.margin)
        return infonce(scores, scale)

    def __call__(self, text: Features, video: Features, scale: torch.Tensor,
                 similarity: Callable[[Features, Features], torch.Tensor] = dot_similarity,
                 gather: Callable[[Features, bool], Features] | None = None) -> torch.Tensor:
        return self.loss(self.scores(text, video, similarity, gather), scale)


def infonce(scores: PairScores, scale: torch.Tensor) -> torch.Tensor:
    """Symmetric InfoNCE on ``scale · scores``: on the full matrix exactly ``symmetric_infonce``; on
    local rows ½[CE(t2v) + CE(v2t)] with the positives at ``offset + row``, the mean over this rank's
    rows (DDP's average over ranks makes it the global mean)."""
    if not scores.local:
        return symmetric_infonce(scale * scores.t2v)
    target = scores.offset + torch.arange(scores.t2v.shape[0], device=scores.t2v.device)
    return 0.5 * (F.cross_entropy(scale * scores.t2v, target) + F.cross_entropy(scale * scores.v2t, target))


def gather_tensor(x: torch.Tensor, with_grad: bool = False) -> torch.Tensor:
    """``gather_with_grad`` or ``gather_features`` (local slice only): the gather for ``(B, ...)`` tensors."""
    return gather_with_grad(x) if with_grad else gather_features(x)


def gather_padded(x: torch.Tensor, dim: int = 1, with_grad: bool = False) -> torch.Tensor:
    """``gather_tensor`` for tensors whose size along ``dim`` may differ between ranks (word or frame
    axes): zero-pad every rank's tensor to the largest size first. Pad masks the same way."""
    _, world = world_info()
    if world == 1:
        return x
    size = torch.tensor([x.shape[dim]], device=x.device)
    sizes = [torch.zeros_like(size) for _ in range(world)]
    dist.all_gather(sizes, size)
    extra = max(int(s) for s in sizes) - x.shape[dim]
    if extra > 0:
        x = F.pad(x, [0, 0] * (x.ndim - 1 - dim) + [0, extra])
    return gather_tensor(x, with_grad)


def hard_negatives(sim: torch.Tensor, margin: float = 0.0) -> torch.Tensor:
    """NegNCE's hard set ``H (G, G) bool``: off-diagonal (i, j) with ``S_ij > S_ii − δ`` or
    ``S_ij > S_jj − δ`` (the negative beats the positive of its row or of its column)."""
    s = sim.detach()
    d = s.diagonal()
    eye = torch.eye(s.shape[0], dtype=torch.bool, device=s.device)
    return ((s > d[:, None] - margin) | (s > d[None, :] - margin)) & ~eye


def _negnce_rows(sim: torch.Tensor, scale: float, c_pos: float, c_neg: float, margin: float) -> torch.Tensor:
    p = (scale * sim).softmax(dim=1).clamp(1e-6, 1 - 1e-6)
    loss = c_pos * -p.diagonal().log().mean()
    hard = hard_negatives(sim, margin)
    if bool(hard.any()):  # an empty hard set leaves only the positive term
        loss = loss + c_neg * -(1 - p[hard]).log().mean()
    return loss


def negnce_loss(sim: torch.Tensor, scale: float = 100.0, c_pos: float = 1.0, c_neg: float = 0.5,
                margin: float = 0.0) -> torch.Tensor:
    """NegNCE (official DMAE code) on a square similarity matrix ``sim: (G, G)`` (unscaled, positives
    on the diagonal): ``½[L_neg(S) + L_neg(Sᵀ)]`` with
    ``L_neg(S) = c_pos·mean_i[−log P_ii] + c_neg·mean_{(i,j)∈H}[−log(1 − P_ij)]``,
    ``P = clamp(softmax(scale·S, rows), 1e-6, 1 − 1e-6)``. H (``hard_negatives``) is found on the
    matrix it is given: pass the gathered global one."""
    if sim.ndim != 2 or sim.shape[0] != sim.shape[1]:
        raise ValueError(f"NegNCE needs a square matrix, got {tuple(sim.shape)}")
    return 0.5 * (_negnce_rows(sim, scale, c_pos, c_neg, margin) + _negnce_rows(sim.t(), scale, c_pos, c_neg, margin))
