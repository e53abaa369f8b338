"""Drawing a SynthVTT clip: its background pattern and objects as uint8 RGB frames (pure numpy)."""

from __future__ import annotations

import numpy as np

from raytrain.data.synth_scene import COLOUR_RGB, TONES, ClipSpec


def _background_image(spec: ClipSpec) -> np.ndarray:
    h, w = spec.height, spec.width
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.array(TONES[spec.tone], dtype=np.int16)
    alt = base + 34
    if spec.pattern == "plain":
        mask = np.zeros((h, w), dtype=bool)
    elif spec.pattern == "striped":
        mask = ((xx + yy) // 8) % 2 == 1
    elif spec.pattern == "checkered":
        mask = ((xx // 12) + (yy // 12)) % 2 == 1
    elif spec.pattern == "dotted":
        mask = ((xx % 12) - 6) ** 2 + ((yy % 12) - 6) ** 2 <= 5
    else:
        raise ValueError(f"unknown background pattern '{spec.pattern}'")
    img = np.where(mask[..., None], alt, base)
    return img.astype(np.uint8)


def _shape_mask(shape: str, dx: np.ndarray, dy: np.ndarray, r: float) -> np.ndarray:
    adx, ady = np.abs(dx), np.abs(dy)
    if shape == "circle":
        return dx * dx + dy * dy <= r * r
    if shape == "square":
        return np.maximum(adx, ady) <= 0.85 * r
    if shape == "diamond":
        return adx + ady <= 1.15 * r
    if shape == "triangle":  # apex up, base at 0.7 r below the centre
        return (dy >= -r) & (dy <= 0.7 * r) & (adx <= (dy + r) * (1.0 / 1.7))
    if shape == "cross":
        arm = 0.3 * r
        return ((adx <= r) & (ady <= arm)) | ((ady <= r) & (adx <= arm))
    raise ValueError(f"unknown shape '{shape}'")


def _object_masks(spec: ClipSpec):
    """Yield ``(object, (num_frames, height, width) bool)``: each object's pixels in every frame."""
    t_count, h, w = spec.num_frames, spec.height, spec.width
    ys = np.arange(h, dtype=np.float32)[None, :, None] + 0.5
    xs = np.arange(w, dtype=np.float32)[None, None, :] + 0.5
    p = np.linspace(0.0, 1.0, t_count, dtype=np.float32) if t_count > 1 else np.zeros(1, np.float32)
    for obj in spec.objects:
        cx = obj.start_xy[0] + p * (obj.end_xy[0] - obj.start_xy[0])
        cy = obj.start_xy[1] + p * (obj.end_xy[1] - obj.start_xy[1])
        yield obj, _shape_mask(obj.shape, xs - cx[:, None, None], ys - cy[:, None, None], obj.radius)


def render_frames(spec: ClipSpec) -> np.ndarray:
    """The clip's frames, ``(num_frames, height, width, 3)`` uint8 RGB (objects drawn in order)."""
    frames = np.broadcast_to(_background_image(spec), (spec.num_frames, spec.height, spec.width, 3)).copy()
    for obj, mask in _object_masks(spec):
        frames[mask] = np.array(COLOUR_RGB[obj.colour], dtype=np.uint8)
    return frames


def object_footprint(spec: ClipSpec) -> np.ndarray:
    """``(num_frames, height, width) bool``: the pixels any object covers in each frame, exactly as
    :func:`render_frames` draws them (the ground truth of where the discriminative content is)."""
    out = np.zeros((spec.num_frames, spec.height, spec.width), dtype=bool)
    for _, mask in _object_masks(spec):
        out |= mask
    return out
