"""The in-run evaluator: when to evaluate during training, and the evaluation on rank 0."""

from __future__ import annotations

import torch

from raytrain.config import Config
from raytrain.eval.run import QueryBank, evaluate
from raytrain.methods import retrieval_model
from raytrain.train.job import TrainJob
from raytrain.train.mask_pictures import MaskPictures
from raytrain.train.retrieval_pictures import RetrievalPictures


class Evaluator:
    """Every ``eval.every`` steps (at checkpoints; 0 = never) and, with ``eval.at_end``, at the end.
    Rank 0 embeds the whole eval split (an unsplit dataset); other ranks wait at the next report."""

    def __init__(self, cfg: Config, job: TrainJob, device: torch.device, rank: int):
        self.cfg, self.job, self.device, self.rank = cfg, job, device, rank
        self.pictures = MaskPictures(cfg)  # MASCOT/MILES: the masks drawn into TensorBoard at each evaluation
        self.examples = RetrievalPictures(cfg, job)  # a few captions' top clips, likewise

    def due(self, step: int) -> bool:
        return bool(self.cfg.eval.every) and step % self.cfg.eval.every == 0

    def run(self, module: torch.nn.Module, step: int = 0, writer=None) -> dict[str, float]:
        import ray.train

        if self.rank != 0:
            return {}
        job = self.job
        bank = None
        if job.num_qb_bank_clips:  # eval.rerank=qb_norm: the query banks built by the driver
            bank = QueryBank(job.qb_bank_texts, ray.train.get_dataset_shard("qb_bank"), job.num_qb_bank_clips)
        examples = self.examples.collector() if writer is not None else None
        metrics = evaluate(self.cfg, retrieval_model(module), ray.train.get_dataset_shard("eval"), job.eval_texts,
                           job.eval_text_to_video, job.num_eval_clips, self.device,
                           video_names=job.eval_paths or None, bank=bank, examples=examples)
        print("[raytrain] eval: " + ", ".join(f"{k}={v:.2f}" for k, v in metrics.items()), flush=True)
        self.examples.log(examples, writer, step)
        if self.pictures.enabled:
            self.pictures.log(module.model, ray.train.get_dataset_shard("eval"), writer, step)
        return metrics
