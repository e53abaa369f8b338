"""DMAE token-wise similarity + NegNCE + TPM-CL (Jiang et al., ACM MM 2023), written from the official
code (alipay/Ant-Multi-Modal-Framework, prj/dmae_vtp; methods.md §3).

- Similarity (train **and** retrieval): for a text token set X and a video's frames F,
  ``A = X Fᵀ``; each token's best frame j* plus, with W_VA, ``0.5 · C[j*, j2] · A[i, j2]`` where j2 is
  the frame most similar to j* (``C = F Fᵀ`` without its diagonal); ``t2v`` = mean over tokens,
  ``v2t`` = mean over frames of the best token; ``sim = ½(t2v + v2t)``;
  ``S = ½[sim(t, F) + sim(w, F)]`` (``att_ti``). Computed in (texts × videos) blocks.
- NegNCE (``losses.negnce_loss``) on the gathered global S (fixed scale 100); with
  ``method.contrastive=infonce`` also ``method.local_loss`` (this rank's rows of S in each direction).
- TPM-CL: cross-modal token-weight predictors, adaptive token masking by cumulative weight, three
  partial margins on matched pairs, computed locally.

Masks: a masked token/frame is left out of every max and mean (the code multiplies scores by the
mask, so a masked entry scores 0; the two agree unless every valid score is negative). The TPM
partial sets zero the selected features but keep the masks, exactly as the code's selector does.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from raytrain.config import Config, DmaeSection, MethodSection, TpmclSection
from raytrain.methods.base import Objective
from raytrain.methods.losses import Features, gather_padded, gather_tensor
from raytrain.model.clip_video import VideoTextDualEncoder
from raytrain.model.temporal import as_frame_mask

_NEG = -1e4  # below any cosine score; finite so that masked-out sums stay finite

# ---------------------------------------------------------------- similarity (pure)


def frame_neighbours(frames: torch.Tensor, frame_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """W_VA's frame-neighbour table: for each frame j of each video, ``j2 = argmax_{k≠j} C[j, k]`` over
    valid frames and ``C[j, j2]``, with ``C = F Fᵀ``. ``frames: (B, T, D)``, ``frame_mask: (B, T)``
    → (``index (B, T)`` long, ``weight (B, T)``); a frame without a valid neighbour gets weight 0."""
    c = torch.einsum("btd,bsd->bts", frames, frames)
    t = frames.shape[1]
    valid = frame_mask[:, :, None] & frame_mask[:, None, :] & ~torch.eye(t, dtype=torch.bool, device=c.device)
    weight, index = c.masked_fill(~valid, _NEG).max(dim=-1)
    return index, weight.masked_fill(~valid.any(-1), 0.0)


def tokenwise_scores(a: torch.Tensor, x_mask: torch.Tensor, f_mask: torch.Tensor,
                     neighbours: tuple[torch.Tensor, torch.Tensor] | None = None,
                     neighbour_weight: float = 0.5) -> torch.Tensor:
    """Token-wise interaction of score tensors ``a: (..., n, T)`` (tokens × frames) → ``(...)``.

    ``x_mask`` broadcasts to ``(..., n)``, ``f_mask`` to ``(..., T)`` (bool); ``neighbours`` (from
    ``frame_neighbours``) broadcast to ``(..., T)``. ``t2v`` = mask-weighted mean over tokens of each
    token's (enhanced) best frame score, ``v2t`` = mean over valid frames of the best token score.
    """
    valid = x_mask.unsqueeze(-1) & f_mask.unsqueeze(-2)
    masked = a.masked_fill(~valid, _NEG)
    best, j_star = masked.max(dim=-1)  # (..., n)
    if neighbours is not None:
        index, weight = neighbours
        lead = j_star.shape[:-1]
        index = index.expand(*lead, index.shape[-1])
        weight = weight.expand(*lead, weight.shape[-1])
        j2 = index.gather(-1, j_star)
        best = best + neighbour_weight * weight.gather(-1, j_star) * a.gather(-1, j2.unsqueeze(-1)).squeeze(-1)
    x_valid = x_mask.expand_as(best)
    t2v = best.masked_fill(~x_valid, 0).sum(-1) / x_valid.sum(-1).clamp_min(1)
    v_best = masked.max(dim=-2).values  # (..., T)
    f_valid = f_mask.expand_as(v_best)
    v2t = v_best.masked_fill(~f_valid, 0).sum(-1) / f_valid.sum(-1).clamp_min(1)
    return 0.5 * (t2v + v2t)


def token_similarity(x: torch.Tensor, x_mask: torch.Tensor, frames: torch.Tensor, frame_mask: torch.Tensor,
                     neighbours: tuple[torch.Tensor, torch.Tensor] | None = None,
                     neighbour_weight: float = 0.5) -> torch.Tensor:
    """All pairs: text tokens ``x: (A, n, D)`` with ``x_mask: (A, n)`` against ``frames: (B, T, D)``
    with ``frame_mask: (B, T)`` → ``(A, B)``. ``neighbours`` are those of these B videos."""
    a = torch.einsum("and,btd->abnt", x, frames)
    nb = None if neighbours is None else (neighbours[0][None], neighbours[1][None])
    return tokenwise_scores(a, x_mask[:, None, :], frame_mask[None, :, :], nb, neighbour_weight)


def pair_similarity(x: torch.Tensor, x_mask: torch.Tensor, frames: torch.Tensor,
                    frame_mask: torch.Tensor) -> torch.Tensor:
    """Matched pairs only (row a with video a), no W_VA (code ``wti_interaction_row``): ``(B,)``."""
    return tokenwise_scores(torch.einsum("bnd,btd->bnt", x, frames), x_mask, frame_mask)


def dmae_similarity(texts: dict[str, torch.Tensor], videos: dict[str, torch.Tensor], cfg: DmaeSection) -> torch.Tensor:
    """The DMAE similarity ``S: (num_texts, num_videos)``, computed in blocks of ``cfg.text_block`` texts
    × ``cfg.video_block`` videos so the 4-d score tensor never exceeds one block (exact: each entry
    depends only on its own pair). ``texts``: ``sentence (A, D)``, ``words (A, L, D)``,
    ``word_mask (A, L)``; ``videos``: ``frames (B, T, D)``, ``frame_mask (B, T)``; all normalised."""
    sentence, words, word_mask = texts["sentence"], texts["words"], texts["word_mask"].bool()
    frames, frame_mask = videos["frames"], videos["frame_mask"].bool()
    one = torch.ones(sentence.shape[0], 1, dtype=torch.bool, device=sentence.device)
    rows = []
    for i in range(0, sentence.shape[0], cfg.text_block):
        ti = slice(i, i + cfg.text_block)
        cols = []
        for j in range(0, frames.shape[0], cfg.video_block):
            f, fm = frames[j:j + cfg.video_block], frame_mask[j:j + cfg.video_block]
            nb = frame_neighbours(f, fm) if cfg.neighbour else None
            parts = []
            if cfg.interaction in ("att_ti", "sentence"):
                parts.append(token_similarity(sentence[ti, None], one[ti], f, fm, nb, cfg.neighbour_weight))
            if cfg.interaction in ("att_ti", "words"):
                parts.append(token_similarity(words[ti], word_mask[ti], f, fm, nb, cfg.neighbour_weight))
            cols.append(sum(parts) / len(parts))
        rows.append(torch.cat(cols, dim=1))
    return torch.cat(rows, dim=0)


# ---------------------------------------------------------------- TPM-CL (pure + predictor)


class TokenWeightPredictor(nn.Module):
    """Cross-modal token weights (code ``LinearXWeightPredictor``): ``q: (B, n_q, D)`` is mixed along the
    token axis to ``n_k`` rows, concatenated with ``k: (B, n_k, D)``, then
    ``sigmoid(Linear(GELU(Linear(LayerNorm(h)))))`` per token, normalised to sum 1 over valid tokens.
    LayerNorm over ``(n_k, 2D)`` jointly, as in the code."""

    def __init__(self, n_q: int, n_k: int, dim: int):
        super().__init__()
        self.mix = nn.Linear(n_q, n_k, bias=False)
        self.head = nn.Sequential(nn.LayerNorm([n_k, 2 * dim]), nn.Linear(2 * dim, max(1, dim // 2), bias=False),
                                  nn.GELU(), nn.Linear(max(1, dim // 2), 1, bias=False), nn.Sigmoid())

    def forward(self, q: torch.Tensor, k: torch.Tensor, k_mask: torch.Tensor) -> torch.Tensor:
        q = self.mix(q.transpose(-2, -1)).transpose(-2, -1)
        u = self.head(torch.cat([q, k], dim=-1)).squeeze(-1) * k_mask
        return u / u.sum(-1, keepdim=True).clamp_min(1e-12)


def importance_keep(weights: torch.Tensor, threshold: float) -> torch.Tensor:
    """Adaptive token masking (code ``TokenImportanceSelector``): sort weights descending, and mask the
    tokens whose cumulative weight is ``< threshold`` (the most important ones). Returns the **kept**
    tokens ``(..., n)`` bool. If the top weight alone is ``>= threshold`` nothing is masked."""
    ordered, order = torch.sort(weights, dim=-1, descending=True, stable=True)
    important = ordered.cumsum(-1) < threshold
    return ~torch.zeros_like(important).scatter(-1, order, important)


def partial_margin(full: torch.Tensor, partial: torch.Tensor, margin: float) -> torch.Tensor:
    """``mean_a max(0, μ − (s_a − s^p_a))`` (``MarginRankingLoss`` with target 1)."""
    return F.relu(margin - (full - partial)).mean()


def tpm_loss(sentence: torch.Tensor, words: torch.Tensor, word_mask: torch.Tensor, frames: torch.Tensor,
             frame_mask: torch.Tensor, word_weights: torch.Tensor, frame_weights: torch.Tensor,
             cfg: TpmclSection) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The triplet partial margins on the local matched pairs. ``word_weights (B, L)`` and
    ``frame_weights (B, T)`` come from the predictors; features are normalised."""
    one = torch.ones(sentence.shape[0], 1, dtype=torch.bool, device=sentence.device)
    keep_w = importance_keep(word_weights, cfg.threshold) | ~word_mask
    keep_f = importance_keep(frame_weights, cfg.threshold) | ~frame_mask
    partial_frames = frames * keep_f.unsqueeze(-1)  # zeroed, masks kept (as the code)
    t_g = F.normalize(torch.einsum("bl,bld->bd", word_weights, words), dim=-1)
    t_gp = F.normalize(torch.einsum("bl,bld->bd", word_weights, words * keep_w.unsqueeze(-1)), dim=-1)
    s_t = pair_similarity(sentence[:, None], one, frames, frame_mask)
    s_g = pair_similarity(t_g[:, None], one, frames, frame_mask)
    loss = sentence.new_zeros(())
    if cfg.margin1:
        loss = loss + partial_margin(s_t, pair_similarity(sentence[:, None], one, partial_frames, frame_mask), cfg.margin)
    if cfg.margin2:
        loss = loss + partial_margin(s_g, pair_similarity(t_g[:, None], one, partial_frames, frame_mask), cfg.margin)
    if cfg.margin3:
        loss = loss + partial_margin(s_g, pair_similarity(t_gp[:, None], one, frames, frame_mask), cfg.margin)
    logs = {"tpm_words_masked": ((~keep_w).sum() / word_mask.sum().clamp_min(1)).detach(),
            "tpm_frames_masked": ((~keep_f).sum() / frame_mask.sum().clamp_min(1)).detach()}
    return loss, logs


