"""The random masks the decode actors build per train clip, each row from its own ``sample_seed``
stream (independent of the frame sampling), so a clip gets the same masks on every visit. The mask
math is pure (``raytrain.methods.masks``); which masks a run needs is the method's to say."""

from __future__ import annotations

import numpy as np

from raytrain.data.spec import MaskSpec


def random_masks(seeds: np.ndarray, num_frames: int, spec: MaskSpec) -> dict[str, np.ndarray]:
    """MASCOT's random ablation: ``mask_high`` and ``mask_low``, ``(B, T, N)`` bool."""
    from raytrain.methods.masks import random_mask

    shape = (num_frames, spec.patches)
    high, low = [], []
    for seed in seeds:
        rng = np.random.default_rng([int(seed), 0x3A5C])
        high.append(random_mask(shape, spec.high_ratio, rng))
        low.append(random_mask(shape, spec.low_ratio, rng))
    return {"mask_high": np.stack(high), "mask_low": np.stack(low)}


def tube_masks(seeds: np.ndarray, spec: MaskSpec) -> dict[str, np.ndarray]:
    """MILES's tube: ``mask_tube``, ``(B, N)`` bool, shared by every frame of a clip."""
    from raytrain.methods.masks import tube_mask

    grid = spec.tube_grid
    block_min, block_max = spec.tube_block
    return {"mask_tube": np.stack([tube_mask(grid, grid, spec.tube_ratio, np.random.default_rng([int(seed), 0x311E5]),
                                             block_min, block_max) for seed in seeds])}


def clip_masks(seeds: np.ndarray, num_frames: int, spec: MaskSpec) -> dict[str, np.ndarray]:
    """Every mask ``spec`` asks for, keyed by its batch column (none: ``{}``)."""
    out = random_masks(seeds, num_frames, spec) if spec.patches else {}
    return {**out, **(tube_masks(seeds, spec) if spec.tube_grid else {})}
