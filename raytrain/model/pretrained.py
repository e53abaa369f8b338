"""``model.pretrained``: the weights a run's open_clip towers start from.

Three kinds of source, told apart by what the path holds:

- a **raytrain checkpoint**: a checkpoint folder (``state.pt``), a run folder (its newest complete
  ``checkpoint_*``) or a ``state.pt`` file. The towers' weights (``model.clip.*``: image and text
  tower, projections, ``logit_scale``) are carried; everything else the earlier run had (its temporal
  module, a method's decoder, predictor, mask token, MILES's EMA snapshot) is left behind, and the new
  run's modules start as its method says (MASCOT's decoder fresh, MILES's snapshot a copy of the
  loaded tower). This is how a pretraining run's checkpoint starts a fine-tuning run.
- an **open_clip / OpenAI weights file** (``.pt``/``.bin``/``.safetensors``: a state dict, or
  ``{"state_dict": ...}`` with an optional ``module.`` prefix as open_clip's training writes it).
- ``.npz`` big_vision (SigLIP) files go to open_clip's own loader unchanged.

A key whose shape differs from ``model.arch``'s raises a ValueError naming the key and both shapes
(position embeddings of another length are resized by open_clip's rules first); missing or unexpected
tower keys are named too.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

TOWER_PREFIX = "model.clip."  # the towers' keys inside a raytrain objective's state dict


def _is_raytrain_state(obj) -> bool:
    return isinstance(obj, dict) and "model" in obj and "step" in obj and isinstance(obj["model"], dict)


def tower_state_from_raytrain(model_state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The open_clip keys of a raytrain objective's state dict (``model.clip.*``, prefix removed)."""
    towers = {k[len(TOWER_PREFIX):]: v for k, v in model_state.items() if k.startswith(TOWER_PREFIX)}
    if not towers:
        raise ValueError(f"config key 'model.pretrained': the raytrain checkpoint has no tower weights "
                         f"(no '{TOWER_PREFIX}*' keys)")
    return towers


def check_state_shapes(model: nn.Module, state: dict[str, torch.Tensor], source: str, arch: str) -> None:
    """Raise a ValueError naming every key of ``state`` whose shape differs from ``model``'s, with both
    shapes, and any missing or unexpected key."""
    own = model.state_dict()
    wrong = [f"'{k}': {tuple(v.shape)} in the checkpoint, {tuple(own[k].shape)} in model.arch '{arch}'"
             for k, v in state.items() if k in own and tuple(v.shape) != tuple(own[k].shape)]
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    if wrong or missing or unexpected:
        parts = []
        if wrong:
            parts.append("shape mismatch for " + "; ".join(wrong))
        if missing:
            parts.append(f"missing keys {missing[:6]}{' ...' if len(missing) > 6 else ''}")
        if unexpected:
            parts.append(f"unexpected keys {unexpected[:6]}{' ...' if len(unexpected) > 6 else ''}")
        raise ValueError(f"config key 'model.pretrained': '{source}' does not fit model.arch '{arch}': "
                         + "; ".join(parts))


def read_pretrained(source: str, clip: nn.Module) -> dict[str, torch.Tensor] | None:
    """The open_clip state dict that ``source`` holds for ``clip`` (None: a .npz for open_clip's loader)."""
    from open_clip.factory import convert_state_dict, load_state_dict

    from raytrain.train.state import STATE_FILE, find_checkpoint

    path = Path(source).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"config key 'model.pretrained': checkpoint '{source}' not found")
    if path.is_dir():
        state = torch.load(find_checkpoint(path) / STATE_FILE, map_location="cpu", weights_only=False)
        return tower_state_from_raytrain(state["model"])
    if path.suffix in (".npz", ".npy"):
        return None
    if path.suffix != ".safetensors":
        raw = torch.load(path, map_location="cpu", weights_only=False)
        if _is_raytrain_state(raw):
            return tower_state_from_raytrain(raw["model"])
        if isinstance(raw, torch.jit.ScriptModule):  # an OpenAI JIT archive
            raw = {k: v for k, v in raw.state_dict().items()
                   if k not in ("input_resolution", "context_length", "vocab_size")}
        if isinstance(raw, dict) and "state_dict" in raw:
            raw = raw["state_dict"]
        state = {k.removeprefix("module."): v for k, v in raw.items()}
    else:
        state = load_state_dict(str(path))
    return convert_state_dict(clip, state)


def load_pretrained(clip: nn.Module, source: str, arch: str) -> None:
    """Load ``source`` (see the module docstring) into the open_clip model ``clip``, strictly."""
    from open_clip.factory import load_checkpoint, resize_pos_embed, resize_text_pos_embed

    state = read_pretrained(source, clip)
    if state is None:
        load_checkpoint(clip, str(Path(source).expanduser()))
        return
    state = dict(state)
    if "logit_scale" in state and clip.logit_scale.ndim != state["logit_scale"].ndim:
        state["logit_scale"] = state["logit_scale"].reshape(clip.logit_scale.shape)
    if getattr(clip, "logit_bias", None) is not None and "logit_bias" not in state:
        state["logit_bias"] = torch.zeros_like(clip.logit_bias)
    for resize in (resize_pos_embed, resize_text_pos_embed):  # another length: interpolated
        try:
            resize(state, clip)
        except AssertionError:  # another width: no resizing, the shape check below names the key
            pass
    check_state_shapes(clip, state, source, arch)
    clip.load_state_dict(state, strict=True)
