"""Training methods as objectives, one small module each, found by name in ``METHODS``:
``build_objective(cfg)``, ``retrieval_model(objective)`` and the train batch columns a method needs
from the data workers (``data_columns(cfg)``). Each method's parts: ``raytrain.methods.base.Objective``.

Composition (see docs/methods.md): ``method.name`` picks one method (clip4clip, mascot, miles, dmae);
``method.contrastive`` picks the loss on its main similarity (InfoNCE with the learnable scale, or
NegNCE with its fixed scale) and ``method.local_loss`` how much of it each rank computes.
"""

from __future__ import annotations

from torch import nn

from raytrain.config import Config
from raytrain.methods.base import Objective
from raytrain.methods.clip4clip import Clip4Clip
from raytrain.methods.dmae import Dmae
from raytrain.methods.mascot import Mascot
from raytrain.methods.miles import Miles
from raytrain.model.clip_video import build_model

METHODS: dict[str, type[Objective]] = {"clip4clip": Clip4Clip, "mascot": Mascot, "miles": Miles, "dmae": Dmae}


def method_class(cfg: Config) -> type[Objective]:
    """The ``Objective`` subclass that ``method.name`` names."""
    try:
        return METHODS[cfg.method.name]
    except KeyError:
        raise ValueError(f"config key 'method.name': unknown method {cfg.method.name!r}") from None


def build_objective(cfg: Config) -> Objective:
    """The method's objective around a freshly built dual encoder; the CLIP scale is frozen when no
    loss reads it (DDP needs every trainable parameter to get a gradient)."""
    cls = method_class(cfg)
    objective = cls.from_config(cfg, build_model(cfg.model))
    if not objective.uses_logit_scale():
        objective.model.clip.logit_scale.requires_grad_(False)
    return objective


def data_columns(cfg: Config) -> tuple[str, ...]:
    """The mask columns the data workers add to each train row for this config (``Objective.data_columns``)."""
    return method_class(cfg).data_columns(cfg)


def retrieval_model(objective: Objective) -> nn.Module:
    """What evaluation embeds and scores with (``Objective.retrieval_model``)."""
    return objective.retrieval_model()


def load_trained_objective(checkpoint, overrides=()) -> tuple:
    """``(checkpoint folder, config, objective, saved state)`` of a raytrain checkpoint (a checkpoint
    folder or a run folder: its newest complete one), the config its own plus ``overrides``: the one
    way ``raytrain eval`` and search rebuild a trained model."""
    from raytrain.config import apply_overrides
    from raytrain.train.state import find_checkpoint, load_checkpoint_config, load_training_state

    ckpt = find_checkpoint(checkpoint)
    cfg = apply_overrides(load_checkpoint_config(ckpt), list(overrides))
    state = load_training_state(ckpt)
    objective = build_objective(cfg)
    objective.load_state_dict(state["model"])
    return ckpt, cfg, objective, state


__all__ = ["METHODS", "Objective", "build_objective", "data_columns", "load_trained_objective",
           "retrieval_model"]
