"""Where the learnable CLIP scale is held below ``model.max_logit_scale`` (``model.logit_scale_clamp``).

``forward`` (raytrain's default): the forward pass reads ``clamp(log_scale, max=ln max).exp()``, so the
parameter may drift past ln max and then gets no gradient at all. ``after_step`` (CLIP4Clip,
``main_task_retrieval.py``, after openai/CLIP#46): the forward reads ``log_scale.exp()`` as it is and
the parameter is clamped in place after every optimizer step, so it always gets its gradient.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from raytrain.config import ModelSection


def use_logit_scale_clamp(objective: torch.nn.Module, cfg: ModelSection) -> None:
    """Set the dual encoder's forward clamp for the mode: off (infinite) for ``after_step``. Call before
    wrapping (DDP, compile)."""
    objective.model.max_log_scale = math.inf if cfg.logit_scale_clamp == "after_step" else math.log(cfg.max_logit_scale)


def after_step_hook(objective: torch.nn.Module, cfg: ModelSection) -> Callable[[], None]:
    """What runs on every rank after each real optimizer step: the method's own hook, then (``after_step``)
    CLIP4Clip's in-place clamp of the scale parameter."""
    if cfg.logit_scale_clamp != "after_step":
        return objective.after_optimizer_step
    param, max_log = objective.model.clip.logit_scale, math.log(cfg.max_logit_scale)

    def hook() -> None:
        objective.after_optimizer_step()
        with torch.no_grad():
            param.clamp_(max=max_log)

    return hook
