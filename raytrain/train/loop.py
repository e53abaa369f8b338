"""``train_loop_per_worker``: the training loop, readable top to bottom.

Ray appears only through ``ray.train.{get_context, get_checkpoint, get_dataset_shard, report}`` and
``ray.train.torch.{get_device, prepare_model}``.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from raytrain.config import Config
from raytrain.data.plan import plan_steps
from raytrain.eval.retrieval import evaluate_model
from raytrain.methods.objective import build_objective, random_mask_columns, retrieval_model
from raytrain.model.clip_video import get_tokenizer
from raytrain.train.schedule import build_optimizer, build_scheduler
from raytrain.train.state import (
    load_training_state,
    rng_state,
    save_training_state,
    seed_everything,
    set_rng_state,
)


def train_dtypes(cfg: Config) -> dict[str, torch.dtype]:
    """Column dtypes of a train batch (Ray Data needs one for every column, and no others)."""
    dtypes = {"frames": torch.uint8, "tokens": torch.int64}
    dtypes.update({column: torch.bool for column in random_mask_columns(cfg)})
    return dtypes


def autocast_dtype(cfg: Config, device: torch.device) -> torch.dtype | None:
    if cfg.train.precision == "bf16" or (cfg.train.precision == "auto" and device.type == "cuda"):
        return torch.bfloat16
    return None


def _all_rng_states(world_size: int) -> list[dict[str, Any]]:
    states = [None] * world_size
    if world_size > 1:
        dist.all_gather_object(states, rng_state())
    else:
        states[0] = rng_state()
    return states


def train_loop_per_worker(loop_config: dict[str, Any]) -> None:
    import ray.train
    import ray.train.torch

    cfg = Config.from_dict(loop_config["config"], source="train loop config")
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    torch.set_num_threads(cfg.train.torch_threads)
    device = ray.train.torch.get_device()
    amp = autocast_dtype(cfg, device)

    seed_everything(cfg.train.seed)  # identical initial weights on every rank
    module = build_objective(cfg)  # dual encoder + the method's modules; unwrapped, for saving
    model = ray.train.torch.prepare_model(module)
    after_step = getattr(module, "after_optimizer_step", None)  # e.g. MILES's EMA snapshot update
    optimizer = build_optimizer(module, cfg.optim)
    steps_per_epoch, total_steps = plan_steps(loop_config["num_train_clips"], world, cfg.train.batch_size,
                                              cfg.train.epochs, cfg.train.max_steps)
    scheduler = build_scheduler(optimizer, total_steps, cfg.optim)

    step = 0
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as directory:
            state = load_training_state(directory)
        module.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        step = int(state["step"])
        rngs = state.get("rng") or []
        if len(rngs) == world:
            set_rng_state(rngs[rank])
        else:  # a different worker count: reseed deterministically from the step
            seed_everything(cfg.train.seed + 1000003 * step + rank)
    else:
        seed_everything(cfg.train.seed + rank)  # per-rank streams for anything random in the step

    writer = None
    if rank == 0:
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(str(Path(cfg.run.storage_path) / cfg.run.name / "tensorboard"), purge_step=step)
        writer.add_text("config", "```\n" + str(cfg.to_dict()) + "\n```", step)
        print(f"[raytrain] rank 0: {world} worker(s), {steps_per_epoch} steps/epoch, "
              f"{total_steps} steps in all, starting at step {step}", flush=True)

    end_step = min(total_steps, cfg.train.stop_at_step) if cfg.train.stop_at_step > 0 else total_steps
    start_step = step
    # The dataset is one pass over the epoch plan from ``plan_start_step`` (the driver's view of the
    # latest checkpoint); if a restart resumed from a later checkpoint, skip what it already trained.
    skip = step - loop_config["plan_start_step"]
    if skip < 0:
        raise RuntimeError(f"checkpoint step {step} is before the data plan's first step "
                           f"{loop_config['plan_start_step']}")
    shard = ray.train.get_dataset_shard("train")
    running: list[float] = []
    model.train()
    batches = shard.iter_torch_batches(batch_size=cfg.train.batch_size, drop_last=True,
                                       dtypes=train_dtypes(cfg))
    for i, batch in enumerate(batches):
        if i < skip:
            continue
        if step >= end_step:
            break
        batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
        with torch.autocast(device_type=device.type, dtype=amp, enabled=amp is not None):
            loss, logs = model(batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.optim.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.optim.grad_clip)
        optimizer.step()
        if after_step is not None:  # every rank, after each real optimizer step
            after_step()
        scheduler.step()
        step += 1
        running.append(float(loss.detach()))
        if writer is not None and step % cfg.train.log_every == 0:
            writer.add_scalar("train/loss", float(np.mean(running[-cfg.train.log_every:])), step)
            writer.add_scalar("train/lr", scheduler.get_last_lr()[-1], step)
            writer.add_scalar("train/epoch", step / steps_per_epoch, step)
            for key, value in logs.items():
                writer.add_scalar(f"train/{key}", float(value), step)
        if step % cfg.train.checkpoint_every == 0 and step < end_step:
            _report(cfg, module, optimizer, scheduler, step, world, rank, _loss_metrics(running), start_step)
            running = []
    if step < end_step:
        raise RuntimeError(f"the data plan ran out at step {step} before step {end_step}")

    # The last checkpoint carries the final metrics (Ray Train's Result holds the latest
    # checkpoint's metrics), so evaluation comes before it.
    final: dict[str, Any] = _loss_metrics(running)
    if cfg.train.eval_at_end:
        final.update(_evaluate_at_end(cfg, retrieval_model(module), device, amp, rank, loop_config))
    if writer is not None:
        for key, value in final.items():
            if key.startswith(("t2v_", "v2t_")):
                writer.add_scalar(f"eval/{key}", value, step)
        writer.close()
    _report(cfg, module, optimizer, scheduler, step, world, rank, {**final, "final": True}, start_step)


def _loss_metrics(running: list[float]) -> dict[str, float]:
    return {"loss": float(np.mean(running))} if running else {}


def _report(cfg: Config, module, optimizer, scheduler, step: int, world: int, rank: int,
            metrics: dict[str, Any], start_step: int) -> None:
    """Checkpoint (rank 0 writes the files) and report; every rank calls ``report`` (it is a barrier)."""
    import ray.train

    rngs = _all_rng_states(world)
    metrics = {"step": step, **metrics}
    if rank != 0:
        ray.train.report(metrics)
        return
    with tempfile.TemporaryDirectory(prefix="raytrain-ckpt-") as tmp:
        save_training_state(tmp, cfg, module, optimizer, scheduler, step, rngs,
                            extra={"metrics": metrics, "start_step": start_step})
        ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(tmp))


def _evaluate_at_end(cfg: Config, module, device, amp, rank: int, loop_config: dict) -> dict[str, float]:
    """Rank 0 embeds the whole eval split (an unsplit dataset); other ranks wait at the next report."""
    import ray.train

    if rank != 0:
        return {}
    batches = ray.train.get_dataset_shard("eval").iter_torch_batches(
        batch_size=cfg.eval.batch_size, dtypes={"frames": torch.uint8, "video_index": torch.int64})
    tokenizer = get_tokenizer(cfg.model.arch, cfg.data.max_words)
    metrics = evaluate_model(module, batches, loop_config["eval_texts"],
                             np.asarray(loop_config["eval_text_to_video"]), loop_config["num_eval_clips"],
                             tokenizer, device, cfg.eval.text_batch_size, amp)
    print("[raytrain] eval: " + ", ".join(f"{k}={v:.2f}" for k, v in metrics.items()), flush=True)
    return metrics
