"""The mask pictures in TensorBoard during MASCOT and MILES runs (issue 21 item 4, ``eval.mask_pictures``).

At every in-run evaluation (``eval.every``, ``eval.at_end``), rank 0 draws the masks its current model
gives the first ``eval.mask_pictures`` eval clips: MASCOT's high-informed (red) and low-informed (blue)
masks from the full pass's CLS attention, MILES's tube mask (amber) — one image per clip under
``masks/clip<i>``, first row the plain frames. The frames are taken once, from the eval split's first
batch, so every picture of a run shows the same clips and the masks' drift over training is visible.
"""

from __future__ import annotations

from raytrain.config import Config
from raytrain.methods.mask_pictures import clip_masks, mask_sheet

DRAWN = {"mascot": ("high", "low"), "miles": ("tube",)}  # the masks each method trains with


class MaskPictures:
    def __init__(self, cfg: Config):
        self.cfg = cfg
        self.kinds = DRAWN.get(cfg.method.name, ())
        self.frames = None

    @property
    def enabled(self) -> bool:
        return bool(self.kinds) and self.cfg.eval.mask_pictures > 0

    def log(self, model, dataset, writer, step: int) -> None:
        """``model``: the dual encoder (ViT tower); ``dataset``: the eval shard; ``writer``: rank 0's TensorBoard."""
        if not self.enabled or writer is None or not model.is_vit:
            return
        if self.frames is None:
            from raytrain.eval.run import eval_batches

            batch = next(iter(eval_batches(self.cfg, dataset)))
            self.frames = batch["frames"][: self.cfg.eval.mask_pictures].cpu().numpy()
        masks = clip_masks(model, self.frames, self.cfg)
        for i, frames in enumerate(self.frames):
            sheet = mask_sheet(frames, {k: masks[k][i] for k in self.kinds}, scale=2)
            writer.add_image(f"masks/clip{i}", sheet, step, dataformats="HWC")
