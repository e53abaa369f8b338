"""MASCOT (Fang et al., ACM MM 2023): attention-informed masking, informed semantics completion and
dual-mask co-learning, on top of the CLIP4Clip dual encoder. Design: ``methods.md`` §1 (ours, from
the paper's abstract). Everything here is train-only; retrieval uses the plain unmasked encoders.

Loss conventions: the InfoNCE and co-learning terms are computed on the gathered similarities of each
view (``Objective.pair_scores``: the G×G matrix, the same on every rank, or with ``method.local_loss``
this rank's B×G rows; see ``losses.py``); reconstruction and text-patch alignment are per-sample and
local, averaged over the local batch (DDP then averages over ranks).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from raytrain.config import Config, MaskSection, MethodSection
from raytrain.methods.base import Objective, require_columns
from raytrain.methods.losses import infonce, symmetric_infonce
from raytrain.methods.masks import informed_masks, visible_index
from raytrain.model.clip_video import VideoTextDualEncoder

# ---------------------------------------------------------------- pure losses


def isc_weights(attention: torch.Tensor, high_mask: torch.Tensor) -> torch.Tensor:
    """Per-slot reconstruction weights ``(B, T, N)``: α ∝ attention on the high-informed slots, 0
    elsewhere (unmasked and low-informed slots are never reconstructed). α is the softmax of log-
    attention over the masked slots, i.e. the attention renormalised over them."""
    w = attention.float().clamp_min(1e-12) * high_mask
    return w / w.flatten(1).sum(-1).clamp_min(1e-12).view(-1, *([1] * (w.ndim - 1)))


def reconstruction_loss(pred: torch.Tensor, target: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """``L_rec = Σ_k α_k (1 − cos(ẑ_k, z_k))`` per sample, mean over the batch.

    ``pred, target: (B, T, N, D)``; ``weights: (B, T, N)`` sum to 1 per sample (``isc_weights``);
    slots with zero weight get no gradient. The target is detached here (stop-gradient).
    """
    cos = F.cosine_similarity(pred.float(), target.detach().float(), dim=-1)
    return ((1.0 - cos) * weights).flatten(1).sum(-1).mean()


def _kl_rows(target_logits: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """Mean over rows of KL(softmax(target) ‖ softmax(logits)); the target is detached."""
    return F.kl_div(F.log_softmax(logits.float(), dim=1), F.log_softmax(target_logits.detach().float(), dim=1),
                    log_target=True, reduction="batchmean")


def co_learning_loss(logits: torch.Tensor, logits_high: torch.Tensor | None, logits_low: torch.Tensor) -> torch.Tensor:
    """``½[KL(sg(p) ‖ p_h) + KL(sg(p) ‖ p_l)] + KL(sg(p_h) ‖ p_l)`` with text→video row softmaxes.

    Without ``logits_high`` (``co_views=low``) only ``KL(sg(p) ‖ p_l)``: the high-informed view, whose
    object is mostly hidden, is then never asked to rank clips like the full view.
    """
    if logits_high is None:
        return _kl_rows(logits, logits_low)
    return 0.5 * (_kl_rows(logits, logits_high) + _kl_rows(logits, logits_low)) + _kl_rows(logits_high, logits_low)


def text_patch_alignment(patches: torch.Tensor, words: torch.Tensor, word_mask: torch.Tensor,
                         scale: torch.Tensor) -> torch.Tensor:
    """Token-wise max-mean similarity of completed patches and words, all pairs of the local batch,
    then symmetric InfoNCE. ``patches: (B, P, D)``, ``words: (B, L, D)``, ``word_mask: (B, L)``."""
    p = F.normalize(patches.float(), dim=-1)
    w = F.normalize(words.float(), dim=-1)
    sim = torch.einsum("apd,bld->abpl", p, w)  # (B_video, B_text, P, L)
    valid = word_mask[None, :, None, :]
    word_side = sim.masked_fill(~valid, -2.0).amax(dim=2)  # each word's best patch: (Bv, Bt, L)
    word_side = (word_side * word_mask[None]).sum(-1) / word_mask.sum(-1).clamp_min(1)[None]
    patch_side = sim.masked_fill(~valid, -2.0).amax(dim=3).mean(-1)  # each patch's best word
    logits = scale * 0.5 * (word_side + patch_side)  # (Bv, Bt)
    return symmetric_infonce(logits.t())


def text_aware_attention(attention: torch.Tensor, patch_feats: torch.Tensor, text: torch.Tensor,
                         temperature: float = 0.07) -> torch.Tensor:
    """``a' = a ⊙ softmax_patches(norm(proj(P)) · t / τ)``: rank patches by CLS attention and by
    agreement with the paired caption. ``attention: (B,T,N)``, ``patch_feats: (B,T,N,D)``, ``text: (B,D)``."""
    agree = torch.einsum("btnd,bd->btn", F.normalize(patch_feats.float(), dim=-1), text.float())
    return attention * (agree / temperature).softmax(dim=-1)


# ---------------------------------------------------------------- modules


class _DecoderLayer(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.norm_self = nn.LayerNorm(dim)
        self.self_attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.norm_cross = nn.LayerNorm(dim)
        self.norm_text = nn.LayerNorm(dim)
        self.cross_attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.norm_mlp = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))

    def forward(self, x: torch.Tensor, words: torch.Tensor | None, word_pad: torch.Tensor | None) -> torch.Tensor:
        h = self.norm_self(x)
        x = x + self.self_attn(h, h, h, need_weights=False)[0]
        if words is not None:
            kv = self.norm_text(words)
            x = x + self.cross_attn(self.norm_cross(x), kv, kv, key_padding_mask=word_pad, need_weights=False)[0]
        return x + self.mlp(self.norm_mlp(x))


class CompletionDecoder(nn.Module):
    """Informed Semantics Completion: predicts every patch slot's feature from the visible patches of
    the high-masked view ([MASK] elsewhere) and, by cross-attention, the caption's word features."""

    def __init__(self, vis_width: int, dim: int, num_patches: int, layers: int, heads: int, max_frames: int = 64):
        super().__init__()
        heads = math.gcd(dim, heads)
        self.in_proj = nn.Linear(vis_width, dim)
        self.mask_token = nn.Parameter(torch.zeros(dim))
        self.patch_pos = nn.Parameter(torch.zeros(num_patches, dim))
        self.frame_pos = nn.Parameter(torch.zeros(max_frames, dim))
        self.layers = nn.ModuleList(_DecoderLayer(dim, heads) for _ in range(layers))
        self.norm = nn.LayerNorm(dim)
        self.out = nn.Linear(dim, dim)
        for p in (self.mask_token, self.patch_pos, self.frame_pos):
            nn.init.normal_(p, std=0.02)

    def forward(self, visible_tokens: torch.Tensor, visible: torch.Tensor, num_patches: int,
                words: torch.Tensor | None, word_pad: torch.Tensor | None) -> torch.Tensor:
        """``visible_tokens: (B, T, V, Dv)`` at positions ``visible: (B, T, V)`` → ``(B, T, N, D)``."""
        b, t, _, _ = visible_tokens.shape
        x = self.mask_token.to(visible_tokens.dtype).expand(b, t, num_patches, -1).clone()
        src = self.in_proj(visible_tokens).to(x.dtype)
        x = x.scatter(2, visible.unsqueeze(-1).expand(-1, -1, -1, x.shape[-1]), src)
        x = x + self.patch_pos[:num_patches] + self.frame_pos[:t, None, :]
        x = x.reshape(b, t * num_patches, -1)
        for layer in self.layers:
            x = layer(x, words, word_pad)
        return self.out(self.norm(x)).reshape(b, t, num_patches, -1)


