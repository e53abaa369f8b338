"""Gradient clipping (pure torch), in raytrain's semantics or CLIP4Clip's (``optim.grad_clip_mode``).

raytrain's gathered loss gives every rank the exact gradient of the global-batch loss after DDP's
average (``methods/losses.py`` scales the local shard's gradient by W). CLIP4Clip's ``AllGather``
passes back the local slice unscaled, so after DDP's average its towers and heads get 1/W of that
gradient, while its ``logit_scale`` (read by the same full matrix on every rank) gets all of it; it
then clips the global norm at 1.0 (``main_task_retrieval.py``) and every tensor again at 1.0 inside
BertAdam (``max_grad_norm``). With W = 4 and clipping at 1.0, raytrain's clip fires on a 4x larger
norm than CLIP4Clip's. ``clip4clip`` mode rebuilds CLIP4Clip's gradient (divide all but the logit
scale by W) and clips it as CLIP4Clip does; the optimizer then steps on that gradient, as
CLIP4Clip's does (Adam is scale-free except through ``eps``). Exact for ``method.name=clip4clip``;
a method's extra terms are divided by W alike.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

GRAD_CLIP_MODES = ("global", "clip4clip")


def _trainable(named: Iterable[tuple[str, nn.Parameter]]) -> list[tuple[str, nn.Parameter]]:
    return [(n, p) for n, p in named if p.grad is not None]


def clip_gradients(model: nn.Module, max_norm: float, mode: str = "global", world_size: int = 1) -> torch.Tensor:
    """Clip ``model``'s gradients in place; returns the global gradient norm before clipping (of the
    gradient the optimizer will see). ``max_norm`` 0: no clipping, the norm is still computed."""
    limit = max_norm if max_norm > 0 else float("inf")
    if mode == "global":
        return torch.nn.utils.clip_grad_norm_(model.parameters(), limit)
    if mode != "clip4clip":
        raise ValueError(f"unknown optim.grad_clip_mode {mode!r}; valid: {list(GRAD_CLIP_MODES)}")
    named = _trainable(model.named_parameters())
    if world_size > 1:
        for name, p in named:
            if not name.endswith("logit_scale"):
                p.grad.div_(world_size)
    params = [p for _, p in named]
    norm = torch.nn.utils.clip_grad_norm_(params, limit)
    if max_norm > 0:  # BertAdam's per-tensor clip (max_grad_norm=1.0), after the global one
        for p in params:
            torch.nn.utils.clip_grad_norm_(p, max_norm)
    return norm
