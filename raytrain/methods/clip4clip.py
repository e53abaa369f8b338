"""CLIP4Clip (Luo et al., 2022), the baseline: the main contrastive loss on the pooled embeddings of
the gathered global batch (symmetric InfoNCE with the learnable scale, or NegNCE)."""

from __future__ import annotations

from collections.abc import Mapping

import torch

from raytrain.methods.base import Objective


class Clip4Clip(Objective):
    """``L = L_nce(T Vᵀ)`` on the gathered global batch; retrieval is the plain dual encoder."""

    def forward(self, batch: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        video = self.model.encode_video(batch["frames"], batch.get("frame_mask"))
        text = self.model.encode_text(batch["tokens"])
        scale = self.model.logit_scale()
        loss = self.contrastive_loss(text.float(), video.float(), scale)
        return loss, {"loss_nce": loss.detach(), "logit_scale": scale.detach()}
