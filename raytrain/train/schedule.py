"""Optimizer and learning-rate schedule (pure torch): AdamW, linear warmup then cosine to zero.

Two cosines (``optim.schedule``): ``cosine`` re-bases the cosine to start at the end of warmup (the
LR peaks at the base value and decays from there); ``clip4clip_cosine`` is CLIP4Clip's BertAdam
``warmup_cosine``, whose cosine reads the progress over *all* steps, so after warmup the LR starts at
0.5 (1 + cos(pi * warmup_fraction)) of the base (0.976 at 10 %), not at the base, and reaches 0 at
the last step. BertAdam evaluates it at ``state['step'] / t_total`` before incrementing,
so the first update uses step 0 (LR 0 during its warmup): this is kept exactly."""

from __future__ import annotations

import math

import torch

from raytrain.config import OptimSection

# CLIP4Clip's prep_optimizer: no weight decay for a parameter whose name holds one of these
CLIP4CLIP_NO_DECAY = ("bias", "LayerNorm.bias", "LayerNorm.weight")


def build_optimizer(model, cfg: OptimSection) -> torch.optim.Optimizer:
    """AdamW with two groups (towers at ``tower_lr``, new modules at ``lr``), each split by weight decay:
    none on 1-d params (``optim.groups=raytrain``), or CLIP4Clip's name rule and its logit scale among
    the towers (``clip4clip``)."""
    towers, new = model.parameter_groups()
    names = {id(p): n for n, p in model.named_parameters()}
    if cfg.groups == "clip4clip":
        scale = [p for p in new if names.get(id(p), "").endswith("logit_scale")]
        towers, new = towers + scale, [p for p in new if all(p is not s for s in scale)]

    def decays(p) -> bool:
        if cfg.groups == "clip4clip":
            return not any(nd in names.get(id(p), "") for nd in CLIP4CLIP_NO_DECAY)
        return p.ndim >= 2

    groups = []
    for params, lr in ((towers, cfg.tower_lr), (new, cfg.lr)):
        decay = [p for p in params if decays(p)]
        no_decay = [p for p in params if not decays(p)]
        if decay:
            groups.append({"params": decay, "lr": lr, "weight_decay": cfg.weight_decay})
        if no_decay:
            groups.append({"params": no_decay, "lr": lr, "weight_decay": 0.0})
    fused = torch.cuda.is_available() and all(p.is_cuda for g in groups for p in g["params"])
    return torch.optim.AdamW(groups, betas=(cfg.beta1, cfg.beta2), eps=cfg.eps, fused=fused or None)


def warmup_cosine(step: int, total_steps: int, warmup_fraction: float) -> float:
    """LR multiplier at ``step`` (0-based): linear warmup over the first fraction, then cosine to 0."""
    warmup = round(total_steps * warmup_fraction)
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total_steps - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def clip4clip_warmup_cosine(step: int, total_steps: int, warmup_fraction: float) -> float:
    """CLIP4Clip's ``warmup_cosine(x, warmup)`` at ``x = step / total_steps`` (``modules/optimization.py``):
    ``x / warmup`` while ``x < warmup``, then ``0.5 (1 + cos(pi x))`` — no re-basing after warmup."""
    x = step / max(1, total_steps)
    if x < warmup_fraction:
        return x / warmup_fraction
    return 0.5 * (1.0 + math.cos(math.pi * x))


SCHEDULES = {"cosine": warmup_cosine, "clip4clip_cosine": clip4clip_warmup_cosine}


def build_scheduler(optimizer, total_steps: int, cfg: OptimSection):
    multiplier = SCHEDULES[cfg.schedule]
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: multiplier(step, total_steps, cfg.warmup_fraction))
