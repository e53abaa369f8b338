"""Small real files several test modules build the same way (a test helper, not a test module)."""

from __future__ import annotations

from pathlib import Path


def save_tiny_checkpoint(directory: str | Path, step: int) -> Path:
    """A real checkpoint folder (``save_training_state``) of a 3→2 linear model at ``step``."""
    import torch

    from raytrain.config import Config
    from raytrain.train.state import save_training_state

    model = torch.nn.Linear(3, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    return save_training_state(directory, Config(), model, opt, sched, step, [])


def cache_config(tmp_path: Path, **over):
    """``(config with data.cache=frames, 3 train rows)`` over three small fake video files in
    ``tmp_path`` (distinct sizes, so their fingerprints differ); ``over``: more ``key=value`` overrides."""
    from raytrain.config import Config, apply_overrides
    from raytrain.data.manifest import ClipRow

    rows = []
    for i in range(3):
        p = tmp_path / f"v{i}.mp4"
        p.write_bytes(b"x" * (i + 1))
        rows.append(ClipRow(f"v{i}", str(p), (f"cap {i}",), "train"))
    cfg = apply_overrides(Config(), [f"run.storage_path={tmp_path / 'runs'}", "run.name=r", "data.cache=frames",
                                     *[f"{k}={v}" for k, v in over.items()]])
    return cfg, rows
