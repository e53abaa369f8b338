"""Checkpoint contents: model, optimizer, scheduler, step and every rank's RNG state (no Ray).

Writes are crash-safe: every file is written under a temporary name and renamed into place, and
``progress.json`` is written last and lists the other files with their sizes. A checkpoint folder is
*complete* only when its ``progress.json`` exists and every listed file has its listed size, so a
crash in the middle of a write (ours, or Ray's copy into storage, whatever its order) leaves a folder
that :func:`find_checkpoint` and :func:`latest_checkpoint_step` ignore: the previous checkpoint stays
the one a run resumes from.
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from raytrain.config import Config, dump_config, load_config

STATE_FILE = "state.pt"
PROGRESS_FILE = "progress.json"
CONFIG_FILE = "config.yaml"


def rng_state() -> dict[str, Any]:
    return {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if state.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def save_training_state(directory: str | Path, cfg: Config, model: torch.nn.Module, optimizer, scheduler,
                        step: int, rng_states: list[dict[str, Any]], extra: dict | None = None,
                        after_state_file=None) -> Path:
    """Write a checkpoint into ``directory``; ``after_state_file``, a hook, runs once the weights are on
    disk and before the folder is complete (the checkpoint-crash drill dies there)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
             "scheduler": scheduler.state_dict(), "step": step, "rng": rng_states, "extra": extra or {}}
    (directory / PROGRESS_FILE).unlink(missing_ok=True)  # incomplete until the new one is published
    _publish(directory / STATE_FILE, lambda tmp: torch.save(state, tmp))
    if after_state_file is not None:
        after_state_file()
    _publish(directory / CONFIG_FILE, lambda tmp: dump_config(cfg, tmp))
    sizes = {name: (directory / name).stat().st_size for name in (STATE_FILE, CONFIG_FILE)}
    _publish(directory / PROGRESS_FILE, lambda tmp: Path(tmp).write_text(json.dumps({"step": step, "files": sizes})))
    return directory


def _publish(path: Path, write) -> None:
    """Write ``path`` through a temporary sibling, flushed to disk, then renamed (atomic on POSIX)."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        write(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def checkpoint_complete(directory: str | Path) -> bool:
    """True when ``directory`` holds a fully written checkpoint (see the module docstring). A folder
    from before progress files listed their files counts as complete when it has its state file."""
    directory = Path(directory)
    try:
        progress = json.loads((directory / PROGRESS_FILE).read_text())
    except (OSError, ValueError):
        return False
    files = progress.get("files") if isinstance(progress, dict) else None
    if files is None:
        return (directory / STATE_FILE).is_file()
    try:
        return all((directory / name).stat().st_size == size for name, size in files.items())
    except OSError:
        return False


def latest_checkpoint_step(run_dir: str | Path) -> int:
    """The highest step among a local run folder's checkpoints (0 if none), read from their small
    progress files so the driver need not load model weights."""
    best = 0
    for progress in Path(run_dir).glob(f"checkpoint_*/{PROGRESS_FILE}"):
        if not checkpoint_complete(progress.parent):
            continue
        try:
            best = max(best, int(json.loads(progress.read_text())["step"]))
        except (ValueError, KeyError, OSError):
            continue
    return best


def load_training_state(directory: str | Path) -> dict[str, Any]:
    path = Path(directory) / STATE_FILE
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint '{directory}' has no {STATE_FILE}")
    return torch.load(path, map_location="cpu", weights_only=False)


def find_checkpoint(path: str | Path) -> Path:
    """A checkpoint folder, or a run folder (its newest ``checkpoint_*``), → the checkpoint folder."""
    path = Path(path).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"checkpoint '{path}' not found")
    if (path / STATE_FILE).is_file() or (path / PROGRESS_FILE).is_file():
        if not checkpoint_complete(path):
            raise FileNotFoundError(f"checkpoint '{path}' is incomplete (a write was interrupted); "
                                    f"use an earlier checkpoint of the run")
        return path
    candidates = sorted((p for p in path.glob("checkpoint_*") if checkpoint_complete(p)),
                        key=lambda p: (_progress_step(p), p.stat().st_mtime))
    if not candidates:
        raise FileNotFoundError(f"'{path}' is neither a checkpoint (no {STATE_FILE}) nor a run folder "
                                f"with complete checkpoint_* folders")
    return candidates[-1]


def _progress_step(directory: Path) -> int:
    try:
        return int(json.loads((directory / PROGRESS_FILE).read_text())["step"])
    except (OSError, ValueError, KeyError, TypeError):
        return -1


def load_checkpoint_config(directory: str | Path) -> Config:
    return load_config(Path(directory) / CONFIG_FILE)
