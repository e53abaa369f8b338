"""Checkpoint contents: model, optimizer, scheduler, step and every rank's RNG state (no Ray)."""

from __future__ import annotations

import json
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
                        step: int, rng_states: list[dict[str, Any]], extra: dict | None = None) -> Path:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
             "scheduler": scheduler.state_dict(), "step": step, "rng": rng_states, "extra": extra or {}}
    torch.save(state, directory / STATE_FILE)
    dump_config(cfg, directory / CONFIG_FILE)
    (directory / PROGRESS_FILE).write_text(json.dumps({"step": step}))
    return directory


def latest_checkpoint_step(run_dir: str | Path) -> int:
    """The highest step among a local run folder's checkpoints (0 if none), read from their small
    progress files so the driver need not load model weights."""
    best = 0
    for progress in Path(run_dir).glob(f"checkpoint_*/{PROGRESS_FILE}"):
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
    if (path / STATE_FILE).is_file():
        return path
    candidates = sorted((p for p in path.glob("checkpoint_*") if (p / STATE_FILE).is_file()),
                        key=lambda p: p.stat().st_mtime)
    if not candidates:
        raise FileNotFoundError(f"'{path}' is neither a checkpoint (no {STATE_FILE}) nor a run folder "
                                f"with checkpoint_* folders")
    return candidates[-1]


def load_checkpoint_config(directory: str | Path) -> Config:
    return load_config(Path(directory) / CONFIG_FILE)
