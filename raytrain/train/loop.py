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
from raytrain.data.batch import eval_batch_dtypes, train_batch_dtypes
from raytrain.data.plan import end_step as planned_end_step
from raytrain.data.plan import plan_steps
from raytrain.eval.retrieval import evaluate_model
from raytrain.methods import build_objective, data_columns, retrieval_model
from raytrain.model.clip_video import get_tokenizer
from raytrain.storage import tensorboard_log
from raytrain.train import faults
from raytrain.train.schedule import build_optimizer, build_scheduler
from raytrain.train.state import (
    load_training_state,
    rng_state,
    save_training_state,
    seed_everything,
    set_rng_state,
)


def autocast_dtype(cfg: Config, device: torch.device) -> torch.dtype | None:
    if cfg.train.precision == "bf16" or (cfg.train.precision == "auto" and device.type == "cuda"):
        return torch.bfloat16
    return None


def _all_rng_states(world_size: int, extra: Any = None) -> list[Any]:
    """Every rank's RNG state (with ``extra`` given: ``(rng state, extra)`` pairs)."""
    mine = rng_state() if extra is None else (rng_state(), extra)
    states = [None] * world_size
    if world_size > 1:
        dist.all_gather_object(states, mine)
    else:
        states[0] = mine
    return states


def _any_rank(flags: list[bool], world_size: int) -> list[bool]:
    """For each flag, whether any rank raised it: one small all-reduce for all of them."""
    if world_size > 1 and dist.is_initialized():
        t = torch.tensor([1.0 if f else 0.0 for f in flags])
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return [bool(v > 0) for v in t.tolist()]
    return [bool(f) for f in flags]


def _gather_node_ids(world_size: int) -> list[str]:
    """The Ray node id of every rank, in rank order (placement check for multi-node runs)."""
    import ray

    mine = ray.get_runtime_context().get_node_id() if ray.is_initialized() else "local"
    if world_size > 1 and dist.is_initialized():
        ids = [None] * world_size
        dist.all_gather_object(ids, mine)
        return [str(i) for i in ids]
    return [mine]


