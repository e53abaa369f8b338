"""One optimizer step (pure torch; used by the worker loop and by ``bench/train_step.py``).

Forward under autocast, backward, clipping, one all-ranks check (a non-finite loss or gradient on any
rank, plus any flags the caller wants agreed, e.g. a sweep trial's stop request), then the optimizer,
the method's after-step hook and the LR scheduler. A non-finite step still runs its backward on every
rank (DDP's gradient all-reduce must stay matched) and still uses up its scheduler step (the data
plan and the LR schedule stay aligned), but leaves the weights unchanged.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
import torch.distributed as dist

from raytrain.config import Config
from raytrain.train.clipping import clip_gradients


def autocast_dtype(cfg: Config, device: torch.device) -> torch.dtype | None:
    """The precision rule of training and of every evaluation: bf16 autocast for ``train.precision=bf16``,
    or ``auto`` on CUDA; otherwise fp32 (None: autocast off)."""
    if cfg.train.precision == "bf16" or (cfg.train.precision == "auto" and device.type == "cuda"):
        return torch.bfloat16
    return None


def any_rank(flags: Sequence[bool], world_size: int) -> list[bool]:
    """For each flag, whether any rank raised it: one small all-reduce for all of them."""
    if world_size > 1 and dist.is_initialized():
        t = torch.tensor([1.0 if f else 0.0 for f in flags])
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return [bool(v > 0) for v in t.tolist()]
    return [bool(f) for f in flags]


@dataclass
class StepResult:
    loss: float | None  # None when the step was skipped (a non-finite loss or gradient on some rank)
    logs: dict[str, torch.Tensor]  # the method's extra terms (loss parts, mask statistics)
    grad_norm: torch.Tensor
    skipped: bool
    flags: list[bool] = field(default_factory=list)  # the caller's ``flags``, agreed by every rank
    compute_s: float = 0.0  # wall time of the step itself (the data wait is measured by the caller)


def train_step(model: torch.nn.Module, optimizer: torch.optim.Optimizer, scheduler, batch: dict,
               *, amp: torch.dtype | None, grad_clip: float, world_size: int = 1, grad_clip_mode: str = "global",
               clip_ranks: int = 0,
               after_optimizer_step: Callable[[], None] = lambda: None, poison_loss: bool = False,
               flags: Sequence[bool] = ()) -> StepResult:
    """One step on ``batch`` (already on the model's device). ``grad_clip`` 0 means no clipping (the
    norm is still computed for the finite check); ``grad_clip_mode``: whose semantics (``clipping.py``),
    ``clip_ranks`` the world size it assumes (0: ``world_size``);
    ``poison_loss`` (fault injection) makes this step's loss NaN; ``flags`` ride on the finite check's
    all-reduce and come back agreed in ``flags``."""
    t0 = time.perf_counter()
    device_type = next(iter(batch.values())).device.type if batch else "cpu"
    with torch.autocast(device_type=device_type, dtype=amp, enabled=amp is not None):
        loss, logs = model(batch)
    if poison_loss:
        loss = loss * float("nan")
    optimizer.zero_grad(set_to_none=True)
    loss.backward()  # every rank, even for a NaN: DDP's gradient all-reduce must stay matched
    grad_norm = clip_gradients(model, grad_clip, grad_clip_mode, clip_ranks or world_size)  # optim.grad_clip_mode
    finite = bool(torch.isfinite(loss.detach()).all() and torch.isfinite(grad_norm))
    non_finite, *agreed = any_rank([not finite, *flags], world_size)
    value = None
    if non_finite:
        optimizer.zero_grad(set_to_none=True)
    else:
        optimizer.step()
        after_optimizer_step()  # every rank, after each real step (MILES's EMA snapshot)
        value = float(loss.detach())
    scheduler.step()  # a skipped update still uses up its planned step (data and LR schedule)
    return StepResult(value, logs, grad_norm, non_finite, agreed, time.perf_counter() - t0)
