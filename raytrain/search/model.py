"""The one place search loads a model: a raytrain checkpoint (folder or run folder) or an open_clip
weights file used zero-shot (``model.pretrained``). Index, search and embed-text all go through
:func:`load_search_model`, so another checkpoint format needs only this function changed."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from raytrain.config import Config


@dataclass
class SearchModel:
    cfg: Config
    model: torch.nn.Module    # has encode_video(frames, frame_mask) and encode_text(tokens)
    checkpoint: str           # the resolved checkpoint folder or weights file
    weights_hash: str         # sha256 of its weights (and config)


def load_search_model(checkpoint: str, overrides: list[str] | tuple[str, ...] = ()) -> SearchModel:
    """A raytrain checkpoint folder / run folder (its newest checkpoint), or a weights file of an
    open_clip model (zero-shot: ``model.arch`` from ``overrides`` picks the architecture)."""
    from raytrain.config import apply_overrides
    from raytrain.search.index_files import hash_files
    from raytrain.train.state import CONFIG_FILE, STATE_FILE

    path = Path(checkpoint).expanduser()
    if path.is_file():  # open_clip / OpenAI weights, no training
        from raytrain.model.clip_video import build_model

        cfg = apply_overrides(Config(), [*overrides, f"model.pretrained={path.resolve()}"])
        model = build_model(cfg.model)
        return SearchModel(cfg, model.eval(), str(path.resolve()), hash_files([path]))
    from raytrain.methods import load_trained_objective, retrieval_model

    ckpt, cfg, objective, _ = load_trained_objective(path, overrides)
    model = retrieval_model(objective)
    if not (hasattr(model, "encode_video") and hasattr(model, "encode_text")) or hasattr(model, "similarity"):
        raise ValueError(f"checkpoint '{ckpt}': method '{cfg.method.name}' scores with its own similarity, "
                         f"not one embedding per clip; search needs a dual-encoder checkpoint")
    return SearchModel(cfg, model.eval(), str(ckpt.resolve()),
                       hash_files([ckpt / STATE_FILE, ckpt / CONFIG_FILE]))


def load_index_model(identity: dict, checkpoint: str | None = None) -> SearchModel:
    """The model an index was built with (``index.json``'s checkpoint, or ``checkpoint``), checked
    against its recorded weights hash; a weights file gets the recorded ``model.arch``."""
    from raytrain.search.index_files import IndexMismatchError

    path = checkpoint or identity["checkpoint"]
    overrides = [f"model.arch={identity['arch']}"] if Path(path).is_file() else []
    loaded = load_search_model(path, overrides)
    if loaded.weights_hash != identity["weights_sha256"]:
        raise IndexMismatchError(f"the index was built by checkpoint '{identity['checkpoint']}' whose weights "
                                 f"differ from '{loaded.checkpoint}' now")
    return loaded
