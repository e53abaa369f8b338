"""Optimizer and learning-rate schedule (pure torch): AdamW, linear warmup then cosine to zero."""

from __future__ import annotations

import math

import torch

from raytrain.config import OptimSection


def build_optimizer(model, cfg: OptimSection) -> torch.optim.Optimizer:
    """AdamW with two groups (towers at ``tower_lr``, new modules at ``lr``); no decay on 1-d params."""
    towers, new = model.parameter_groups()
    groups = []
    for params, lr in ((towers, cfg.tower_lr), (new, cfg.lr)):
        decay = [p for p in params if p.ndim >= 2]
        no_decay = [p for p in params if p.ndim < 2]
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


def build_scheduler(optimizer, total_steps: int, cfg: OptimSection):
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: warmup_cosine(step, total_steps, cfg.warmup_fraction))
