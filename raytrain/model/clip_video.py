"""CLIP4Clip-style dual encoder on any open_clip model.

Frames ``(B, T, H, W, 3) uint8`` are normalised on the model's device, encoded frame by frame by the
open_clip image tower, pooled over time (``meanP``, ``seqLSTM`` or ``seqTransf``, ``temporal.py``; an
optional ``frame_mask (B, T)`` marks the real frames of short clips) and compared with the caption's
sentence embedding. For ViT image towers the frame encoding is done here, block by block, so that a
method can drop patch tokens (cheaper masked passes) and read patch tokens back; any other open_clip
tower is used through its own ``forward``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import open_clip
import torch
import torch.nn.functional as F
from open_clip.transformer import VisionTransformer
from torch import nn
from torch.utils.checkpoint import checkpoint

from raytrain.config import ModelSection
from raytrain.model.temporal import SeqTransf, build_temporal, masked_mean

_CONFIG_DIR = Path(__file__).parent / "configs"
_registered = False


def register_tiny_configs() -> None:
    """Make raytrain's tiny open_clip configs (``RT-*``) known to open_clip by name."""
    global _registered
    if not _registered:
        open_clip.add_model_config(_CONFIG_DIR)
        _registered = True


def model_image_size(arch: str) -> int:
    """The square input size of ``arch``'s image tower, read from its config (no weights built)."""
    register_tiny_configs()
    cfg = open_clip.get_model_config(arch)
    if cfg is None:
        raise ValueError(f"config key 'model.arch': unknown open_clip architecture '{arch}' "
                         f"(known: {', '.join(open_clip.list_models()[:8])}, ...)")
    size = cfg["vision_cfg"].get("image_size", 224)
    return int(size if isinstance(size, int) else size[0])


