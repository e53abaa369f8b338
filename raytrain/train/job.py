"""The job a Ray Train run hands every worker: plain data the driver computed once (it pickles)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from raytrain.config import Config

if TYPE_CHECKING:
    from raytrain.tune.trial import TrialControl


@dataclass(frozen=True)
class TrainJob:
    config: dict[str, Any]  # Config.to_dict() with absolute local paths; each worker checks it again
    num_train_clips: int  # clips, or (clip, caption) pairs with data.epoch_unit=caption_pair: the plan's items
    plan_start_step: int  # the first step of the data plan (the driver's view of the latest checkpoint)
    eval_texts: list[str] = field(default_factory=list)
    eval_text_to_video: list[int] = field(default_factory=list)  # the clip each eval caption belongs to
    num_eval_clips: int = 0
    train_paths: list[str] = field(default_factory=list)  # data.on_bad_video=skip: to name bad clips
    eval_paths: list[str] = field(default_factory=list)  # likewise for the eval clips replaced
    # eval.retrieval_examples: every eval clip's (video_id, path, start_s, end_s), for the thumbnails
    eval_clips: list[tuple[str, str, float | None, float | None]] = field(default_factory=list)
    qb_bank_texts: list[str] = field(default_factory=list)  # eval.rerank=qb_norm: the bank's train captions
    num_qb_bank_clips: int = 0  # and its train clips (the "qb_bank" dataset)
    trial: TrialControl | None = None  # a sweep trial: its stop request ends the run cleanly

    def cfg(self) -> Config:
        return Config.from_dict(self.config, source="train loop config")