def train_loop_per_worker(loop_config: dict[str, Any]) -> None:
    import ray.train
    import ray.train.torch

    cfg = Config.from_dict(loop_config["config"], source="train loop config")
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    torch.set_num_threads(cfg.scaling.torch_threads)
    device = ray.train.torch.get_device()
    amp = autocast_dtype(cfg, device)

    seed_everything(cfg.train.seed)  # identical initial weights on every rank
    module = build_objective(cfg)  # dual encoder + the method's modules; unwrapped, for saving
    model = ray.train.torch.prepare_model(module)
    if cfg.train.compile != "none":  # after DDP: its optimizer splits the graph at gradient buckets
        model = torch.compile(model, mode=None if cfg.train.compile == "default" else cfg.train.compile)
    optimizer = build_optimizer(module, cfg.optim)
    steps_per_epoch, total_steps = plan_steps(loop_config["num_train_clips"], world, cfg.train.batch_size,
                                              cfg.train.epochs, cfg.train.max_steps)
    scheduler = build_scheduler(optimizer, total_steps, cfg.optim)

    step = 0
    counters = faults.new_counters()  # bad videos and skipped non-finite steps, kept in checkpoints
    run_dir = faults.local_run_dir(cfg.run.storage_path, cfg.run.name)
    train_paths = loop_config.get("train_paths", [])
    checkpoint = ray.train.get_checkpoint()
    state = None
    if checkpoint is not None:
        with checkpoint.as_directory() as directory:
            state = load_training_state(directory)
    # A worker lost right after a report can take that report with it before Ray's controller
    # registers it, although the checkpoint is already complete in storage: resume from the newest
    # complete checkpoint of the run folder when it is later than Ray's.
    local = _newest_local_checkpoint(run_dir)
    if local is not None and local[0] > (int(state["step"]) if state is not None else 0):
        state = load_training_state(local[1])
    if state is not None:
        module.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        step = int(state["step"])
        counters.update(state.get("extra", {}).get("faults", {}))
        rngs = state.get("rng") or []
        if len(rngs) == world:
            set_rng_state(rngs[rank])
        else:  # a different worker count: reseed deterministically from the step
            seed_everything(cfg.train.seed + 1000003 * step + rank)
    else:
        seed_everything(cfg.train.seed + rank)  # per-rank streams for anything random in the step

    trial, stopped = loop_config.get("trial"), False  # a sweep trial: ends when the sweep asks
    writer = None
    if rank == 0:
        writer = tensorboard_log(cfg, purge_step=step)  # <run>/tensorboard, local folder or URI
        writer.add_text("config", "```\n" + str(cfg.to_dict()) + "\n```", step)
        print(f"[raytrain] rank 0: {world} worker(s), {steps_per_epoch} steps/epoch, "
              f"{total_steps} steps in all, starting at step {step}", flush=True)
        faults.log_event(run_dir, start_step=step)
    if trial is not None and rank == 0:  # a sweep trial: the placement group its driver frees when it ends
        trial.record_placement_group()
    nodes = _gather_node_ids(world)  # every rank takes part (a collective)
    if writer is not None:
        print(f"[raytrain] worker nodes (rank: node id): {dict(enumerate(nodes))}", flush=True)
        writer.add_text("worker_nodes", str(dict(enumerate(nodes))), step)

    end_step = planned_end_step(total_steps, cfg.train.stop_at_step)
    start_step = step
    # The dataset is one pass over the epoch plan from ``plan_start_step`` (the driver's view of the
    # latest checkpoint); if a restart resumed from a later checkpoint, skip what it already trained.
    skip = step - loop_config["plan_start_step"]
    if skip < 0:
        raise RuntimeError(f"checkpoint step {step} is before the data plan's first step "
                           f"{loop_config['plan_start_step']}")
    shard = ray.train.get_dataset_shard(f"train_rank{rank}" if cfg.data.per_rank_plan else "train")
    running: list[float] = []
    new_bad: list[int] = []  # plan clips replaced since the last report (this rank)
    cache_hits: list[float] = []  # data.cache=frames: share of this rank's clips read from the cache
    model.train()
    batches = shard.iter_torch_batches(batch_size=cfg.train.batch_size, drop_last=True,
                                       dtypes=train_batch_dtypes(cfg, data_columns(cfg)))
    for i, batch in enumerate(_name_bad_videos(batches)):
        if i < skip:
            continue
        if step >= end_step:
            break
        bad_clips = batch.pop("bad_clip", None)
        if bad_clips is not None:
            new_bad.extend(int(c) for c in bad_clips[bad_clips >= 0])
        hit = batch.pop("cache_hit", None)
        if hit is not None:
            cache_hits.append(float(hit.float().mean()))
        batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
        with torch.autocast(device_type=device.type, dtype=amp, enabled=amp is not None):
            loss, logs = model(batch)
        if cfg.faults.nan_at_step == step + 1:  # fault injection: this step's loss is NaN
            loss = loss * float("nan")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()  # every rank, even for a NaN: DDP's gradient all-reduce must stay matched
        grad_norm = torch.nn.utils.clip_grad_norm_(
            model.parameters(), cfg.optim.grad_clip if cfg.optim.grad_clip > 0 else float("inf"))
        # One all-reduce per step: a non-finite loss or gradient on any rank, and (a sweep trial) rank 0
        # seeing the stop file, which ends the run after this step.
        non_finite, stop_now = _any_rank(
            [not (torch.isfinite(loss.detach()).all() and torch.isfinite(grad_norm)),
             trial is not None and rank == 0 and trial.stop_requested()], world)
        if non_finite:
            optimizer.zero_grad(set_to_none=True)
            _non_finite(cfg, step + 1, rank, run_dir, counters, writer)
        else:
            optimizer.step()
            module.after_optimizer_step()  # every rank, after each real step (MILES's EMA snapshot)
            running.append(float(loss.detach()))
        scheduler.step()  # a skipped update still uses up its planned step (data and LR schedule)
        step += 1
        if (cfg.faults.kill_at_step == step and rank == cfg.faults.kill_rank
                and faults.fire_once(run_dir, "kill", step)):
            print(f"[raytrain] fault injection: rank {rank} exits hard after step {step}", flush=True)
            faults.die()
        if writer is not None and step % cfg.train.log_every == 0:
            writer.add_scalar("train/loss", float(np.mean(running[-cfg.train.log_every:])), step)
            writer.add_scalar("train/lr", scheduler.get_last_lr()[-1], step)
            writer.add_scalar("train/epoch", step / steps_per_epoch, step)
            for key, value in logs.items():
                writer.add_scalar(f"train/{key}", float(value), step)
            if cache_hits:
                writer.add_scalar("data/cache_hit_rate", float(np.mean(cache_hits[-cfg.train.log_every:])), step)
        if step % cfg.checkpoint.every == 0 and step < end_step:
            metrics = _loss_metrics(running)
            if cfg.eval.every and step % cfg.eval.every == 0:  # e.g. for a sweep's ASHA
                metrics.update(_evaluate(cfg, retrieval_model(module), device, amp, rank, loop_config))
                _log_eval(writer, metrics, step)
            _report(cfg, module, optimizer, scheduler, step, world, rank, metrics, start_step,
                    counters, new_bad, train_paths, run_dir, writer)
            running, new_bad = [], []
        if stop_now:
            stopped = True
            break
    if stopped:  # e.g. ASHA stopped this sweep trial: keep a checkpoint of the last step and end
        if rank == 0:
            print(f"[raytrain] stop requested ({trial.stop_file}): ending at step {step}", flush=True)
        if writer is not None:
            writer.close()
        if step % cfg.checkpoint.every:  # not just checkpointed
            _report(cfg, module, optimizer, scheduler, step, world, rank,
                    {**_loss_metrics(running), "stopped": True}, start_step, counters, new_bad, train_paths,
                    run_dir, None)
        return
    if step < end_step:
        raise RuntimeError(f"the data plan ran out at step {step} before step {end_step}")

    # The last checkpoint carries the final metrics (Ray Train's Result holds the latest
    # checkpoint's metrics), so evaluation comes before it.
    final: dict[str, Any] = _loss_metrics(running)
    if cfg.eval.at_end:
        final.update(_evaluate(cfg, retrieval_model(module), device, amp, rank, loop_config))
    _log_eval(writer, final, step)
    if writer is not None:
        writer.close()
    _report(cfg, module, optimizer, scheduler, step, world, rank, {**final, "final": True}, start_step,
            counters, new_bad, train_paths, run_dir, None)


