"""``train_loop_per_worker``: the training loop, readable top to bottom.

The loop asks components that decide their own timing: the resume decision (``resume.py``), the step
(``step.py``), the fault injector (``faults.py``), the metric logger, the evaluator and the
checkpointer. Ray appears only through ``ray.train.{get_context, get_checkpoint, get_dataset_shard,
report, Checkpoint}``, ``ray.train.torch.{get_device, prepare_model}``, ``ray.get_runtime_context``
(each rank's node) and, in a sweep trial, ``ray.util.get_current_placement_group``
(``TrialControl.record_placement_group``).
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Iterator
from typing import Any

import torch

from raytrain.config import Config
from raytrain.data.batch import train_batch_dtypes
from raytrain.data.plan import end_step as planned_end_step
from raytrain.data.plan import plan_steps
from raytrain.methods import build_objective, data_columns
from raytrain.train.checkpoint import Checkpointer, gather_from_ranks
from raytrain.train.evaluator import Evaluator
from raytrain.train.faults import FaultInjector, local_run_dir, on_non_finite
from raytrain.train.job import TrainJob
from raytrain.train.logit_scale import after_step_hook, use_logit_scale_clamp
from raytrain.train.metric_logger import MetricLogger
from raytrain.train.resume import TrainState, load_resume_state, restore_rng, skip_reporter
from raytrain.train.schedule import build_optimizer, build_scheduler
from raytrain.train.state import seed_everything
from raytrain.train.step import autocast_dtype, train_step


def train_loop_per_worker(config: dict[str, TrainJob]) -> None:
    import ray.train
    import ray.train.torch

    job: TrainJob = config["job"]
    cfg = job.cfg()
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    torch.set_num_threads(cfg.scaling.torch_threads)
    device = ray.train.torch.get_device()
    steps_per_epoch, total_steps = plan_steps(job.num_train_clips, world, cfg.train.batch_size,
                                              cfg.train.epochs, cfg.train.max_steps)
    state, model = build_state(cfg, total_steps)
    run_dir = local_run_dir(cfg.run.storage_path, cfg.run.name)
    saved = load_resume_state(ray.train.get_checkpoint(), run_dir, skip_reporter(run_dir, rank))
    if saved is not None:
        state.restore(saved)
    restore_rng(saved, cfg.train.seed, rank, world)  # per-rank streams for anything random in the step

    logger = MetricLogger(cfg, rank, world, state.step, steps_per_epoch, total_steps, run_dir)
    if job.trial is not None and rank == 0:  # a sweep trial: the placement group its driver frees at the end
        job.trial.record_placement_group()
    logger.worker_nodes(gather_from_ranks(_node_id(), world), state.step)  # every rank takes part
    end_step = planned_end_step(total_steps, cfg.train.stop_at_step)
    injector = FaultInjector(cfg.faults, rank, run_dir)
    checkpointer = Checkpointer(cfg, state, rank, world, end_step, run_dir, job.train_paths, injector)
    evaluator = Evaluator(cfg, job, device, rank)
    amp, stopped = autocast_dtype(cfg, device), False
    after_step = after_step_hook(state.module, cfg.model)  # the method's hook (+ CLIP4Clip's scale clamp)

    def checkpoint_metrics() -> dict[str, Any]:
        metrics = logger.take_loss()
        if evaluator.due(state.step):  # e.g. for a sweep's ASHA
            metrics.update(logger.evaluation(evaluator.run(state.module, state.step, logger.writer), state.step))
        return metrics

    model.train()
    for batch, wait_s in _timed(_train_batches(cfg, job, rank, state.step)):
        if state.step >= end_step:
            break
        bad_clips, cache_hit = batch.pop("bad_clip", None), batch.pop("cache_hit", None)
        if bad_clips is not None:
            checkpointer.note_bad_clips([int(c) for c in bad_clips[bad_clips >= 0]])
        logger.batch(cache_hit, wait_s, batch.pop("fallback_decoded", None))
        batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
        result = train_step(model, state.optimizer, state.scheduler, batch, amp=amp, grad_clip=cfg.optim.grad_clip,
                            world_size=world, grad_clip_mode=cfg.optim.grad_clip_mode,
                            clip_ranks=cfg.optim.clip4clip_ranks, after_optimizer_step=after_step,
                            poison_loss=injector.poisons_loss(state.step + 1),
                            flags=[_asks_stop(job, rank, state.step + 1, cfg.train.log_every)])
        if result.skipped:
            on_non_finite(cfg.train.on_nan, state.step + 1, run_dir, state.counters)
        state.step += 1
        injector.after_step(state.step)
        logger.step(result, state.step, state.scheduler.get_last_lr()[-1], state.counters.nan_steps_skipped)
        logger.checkpoint(checkpointer.maybe_save(checkpoint_metrics))
        if stopped := result.flags[0]:  # rank 0 saw the sweep's stop request: every rank ends here
            break
    _finish(cfg, job, state, end_step, stopped, rank, logger, evaluator, checkpointer)


def _finish(cfg: Config, job: TrainJob, state: TrainState, end_step: int, stopped: bool, rank: int,
            logger: MetricLogger, evaluator: Evaluator, checkpointer: Checkpointer) -> None:
    """The last report: a run stopped early (e.g. ASHA) keeps a checkpoint of its last step; a finished
    one evaluates first (Ray Train's Result holds the latest checkpoint's metrics) and saves ``final``."""
    metrics = {**logger.take_loss(), **logger.summary()}
    if stopped:
        if rank == 0:
            print(f"[raytrain] stop requested ({job.trial.stop_file}): ending at step {state.step}", flush=True)
    elif state.step < end_step:
        raise RuntimeError(f"the data plan ran out at step {state.step} before step {end_step}")
    elif cfg.eval.at_end:
        metrics.update(logger.evaluation(evaluator.run(state.module, state.step, logger.writer), state.step))
    logger.close()
    if stopped:
        checkpointer.save_stopped(metrics)
    else:
        checkpointer.save_final(metrics)


def build_state(cfg: Config, total_steps: int) -> tuple[TrainState, torch.nn.Module]:
    """The objective (same initial weights on every rank), its DDP (and compiled) wrapper, the
    optimizer and the LR schedule: a fresh ``TrainState`` and the model the step calls."""
    import ray.train.torch

    seed_everything(cfg.train.seed)  # identical initial weights on every rank
    module = build_objective(cfg)  # dual encoder + the method's modules; unwrapped, for saving
    use_logit_scale_clamp(module, cfg.model)  # model.logit_scale_clamp: in the forward or after the step
    model = ray.train.torch.prepare_model(module)
    if cfg.train.compile != "none":  # after DDP: its optimizer splits the graph at gradient buckets
        model = torch.compile(model, mode=None if cfg.train.compile == "default" else cfg.train.compile)
    optimizer = build_optimizer(module, cfg.optim)
    return TrainState(module, optimizer, build_scheduler(optimizer, total_steps, cfg.optim)), model


def _train_batches(cfg: Config, job: TrainJob, rank: int, step: int) -> Iterator[dict[str, torch.Tensor]]:
    """This rank's batches from ``step`` on. The dataset is one pass over the epoch plan from
    ``plan_start_step`` (the driver's view of the latest checkpoint); if a restart resumed from a later
    checkpoint, skip what it already trained."""
    import ray.train

    skip = step - job.plan_start_step
    if skip < 0:
        raise RuntimeError(f"checkpoint step {step} is before the data plan's first step {job.plan_start_step}")
    shard = ray.train.get_dataset_shard(f"train_rank{rank}" if cfg.data.per_rank_plan else "train")
    batches = shard.iter_torch_batches(batch_size=cfg.train.batch_size, drop_last=True,
                                       dtypes=train_batch_dtypes(cfg, data_columns(cfg)))
    for i, batch in enumerate(_name_bad_videos(batches)):
        if i >= skip:
            yield batch


def _timed(items: Iterable[Any]) -> Iterator[tuple[Any, float]]:
    """Each item with the seconds spent waiting for it (the data wait, apart from the step's compute)."""
    it = iter(items)
    while True:
        t0 = time.perf_counter()
        try:
            item = next(it)
        except StopIteration:
            return
        yield item, time.perf_counter() - t0


def _asks_stop(job: TrainJob, rank: int, step: int, log_every: int) -> bool:
    """Rank 0 of a sweep trial asks for a stop request at logging intervals (a remote read on ``s3://``);
    the step's all-reduce tells every rank."""
    return job.trial is not None and rank == 0 and step % log_every == 0 and job.trial.stop_requested()


def _node_id() -> str:
    import ray

    return ray.get_runtime_context().get_node_id() if ray.is_initialized() else "local"


def _name_bad_videos(batches):
    """Re-raise a decode failure from the Ray Data workers as a short error that starts with the file
    and the decoder's message (Ray's error snippet for the driver cuts long tracebacks in the middle)."""
    try:
        yield from batches
    except Exception as exc:
        text = "\n".join(str(e) for e in (exc, exc.__cause__, exc.__context__) if e is not None)
        found = re.search(r"cannot decode '[^'\n]*' with \w+: [^\n]*", text)
        if found is None:
            raise
        raise RuntimeError(f"{found.group(0)} (data.on_bad_video=error; 'skip' replaces bad clips)") from None
