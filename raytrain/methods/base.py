"""The base of every training method: ``Objective``, the dual encoder plus a method's extra modules and
losses, as one module.

DDP must wrap whatever runs the forward pass, so each method is an ``nn.Module`` whose ``forward``
takes a batch and returns ``(loss, logs)``. Everything the loop, the data path and evaluation ask of a
method is an explicit method here, with the baseline's answer as the default:

- ``from_config(cfg, model)``: one constructor signature for every method (the registry calls it);
- ``data_columns(cfg)``: the mask columns it needs from the data workers (``batch.MASK_COLUMNS``);
- ``after_optimizer_step()``: called on every rank after each real optimizer step;
- ``parameter_groups()`` / ``uses_logit_scale()``: what the optimizer trains, at which rate;
- ``retrieval_model()``: what evaluation embeds and scores with (the plain dual encoder, or the
  objective itself when it brings its own ``similarity``, as DMAE does);
- ``contrastive_loss(text, video, scale)``: the gather → similarity → loss every method's main term
  shares, with the loss chosen by ``method.contrastive`` / ``method.local_loss`` (``losses.ContrastiveLoss``).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from raytrain.config import Config, MethodSection
from raytrain.methods.losses import ContrastiveLoss, Features, PairScores, dot_similarity, gather_tensor
from raytrain.model.clip_video import VideoTextDualEncoder


class Objective(nn.Module):
    """A method's training objective on the dual encoder ``model``; subclasses define ``forward``."""

    def __init__(self, model: VideoTextDualEncoder, method: MethodSection | None = None):
        super().__init__()
        self.model = model
        method = method or MethodSection()
        self.contrastive = ContrastiveLoss(method.main_loss, method.negnce, method.local_loss)

    @classmethod
    def from_config(cls, cfg: Config, model: VideoTextDualEncoder) -> Objective:
        """The objective for ``cfg`` around an already built ``model`` (every method is built this way)."""
        return cls(model, cfg.method)

    @classmethod
    def data_columns(cls, cfg: Config) -> tuple[str, ...]:
        """The mask columns (among ``raytrain.data.batch.MASK_COLUMNS``) the data workers add to each
        train row for this method and config; none by default."""
        return ()

    # ---- the shared main term ----
    def similarity(self, texts: Features, videos: Features) -> torch.Tensor:
        """Scores of every text against every video ``(A, B)``: the dot product of the embeddings."""
        return dot_similarity(texts, videos)

    def gather(self, features: Features, with_grad: bool) -> Features:
        """This rank's features → every rank's, rank-ordered (``losses.gather_tensor``)."""
        return gather_tensor(features, with_grad)

    def pair_scores(self, text: Features, video: Features) -> PairScores:
        """The gathered similarities of one view: G×G, or this rank's B×G rows with ``local_loss``."""
        return self.contrastive.scores(text, video, self.similarity, self.gather)

    def contrastive_loss(self, text: Features, video: Features, scale: torch.Tensor) -> torch.Tensor:
        """The main loss on local ``text`` / ``video`` features: gather, similarity, InfoNCE or NegNCE."""
        return self.contrastive.loss(self.pair_scores(text, video), scale)

    # ---- what the loop and the optimizer ask ----
    def uses_logit_scale(self) -> bool:
        """Whether any loss reads the learnable CLIP scale (if not, it is frozen: DDP needs every
        trainable parameter to get a gradient)."""
        return self.contrastive.kind == "infonce"

    def after_optimizer_step(self) -> None:
        """Called on every rank after each real optimizer step (MILES updates its EMA snapshot)."""

    def parameter_groups(self) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
        """(tower parameters, everything else that trains): CLIP4Clip trains them at different rates."""
        towers, _ = self.model.parameter_groups()
        tower_ids = {id(p) for p in towers}
        return towers, [p for p in self.parameters() if p.requires_grad and id(p) not in tower_ids]

    def retrieval_model(self) -> nn.Module:
        """What evaluation embeds and scores with: the plain dual encoder (dot product of pooled
        embeddings). A method with its own retrieval similarity returns itself (see ``Dmae``)."""
        return self.model

    def forward(self, batch: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        raise NotImplementedError(f"{type(self).__name__} defines no forward")


class MissingColumn(KeyError):
    """A batch lacks a column the method needs (a ``KeyError`` whose message reads as a sentence)."""

    def __str__(self) -> str:
        return str(self.args[0])


def require_columns(batch: Mapping[str, torch.Tensor], columns: tuple[str, ...], why: str) -> None:
    """Fail naming the first of ``columns`` that ``batch`` lacks (the data workers make them when the
    method's ``data_columns`` lists them)."""
    missing = [c for c in columns if c not in batch]
    if missing:
        raise MissingColumn(f"{why} needs the batch column {missing[0]!r} (the batch has {sorted(batch)}); "
                            f"the data workers add it when raytrain.methods.data_columns(cfg) lists it")
