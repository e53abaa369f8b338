"""Tier 2: re-ranking through the real paths on tiny SynthVTT: the in-run evaluation with QB-Norm's
banks built by the driver (a "qb_bank" dataset), and ``raytrain eval`` reproducing it on the
same checkpoint (one fit, one evaluation: the rest is tested without Ray in tests/test_rerank.py)."""

import json
from pathlib import Path

import pytest

from raytrain.config import apply_overrides

pytestmark = pytest.mark.ray


def test_qb_norm_in_run_and_raytrain_eval_agree(ray_session, tiny_config, capsys):
    from raytrain.cli import main
    from raytrain.train.trainer import fit

    qb = ["eval.rerank=qb_norm", "eval.qb_norm_bank_size=40", "eval.qb_norm_video_bank_size=12"]
    result = fit(apply_overrides(tiny_config, ["train.max_steps=2", "run.name=qb", *qb]))
    assert result.metrics["qb_norm_bank_texts"] == 40 and result.metrics["qb_norm_bank_videos"] == 12
    out = Path(result.run_dir) / "again.json"
    assert main(["eval", "--checkpoint", result.checkpoint_path, "--out", str(out), *qb]) == 0
    again = json.loads(out.read_text())
    for key in ("t2v_R1", "t2v_MnR", "v2t_R1", "v2t_MnR"):
        assert again[key] == pytest.approx(result.metrics[key], abs=1e-6), key
    assert "eval.rerank=qb_norm" in capsys.readouterr().out
