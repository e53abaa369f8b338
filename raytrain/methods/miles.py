"""MILES (Ge et al., ECCV 2022) adapted to the CLIP4Clip dual encoder: masked visual modelling with
an EMA snapshot video encoder (methods.md §2; the training code is not released, so the mask ratio,
momentum, predictor and loss form are our defaults).

- The data workers build one tube mask per clip (``mask_tube: (N,)``, block-wise, shared by all T
  frames, seeded from the row's ``sample_seed``).
- Online masked pass: masked patch embeddings are *replaced* by a learned ``mask_token`` (not
  dropped); a predictor (2-layer transformer of width Dv over all T·(N+1) tokens with a frame
  position embedding, then Linear(Dv→D)) predicts the snapshot's features at the masked slots.
- Snapshot encoder: an EMA copy of the image tower (proj included), fp32, ``requires_grad=False``,
  always in eval mode, an ordinary submodule ``ema_visual``: it moves with ``.to(device)`` and its
  state is in ``state_dict()`` under ``ema_visual.*`` (the keys older checkpoints have). DDP leaves it
  alone: parameters without ``requires_grad`` get no gradient hook and are never all-reduced, and
  the optimizer never sees them (``parameter_groups`` keeps trainable ones only). It is updated by
  ``after_optimizer_step`` (the train loop calls it on every rank after each real step), from online
  weights that DDP keeps identical on every rank, so the snapshots stay identical without communication.
- ``L = L_nce + λ L_mvm``; L_nce on an extra unmasked online pass (Option B, our default) or on the
  masked pass (Option A, ``contrastive_view=masked``). L_mvm is per-sample and local (no gather).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping

import torch
import torch.nn.functional as F
from open_clip.transformer import Transformer
from torch import nn

from raytrain.config import Config, MethodSection
from raytrain.methods.base import Objective, require_columns
from raytrain.model.clip_video import VideoTextDualEncoder, vit_forward, vit_patch_features

EMA_PREFIX = "ema_visual."

# ---------------------------------------------------------------- pure parts


@torch.no_grad()
def ema_update(ema: nn.Module, online: nn.Module, momentum: float) -> None:
    """``θ_ema ← m θ_ema + (1 − m) θ`` for every parameter; buffers are copied. ``ema`` must be a
    copy of ``online`` (same names, same order)."""
    for (name_e, p_e), (name, p) in zip(ema.named_parameters(), online.named_parameters(), strict=True):
        assert name_e == name, (name_e, name)
        p_e.mul_(momentum).add_(p.detach().to(p_e.dtype), alpha=1.0 - momentum)
    for b_e, b in zip(ema.buffers(), online.buffers(), strict=True):
        b_e.copy_(b)


def mvm_loss(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``L_mvm = mean over masked (b, t, n) of ‖norm(ŷ) − y‖²``.

    ``pred, target: (B, T, N, D)`` (target already normalised; it is detached here), ``mask: (B, T, N)``.
    """
    err = (F.normalize(pred.float(), dim=-1) - target.detach().float()).pow(2).sum(-1)
    return err[mask].mean()


# ---------------------------------------------------------------- modules


class MilesPredictor(nn.Module):
    """All ``T·(N+1)`` online tokens (+ a frame position embedding) → a 2-layer transformer of width
    Dv → LayerNorm → Linear(Dv→D) at the patch slots. ``kind="linear"``: LayerNorm + Linear only."""

    def __init__(self, width: int, dim: int, layers: int, heads: int, kind: str = "transformer",
                 max_frames: int = 64):
        super().__init__()
        self.frame_pos = self.transformer = None
        if kind == "transformer":
            self.frame_pos = nn.Parameter(torch.zeros(max_frames, width))
            nn.init.normal_(self.frame_pos, std=0.02)
            self.transformer = Transformer(width, layers, math.gcd(width, heads), mlp_ratio=4.0)
        self.norm = nn.LayerNorm(width)
        self.out = nn.Linear(width, dim)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """``tokens: (B, T, 1 + N, Dv)`` → predictions ``(B, T, N, D)``."""
        b, t, n1, width = tokens.shape
        x = tokens
        if self.transformer is not None:
            x = x + self.frame_pos[:t, None, :].to(x.dtype)
            x = self.transformer(x.reshape(b, t * n1, width)).reshape(b, t, n1, width)
        return self.out(self.norm(x[:, :, 1:]))


class Miles(Objective):
    """``L = L_nce + λ_mvm L_mvm`` with an EMA snapshot image tower for the targets."""

    def __init__(self, model: VideoTextDualEncoder, method: MethodSection):
        super().__init__(model, method)
        if not model.is_vit:
            raise ValueError("method 'miles' needs a ViT image tower (model.arch)")
        self.cfg = method.miles
        visual = model.clip.visual
        width = visual.transformer.width
        self.mask_token = nn.Parameter(torch.zeros(width))
        nn.init.normal_(self.mask_token, std=0.02)
        self.predictor = MilesPredictor(width, model.embed_dim, self.cfg.predictor_layers,
                                        self.cfg.predictor_heads, self.cfg.predictor)
        self.ema_visual = copy.deepcopy(visual).float().eval().requires_grad_(False)

    @classmethod
    def data_columns(cls, cfg: Config) -> tuple[str, ...]:
        """One tube mask per clip from the data workers: ``mask_tube: (N,)``."""
        return ("mask_tube",)

    def train(self, mode: bool = True) -> Miles:
        """The snapshot encoder stays in eval mode (no dropout in its targets) whatever the rest does."""
        super().train(mode)
        self.ema_visual.eval()
        return self

    def after_optimizer_step(self) -> None:
        """EMA update from the online tower; called on every rank after each real optimizer step
        (DDP keeps the online weights identical across ranks, so no communication is needed)."""
        ema_update(self.ema_visual, self.model.clip.visual, self.cfg.momentum)

    # ---- training ----
    def forward(self, batch: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        model, cfg = self.model, self.cfg
        frames, tokens = batch["frames"], batch["tokens"]
        frame_mask = batch.get("frame_mask")  # padded frames stay out of the pooled video (not of L_mvm)
        b, t = frames.shape[:2]
        require_columns(batch, ("mask_tube",), "method 'miles'")
        images = model.images_from_frames(frames)
        tube = batch["mask_tube"].bool()[:, None, :].expand(b, t, -1)  # (B, T, N), same patches every frame

        masked = model.encode_images(images, t, return_tokens=True, replace=tube, mask_token=self.mask_token)
        if cfg.contrastive_view == "masked":  # Option A: the masked pass is also the contrastive view
            video = model.pool_frames(masked.frame_embeds, frame_mask)
        else:  # Option B (our default): an extra unmasked online pass
            video = model.pool_frames(model.encode_images(images, t).frame_embeds, frame_mask)
        text = model.encode_text(tokens)
        scale = model.logit_scale()
        loss_nce = self.contrastive_loss(text.float(), video.float(), scale)

        with torch.no_grad():  # fp32 weights; under AMP the matmuls still run in bf16
            snap = vit_forward(self.ema_visual, images, return_tokens=True).tokens[:, 1:]
            target = F.normalize(vit_patch_features(self.ema_visual, snap).float(), dim=-1)
        target = target.reshape(b, t, *target.shape[1:])
        pred = self.predictor(masked.tokens)
        loss_mvm = mvm_loss(pred, target, tube)
        loss = loss_nce + cfg.lambda_mvm * loss_mvm
        return loss, {"loss_nce": loss_nce.detach(), "loss_mvm": loss_mvm.detach(), "logit_scale": scale.detach()}