def model_num_patches(arch: str) -> int:
    """Patches per frame of ``arch``'s ViT image tower, from its config (no weights built)."""
    register_tiny_configs()
    cfg = open_clip.get_model_config(arch) or {}
    vision = cfg.get("vision_cfg", {})
    if "patch_size" not in vision:
        raise ValueError(f"config key 'model.arch': '{arch}' has no ViT image tower (no patch_size)")
    return (model_image_size(arch) // int(vision["patch_size"])) ** 2


def get_tokenizer(arch: str, max_words: int):
    register_tiny_configs()
    return open_clip.get_tokenizer(arch, context_length=max_words)


@dataclass
class VisualOutput:
    frame_embeds: torch.Tensor  # (n, D) projected CLS (pooled) embedding per image
    tokens: torch.Tensor | None  # (n, 1 + K, Dv) final-block tokens before ln_post (CLS first), ViT only
    attention: torch.Tensor | None = None  # (n, K) last block's CLS→patch attention, head mean, detached


def cls_attention(block: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The CLS→patch attention that ``block`` computes on its input ``x: (n, 1 + K, Dv)``, averaged
    over heads: ``(n, K)``. open_clip's blocks do not return attention weights, so this recomputes
    ``softmax(q_cls · K / √d)`` from the block's own projections (no grad)."""
    attn = getattr(block, "attn", None)
    if not isinstance(attn, nn.MultiheadAttention) or not attn._qkv_same_embed_dim:
        raise ValueError(f"attention-based masking needs open_clip's standard ViT blocks "
                         f"(nn.MultiheadAttention); got {type(attn).__name__}")
    with torch.no_grad():
        h = block.ln_1(x)
        width, heads = h.shape[-1], attn.num_heads
        w_q, w_k, _ = attn.in_proj_weight.chunk(3)
        b_q, b_k, _ = attn.in_proj_bias.chunk(3) if attn.in_proj_bias is not None else (None, None, None)
        q = F.linear(h[:, 0], w_q, b_q).view(h.shape[0], heads, width // heads)
        k = F.linear(h, w_k, b_k).view(h.shape[0], h.shape[1], heads, width // heads)
        scores = torch.einsum("nhd,nlhd->nhl", q.float(), k.float()) / math.sqrt(width // heads)
        return scores.softmax(dim=-1)[:, :, 1:].mean(dim=1)


def vit_forward(visual: VisionTransformer, images: torch.Tensor, keep_index: torch.Tensor | None = None,
                return_tokens: bool = False, return_attention: bool = False,
                replace: torch.Tensor | None = None, mask_token: torch.Tensor | None = None) -> VisualOutput:
    """Run an open_clip ViT on ``images: (n, 3, H, W)``, optionally keeping only some patches.

    ``keep_index: (n, K) long`` lists the patch positions (0..N-1) to keep; the others are dropped
    from the sequence after patch and position embedding, so a masked pass costs ~K/N of a full
    pass. ``replace: (n, N) bool`` instead swaps those patch embeddings for ``mask_token: (width,)``
    before the position embedding is added (MILES: the slots stay, so they can be predicted).
    With neither, this computes exactly ``visual(images)``.
    """
    x = visual.conv1(images)  # (n, width, gh, gw)
    x = x.reshape(x.shape[0], x.shape[1], -1).permute(0, 2, 1)  # (n, N, width)
    if replace is not None:
        x = torch.where(replace.unsqueeze(-1), mask_token.to(x.dtype), x)
    pos = visual.positional_embedding.to(x.dtype)
    x = x + pos[1:]
    if keep_index is not None:
        x = torch.gather(x, 1, keep_index.unsqueeze(-1).expand(-1, -1, x.shape[-1]))
    cls = (visual.class_embedding.to(x.dtype) + pos[0]).expand(x.shape[0], 1, -1)
    x = torch.cat([cls, x], dim=1)
    x = visual.patch_dropout(x)
    x = visual.ln_pre(x)
    attention = None
    if return_attention:
        transformer = visual.transformer
        if not getattr(transformer, "batch_first", True):
            raise ValueError("attention-based masking needs a batch-first open_clip transformer")
        blocks = list(transformer.resblocks)
        recompute = getattr(transformer, "grad_checkpointing", False) and torch.is_grad_enabled()
        for block in blocks[:-1]:  # as open_clip's Transformer.forward, with its checkpointing
            x = checkpoint(block, x, use_reentrant=False) if recompute else block(x)
        attention = cls_attention(blocks[-1], x)
        x = checkpoint(blocks[-1], x, use_reentrant=False) if recompute else blocks[-1](x)
    else:
        x = visual.transformer(x)
    pooled, _ = visual._pool(x)
    if visual.proj is not None:
        pooled = pooled @ visual.proj
    return VisualOutput(pooled, x if return_tokens else None, attention)


def vit_patch_features(visual: VisionTransformer, tokens: torch.Tensor) -> torch.Tensor:
    """``visual``'s patch tokens ``(..., Dv)`` → joint-space features ``(..., D)`` (ln_post, proj)."""
    x = visual.ln_post(tokens)
    return x @ visual.proj if visual.proj is not None else x


class VideoTextDualEncoder(nn.Module):
    """open_clip towers + temporal pooling; ``forward`` returns normalised video and text embeddings."""

    def __init__(self, clip: nn.Module, temporal: str = "meanP", temporal_layers: int = 4,
                 max_logit_scale: float = 100.0, temporal_init: str = "auto"):
        super().__init__()
        self.clip = clip
        embed_dim = _embed_dim(clip)
        self.embed_dim = embed_dim
        self.temporal = build_temporal(temporal, clip, embed_dim, temporal_layers, temporal_init)
        self.max_log_scale = math.log(max_logit_scale)
        mean = getattr(clip.visual, "image_mean", None) or open_clip.OPENAI_DATASET_MEAN
        std = getattr(clip.visual, "image_std", None) or open_clip.OPENAI_DATASET_STD
        self.register_buffer("pixel_mean", torch.tensor(mean).view(1, 3, 1, 1) * 255, persistent=False)
        self.register_buffer("pixel_std", torch.tensor(std).view(1, 3, 1, 1) * 255, persistent=False)

    # ---- video ----
    @property
    def is_vit(self) -> bool:
        return isinstance(self.clip.visual, VisionTransformer)

    def images_from_frames(self, frames: torch.Tensor) -> torch.Tensor:
        """``frames: (B, T, H, W, 3) uint8`` → normalised ``(B*T, 3, H, W)`` float on the model's device."""
        b, t, h, w, c = frames.shape
        x = frames.to(self.pixel_mean.device, non_blocking=True).reshape(b * t, h, w, c).permute(0, 3, 1, 2)
        return (x.float() - self.pixel_mean) / self.pixel_std

    def encode_frames(self, frames: torch.Tensor, keep_index: torch.Tensor | None = None,
                      return_tokens: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Per-frame embeddings ``(B, T, D)`` (and ViT tokens ``(B, T, 1+K, Dv)`` if asked).

        ``keep_index: (B, T, K)`` keeps only those patches of each frame (ViT towers only).
        """
        out = self.encode_images(self.images_from_frames(frames), frames.shape[1], keep_index, return_tokens)
        return out.frame_embeds, out.tokens

    def encode_images(self, images: torch.Tensor, num_frames: int, keep_index: torch.Tensor | None = None,
                      return_tokens: bool = False, return_attention: bool = False,
                      replace: torch.Tensor | None = None, mask_token: torch.Tensor | None = None) -> VisualOutput:
        """``images: (B*T, 3, H, W)`` normalised → VisualOutput reshaped to ``(B, T, ...)``.

        ``keep_index: (B, T, K)`` drops the other patches; ``replace: (B, T, N) bool`` swaps patch
        embeddings for ``mask_token`` (see ``vit_forward``)."""
        t = num_frames
        b = images.shape[0] // t
        if self.is_vit:
            keep = keep_index.reshape(b * t, -1) if keep_index is not None else None
            swap = replace.reshape(b * t, -1) if replace is not None else None
            out = vit_forward(self.clip.visual, images, keep, return_tokens, return_attention, swap, mask_token)
            return VisualOutput(
                out.frame_embeds.reshape(b, t, -1),
                out.tokens.reshape(b, t, *out.tokens.shape[1:]) if out.tokens is not None else None,
                out.attention.reshape(b, t, -1) if out.attention is not None else None)
        if keep_index is not None or replace is not None or return_tokens or return_attention:
            raise ValueError(f"patch masking, patch tokens and attention need a ViT image tower; "
                             f"{type(self.clip.visual).__name__} has none")
        return VisualOutput(self.clip.visual(images).reshape(b, t, -1), None)

    @property
    def num_patches(self) -> int:
        if not self.is_vit:
            raise ValueError("only ViT image towers have patches")
        return self.clip.visual.positional_embedding.shape[0] - 1

    def patch_features(self, tokens: torch.Tensor) -> torch.Tensor:
        """ViT patch tokens ``(..., Dv)`` → joint-space features ``(..., D)`` through ln_post and proj."""
        return vit_patch_features(self.clip.visual, tokens)

    def frame_features(self, f: torch.Tensor, frame_mask: torch.Tensor | None = None) -> torch.Tensor:
        """``(B, T, D)`` frame embeddings → normalised per-frame features after the temporal module
        (what ``pool_frames`` averages; token-wise similarities use them unpooled). ``frame_mask
        (B, T)``, True = a real frame, keeps padded frames out of seqLSTM and seqTransf attention."""
        return F.normalize(self.temporal(f, frame_mask), dim=-1)

    def pool_frames(self, f: torch.Tensor, frame_mask: torch.Tensor | None = None) -> torch.Tensor:
        """``(B, T, D)`` frame embeddings → normalised video embedding ``(B, D)``: the mean of the
        normalised frame features over the real frames (all of them when ``frame_mask`` is None)."""
        return F.normalize(masked_mean(self.frame_features(f, frame_mask), frame_mask), dim=-1)

    def encode_video(self, frames: torch.Tensor, frame_mask: torch.Tensor | None = None) -> torch.Tensor:
        """``frames (B, T, H, W, 3) uint8`` (and ``frame_mask (B, T)``) → normalised ``(B, D)``."""
        return self.pool_frames(self.encode_frames(frames)[0], frame_mask)

    # ---- text ----
    def encode_text_tokens(self, tokens: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor]:
        """``tokens: (B, L)`` → (word features ``(B, L, D)`` or None, normalised sentence ``(B, D)``).

        The text is run at its own length ``L`` (CLIP4Clip's 32 words) with the tower's first ``L``
        position embeddings, so a pretrained 77-token tower needs no resizing.
        """
        clip = self.clip
        if not hasattr(clip, "token_embedding"):  # CustomTextCLIP (HF text towers): no token features
            return None, F.normalize(clip.encode_text(tokens), dim=-1)
        length = tokens.shape[1]
        if length > clip.positional_embedding.shape[0]:
            raise ValueError(f"captions of {length} tokens exceed the text tower's "
                             f"{clip.positional_embedding.shape[0]} positions (data.max_words)")
        cast = clip.transformer.get_cast_dtype()
        x = clip.token_embedding(tokens).to(cast) + clip.positional_embedding[:length].to(cast)
        mask = clip.attn_mask[:length, :length] if clip.attn_mask is not None else None
        x = clip.ln_final(clip.transformer(x, attn_mask=mask))
        if isinstance(clip.text_projection, nn.Linear):
            words = clip.text_projection(x)
        elif clip.text_projection is not None:
            words = x @ clip.text_projection
        else:
            words = x
        eot = tokens.argmax(dim=-1)  # CLIP's end-of-text token has the highest id
        sentence = words[torch.arange(words.shape[0], device=words.device), eot]
        return words, F.normalize(sentence, dim=-1)

    def encode_text(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.encode_text_tokens(tokens)[1]

    # ---- both ----
    def logit_scale(self) -> torch.Tensor:
        return self.clip.logit_scale.clamp(max=self.max_log_scale).exp()

    def forward(self, frames: torch.Tensor, tokens: torch.Tensor,
                frame_mask: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        return {"video": self.encode_video(frames, frame_mask), "text": self.encode_text(tokens),
                "logit_scale": self.logit_scale()}

    def parameter_groups(self) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
        """(tower parameters, new-module parameters): CLIP4Clip trains them at different rates."""
        towers, new = [], []
        for name, p in self.named_parameters():
            if not p.requires_grad:
                continue
            (towers if name.startswith("clip.") and name != "clip.logit_scale" else new).append(p)
        return towers, new


def _embed_dim(clip: nn.Module) -> int:
    out = getattr(clip.visual, "output_dim", None)
    if out:
        return int(out)
    proj = getattr(clip, "text_projection", None)
    if isinstance(proj, nn.Linear):
        return proj.out_features
    if proj is not None:
        return int(proj.shape[1])
    raise ValueError("cannot tell the joint embedding size of this open_clip model")


def build_clip(arch: str, pretrained: str | None = None) -> nn.Module:
    """Create an open_clip model by name; weights from ``pretrained`` (an open_clip/OpenAI file or a
    raytrain checkpoint or run folder, ``raytrain.model.pretrained``) or random init."""
    from raytrain.model.pretrained import load_pretrained

    register_tiny_configs()
    model_image_size(arch)  # clear error for an unknown name
    clip = open_clip.create_model(arch, pretrained=None, pretrained_text=False)
    if pretrained:
        load_pretrained(clip, pretrained, arch)
    clip.train()
    return clip


def build_model(cfg: ModelSection) -> VideoTextDualEncoder:
    clip = build_clip(cfg.arch, cfg.pretrained)
    model = VideoTextDualEncoder(clip, cfg.temporal, cfg.temporal_layers, cfg.max_logit_scale, cfg.temporal_init)
    if cfg.grad_checkpointing:
        set_grad_checkpointing(model)
    return model


def set_grad_checkpointing(model: VideoTextDualEncoder, enable: bool = True) -> None:
    """Recompute block activations in backward: both open_clip towers and the seqTransf transformer."""
    model.clip.set_grad_checkpointing(enable)
    if isinstance(model.temporal, SeqTransf):
        model.temporal.transformer.grad_checkpointing = enable
