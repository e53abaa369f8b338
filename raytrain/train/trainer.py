"""Assemble and run the ``TorchTrainer`` from the config (Ray at the edge)."""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from raytrain.config import Config
from raytrain.data.manifest import ClipRow, load_manifest
from raytrain.data.pipeline import bank_dataset, eval_dataset, eval_texts, train_datasets
from raytrain.data.plan import end_step as planned_end_step
from raytrain.data.plan import num_epoch_items, plan_steps
from raytrain.data.probe import probe_manifest
from raytrain.eval.run import bank_rows
from raytrain.methods import data_columns
from raytrain.model.clip_video import model_image_size
from raytrain.ray_env import check_cpus_fit
from raytrain.storage import check_shared_storage, is_uri, join, run_location, write_text
from raytrain.train.job import TrainJob
from raytrain.train.loop import train_loop_per_worker
from raytrain.train.metric_logger import read_step_reached
from raytrain.train.progress import finished_line, interrupted_line, resume_line, summary_lines
from raytrain.train.recipe import recipe_line
from raytrain.train.run_folder import prepare_run_folder, prune_untracked
from raytrain.train.state import find_checkpoint, latest_checkpoint_step, load_training_state


class RunInterrupted(Exception):
    """Ctrl-C ended the run; the message says the step reached, the last checkpoint and how to go on."""


@dataclass
class FitResult:
    metrics: dict[str, Any]
    checkpoint_path: str | None
    run_dir: str
    wall_s: float = 0.0  # the fit's wall time (Ray Train start-up and evaluation included)
    metrics_json: str | None = None  # where metrics.json was written (None: no evaluation, not written)

    def summary(self, on_bad_video: str) -> str:
        """The closing summary (raytrain/train/progress.py): time, steps, throughput, skips, paths."""
        return "\n".join(summary_lines(self.metrics, self.wall_s, self.run_dir, self.checkpoint_path,
                                        self.metrics_json, join(self.run_dir, "tensorboard"), on_bad_video))


def resolve_paths(cfg: Config) -> Config:
    """Make local paths absolute on the driver: Ray workers do not share its working directory.
    Typed values through ``Config.replace`` (a path is never re-read as YAML)."""
    paths = {"data.manifest": os.path.abspath(cfg.data.manifest)}
    if "://" not in cfg.run.storage_path:
        paths["run.storage_path"] = os.path.abspath(cfg.run.storage_path)
    if cfg.data.cache_dir and "://" not in cfg.data.cache_dir:
        paths["data.cache_dir"] = os.path.abspath(cfg.data.cache_dir)
    if cfg.model.pretrained:
        paths["model.pretrained"] = os.path.abspath(os.path.expanduser(cfg.model.pretrained))
    return cfg.replace(**paths)


def run_dir(cfg: Config) -> Path:
    return Path(cfg.run.storage_path) / cfg.run.name


@dataclass
class TrainInputs:
    cfg: Config  # with absolute local paths
    image_size: int
    train_rows: list[ClipRow]
    eval_rows: list[ClipRow]


def validate_inputs(cfg: Config) -> TrainInputs:
    """Every check that needs no Ray, run before any worker starts: the manifest (both splits, every
    file), the model name, the weights path and the batch plan. Errors name the key, row or file."""
    cfg = resolve_paths(cfg)
    image_size = model_image_size(cfg.model.arch)
    if cfg.model.pretrained:  # a weights file, or a raytrain checkpoint / run folder (model/pretrained.py)
        source = Path(cfg.model.pretrained)
        if not source.exists():
            raise FileNotFoundError(f"config key 'model.pretrained': checkpoint '{cfg.model.pretrained}' not found")
        if source.is_dir():
            try:
                find_checkpoint(source)
            except FileNotFoundError as e:
                raise FileNotFoundError(f"config key 'model.pretrained': {e}") from None
    train_rows = load_manifest(cfg.data.manifest, split=cfg.data.train_split)
    eval_rows = load_manifest(cfg.data.manifest, split=cfg.data.eval_split) if cfg.needs_eval else []
    if cfg.data.probe_videos:
        t0 = time.time()
        splits = [cfg.data.train_split, *([cfg.data.eval_split] if cfg.needs_eval else [])]
        probed = probe_manifest(cfg.data.manifest, splits)
        print(f"[raytrain] data.probe_videos: {probed} videos open and decode ({time.time() - t0:.1f} s)", flush=True)
    plan_steps(num_epoch_items(train_rows, cfg.data.epoch_unit), cfg.scaling.num_workers, cfg.train.batch_size,
               cfg.train.epochs, cfg.train.max_steps)  # raises for a split smaller than one global batch
    return TrainInputs(cfg, image_size, train_rows, eval_rows)