# ---------------------------------------------------------------- the objective


class Dmae(Objective):
    """``L = L_contrastive(S_DMAE) + λ_tpm L_tpm``; retrieval uses the same token-wise S."""

    def __init__(self, model: VideoTextDualEncoder, method: MethodSection, num_frames: int, max_words: int):
        super().__init__(model, method)
        self.dmae = method.dmae
        self.tpm = method.tpmcl
        self.word_weights = self.frame_weights = None
        if self.tpm.enabled:
            dim = model.embed_dim
            self.word_weights = TokenWeightPredictor(num_frames, max_words, dim)  # q = frames, k = words
            # q = sentence, k = frames. Its weights only select frames (a hard threshold), so no loss
            # reaches it (as in the code with partial_type 4): frozen, so DDP sees no unused parameter.
            self.frame_weights = TokenWeightPredictor(1, num_frames, dim).requires_grad_(False)

    @classmethod
    def from_config(cls, cfg: Config, model: VideoTextDualEncoder) -> Dmae:
        return cls(model, cfg.method, cfg.data.num_frames, cfg.data.max_words)

    # ---- retrieval interface (also used in training) ----
    def retrieval_model(self) -> Dmae:
        """Evaluation scores with the token-wise similarity: on ``text_features`` / ``video_features``."""
        return self

    def text_features(self, tokens: torch.Tensor) -> dict[str, torch.Tensor]:
        words, sentence = self.model.encode_text_tokens(tokens)
        if words is None:
            raise ValueError("method 'dmae' needs word features (an open_clip text tower with token_embedding)")
        return {"sentence": sentence, "words": F.normalize(words, dim=-1), "word_mask": tokens != 0}

    def video_features(self, frames: torch.Tensor, frame_mask: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Normalised frame features ``(B, T, D)`` and their ``frame_mask`` (all True when None): the
        token-wise similarity and TPM-CL leave padded frames out of every max and mean."""
        f = self.model.frame_features(self.model.encode_frames(frames)[0], frame_mask)
        mask = as_frame_mask(frame_mask, f)
        return {"frames": f, "frame_mask": torch.ones(f.shape[:2], dtype=torch.bool, device=f.device)
                if mask is None else mask}

    def similarity(self, texts: dict[str, torch.Tensor], videos: dict[str, torch.Tensor]) -> torch.Tensor:
        return dmae_similarity(texts, videos, self.dmae)

    def gather(self, features: Features, with_grad: bool) -> Features:
        """Text (``sentence``, ``words``, ``word_mask``) or video (``frames``, ``frame_mask``) features of
        every rank; words and frames padded to a common length, and the masks with them."""
        out = {}
        for key, value in features.items():
            if key == "sentence":
                out[key] = gather_tensor(value, with_grad)
            elif key.endswith("_mask"):
                out[key] = gather_padded(value) > 0.5
            else:
                out[key] = gather_padded(value, with_grad=with_grad)
        return out

    # ---- training ----
    def forward(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        text = {k: v.float() for k, v in self.text_features(batch["tokens"]).items()}
        video = {k: v.float() for k, v in self.video_features(batch["frames"], batch.get("frame_mask")).items()}
        scale = self.model.logit_scale()
        loss_nce = self.contrastive_loss(text, video, scale)
        logs = {"loss_nce": loss_nce.detach(), "logit_scale": scale.detach()}
        if not self.tpm.enabled:
            return loss_nce, logs
        word_mask, frame_mask = text["word_mask"].bool(), video["frame_mask"].bool()
        real_frames = video["frames"].masked_fill(~frame_mask.unsqueeze(-1), 0.0)  # padded frames: zero input
        u = self.word_weights(real_frames, text["words"], word_mask)
        with torch.no_grad():
            r = self.frame_weights(text["sentence"][:, None], video["frames"], frame_mask)
        loss_tpm, tpm_logs = tpm_loss(text["sentence"], text["words"], word_mask, video["frames"], frame_mask,
                                      u, r, self.tpm)
        logs.update(loss_tpm=loss_tpm.detach(), **tpm_logs)
        return loss_nce + self.tpm.lambda_tpm * loss_tpm, logs
