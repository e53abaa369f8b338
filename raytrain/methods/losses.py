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