def _name_bad_videos(batches):
    """Re-raise a decode failure from the Ray Data workers as a short error that starts with the file
    and the decoder's message (Ray's error snippet for the driver cuts long tracebacks in the middle)."""
    import re

    try:
        yield from batches
    except Exception as exc:
        text = "\n".join(str(e) for e in (exc, exc.__cause__, exc.__context__) if e is not None)
        found = re.search(r"cannot decode '[^'\n]*' with \w+: [^\n]*", text)
        if found is None:
            raise
        raise RuntimeError(f"{found.group(0)} (data.on_bad_video=error; 'skip' replaces bad clips)") from None


def _newest_local_checkpoint(run_dir) -> tuple[int, Path] | None:
    from raytrain.train.state import find_checkpoint, latest_checkpoint_step

    if run_dir is None or not Path(run_dir).is_dir():
        return None
    step = latest_checkpoint_step(run_dir)
    return (step, find_checkpoint(run_dir)) if step > 0 else None


def _loss_metrics(running: list[float]) -> dict[str, float]:
    return {"loss": float(np.mean(running))} if running else {}


def _non_finite(cfg: Config, step: int, rank: int, run_dir, counters: dict, writer) -> None:
    """A NaN/Inf loss or gradient (agreed by every rank): skip the update, or stop naming the step
    and the last good checkpoint."""
    if cfg.train.on_nan == "stop":
        last = "none (the run has no checkpoint yet)"
        if run_dir is not None:
            from raytrain.train.state import find_checkpoint, load_training_state

            try:
                ckpt = find_checkpoint(run_dir)
                last = f"step {load_training_state(ckpt)['step']} at {ckpt}"
            except FileNotFoundError:
                pass
        raise faults.NonFiniteLossError(f"non-finite loss or gradient at step {step} (train.on_nan=stop); "
                                        f"the last good checkpoint is {last}")
    counters["nan_steps_skipped"] += 1
    if rank == 0:
        print(f"[raytrain] non-finite loss or gradient at step {step}: update skipped "
              f"({counters['nan_steps_skipped']} so far)", flush=True)
    if writer is not None:
        writer.add_scalar("train/nan_steps_skipped", counters["nan_steps_skipped"], step)


