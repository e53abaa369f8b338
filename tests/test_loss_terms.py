"""bench/loss_terms.py: per-term curves read back from a run's TensorBoard files."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
from loss_terms import spaced, table


def test_spaced_keeps_first_and_last_step():
    values = {s: float(s) for s in range(5, 80, 5)}  # 15 logged steps
    picks = spaced(values, 5)
    assert [s for s, _ in picks] == [5, 25, 40, 55, 75]
    assert spaced({1: 0.5, 2: 0.25}, 5) == [(1, 0.5), (2, 0.25)]


def test_table_lists_every_loss_term_and_the_final_recall(tmp_path):
    from torch.utils.tensorboard import SummaryWriter

    run = tmp_path / "mascot-seed0"
    writer = SummaryWriter(str(run / "tensorboard"))
    for step in (5, 10, 15):
        writer.add_scalar("train/loss_nce", 2.0 / step, step)
        writer.add_scalar("train/loss_co", 1.0 / step, step)
        writer.add_scalar("train/grad_norm", 10.0, step)
        writer.add_scalar("time/step_s", 1.0, step)
    writer.add_scalar("eval/t2v_R1", 17.5, 15)
    writer.close()
    text = table([run], points=3)
    assert text.splitlines()[0] == "mascot-seed0  (t2v R@1 17.5)"
    assert "train/loss_co" in text and "train/loss_nce" in text and "train/grad_norm" in text
    assert "time/step_s" not in text
    assert "15:  0.133" in text  # loss_nce at the last step
    with pytest.raises(SystemExit, match="no tensorboard"):
        table([tmp_path / "missing"], points=3)
