"""Pictures of the patch masks (issue 21 item 4): frames with MASCOT's high-/low-informed masks and
MILES's tube masks drawn on them, so a researcher sees whether the masks hide the discriminative object.

``draw_mask`` and ``mask_sheet`` are pure (numpy arrays in, an ``(H, W, 3) uint8`` array out);
``clip_masks`` ranks the patches with the model's own CLS attention (``mask.*`` ratios, as MASCOT does on
its full pass, ``method.mascot.attention=cls``) and draws MILES's tube masks from ``method.miles.*``.
Used by ``bench/mask_pictures.py`` (PNGs from a checkpoint) and by the in-run TensorBoard hook
(``raytrain/train/mask_pictures.py``, ``eval.mask_pictures``).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from raytrain.config import Config
from raytrain.methods.masks import informed_masks, tube_mask

# masked patches are tinted with these colours (RGB) and outlined
COLOURS = {"high": (230, 40, 40), "low": (40, 90, 230), "tube": (250, 190, 20)}


def patch_grid(num_patches: int) -> int:
    side = math.isqrt(num_patches)
    if side * side != num_patches:
        raise ValueError(f"{num_patches} patches do not form a square grid")
    return side


def draw_mask(frame: np.ndarray, mask: np.ndarray, colour: tuple[int, int, int] = COLOURS["high"],
              dim: float = 0.3, scale: int = 1) -> np.ndarray:
    """``frame: (H, W, 3) uint8``, ``mask: (N,) bool`` over a square patch grid (True = masked) →
    ``(H·scale, W·scale, 3) uint8``: the frame enlarged ``scale``× (nearest), each masked patch darkened
    to ``dim`` of its brightness (what it hid stays faintly visible, whatever its colour) and the masked
    region outlined in ``colour``; visible patches are untouched."""
    frame = np.asarray(frame)
    h, w, _ = frame.shape
    side = patch_grid(mask.shape[-1])
    if h % side or w % side:
        raise ValueError(f"a {h}x{w} frame does not split into a {side}x{side} patch grid")
    img = frame.astype(np.float32).repeat(scale, 0).repeat(scale, 1)
    ph, pw = h * scale // side, w * scale // side
    cells = np.asarray(mask, dtype=bool).reshape(side, side)
    pixel = cells.repeat(ph, 0).repeat(pw, 1)  # (H·s, W·s) True inside masked patches
    img[pixel] *= dim
    img[pixel & ~_inner(pixel)] = np.asarray(colour, dtype=np.float32)  # outline of the masked region
    return img.clip(0, 255).astype(np.uint8)


def _inner(region: np.ndarray) -> np.ndarray:
    """Pixels of ``region`` whose four neighbours are all in it (the rest is its outline)."""
    pad = np.pad(region, 1, constant_values=False)
    return region & pad[:-2, 1:-1] & pad[2:, 1:-1] & pad[1:-1, :-2] & pad[1:-1, 2:]


def mask_sheet(frames: np.ndarray, masks: dict[str, np.ndarray], scale: int = 4, gap: int = 2) -> np.ndarray:
    """One clip's sheet: ``frames: (T, H, W, 3) uint8``, ``masks: name → (T, N) bool`` → an image with
    the plain frames in the first row and one row per mask (``name`` picks its colour from ``COLOURS``),
    frames left to right, white gaps between."""
    t, h, w, _ = frames.shape
    rows = [[f.repeat(scale, 0).repeat(scale, 1) for f in frames]]
    for name, mask in masks.items():
        rows.append([draw_mask(frames[i], mask[i], COLOURS.get(name, COLOURS["high"]), scale=scale) for i in range(t)])
    hs, ws = h * scale, w * scale
    out = np.full((len(rows) * (hs + gap) - gap, t * (ws + gap) - gap, 3), 255, dtype=np.uint8)
    for r, row in enumerate(rows):
        for i, img in enumerate(row):
            out[r * (hs + gap):r * (hs + gap) + hs, i * (ws + gap):i * (ws + gap) + ws] = img
    return out


@torch.no_grad()
def clip_masks(model, frames: np.ndarray | torch.Tensor, cfg: Config, seed: int = 0) -> dict[str, np.ndarray]:
    """``frames: (B, T, H, W, 3) uint8`` → ``{"high", "low", "tube"}: (B, T, N) bool`` for ``model`` (a
    ``VideoTextDualEncoder`` with a ViT tower): MASCOT's masks from its CLS attention on the full
    pass, and one MILES tube mask per clip (seeded ``seed + clip index``) repeated over the frames."""
    frames = torch.as_tensor(np.asarray(frames))
    b, t = frames.shape[:2]
    was_training = model.training
    model.eval()
    try:
        out = model.encode_images(model.images_from_frames(frames), t, return_attention=True)
    finally:
        model.train(was_training)
    high, low = informed_masks(out.attention.float().cpu(), cfg.mask.high_ratio, cfg.mask.low_ratio)
    side = patch_grid(model.num_patches)
    m = cfg.method.miles
    tube = np.stack([tube_mask(side, side, m.mask_ratio, np.random.default_rng(seed + i), m.block_min, m.block_max)
                     for i in range(b)])
    return {"high": high.numpy(), "low": low.numpy(), "tube": np.repeat(tube[:, None], t, axis=1)}



def footprint_patches(pixels: np.ndarray, num_patches: int) -> np.ndarray:
    """``pixels: (..., H, W) bool`` → ``(..., N) bool``: the patches of a square ``N``-patch grid holding
    at least one True pixel (e.g. SynthVTT's ``object_footprint`` → the object's patches)."""
    pixels = np.asarray(pixels, dtype=bool)
    side = patch_grid(num_patches)
    *lead, h, w = pixels.shape
    if h % side or w % side:
        raise ValueError(f"a {h}x{w} frame does not split into a {side}x{side} patch grid")
    return pixels.reshape(*lead, side, h // side, side, w // side).any(axis=(-3, -1)).reshape(*lead, num_patches)


def object_patches(frames: np.ndarray, num_patches: int, min_saturation: int = 60) -> np.ndarray:
    """``frames: (..., H, W, 3) uint8`` → ``(..., N) bool``: patches holding a saturated pixel (max − min
    channel ≥ ``min_saturation``). SynthVTT draws coloured objects on grey backgrounds, so these are the
    object's patches there (equal to ``footprint_patches(object_footprint(spec))`` on rendered frames);
    on other data this is only a colourfulness proxy."""
    frames = np.asarray(frames)
    sat = frames.max(-1).astype(np.int16) - frames.min(-1).astype(np.int16) >= min_saturation
    return footprint_patches(sat, num_patches)


def hidden_share(mask: np.ndarray, objects: np.ndarray) -> float:
    """Share of the object patches that ``mask`` hides (both ``(..., N)`` bool), pooled over all frames."""
    objects = np.asarray(objects, dtype=bool)
    return float((np.asarray(mask, dtype=bool) & objects).sum() / max(1, int(objects.sum())))