def _report(cfg: Config, module, optimizer, scheduler, step: int, world: int, rank: int,
            metrics: dict[str, Any], start_step: int, counters: dict | None = None,
            new_bad: list[int] = (), train_paths: list[str] = (), run_dir=None, writer=None) -> None:
    """Checkpoint (rank 0 writes the files) and report; every rank calls ``report`` (it is a barrier)."""
    import ray.train

    gathered = _all_rng_states(world, list(new_bad))  # RNG states and the bad clips every rank met
    rngs = [g[0] for g in gathered]
    counters = counters if counters is not None else faults.new_counters()
    faults.add_bad_clips(counters, [c for g in gathered for c in g[1]], list(train_paths))
    metrics = {"step": step, **metrics, **faults.counter_metrics(counters)}
    if rank != 0:
        ray.train.report(metrics)
        return
    if writer is not None and cfg.data.on_bad_video == "skip":
        writer.add_scalar("data/bad_videos_skipped", counters["bad_videos_skipped"], step)
    crash = (cfg.faults.checkpoint_crash_at_step == step
             and faults.fire_once(run_dir, "checkpoint_crash", step))
    with tempfile.TemporaryDirectory(prefix="raytrain-ckpt-") as tmp:
        save_training_state(tmp, cfg, module, optimizer, scheduler, step, rngs,
                            extra={"metrics": metrics, "start_step": start_step, "faults": dict(counters)},
                            after_state_file=faults.die if crash else None)
        ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(tmp))
    faults.log_event(run_dir, checkpoint_step=step)


def _log_eval(writer, metrics: dict[str, Any], step: int) -> None:
    if writer is not None:
        for key, value in metrics.items():
            if key.startswith(("t2v_", "v2t_")):
                writer.add_scalar(f"eval/{key}", value, step)


def _evaluate(cfg: Config, module, device, amp, rank: int, loop_config: dict) -> dict[str, float]:
    """Rank 0 embeds the whole eval split (an unsplit dataset); other ranks wait at the next report."""
    import ray.train

    if rank != 0:
        return {}
    batches = ray.train.get_dataset_shard("eval").iter_torch_batches(
        batch_size=cfg.eval.batch_size, dtypes=eval_batch_dtypes(cfg))
    tokenizer = get_tokenizer(cfg.model.arch, cfg.data.max_words)
    metrics = evaluate_model(module, batches, loop_config["eval_texts"],
                             np.asarray(loop_config["eval_text_to_video"]), loop_config["num_eval_clips"],
                             tokenizer, device, cfg.eval.text_batch_size, amp, cfg.eval.sim_block)
    print("[raytrain] eval: " + ", ".join(f"{k}={v:.2f}" for k, v in metrics.items()), flush=True)
    return metrics
