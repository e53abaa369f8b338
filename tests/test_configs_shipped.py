"""Every shipped config loads, and the published-row configs carry CLIP4Clip's recipe (pure)."""

from pathlib import Path

import pytest

from raytrain.config import load_config
from raytrain.data.manifest import ClipRow
from raytrain.data.plan import num_epoch_items, plan_steps
from raytrain.model.clip_video import model_image_size

CONFIGS = sorted((Path(__file__).parent.parent / "configs").glob("*.yaml"))

# config -> (arch, temporal, frames, words, epoch unit, workers); global batch 128, 5 epochs for all
PUBLISHED = {
    "clip4clip_msrvtt": ("ViT-B-32-quickgelu", "meanP", 12, 32, "caption_pair", 4),
    "clip4clip_msrvtt_seqtransf": ("ViT-B-32-quickgelu", "seqTransf", 12, 32, "caption_pair", 4),
    "clip4clip_msrvtt_b16": ("ViT-B-16-quickgelu", "meanP", 12, 32, "caption_pair", 4),
    "clip4clip_msrvtt_b16_seqtransf": ("ViT-B-16-quickgelu", "seqTransf", 12, 32, "caption_pair", 4),
    "msvd": ("ViT-B-32-quickgelu", "meanP", 12, 32, "caption_pair", 4),
    "lsmdc": ("ViT-B-32-quickgelu", "meanP", 12, 32, "caption_pair", 4),
    "didemo": ("ViT-B-32-quickgelu", "meanP", 64, 64, "clip", 8),
    "activitynet": ("ViT-B-32-quickgelu", "meanP", 64, 64, "clip", 8),
}


def test_the_published_rows_all_have_a_config():
    assert set(PUBLISHED) <= {p.stem for p in CONFIGS}


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_every_config_loads_and_names_a_known_model(path):
    cfg = load_config(path)
    assert model_image_size(cfg.model.arch) > 0  # an open_clip or RT-* architecture
    assert cfg.train.batch_size * cfg.scaling.num_workers >= 2


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_published_configs_carry_clip4clips_recipe(name):
    cfg = load_config(Path(__file__).parent.parent / "configs" / f"{name}.yaml")
    arch, temporal, frames, words, unit, workers = PUBLISHED[name]
    assert (cfg.model.arch, cfg.model.temporal, cfg.data.num_frames, cfg.data.max_words) == (arch, temporal,
                                                                                            frames, words)
    assert (cfg.data.epoch_unit, cfg.scaling.num_workers) == (unit, workers)
    assert cfg.train.batch_size * cfg.scaling.num_workers == 128 and cfg.train.epochs == 5
    assert (cfg.optim.lr, cfg.optim.tower_lr, cfg.optim.weight_decay, cfg.optim.warmup_fraction) == (1e-4, 1e-7,
                                                                                                   0.2, 0.1)
    assert (cfg.optim.schedule, cfg.optim.grad_clip_mode, cfg.optim.groups, cfg.optim.grad_clip) == (
        "clip4clip_cosine", "clip4clip", "clip4clip", 1.0)
    assert (cfg.data.frame_sampling, cfg.data.sample_fps) == ("clip4clip", 1)
    assert cfg.model.logit_scale_clamp == "after_step" and cfg.model.max_logit_scale == 100.0
    assert cfg.model.pretrained and cfg.model.pretrained.startswith("checkpoints/")
    assert cfg.data.max_seconds == (31 if name == "didemo" else 0)


@pytest.mark.parametrize("name", [n for n in PUBLISHED if n.startswith("clip4clip_msrvtt")])
def test_msrvtt_recipe_trains_clip4clips_steps_and_tests_every_epoch(name):
    cfg = load_config(Path(__file__).parent.parent / "configs" / f"{name}.yaml")
    train = [ClipRow(f"video{i}", f"/v/{i}.mp4", ("c",) * 20, "train") for i in range(9000)]
    per_epoch, total = plan_steps(num_epoch_items(train, cfg.data.epoch_unit), cfg.scaling.num_workers,
                                  cfg.train.batch_size, cfg.train.epochs)
    assert (per_epoch, total) == (1406, 7030)  # CLIP4Clip's log: "Num steps = 7030", "Step: 50/1406"
    assert cfg.eval.every == cfg.checkpoint.every == per_epoch and cfg.checkpoint.keep_best_by == "t2v_R1"


def test_a_missing_checkpoint_is_an_error_naming_the_key(tmp_path):
    from raytrain.train.trainer import validate_inputs

    cfg = load_config(Path(__file__).parent.parent / "configs" / "clip4clip_msrvtt.yaml",
                      [f"model.pretrained={tmp_path}/ViT-B-32-openai.pt"])
    with pytest.raises(FileNotFoundError, match="model.pretrained.*ViT-B-32-openai.pt.*not found"):
        validate_inputs(cfg)
