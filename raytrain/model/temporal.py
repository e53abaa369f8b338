"""The temporal heads of the dual encoder: meanP, seqLSTM and seqTransf, as CLIP4Clip builds them.

Every head maps frame embeddings ``f: (B, T, D)`` and an optional ``frame_mask: (B, T)`` (True or 1 =
a real frame; None = every frame is real) to per-frame features ``(B, T, D)``; the dual encoder then
normalises each frame and takes the masked mean (``masked_mean``), as CLIP4Clip's
``_loose_similarity`` does. A padded frame (short clips, real frames first) changes nothing: meanP
and the mean leave it out, seqLSTM packs it away and seqTransf masks it out of attention.

seqTransf follows CLIP4Clip's ``modules/modeling.py``: position embeddings added, its transformer run
with an additive ``-1e6`` mask on padded keys, the input frames added back. Its initialisation
(``from_pretrained``) copies the text tower's ``positional_embedding`` rows into the frame positions
and the text tower's first ``layers`` residual blocks into the transformer, with the tower's own
activation (QuickGELU for OpenAI-style towers) and CLIP4Clip's TF-style LayerNorm (eps 1e-12).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import torch
from open_clip.transformer import LayerNorm, ResidualAttentionBlock, Transformer
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

MAX_FRAMES = 64  # rows of the frame position table (CLIP4Clip's longest setting: 64 frames)
LAYER_NORM_EPS = 1e-12  # CLIP4Clip's temporal transformer uses its TF-style LayerNorm (module_cross.py)
MASK_VALUE = -1e6  # CLIP4Clip's additive attention mask on padded frames (finite: no NaN for empty clips)


def as_frame_mask(frame_mask: torch.Tensor | None, f: torch.Tensor) -> torch.Tensor | None:
    """``frame_mask (B, T)`` bool or 0/1 (any dtype, any device) → bool on ``f``'s device, or None."""
    if frame_mask is None:
        return None
    mask = torch.as_tensor(frame_mask).to(f.device, non_blocking=True).bool()
    if mask.shape != f.shape[:2]:
        raise ValueError(f"frame_mask has shape {tuple(mask.shape)}; the frames are {tuple(f.shape[:2])} (B, T)")
    return mask


def masked_mean(x: torch.Tensor, frame_mask: torch.Tensor | None) -> torch.Tensor:
    """Mean over the real frames of ``x: (B, T, D)`` → ``(B, D)``; with no mask, exactly ``x.mean(1)``.
    A padded frame's value never reaches the result (not even a NaN); a clip with no real frame is 0."""
    if frame_mask is None:
        return x.mean(dim=1)
    mask = as_frame_mask(frame_mask, x).unsqueeze(-1)
    total = torch.where(mask, x, torch.zeros((), dtype=x.dtype, device=x.device)).sum(dim=1)
    return total / mask.sum(dim=1).clamp_min(1).to(x.dtype)


class MeanPool(nn.Module):
    """meanP: the frames as they are (the dual encoder normalises them and takes the masked mean)."""

    def forward(self, f: torch.Tensor, frame_mask: torch.Tensor | None = None) -> torch.Tensor:
        return f


class SeqLSTM(nn.Module):
    """seqLSTM: a one-layer LSTM (hidden = D) over the real frames, packed by the frame mask, plus the
    input frames (CLIP4Clip). Padded frames get the input alone; they are masked out afterwards."""

    def __init__(self, dim: int):
        super().__init__()
        self.lstm = nn.LSTM(input_size=dim, hidden_size=dim, num_layers=1, batch_first=True)

    def forward(self, f: torch.Tensor, frame_mask: torch.Tensor | None = None) -> torch.Tensor:
        mask = as_frame_mask(frame_mask, f)
        if mask is None:
            return self.lstm(f)[0] + f
        lengths = mask.sum(dim=1).clamp_min(1).cpu()
        packed = pack_padded_sequence(f, lengths, batch_first=True, enforce_sorted=False)
        out, _ = pad_packed_sequence(self.lstm(packed)[0], batch_first=True, total_length=f.shape[1])
        return out + f


