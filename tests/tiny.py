"""The tiny 2-worker CPU fit every Ray tier shares (tests/conftest.py, tests/test_multinode.py,
bench/faults.py): one home, so the three cannot drift apart."""

from __future__ import annotations

from pathlib import Path


def tiny_overrides(synth_dir: str | Path) -> list[str]:
    """``key=value`` overrides of a 2-worker CPU fit of the micro open_clip model on the SynthVTT set in
    ``synth_dir``: batch 4 per worker, one epoch, a checkpoint every 2 steps, a log line every step."""
    return [f"data.manifest={Path(synth_dir) / 'manifest.parquet'}", "data.num_frames=3", "data.max_words=16",
            "data.decode_batch_size=8", "model.arch=RT-Micro-ViT", "model.temporal=meanP",
            "optim.lr=2e-3", "optim.tower_lr=2e-3", "optim.weight_decay=0.0", "scaling.num_workers=2",
            "scaling.cpus_per_worker=1", "train.batch_size=4", "train.epochs=1", "checkpoint.every=2",
            "train.log_every=1"]


def tiny_fit_config(synth_dir: str | Path, storage_path: str | Path, name: str = "t"):
    from raytrain.config import Config, apply_overrides

    return apply_overrides(Config(), [*tiny_overrides(synth_dir), f"run.storage_path={storage_path}",
                                      f"run.name={name}"])
