"""The one line a run prints before Ray Train starts: the steps, frames and words it will train with
(pure), so a recipe that silently trains 20x fewer steps than its paper shows it at once."""

from __future__ import annotations

from raytrain.config import Config


def recipe_line(cfg: Config, items_per_epoch: int, steps_per_epoch: int, total_steps: int) -> str:
    """E.g. ``recipe: 7030 steps (5 epochs x 1406), 12 frames (clip4clip sampling), 32 words, global
    batch 128 (4 workers x 32), 180000 caption pairs per epoch``."""
    d, t = cfg.data, cfg.train
    unit = "caption pairs" if d.epoch_unit == "caption_pair" else "clips"
    sampling = f"clip4clip sampling at {d.sample_fps:g} fps" if d.frame_sampling == "clip4clip" else "segments"
    steps = f"{total_steps} steps ({t.epochs} epochs x {steps_per_epoch}"
    steps += ", capped by train.max_steps)" if t.max_steps and total_steps < t.epochs * steps_per_epoch else ")"
    workers = cfg.scaling.num_workers
    return (f"recipe: {steps}, {d.num_frames} frames ({sampling}), {d.max_words} words, global batch "
            f"{t.batch_size * workers} ({workers} workers x {t.batch_size}), {items_per_epoch} {unit} per epoch")
