"""Patch masks (pure torch): attention-ranked high/low-informed masks and random masks.

Masks are boolean ``(..., N)`` tensors over a frame's N patches, True = masked (dropped). Every
frame masks the same count, so the visible patches of a batch form a dense ``(..., N - K)`` index.
"""

from __future__ import annotations

import math

import numpy as np
import torch


def mask_count(num_patches: int, ratio: float) -> int:
    """⌈ρ·N⌉ patches, at least 1 and at most N - 1 (a frame keeps one visible patch)."""
    return min(num_patches - 1, max(1, math.ceil(ratio * num_patches - 1e-9)))


def rank_patches(scores: torch.Tensor) -> torch.Tensor:
    """Patch positions by descending score, ties broken by the lower position (deterministic)."""
    n = scores.shape[-1]
    # Stable descending sort: sort by -score with a stable algorithm keeps index order within ties.
    order = torch.sort(-scores.float(), dim=-1, stable=True).indices
    assert order.shape[-1] == n
    return order


def informed_masks(attention: torch.Tensor, high_ratio: float, low_ratio: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``attention: (..., N)`` CLS→patch weights → (high-informed, low-informed) masks ``(..., N)``.

    High: the top ⌈ρ_h·N⌉ patches (what matters most is hidden). Low: the bottom ⌈ρ_l·N⌉.
    """
    n = attention.shape[-1]
    order = rank_patches(attention)
    high = torch.zeros_like(attention, dtype=torch.bool)
    low = torch.zeros_like(attention, dtype=torch.bool)
    high.scatter_(-1, order[..., :mask_count(n, high_ratio)], True)
    low.scatter_(-1, order[..., n - mask_count(n, low_ratio):], True)
    return high, low


def random_mask(shape: tuple[int, ...], ratio: float, rng: np.random.Generator) -> np.ndarray:
    """A uniformly random mask of ⌈ρ·N⌉ patches per frame; ``shape = (..., N)`` (numpy, for data workers)."""
    n = shape[-1]
    k = mask_count(n, ratio)
    scores = rng.random(shape)
    idx = np.argpartition(scores, k - 1, axis=-1)[..., :k]
    mask = np.zeros(shape, dtype=bool)
    np.put_along_axis(mask, idx, True, axis=-1)
    return mask


def visible_index(mask: torch.Tensor) -> torch.Tensor:
    """``mask: (..., N)`` with the same count per row → sorted visible positions ``(..., N - K)``."""
    counts = (~mask).sum(-1)
    if counts.numel() and not bool((counts == counts.flatten()[0]).all()):
        raise ValueError("every frame must mask the same number of patches")
    n = mask.shape[-1]
    # Visible positions first (key 0), each group in position order.
    key = mask.long() * n + torch.arange(n, device=mask.device)
    return torch.sort(key, dim=-1).indices[..., : int(counts.flatten()[0]) if counts.numel() else n]


def tube_mask(grid_h: int, grid_w: int, ratio: float, rng: np.random.Generator,
              block_min: int = 2, block_max: int = 4) -> np.ndarray:
    """MILES's spatial block mask ``(grid_h * grid_w,)`` bool, shared by every frame (a tube).

    Random rectangles of ``block_min..block_max`` × ``block_min..block_max`` patches (clipped to the
    grid) are added until exactly ⌈ρ·N⌉ patches are covered; the last rectangle contributes only
    the new patches it needs, in raster order, so every clip masks the same count.
    """
    target = mask_count(grid_h * grid_w, ratio)
    mask = np.zeros((grid_h, grid_w), dtype=bool)
    covered = 0
    while covered < target:
        h = min(int(rng.integers(block_min, block_max + 1)), grid_h)
        w = min(int(rng.integers(block_min, block_max + 1)), grid_w)
        top = int(rng.integers(0, grid_h - h + 1))
        left = int(rng.integers(0, grid_w - w + 1))
        block = np.zeros_like(mask)
        block[top:top + h, left:left + w] = True
        new = np.flatnonzero(block & ~mask)[:target - covered]
        mask.flat[new] = True
        covered += len(new)
    return mask.reshape(-1)
