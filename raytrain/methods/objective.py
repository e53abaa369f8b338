"""Training objectives: the dual encoder plus a method's extra modules and losses, as one module.

DDP must wrap whatever runs the forward pass, so each method is an ``nn.Module`` whose ``forward``
takes a batch and returns ``(loss, logs)``. Retrieval uses ``retrieval_model(objective)``: the plain
dual encoder (dot product of pooled embeddings), unless the objective brings its own similarity
(DMAE's token-wise one) through ``video_features`` / ``text_features`` / ``similarity``.

Composition (see docs/methods.md): ``method.name`` picks one method module (clip4clip, mascot,
miles, dmae); ``method.contrastive`` picks the loss on its main G×G similarity (InfoNCE with the
learnable scale, or NegNCE with its fixed scale) for any of them.
"""

from __future__ import annotations

import torch
from torch import nn

from raytrain.config import Config, MethodSection
from raytrain.methods.losses import gather_features, negnce_loss, symmetric_infonce
from raytrain.model.clip_video import VideoTextDualEncoder, build_model


def resolve_contrastive(method: MethodSection) -> str:
    """``method.contrastive`` with ``auto`` resolved: NegNCE for dmae (as in its code), else InfoNCE."""
    if method.contrastive != "auto":
        return method.contrastive
    return "negnce" if method.name == "dmae" else "infonce"


class Clip4Clip(nn.Module):
    """The baseline: symmetric InfoNCE (or NegNCE) on the gathered global batch."""

    def __init__(self, model: VideoTextDualEncoder, method: MethodSection | None = None):
        super().__init__()
        self.model = model
        method = method or MethodSection()
        self.contrastive = resolve_contrastive(method)
        self.negnce = method.negnce

    def contrastive_loss(self, sim: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        """The main loss on the unscaled global similarity ``sim: (G, G)`` (positives on the diagonal)."""
        if self.contrastive == "negnce":
            n = self.negnce
            return negnce_loss(sim, n.scale, n.c_pos, n.c_neg, n.margin)
        return symmetric_infonce(scale * sim)

    def uses_logit_scale(self) -> bool:
        """Whether any loss reads the learnable CLIP scale (if not, it is frozen: DDP needs every
        trainable parameter to get a gradient)."""
        return self.contrastive == "infonce"

    def forward(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        video = self.model.encode_video(batch["frames"])
        text = self.model.encode_text(batch["tokens"])
        scale = self.model.logit_scale()
        loss = self.contrastive_loss(gather_features(text.float()) @ gather_features(video.float()).t(), scale)
        return loss, {"loss_nce": loss.detach(), "logit_scale": scale.detach()}

    def after_optimizer_step(self) -> None:
        """Called on every rank after each real optimizer step (MILES updates its EMA snapshot)."""

    def parameter_groups(self) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
        """(tower parameters, everything else): CLIP4Clip trains them at different rates."""
        towers, _ = self.model.parameter_groups()
        tower_ids = {id(p) for p in towers}
        return towers, [p for p in self.parameters() if p.requires_grad and id(p) not in tower_ids]


def build_objective(cfg: Config) -> nn.Module:
    model = build_model(cfg.model)
    m = cfg.method
    if m.name == "clip4clip":
        objective = Clip4Clip(model, m)
    elif m.name == "mascot":
        from raytrain.methods.mascot import Mascot

        objective = Mascot(model, m.mascot, cfg.mask, m)
    elif m.name == "miles":
        from raytrain.methods.miles import Miles

        objective = Miles(model, m)
    elif m.name == "dmae":
        from raytrain.methods.dmae import Dmae

        objective = Dmae(model, m, cfg.data.num_frames, cfg.data.max_words)
    else:
        raise ValueError(f"config key 'method.name': unknown method {m.name!r}")
    if not objective.uses_logit_scale():
        model.clip.logit_scale.requires_grad_(False)
    return objective


def random_mask_columns(cfg: Config) -> tuple[str, ...]:
    """The mask columns the data workers add to each train row for this config: MASCOT's random
    ablation (``mask_high``, ``mask_low``: ``(T, N)``) or MILES's tube mask (``mask_tube``: ``(N,)``)."""
    m = cfg.method
    if m.name == "mascot" and cfg.mask.strategy == "random" and (
            m.mascot.masked_views or m.mascot.isc or m.mascot.co_learning):
        return ("mask_high", "mask_low")
    if m.name == "miles":
        return ("mask_tube",)
    return ()


def retrieval_model(objective: nn.Module) -> nn.Module:
    """What evaluation embeds and scores with: the objective itself if it defines its own
    ``similarity`` (DMAE), else the plain dual encoder ``objective.model`` (dot product)."""
    return objective if hasattr(objective, "similarity") else objective.model
