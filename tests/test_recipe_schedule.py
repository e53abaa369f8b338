"""CLIP4Clip's recipe pieces (pure): its warmup_cosine schedule shape, the start-of-run recipe line."""

import itertools
import math

import pytest
import torch

from raytrain.config import Config, OptimSection
from raytrain.train.recipe import recipe_line
from raytrain.train.schedule import build_scheduler, clip4clip_warmup_cosine, warmup_cosine


def bertadam_warmup_cosine(x, warmup):
    """CLIP4Clip modules/optimization.py warmup_cosine, restated for the comparison."""
    return x / warmup if x < warmup else 0.5 * (1.0 + math.cos(math.pi * x))


def test_clip4clip_cosine_uses_total_progress_not_rebased():
    total, warm = 1000, 0.1
    values = [clip4clip_warmup_cosine(s, total, warm) for s in range(total)]
    assert values == [bertadam_warmup_cosine(s / total, warm) for s in range(total)]
    assert values[0] == 0.0  # BertAdam's first update reads step 0
    assert values[50] == pytest.approx(0.5)  # linear warmup
    # right after warmup: cos at progress 0.1, below the peak (the re-based cosine is at 1 there)
    assert values[100] == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.1)))
    assert values[100] < 0.98 and warmup_cosine(100, total, warm) == pytest.approx(1.0)
    assert values[500] == pytest.approx(0.5)  # halfway through the run, not halfway through the decay
    assert warmup_cosine(500, total, warm) == pytest.approx(0.5 * (1 + math.cos(math.pi * 400 / 900)))
    assert all(a >= b for a, b in itertools.pairwise(values[100:]))  # monotone decay after warmup
    assert values[-1] == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.999)))


def test_build_scheduler_picks_the_schedule():
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=1.0)
    sched = build_scheduler(opt, 100, OptimSection(schedule="clip4clip_cosine", warmup_fraction=0.1))
    lrs = []
    for _ in range(100):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs == pytest.approx([clip4clip_warmup_cosine(s, 100, 0.1) for s in range(100)])
    opt2 = torch.optim.SGD([p], lr=1.0)
    build_scheduler(opt2, 100, OptimSection())
    assert opt2.param_groups[0]["lr"] == pytest.approx(warmup_cosine(0, 100, 0.1))  # the default is unchanged


def test_recipe_line_names_steps_frames_words_and_batch():
    cfg = Config().replace(**{"data.num_frames": 12, "data.max_words": 32, "data.frame_sampling": "clip4clip",
                              "data.epoch_unit": "caption_pair", "train.batch_size": 32,
                              "scaling.num_workers": 4, "train.epochs": 5})
    line = recipe_line(cfg, 180000, 1406, 7030)
    assert line == ("recipe: 7030 steps (5 epochs x 1406), 12 frames (clip4clip sampling at 1 fps), 32 words, "
                    "global batch 128 (4 workers x 32), 180000 caption pairs per epoch")
    capped = recipe_line(cfg.replace(**{"train.max_steps": 100}), 180000, 1406, 100)
    assert capped.startswith("recipe: 100 steps (5 epochs x 1406, capped by train.max_steps), 12 frames")