def build_trainer(cfg: Config, callbacks: list | None = None, trial=None, inputs: TrainInputs | None = None):
    """Validate everything up front (unless ``inputs``, what ``validate_inputs(cfg)`` returned, is
    given), then assemble datasets, scaling and run config (``callbacks``: Ray Train callbacks, e.g. a
    sweep's ``TuneReportCallback``; ``trial``: a sweep trial's ``raytrain.tune.trial.TrialControl``,
    whose stop request ends the run cleanly)."""
    import ray.train
    from ray.train.torch import TorchTrainer

    inputs = inputs if inputs is not None else validate_inputs(cfg)
    check_shared_storage(inputs.cfg)  # multi-node: run.storage_path must be seen by every node
    check_cpus_fit(inputs.cfg)  # a fixed-size Ray too small for the run would wait forever
    cfg, image_size, train_rows, eval_rows = inputs.cfg, inputs.image_size, inputs.train_rows, inputs.eval_rows
    texts, owner = eval_texts(eval_rows)
    items = num_epoch_items(train_rows, cfg.data.epoch_unit)
    per_epoch, total_steps = plan_steps(items, cfg.scaling.num_workers, cfg.train.batch_size,
                                        cfg.train.epochs, cfg.train.max_steps)
    print(f"[raytrain] {recipe_line(cfg, items, per_epoch, total_steps)}", flush=True)
    end_step = planned_end_step(total_steps, cfg.train.stop_at_step)
    start_step = 0
    if not is_uri(cfg.run.storage_path):
        prepare_run_folder(run_dir(cfg), cfg.checkpoint.keep)  # Ray's snapshot repaired, broken checkpoints reported, stale tmp gone
        start_step = latest_checkpoint_step(run_dir(cfg))
    start_step = min(start_step, end_step)
    if start_step:
        print(resume_line(cfg.run.name, start_step, total_steps), flush=True)
    datasets = train_datasets(cfg, train_rows, image_size, start_step, end_step, data_columns(cfg))
    bank_texts, bank_clips = [], []
    if eval_rows:
        datasets["eval"] = eval_dataset(cfg, eval_rows, image_size)
        if cfg.eval.rerank == "qb_norm":  # QB-Norm's query banks from the train split (eval/run.py)
            bank_texts, bank_clips = bank_rows(cfg.eval, train_rows)
            datasets["qb_bank"] = bank_dataset(cfg, bank_clips, image_size)
    job = TrainJob(cfg.to_dict(), num_train_clips=items, plan_start_step=start_step,
                   eval_texts=texts, eval_text_to_video=owner.tolist(), num_eval_clips=len(eval_rows),
                   train_paths=[r.path for r in train_rows] if cfg.data.on_bad_video == "skip" else [],
                   eval_paths=[r.path for r in eval_rows] if cfg.data.on_bad_video == "skip" else [],
                   eval_clips=[(r.video_id, r.path, r.start_s, r.end_s) for r in eval_rows]
                   if cfg.eval.retrieval_examples else [],
                   qb_bank_texts=bank_texts, num_qb_bank_clips=len(bank_clips),
                   trial=trial)
    return TorchTrainer(
        train_loop_per_worker,
        train_loop_config={"job": job},
        scaling_config=ray.train.ScalingConfig(
            num_workers=cfg.scaling.num_workers, use_gpu=cfg.scaling.use_gpu,
            resources_per_worker={"CPU": cfg.scaling.cpus_per_worker},
            placement_strategy=cfg.scaling.placement_strategy),
        run_config=ray.train.RunConfig(
            name=cfg.run.name, storage_path=cfg.run.storage_path,
            checkpoint_config=_checkpoint_config(cfg),
            failure_config=ray.train.FailureConfig(max_failures=cfg.train.max_failures),
            callbacks=callbacks),
        datasets=datasets,
        dataset_config=_data_config(cfg, datasets),
    ), cfg


