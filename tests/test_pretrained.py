"""model.pretrained: open_clip/OpenAI weight files and raytrain checkpoints (folder, run folder,
state.pt) load into the towers; wrong shapes are named with both shapes (pure, no Ray)."""

from __future__ import annotations

import pytest
import torch

from raytrain.config import Config, ModelSection, apply_overrides
from raytrain.methods import build_objective
from raytrain.model.clip_video import build_model
from raytrain.train.state import save_training_state


def _same_towers(a, b):
    sa, sb = a.clip.state_dict(), b.clip.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k


def _source(seed=1, arch="RT-Micro-ViT"):
    torch.manual_seed(seed)
    return build_model(ModelSection(arch=arch))


@pytest.mark.parametrize("fmt", ["open_clip_training", "plain_state_dict"])
def test_open_clip_and_openai_files_load(tmp_path, fmt):
    src = _source()
    state = src.clip.state_dict()
    path = tmp_path / "weights.pt"
    if fmt == "open_clip_training":  # what open_clip's trainer writes: epoch, module.-prefixed state_dict
        torch.save({"epoch": 3, "name": "x", "state_dict": {f"module.{k}": v for k, v in state.items()}}, path)
    else:  # OpenAI's (non-JIT) naming is open_clip's
        torch.save(state, path)
    torch.manual_seed(2)
    _same_towers(src, build_model(ModelSection(arch="RT-Micro-ViT", pretrained=str(path))))


def _cfg(tmp_path, method="clip4clip", pretrained=None):
    over = ["model.arch=RT-Micro-ViT", f"method.name={method}", f"run.storage_path={tmp_path}"]
    if pretrained:
        over.append(f"model.pretrained={pretrained}")
    return apply_overrides(Config(), over)


def _raytrain_checkpoint(tmp_path, method="miles"):
    """A pretraining run's checkpoint folder (as the trainer writes it) and its run folder."""
    torch.manual_seed(5)
    cfg = _cfg(tmp_path, method)
    objective = build_objective(cfg)
    with torch.no_grad():  # make the checkpoint's towers and extras differ from any fresh init
        for p in objective.parameters():
            p.add_(0.01 * torch.randn_like(p))
    opt = torch.optim.SGD(objective.parameters(), lr=0.1)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    run = tmp_path / "pretrain_run"
    ckpt = save_training_state(run / "checkpoint_000004", cfg, objective, opt, sched, 4, [])
    return objective, ckpt, run


@pytest.mark.parametrize("which", ["checkpoint", "run", "state_file"])
def test_raytrain_checkpoint_carries_the_towers(tmp_path, which):
    pre, ckpt, run = _raytrain_checkpoint(tmp_path)
    source = {"checkpoint": ckpt, "run": run, "state_file": ckpt / "state.pt"}[which]
    torch.manual_seed(7)
    model = build_model(ModelSection(arch="RT-Micro-ViT", pretrained=str(source)))
    _same_towers(pre.model, model)


def test_fine_tune_from_miles_pretraining_inits_new_modules_as_the_method_says(tmp_path):
    pre, ckpt, _ = _raytrain_checkpoint(tmp_path, "miles")
    # MILES fine-tuning: the snapshot starts as a copy of the loaded tower, not the old EMA
    torch.manual_seed(7)
    miles = build_objective(_cfg(tmp_path, "miles", ckpt))
    _same_towers(pre.model, miles.model)
    for (k, a), b in zip(miles.ema_visual.state_dict().items(), pre.model.clip.visual.state_dict().values()):
        assert torch.equal(a, b.float()), k
    assert not torch.equal(miles.mask_token, pre.mask_token)  # new modules: fresh, not carried
    # MASCOT fine-tuning from the same checkpoint: towers carried, decoder as a fresh MASCOT run has it
    torch.manual_seed(7)
    mascot = build_objective(_cfg(tmp_path, "mascot", ckpt))
    torch.manual_seed(7)
    fresh = build_objective(_cfg(tmp_path, "mascot"))
    _same_towers(pre.model, mascot.model)
    for (k, a), b in zip(mascot.state_dict().items(), fresh.state_dict().values()):
        if not k.startswith("model.clip."):
            assert torch.equal(a, b), k


def test_wrong_shapes_name_the_key_and_both_shapes(tmp_path):
    path = tmp_path / "micro.pt"
    torch.save({"state_dict": _source().clip.state_dict()}, path)
    with pytest.raises(ValueError, match=r"model\.pretrained.*'visual\.conv1\.weight': \(32, 3, 8, 8\) in the "
                                         r"checkpoint, \(64, 3, 8, 8\) in model\.arch 'RT-Tiny-ViT'"):
        build_model(ModelSection(arch="RT-Tiny-ViT", pretrained=str(path)))


def test_missing_tower_keys_are_named(tmp_path):
    state = _source().clip.state_dict()
    del state["text_projection"]
    path = tmp_path / "partial.pt"
    torch.save(state, path)
    with pytest.raises(ValueError, match=r"missing keys \['text_projection'\]"):
        build_model(ModelSection(arch="RT-Micro-ViT", pretrained=str(path)))


def test_train_accepts_a_run_folder_as_model_pretrained(tmp_path, tiny_config):
    """`raytrain train` checks model.pretrained on the driver: a pretraining run's folder (what
    bench/ablation.py --suite pretrained hands each fine-tune) passes, a folder without a complete
    checkpoint is refused naming the key."""
    from raytrain.train.trainer import validate_inputs

    _, ckpt, run = _raytrain_checkpoint(tmp_path)
    for source in (run, ckpt, ckpt / "state.pt"):
        assert validate_inputs(apply_overrides(tiny_config, [f"model.pretrained={source}"])).cfg.model.pretrained
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="model.pretrained.*neither a checkpoint"):
        validate_inputs(apply_overrides(tiny_config, [f"model.pretrained={tmp_path / 'empty'}"]))
