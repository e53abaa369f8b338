"""Retrieval examples in TensorBoard (``eval.retrieval_examples``, issue 18): at every in-run evaluation,
rank 0 writes, for a few test captions (the same ones each time), a picture of the clips the model
ranks first (``retrieval/caption<i>``: thumbnail strips, the right clip framed green) and one text
table of them all (``retrieval/examples``: the right clip's place and the top clips' scores).

The thumbnails are decoded afresh on rank 0 (``THUMB_FRAMES`` frames of each top clip at ``THUMB_SIZE``
px): a few dozen small decodes per evaluation, whatever the size of the eval split.
"""

from __future__ import annotations

import numpy as np

from raytrain.config import Config
from raytrain.eval.examples import RetrievalExamples, example_queries, example_sheet
from raytrain.train.job import TrainJob

THUMB_FRAMES, THUMB_SIZE = 3, 64


class RetrievalPictures:
    def __init__(self, cfg: Config, job: TrainJob):
        self.cfg, self.job = cfg, job
        self.queries = example_queries(len(job.eval_texts), cfg.eval.retrieval_examples) if job.eval_clips else []
        self.decoder = None

    def collector(self) -> RetrievalExamples | None:
        """What the evaluation fills (None: off, or not rank 0's business)."""
        return RetrievalExamples(list(self.queries), self.cfg.eval.retrieval_examples_top_k) if self.queries else None

    def log(self, examples: RetrievalExamples | None, writer, step: int) -> None:
        if examples is None or writer is None:
            return
        job = self.job
        names = [clip[0] for clip in job.eval_clips]
        for i, (caption, (clips, _)) in enumerate(sorted(examples.found.items())):
            right = job.eval_text_to_video[caption]
            sheet = example_sheet(job.eval_texts[caption], [self._strip(int(c)) for c in clips],
                                  [int(c) == right for c in clips])
            writer.add_image(f"retrieval/caption{i}", sheet, step, dataformats="HWC")
        writer.add_text("retrieval/examples", examples.table(job.eval_texts, job.eval_text_to_video, names), step)

    def _strip(self, clip: int) -> np.ndarray:
        """``THUMB_FRAMES`` frames of eval clip ``clip`` side by side (grey if the file cannot be read)."""
        from raytrain.data.decode import VideoDecodeError, make_decoder

        if self.decoder is None:
            self.decoder = make_decoder(self.cfg.data.decoder)
        _, path, start_s, end_s = self.job.eval_clips[clip]
        try:
            frames = self.decoder.decode(path, THUMB_FRAMES, THUMB_SIZE, False, None, start_s, end_s)
        except VideoDecodeError:
            frames = np.full((THUMB_FRAMES, THUMB_SIZE, THUMB_SIZE, 3), 128, np.uint8)
        return np.concatenate(list(frames), axis=1)
