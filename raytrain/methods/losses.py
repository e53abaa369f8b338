"""Contrastive losses with an explicit all-gather (pure torch; ``torch.distributed`` if initialised).

Convention (methods.md "pick one and document it"): every rank builds the **full G×G** similarity
matrix from the gathered embeddings and computes the same global loss. Only the local shard carries
gradient, scaled by the world size W, so that after DDP averages gradients over W ranks each
parameter gets exactly the gradient that one process would get on the global batch. (open_clip's
``gather_with_grad`` reaches the same result with an extra all-reduce in the backward pass.)
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F


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


def contrastive_logits(text: torch.Tensor, video: torch.Tensor, logit_scale: torch.Tensor) -> torch.Tensor:
    """Gather normalised ``text, video: (B, D)`` from all ranks → ``s · T Vᵀ: (G, G)``."""
    return logit_scale * gather_features(text) @ gather_features(video).t()


def clip_loss(text: torch.Tensor, video: torch.Tensor, logit_scale: torch.Tensor) -> torch.Tensor:
    """Symmetric InfoNCE over the global batch (see module docstring for the gradient convention)."""
    return symmetric_infonce(contrastive_logits(text, video, logit_scale))


def gather_padded(x: torch.Tensor, dim: int = 1) -> torch.Tensor:
    """``gather_features`` for tensors whose size along ``dim`` may differ between ranks (word or
    frame axes): zero-pad every rank's tensor to the largest size first. Pad masks the same way."""
    _, world = world_info()
    if world == 1:
        return x
    size = torch.tensor([x.shape[dim]], device=x.device)
    sizes = [torch.zeros_like(size) for _ in range(world)]
    dist.all_gather(sizes, size)
    extra = max(int(s) for s in sizes) - x.shape[dim]
    if extra > 0:
        x = F.pad(x, [0, 0] * (x.ndim - 1 - dim) + [0, extra])
    return gather_features(x)


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