class SeqTransf(nn.Module):
    """seqTransf: frames + position embedding through a small transformer (padded frames masked out of
    attention), the input frames added back. Parameter names are stable across raytrain versions:
    ``frame_position.weight`` and ``transformer.resblocks.N.*`` (open_clip's block layout)."""

    def __init__(self, dim: int, layers: int, mlp_ratio: float = 4.0, act_layer: type[nn.Module] = nn.GELU,
                 max_frames: int = MAX_FRAMES):
        super().__init__()
        self.heads = max(1, dim // 64)  # CLIP4Clip: transformer_width // 64
        self.init = "random"  # how it started: "text" (CLIP4Clip's, from the text tower) or "random"
        self.frame_position = nn.Embedding(max_frames, dim)
        self.transformer = Transformer(dim, layers, self.heads, mlp_ratio=mlp_ratio, act_layer=act_layer,
                                       norm_layer=partial(LayerNorm, eps=LAYER_NORM_EPS))
        nn.init.normal_(self.frame_position.weight, std=0.01)

    def attention_mask(self, mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """``mask (B, T)`` bool → additive ``(B * heads, T, T)``: ``-1e6`` on every padded key."""
        b, t = mask.shape
        additive = (~mask).to(dtype)[:, None, :].expand(b, t, t) * MASK_VALUE
        return additive.repeat_interleave(self.heads, dim=0)

    def forward(self, f: torch.Tensor, frame_mask: torch.Tensor | None = None) -> torch.Tensor:
        t = f.shape[1]
        if t > self.frame_position.num_embeddings:
            raise ValueError(f"seqTransf supports at most {self.frame_position.num_embeddings} frames, got {t}")
        pos = self.frame_position(torch.arange(t, device=f.device)).to(f.dtype)
        mask = as_frame_mask(frame_mask, f)
        attn_mask = None if mask is None else self.attention_mask(mask, f.dtype)
        return f + self.transformer(f + pos, attn_mask=attn_mask)


# ---------------------------------------------------------------- building from a CLIP model


@dataclass
class TextTower:
    """What seqTransf copies from an open_clip text tower: its positions ``(L, W)`` and blocks."""
    positional_embedding: torch.Tensor
    blocks: list[nn.Module]

    @property
    def width(self) -> int:
        return int(self.positional_embedding.shape[1])

    @property
    def activation(self) -> type[nn.Module]:
        return type(self.blocks[0].mlp.gelu)


def text_tower(clip: nn.Module) -> TextTower | None:
    """The open_clip text tower of ``clip`` (``CLIP`` or ``CustomTextCLIP`` with a ``TextTransformer``)
    when it has standard residual blocks; None for towers without one (HF text models, ...)."""
    owner = clip if hasattr(clip, "positional_embedding") and hasattr(clip, "transformer") else getattr(clip, "text", None)
    pos = getattr(owner, "positional_embedding", None)
    transformer = getattr(owner, "transformer", None)
    if not isinstance(pos, torch.Tensor) or not isinstance(transformer, Transformer):
        return None
    blocks = list(transformer.resblocks)
    if not blocks or not all(isinstance(b, ResidualAttentionBlock) for b in blocks):
        return None
    return TextTower(pos, blocks)


def text_init_problem(tower: TextTower | None, dim: int, layers: int) -> str | None:
    """Why seqTransf cannot start from ``tower`` (None when it can): CLIP4Clip copies blocks of the
    text width into a transformer over frame embeddings, so the widths must agree."""
    if tower is None:
        return "the model has no open_clip text transformer to copy"
    if tower.width != dim:
        return f"the text tower's width {tower.width} differs from the embedding size {dim}"
    if len(tower.blocks) < layers:
        return f"the text tower has {len(tower.blocks)} blocks, fewer than model.temporal_layers={layers}"
    return None


def seq_transf_from_text(tower: TextTower, layers: int) -> SeqTransf:
    """CLIP4Clip's seqTransf initialisation: frame positions = the text tower's first position rows,
    blocks = copies of its first ``layers`` blocks (same MLP ratio and activation; ``width // 64``
    heads, CLIP4Clip's rule, which is the OpenAI towers' own)."""
    mlp_ratio = tower.blocks[0].mlp.c_fc.out_features / tower.width
    head = SeqTransf(tower.width, layers, mlp_ratio=mlp_ratio, act_layer=tower.activation)
    with torch.no_grad():
        rows = min(head.frame_position.num_embeddings, tower.positional_embedding.shape[0])
        head.frame_position.weight[:rows].copy_(tower.positional_embedding[:rows])
    for mine, theirs in zip(head.transformer.resblocks, tower.blocks):
        mine.load_state_dict(theirs.state_dict())
    head.init = "text"
    return head


def build_temporal(kind: str, clip: nn.Module, dim: int, layers: int = 4, init: str = "auto") -> nn.Module:
    """The temporal head ``kind`` (``model.temporal``) for ``clip``'s ``dim``-wide embeddings.

    ``init`` (``model.temporal_init``, seqTransf only): ``text`` copies the text tower (CLIP4Clip),
    ``random`` starts from scratch (std 0.01 positions), ``auto`` is ``text`` where the text tower
    allows it. The head's activation is the text tower's (QuickGELU for OpenAI-style towers)."""
    if kind == "meanP":
        return MeanPool()
    if kind == "seqLSTM":
        return SeqLSTM(dim)
    if kind != "seqTransf":
        raise ValueError(f"config key 'model.temporal' must be 'meanP', 'seqLSTM' or 'seqTransf' (got {kind!r})")
    if init not in ("auto", "text", "random"):
        raise ValueError(f"config key 'model.temporal_init' must be 'auto', 'text' or 'random' (got {init!r})")
    tower = text_tower(clip)
    problem = text_init_problem(tower, dim, layers)
    if init == "text" and problem:
        raise ValueError(f"config key 'model.temporal_init': 'text' (CLIP4Clip's seqTransf initialisation) "
                         f"is impossible: {problem}; set model.temporal_init=random")
    if init != "random" and problem is None:
        return seq_transf_from_text(tower, layers)
    return SeqTransf(dim, layers, act_layer=tower.activation if tower else nn.GELU)
