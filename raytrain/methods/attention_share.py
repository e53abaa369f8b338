"""Where the CLS token looks (issue 21 item 3): the share of the last layer's CLS→patch attention that
falls on the object patches, against the objects' share of the frame.

MASCOT ranks patches by this attention, so its masks mean something only once the attention
concentrates on the discriminative object: a ratio near 1 is attention spread like the area (random
init), a ratio well above 1 is attention on the objects. Pure torch; the attention comes from
``VideoTextDualEncoder.encode_images(..., return_attention=True)`` (``model/clip_video.cls_attention``),
the object patches from ``mask_pictures.object_patches`` / ``footprint_patches``.
"""

from __future__ import annotations

import torch


def attention_concentration(attention: torch.Tensor, objects: torch.Tensor) -> dict[str, float]:
    """``attention: (..., N)`` CLS→patch weights (any positive scale; each frame is renormalised),
    ``objects: (..., N)`` bool object patches → ``{"attention_share", "area_share", "ratio", "frames"}``.

    ``attention_share``: mean over frames of the attention mass on object patches; ``area_share``: mean
    over frames of the object patches' share of the frame; ``ratio``: their quotient. Frames without
    an object patch are left out (their share is undefined), and counted out of ``frames``."""
    attention = torch.as_tensor(attention).float()
    objects = torch.as_tensor(objects, dtype=torch.bool)
    if attention.shape != objects.shape:
        raise ValueError(f"attention {tuple(attention.shape)} and object patches {tuple(objects.shape)} differ in shape")
    attention = attention.reshape(-1, attention.shape[-1]).clamp_min(0)
    objects = objects.reshape(-1, objects.shape[-1])
    keep = objects.any(-1)
    if not bool(keep.any()):
        raise ValueError("no frame has an object patch: the attention share is undefined")
    attention, objects = attention[keep], objects[keep].float()
    weights = attention / attention.sum(-1, keepdim=True).clamp_min(1e-12)
    attention_share = float((weights * objects).sum(-1).mean())
    area_share = float(objects.mean(-1).mean())
    return {"attention_share": attention_share, "area_share": area_share,
            "ratio": attention_share / area_share, "frames": int(keep.sum())}
