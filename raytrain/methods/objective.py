"""Training objectives: the dual encoder plus a method's extra modules and losses, as one module.

DDP must wrap whatever runs the forward pass, so each method is an ``nn.Module`` whose ``forward``
takes a batch and returns ``(loss, logs)``. Retrieval always uses ``objective.model``, the plain
dual encoder: methods add training signal, not inference cost.
"""

from __future__ import annotations

import torch
from torch import nn

from raytrain.config import Config
from raytrain.methods.losses import gather_features, symmetric_infonce
from raytrain.model.clip_video import VideoTextDualEncoder, build_model


class Clip4Clip(nn.Module):
    """The baseline: symmetric InfoNCE on the gathered global batch."""

    def __init__(self, model: VideoTextDualEncoder):
        super().__init__()
        self.model = model

    def forward(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        video = self.model.encode_video(batch["frames"])
        text = self.model.encode_text(batch["tokens"])
        scale = self.model.logit_scale()
        loss = symmetric_infonce(scale * gather_features(text.float()) @ gather_features(video.float()).t())
        return loss, {"loss_nce": loss.detach(), "logit_scale": scale.detach()}

    def parameter_groups(self) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
        """(tower parameters, everything else): CLIP4Clip trains them at different rates."""
        towers, _ = self.model.parameter_groups()
        tower_ids = {id(p) for p in towers}
        return towers, [p for p in self.parameters() if p.requires_grad and id(p) not in tower_ids]


def build_objective(cfg: Config) -> nn.Module:
    model = build_model(cfg.model)
    if cfg.method.name == "clip4clip":
        return Clip4Clip(model)
    if cfg.method.name == "mascot":
        from raytrain.methods.mascot import Mascot

        return Mascot(model, cfg.method.mascot, cfg.mask)
    raise ValueError(f"config key 'method.name': unknown method {cfg.method.name!r}")


def needs_random_masks(cfg: Config) -> bool:
    """Whether the data workers must build random masks for this config (MASCOT's ablation)."""
    m = cfg.method
    return m.name == "mascot" and cfg.mask.strategy == "random" and (
        m.mascot.masked_views or m.mascot.isc or m.mascot.co_learning)