def _checkpoint_config(cfg: Config):
    """Keep the latest ``checkpoint.keep``, or (``checkpoint.keep_best_by``) the best that many by a
    reported metric; Ray also always keeps the latest, which a restart resumes from."""
    import ray.train

    if not cfg.checkpoint.keep_best_by:
        return ray.train.CheckpointConfig(num_to_keep=cfg.checkpoint.keep)
    return ray.train.CheckpointConfig(num_to_keep=cfg.checkpoint.keep,
                                      checkpoint_score_attribute=cfg.checkpoint.keep_best_by,
                                      checkpoint_score_order=cfg.checkpoint.keep_best_order)


def _data_config(cfg: Config, datasets: dict):
    import ray.train

    if not cfg.data.per_rank_plan:
        return ray.train.DataConfig(datasets_to_split=["train"])
    options = ray.train.DataConfig.default_ingest_options()
    options.preserve_order = True
    return ray.train.DataConfig(datasets_to_split=[],
                                execution_options={name: options for name in datasets if name.startswith("train")})


def fit(cfg: Config, inputs: TrainInputs | None = None) -> FitResult:
    """Train (resuming from the run's latest checkpoint if there is one) and write ``metrics.json``;
    ``inputs``: ``validate_inputs(cfg)`` when the caller has already run it (the checks run once)."""
    t0 = time.time()
    inputs = inputs if inputs is not None else validate_inputs(cfg)
    done = finished_run(inputs)
    if done is not None:
        return done
    trainer, cfg = build_trainer(cfg, inputs=inputs)
    try:
        result = trainer.fit()
    except (KeyboardInterrupt, SystemExit):  # Ray's SIGINT handler ends the wait with sys.exit(0)
        raise RunInterrupted(interrupt_message(cfg)) from None
    metrics = dict(result.metrics or {})
    if not is_uri(cfg.run.storage_path):
        prune_untracked(run_dir(cfg), cfg.checkpoint.keep)  # Ray's final snapshot: the folder a restart resumed from goes
    if not (metrics.get("final") or metrics.get("stopped")) and result.error is None:
        raise RunInterrupted(interrupt_message(cfg))  # Ray's SIGINT handler aborted the run
    out = run_location(cfg)  # a local folder, or a URI (s3://, gs://) written through pyarrow.fs
    if not is_uri(out):
        os.makedirs(out, exist_ok=True)
    metrics_json = None
    if any(k.startswith("t2v_") for k in metrics):
        metrics_json = join(out, "metrics.json")
        write_text(metrics_json, json.dumps(metrics, indent=2, sort_keys=True))
    ckpt = result.checkpoint.path if result.checkpoint is not None else None
    if ckpt is not None and is_uri(cfg.run.storage_path) and not is_uri(ckpt):
        ckpt = f"{cfg.run.storage_path.split('://', 1)[0]}://{ckpt}"  # Ray gives the path inside the bucket
    return FitResult(metrics, ckpt, out, time.time() - t0, metrics_json)


def finished_run(inputs: TrainInputs) -> FitResult | None:
    """A run folder whose checkpoints already reach the planned end: say so and return its result
    (its metrics.json and checkpoints untouched, no evaluation); None when there is training to do."""
    cfg = inputs.cfg
    if is_uri(cfg.run.storage_path):
        return None
    items = num_epoch_items(inputs.train_rows, cfg.data.epoch_unit)
    _, total_steps = plan_steps(items, cfg.scaling.num_workers, cfg.train.batch_size, cfg.train.epochs,
                                cfg.train.max_steps)
    end_step = planned_end_step(total_steps, cfg.train.stop_at_step)
    folder = run_dir(cfg)
    step = latest_checkpoint_step(folder) if folder.is_dir() else 0
    if step < end_step:
        return None
    print(f"[raytrain] {finished_line(str(folder), step, total_steps)}", flush=True)
    ckpt = find_checkpoint(folder)
    metrics_json = folder / "metrics.json"
    if metrics_json.is_file():
        metrics = json.loads(metrics_json.read_text())
    else:
        metrics = dict(load_training_state(ckpt).get("extra", {}).get("metrics", {}))
    return FitResult(metrics, str(ckpt), str(folder), 0.0, str(metrics_json) if metrics_json.is_file() else None)


def interrupt_message(cfg: Config) -> str:
    """``interrupted at step N; the last checkpoint is step M; rerun ...`` from the run folder (the step
    rank 0 last reported in ``step_reached.json``, the newest complete checkpoint)."""
    if is_uri(cfg.run.storage_path):
        return interrupted_line(None, None)
    folder = run_dir(cfg)
    return interrupted_line(read_step_reached(folder), latest_checkpoint_step(folder) if folder.is_dir() else 0)
