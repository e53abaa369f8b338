"""The pretrained protocol of bench/ablation.py (issue 21 item 5), planned without running anything:
which runs, with which overrides, from which pretraining run each fine-tune starts."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
from ablation_protocol import FINETUNE, plan, report_section, splice

from raytrain.config import load_config

CONFIG = str(Path(__file__).resolve().parents[1] / "configs" / "ablation.yaml")


def _value(job, key):
    found = [o.split("=", 1)[1] for o in job.overrides if o.startswith(key + "=")]
    assert len(found) <= 1, (job, key)
    return found[0] if found else None


def test_plan_pretrains_each_backbone_once_per_seed_and_fine_tunes_from_it():
    jobs = plan("abl", "runs/abl", [0, 1, 2], "pre/manifest.parquet", "bench/manifest.parquet")
    pre = [j for j in jobs if j.kind == "pretrain"]
    assert sorted((j.row, j.seed) for j in pre) == sorted((b, s) for b in ("baseline", "miles") for s in (0, 1, 2))
    assert {_value(j, "method.name") for j in pre if j.row == "miles"} == {"miles"}
    assert all(_value(j, "data.manifest") == "pre/manifest.parquet" for j in pre)
    tuned = [j for j in jobs if j.kind == "finetune"]
    assert len(tuned) == 3 * len(FINETUNE)
    for j in tuned:
        assert _value(j, "data.manifest") == "bench/manifest.parquet"
        assert _value(j, "train.seed") == str(j.seed)
        backbone = FINETUNE[j.row][2]
        expected = f"runs/abl/abl-pre-{backbone}-seed{j.seed}" if backbone else None
        assert _value(j, "model.pretrained") == expected == j.pretrained
        # every fine-tune's backbone is pretrained earlier, with the same seed
        if backbone:
            assert any(p.run == Path(expected).name and jobs.index(p) < jobs.index(j) for p in pre)
    for miles in (j for j in tuned if j.row.startswith("MILES")):  # MILES fine-tunes its own backbone
        assert miles.pretrained == f"runs/abl/abl-pre-miles-seed{miles.seed}"
    assert {j.pretrained for j in tuned if j.row.startswith("+")} == {f"runs/abl/abl-pre-baseline-seed{s}"
                                                                     for s in (0, 1, 2)}
    mascot_negnce = next(j for j in tuned if j.row == "MASCOT + NegNCE")
    assert _value(mascot_negnce, "method.contrastive") == "negnce" and _value(mascot_negnce, "method.name") == "mascot"
    # run names are unique and never those of the from-scratch suites (those would be resumed instead)
    runs = [j.run for j in jobs if j.kind != "attention"]  # attention jobs make no run
    assert len(set(runs)) == len(runs)
    assert not any(r.startswith(("abl-0-baseline", "abl-4-co-learning", "abl-miles")) for r in runs)


def test_a_backbone_seed_pretrains_once_and_every_seed_fine_tunes_from_it():
    jobs = plan("abl", "runs/abl", [1, 0, 2], "pre.parquet", "bench.parquet", backbone_seed=0)
    assert [j.seed for j in jobs if j.kind == "pretrain"] == [0, 0] and jobs[0].seed == 0  # first, once
    assert {j.seed for j in jobs if j.kind in ("attention", "zero_shot")} == {0}
    tuned = [j for j in jobs if j.kind == "finetune"]
    assert sorted({j.seed for j in tuned}) == [0, 1, 2] and len(tuned) == 3 * len(FINETUNE)
    for j in tuned:
        backbone = FINETUNE[j.row][2]
        assert j.pretrained == (f"runs/abl/abl-pre-{backbone}-seed0" if backbone else None)
        assert _value(j, "train.seed") == str(j.seed)
        # seed 0's fine-tunes are the per-seed protocol's; the others' names say where they started
        assert j.run.endswith("-from-seed0") == (j.seed != 0 and backbone is not None), j.run
    assert max(i for i, j in enumerate(jobs) if j.kind == "pretrain") < min(jobs.index(j) for j in tuned)


def test_zero_shot_jobs_evaluate_each_pretraining_run_without_training():
    jobs = plan("abl", "runs/abl", [0], "pre.parquet", "bench.parquet")
    zero = [j for j in jobs if j.kind == "zero_shot"]
    assert [j.pretrained for j in zero] == ["runs/abl/abl-pre-baseline-seed0", "runs/abl/abl-pre-miles-seed0"]
    for j in zero:
        assert _value(j, "model.temporal") == "meanP"  # the temporal module is not carried
        assert _value(j, "data.manifest") == "bench.parquet"


def test_a_subset_of_rows_pretrains_only_what_it_needs_and_overrides_load():
    jobs = plan("abl", "runs/abl", [5], "pre.parquet", "bench.parquet", rows=["+ ISC"],
                pretrain_overrides=("train.epochs=3",))
    assert [(j.kind, j.row) for j in jobs] == [("attention", "random init"), ("pretrain", "baseline"),
                                               ("attention", "baseline-pretrained"),
                                               ("zero_shot", "baseline-pretrained, zero-shot"), ("finetune", "+ ISC")]
    assert _value(jobs[1], "train.epochs") == "3" and _value(jobs[4], "train.epochs") is None
    # attention measured on the benchmark, before pretraining and from the pretraining run
    assert [_value(j, "model.pretrained") for j in jobs if j.kind == "attention"] == [None, "runs/abl/abl-pre-baseline-seed5"]
    assert {_value(j, "data.manifest") for j in jobs if j.kind == "attention"} == {"bench.parquet"}
    for j in jobs:  # every job's overrides make a valid config
        load_config(CONFIG, list(j.overrides))
    with pytest.raises(ValueError, match="unknown fine-tune rows"):
        plan("abl", "runs", [0], "a", "b", rows=["nope"])


def test_splice_replaces_only_the_generated_section():
    doc = "# Title\n\n## Reading it\n\nhand-written\n"
    once = splice(doc, report_section(["| a |"], ["header"]))
    assert once.startswith(doc.rstrip("\n")) and "| a |" in once
    twice = splice(once + "\nafter the section\n", report_section(["| b |"], ["header"]))
    assert "| b |" in twice and "| a |" not in twice and "after the section" in twice and "hand-written" in twice
