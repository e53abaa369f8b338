"""Tier 2: zero-shot ``raytrain eval`` (no --checkpoint: the model.pretrained towers, untrained) on
tiny SynthVTT's eval split agrees with evaluating a raytrain checkpoint that holds the same towers;
no training, only the Ray Data evaluation."""

import json

import pytest
import torch

from raytrain.config import apply_overrides

pytestmark = pytest.mark.ray


def test_zero_shot_eval_of_an_open_clip_file_matches_the_checkpoint_eval(ray_session, tiny_config, tmp_path, capsys):
    from tiny import tiny_overrides

    from raytrain.cli import main
    from raytrain.methods import build_objective
    from raytrain.train.state import save_training_state

    torch.manual_seed(11)
    cfg = apply_overrides(tiny_config, ["run.name=zs"])
    objective = build_objective(cfg)
    opt = torch.optim.SGD(objective.parameters(), lr=0.1)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    ckpt = save_training_state(tmp_path / "run" / "checkpoint_000001", cfg, objective, opt, sched, 1, [])
    weights = tmp_path / "open_clip.pt"
    torch.save({"state_dict": objective.model.clip.state_dict()}, weights)

    a, b = tmp_path / "ckpt.json", tmp_path / "zero_shot.json"
    assert main(["eval", "--checkpoint", str(ckpt), "--out", str(a)]) == 0
    synth_dir = cfg.data.manifest.rsplit("/", 1)[0]
    assert main(["eval", "--out", str(b), *tiny_overrides(synth_dir), f"model.pretrained={weights}"]) == 0
    assert "zero-shot, model.pretrained=" in capsys.readouterr().out
    via_ckpt, zero_shot = json.loads(a.read_text()), json.loads(b.read_text())
    assert zero_shot["step"] == 0
    for key in ("t2v_R1", "t2v_R5", "t2v_MnR", "v2t_R1", "v2t_MnR"):
        assert zero_shot[key] == pytest.approx(via_ckpt[key], abs=1e-6), key