class Mascot(Objective):
    """``L = L_nce + λ_mv L_mv + λ_rec L_rec + λ_co L_co (+ λ_tp L_tp)``, each part switchable."""

    def __init__(self, model: VideoTextDualEncoder, method: MethodSection, mask: MaskSection):
        super().__init__(model, method)
        if not model.is_vit:
            raise ValueError("method 'mascot' needs a ViT image tower (model.arch)")
        cfg = method.mascot
        self.cfg = cfg
        self.mask_cfg = mask
        self.decoder = None
        if cfg.isc:
            self.decoder = CompletionDecoder(model.clip.visual.transformer.width, model.embed_dim,
                                             model.num_patches, cfg.decoder_layers, cfg.decoder_heads)

    @classmethod
    def from_config(cls, cfg: Config, model: VideoTextDualEncoder) -> Mascot:
        return cls(model, cfg.method, cfg.mask)

    @classmethod
    def data_columns(cls, cfg: Config) -> tuple[str, ...]:
        """MASCOT's random ablation (``mask.strategy=random``) takes ``mask_high``, ``mask_low``: ``(T, N)``
        from the data workers; attention-informed masks are made here, from the model's own attention."""
        m = cfg.method.mascot
        if cfg.mask.strategy == "random" and (m.masked_views or m.isc or m.co_learning):
            return ("mask_high", "mask_low")
        return ()

    def uses_logit_scale(self) -> bool:
        c = self.cfg
        return super().uses_logit_scale() or c.masked_views or c.co_learning or (c.isc and c.lambda_tp > 0)

    def forward(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        cfg, model = self.cfg, self.model
        frames, tokens = batch["frames"], batch["tokens"]
        frame_mask = batch.get("frame_mask")  # padded frames of short clips stay out of every pooled view
        num_frames = frames.shape[1]
        images = model.images_from_frames(frames)
        use_high = cfg.masked_views or cfg.isc or cfg.co_learning
        use_low = cfg.masked_views or cfg.co_learning
        attention_masks = self.mask_cfg.strategy == "attention"
        need_tokens = cfg.isc or (attention_masks and cfg.attention == "text_aware")
        need_attention = use_high and (attention_masks or cfg.isc)

        full = model.encode_images(images, num_frames, return_tokens=need_tokens, return_attention=need_attention)
        video = model.pool_frames(full.frame_embeds, frame_mask)
        words, text = model.encode_text_tokens(tokens)
        scale = model.logit_scale()
        text = text.float()
        scores = self.pair_scores(text, video.float())
        loss_nce = self.contrastive.loss(scores, scale)  # InfoNCE or NegNCE; the masked views use InfoNCE
        logs = {"loss_nce": loss_nce.detach(), "logit_scale": scale.detach()}
        if not use_high:
            return loss_nce, logs

        patch_feats = model.patch_features(full.tokens[:, :, 1:]) if full.tokens is not None else None
        if attention_masks:
            ranking = full.attention
            if cfg.attention == "text_aware":
                ranking = text_aware_attention(ranking, patch_feats.detach(), text.detach())
            high, low = informed_masks(ranking, self.mask_cfg.high_ratio, self.mask_cfg.low_ratio)
        else:
            require_columns(batch, ("mask_high", "mask_low"), "method 'mascot' with mask.strategy=random")
            high, low = batch["mask_high"].bool(), batch["mask_low"].bool()

        loss = loss_nce
        high_view = model.encode_images(images, num_frames, visible_index(high), return_tokens=cfg.isc)
        scores_high = self.pair_scores(text, model.pool_frames(high_view.frame_embeds, frame_mask).float())
        scores_low = None
        if use_low:
            low_view = model.encode_images(images, num_frames, visible_index(low))
            scores_low = self.pair_scores(text, model.pool_frames(low_view.frame_embeds, frame_mask).float())
        if cfg.masked_views:
            loss_mv = 0.5 * (infonce(scores_high, scale) + infonce(scores_low, scale))
            loss = loss + cfg.lambda_mv * loss_mv
            logs["loss_mv"] = loss_mv.detach()
        if cfg.isc:
            word_pad = tokens == 0 if words is not None else None
            visible_tokens = high_view.tokens[:, :, 1:]
            if cfg.decoder_input == "ln_post":  # the tower's own final LayerNorm, then the decoder's in_proj
                visible_tokens = model.clip.visual.ln_post(visible_tokens)
            pred = self.decoder(visible_tokens, visible_index(high), model.num_patches, words, word_pad)
            target = F.normalize(patch_feats, dim=-1)
            loss_rec = reconstruction_loss(pred, target, isc_weights(full.attention, high))
            loss = loss + cfg.lambda_rec * loss_rec
            logs["loss_rec"] = loss_rec.detach()
            if cfg.lambda_tp > 0 and words is not None:
                masked = pred.masked_select(high.unsqueeze(-1)).view(pred.shape[0], -1, pred.shape[-1])
                loss_tp = text_patch_alignment(masked, words, tokens != 0, scale)
                loss = loss + cfg.lambda_tp * loss_tp
                logs["loss_tp"] = loss_tp.detach()
        if cfg.co_learning:  # text → video rows of each view (all G, or this rank's B with local_loss)
            high_logits = scale * scores_high.t2v if cfg.co_views == "both" else None
            loss_co = co_learning_loss(scale * scores.t2v, high_logits, scale * scores_low.t2v)
            loss = loss + cfg.lambda_co * loss_co
            logs["loss_co"] = loss_co.detach()
        return loss, logs
