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
import zipfile
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
    """True when ``directory`` holds a fully written checkpoint (see the module docstring): its files
    have the sizes ``progress.json`` lists. A folder from before progress files listed their files
    counts as complete when it has its state file. Cheap (no file is read but the progress file)."""
    return _incomplete_reason(Path(directory)) is None


def checkpoint_problem(directory: str | Path) -> str | None:
    """Why ``directory`` cannot be resumed from (None: it can): incomplete (see
    :func:`checkpoint_complete`), or a state file whose zip archive fails its CRC check (a damaged
    file of the right size, which ``torch.load`` may even load without noticing). The one rule the
    driver (start step) and the workers (what they load) both apply."""
    directory = Path(directory)
    reason = _incomplete_reason(directory)
    if reason is not None:
        return reason
    try:
        with zipfile.ZipFile(directory / STATE_FILE) as archive:
            bad = archive.testzip()
    except (OSError, zipfile.BadZipFile, EOFError) as exc:
        return f"{STATE_FILE} is not a readable archive ({exc})"
    return None if bad is None else f"{STATE_FILE} is damaged (its member '{bad}' fails its checksum)"


def _incomplete_reason(directory: Path) -> str | None:
    try:
        progress = json.loads((directory / PROGRESS_FILE).read_text())
    except OSError:
        return f"no {PROGRESS_FILE} (a write was interrupted)"
    except ValueError:
        return f"{PROGRESS_FILE} is not valid JSON"
    files = progress.get("files") if isinstance(progress, dict) else None
    if files is None:
        return None if (directory / STATE_FILE).is_file() else f"no {STATE_FILE}"
    for name, size in files.items():
        try:
            actual = (directory / name).stat().st_size
        except OSError:
            return f"{name} is missing"
        if actual != size:
            return f"{name} is {actual} bytes, {PROGRESS_FILE} lists {size} (truncated or half-copied)"
    return None


def complete_checkpoints(run_dir: str | Path) -> list[tuple[int, Path]]:
    """(step, folder) of a local run folder's complete ``checkpoint_*`` folders, newest first (ties:
    the newer folder first). Hidden folders (``.checkpoint-tmp``) never match."""
    found = [(_progress_step(p), p.stat().st_mtime, p) for p in Path(run_dir).glob("checkpoint_*")
             if p.is_dir() and checkpoint_complete(p)]
    return [(step, p) for step, _, p in sorted(found, key=lambda t: (t[0], t[1]), reverse=True) if step >= 0]


def newest_usable_checkpoint(run_dir: str | Path, on_skip=None) -> tuple[int, Path] | None:
    """(step, folder) of the run folder's newest checkpoint without a :func:`checkpoint_problem`, or
    None; ``on_skip(folder, reason)`` hears about each newer one passed over."""
    if not Path(run_dir).is_dir():
        return None
    for step, folder in complete_checkpoints(run_dir):
        problem = checkpoint_problem(folder)
        if problem is None:
            return step, folder
        if on_skip is not None:
            on_skip(folder, problem)
    return None


def latest_checkpoint_step(run_dir: str | Path) -> int:
    """The step of a local run folder's newest usable checkpoint (0 if none; see
    :func:`checkpoint_problem`), read from the small progress files and the archive's checksums,
    so the driver need not unpickle model weights."""
    newest = newest_usable_checkpoint(run_dir)
    return newest[0] if newest else 0


def load_training_state(directory: str | Path) -> dict[str, Any]:
    path = Path(directory) / STATE_FILE
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint '{directory}' has no {STATE_FILE}")
    return torch.load(path, map_location="cpu", weights_only=False)


def find_checkpoint(path: str | Path) -> Path:
    """A checkpoint folder, or a run folder (its newest usable ``checkpoint_*``), → the checkpoint folder."""
    path = Path(path).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"checkpoint '{path}' not found")
    if (path / STATE_FILE).is_file() or (path / PROGRESS_FILE).is_file():
        problem = checkpoint_problem(path)
        if problem is not None:
            raise FileNotFoundError(f"checkpoint '{path}' is incomplete or damaged ({problem}); "
                                    f"use an earlier checkpoint of the run")
        return path
    newest = newest_usable_checkpoint(path)
    if newest is None:
        raise FileNotFoundError(f"'{path}' is neither a checkpoint (no {STATE_FILE}) nor a run folder "
                                f"with complete checkpoint_* folders")
    return newest[1]


def checkpoint_step(directory: str | Path) -> int | None:
    """The step a checkpoint folder's ``progress.json`` names (None: none readable)."""
    try:
        return int(json.loads((Path(directory) / PROGRESS_FILE).read_text())["step"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _progress_step(directory: Path) -> int:
    step = checkpoint_step(directory)
    return -1 if step is None else step


def load_checkpoint_config(directory: str | Path) -> Config:
    return load_config(Path(directory) / CONFIG_FILE)
