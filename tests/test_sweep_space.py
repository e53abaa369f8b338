"""Tier 1: search spaces and sweep planning, pure (no Ray cluster)."""

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from raytrain.config import Config, ConfigError, apply_overrides, load_config
from raytrain.tune.plan import (
    TrialRow,
    best_trial_config,
    corner_params,
    ended_status,
    max_concurrent_trials,
    plain_params,
    prepare_sweep_config,
    sort_trials,
    trial_resources,
    trials_table,
)
from raytrain.tune.space import SpaceError, apply_params, check_search, load_space, load_space_dict, to_tune

ROOT = Path(__file__).resolve().parents[1]


def _space(text: str, cfg: Config | None = None):
    return load_space_dict(yaml.safe_load(text), cfg or Config(), source="s.yaml")


def test_every_kind_parses_with_its_values():
    space = _space("""
space:
  mask.high_ratio: {grid: [0.2, 0.3]}
  train.batch_size: {choice: [16, 32]}
  method.mascot.lambda_rec: {loguniform: [0.1, 10]}
  mask.low_ratio: {uniform: [0.1, 0.5]}
  train.seed: {randint: [0, 100]}
""")
    kinds = {p.key: (p.kind, p.values) for p in space.params}
    assert kinds == {"mask.high_ratio": ("grid", (0.2, 0.3)), "train.batch_size": ("choice", (16, 32)),
                     "method.mascot.lambda_rec": ("loguniform", (0.1, 10)),
                     "mask.low_ratio": ("uniform", (0.1, 0.5)), "train.seed": ("randint", (0, 100))}
    assert space.grid_size("random") == 2 and space.grid_size("grid") == 4  # choice is a grid axis under grid search
    # The YAML form reads back to the same space (it is saved beside the sweep for --resume).
    assert load_space_dict(space.to_dict(), Config(), "again").params == space.params


@pytest.mark.parametrize("text, names", [
    ("space: {mask.hgh_ratio: {grid: [0.2]}}", ["s.yaml", "mask.hgh_ratio", "hgh_ratio"]),
    ("space: {nope.x: {grid: [1]}}", ["s.yaml", "nope.x"]),
    ("space: {mask: {grid: [1]}}", ["mask", "section"]),
    ("space: {mask.high_ratio: {grid: [0.2, 1.5]}}", ["mask.high_ratio", "1.5", "in (0, 1)"]),
    ("space: {mask.high_ratio: {uniform: [0.5, 0.2]}}", ["mask.high_ratio", "low < high"]),
    ("space: {mask.high_ratio: {uniform: [0.1, 1.0]}}", ["mask.high_ratio", "1.0"]),
    ("space: {optim.lr: {loguniform: [0, 1]}}", ["optim.lr", "low > 0"]),
    ("space: {train.seed: {randint: [0, 2.5]}}", ["train.seed", "integer"]),
    ("space: {train.batch_size: {uniform: [4, 8]}}", ["train.batch_size", "int", "randint"]),
    ("space: {model.temporal: {choice: [meanP, maxP]}}", ["model.temporal", "maxP"]),
    ("space: {mask.high_ratio: {gird: [0.2]}}", ["mask.high_ratio", "gird"]),
    ("space: {mask.high_ratio: {grid: []}}", ["mask.high_ratio", "non-empty"]),
    ("space: {mask.high_ratio: {grid: [0.2, 0.2]}}", ["mask.high_ratio", "twice"]),
    ("space: {mask.high_ratio: 0.3}", ["mask.high_ratio", "exactly one"]),
    ("space: {run.name: {grid: [a, b]}}", ["run.name", "cannot be searched"]),
    ("space: {}", ["non-empty"]),
    ("spaces: {mask.high_ratio: {grid: [0.2]}}", ["'space'"]),
    ("space: {mask.high_ratio: {grid: [0.2]}}\nextra: 1", ["extra"]),
])
def test_bad_spaces_name_the_file_and_the_key(text, names):
    with pytest.raises(SpaceError) as err:
        _space(text)
    for name in names:
        assert name in str(err.value)


def test_values_are_checked_against_the_loaded_config(tmp_path):
    path = tmp_path / "space.yaml"
    path.write_text("space: {train.batch_size: {grid: [1, 8]}}")
    with pytest.raises(SpaceError, match=r"space.yaml.*train.batch_size.*value 1"):
        load_space(path, Config())
    with pytest.raises(SpaceError, match="not found"):
        load_space(tmp_path / "missing.yaml", Config())


def test_grid_search_cannot_enumerate_a_range():
    space = _space("space: {mask.high_ratio: {uniform: [0.1, 0.5]}, mask.low_ratio: {choice: [0.2, 0.3]}}")
    check_search(space, "random")
    with pytest.raises(SpaceError, match="mask.high_ratio"):
        check_search(space, "grid")


def test_to_tune_builds_the_matching_domains():
    from ray import tune

    space = _space("""
space:
  mask.high_ratio: {grid: [0.2, 0.3]}
  mask.low_ratio: {choice: [0.2, 0.4]}
  optim.lr: {loguniform: [1.0e-4, 1.0e-2]}
  train.seed: {randint: [0, 5]}
""")
    random = to_tune(space, "random")
    assert random["mask.high_ratio"] == {"grid_search": [0.2, 0.3]}
    assert isinstance(random["mask.low_ratio"], tune.search.sample.Categorical)
    assert isinstance(random["optim.lr"], tune.search.sample.Float)
    assert isinstance(random["train.seed"], tune.search.sample.Integer)
    assert (random["optim.lr"].lower, random["optim.lr"].upper) == (1e-4, 1e-2)
    grid = to_tune(_space("space: {mask.low_ratio: {choice: [0.2, 0.4]}}"), "grid")
    assert grid["mask.low_ratio"] == {"grid_search": [0.2, 0.4]}


def test_apply_params_sets_the_dotted_keys():
    import numpy as np

    cfg = apply_params(Config(), {"mask.high_ratio": np.float64(0.25), "train.seed": np.int64(7),
                                  "model.temporal": "seqTransf"})
    assert (cfg.mask.high_ratio, cfg.train.seed, cfg.model.temporal) == (0.25, 7, "seqTransf")
    assert type(cfg.train.seed) is int


@pytest.mark.parametrize("name", sorted(p.name for p in (ROOT / "search_spaces").glob("*.yaml")))
def test_shipped_spaces_load_against_the_sweep_config(name):
    cfg = load_config(ROOT / "configs" / "sweep_mascot.yaml")
    space = load_space(ROOT / "search_spaces" / name, cfg)
    check_search(space, cfg.sweep.search)
    assert space.params


def test_concurrency_follows_the_cluster_and_the_trial_size():
    cfg = apply_overrides(Config(), ["scaling.num_workers=2", "scaling.cpus_per_worker=1", "data.decode_actors=1",
                                     "data.decode_cpus=0.5", "data.per_rank_plan=true"])
    need = trial_resources(cfg)  # 2 workers + a 1-actor pool per rank + the eval pool + trial driver
    assert need == {"CPU": pytest.approx(3.51)}
    assert max_concurrent_trials(cfg, {"CPU": 4}) == 1
    assert max_concurrent_trials(cfg, {"CPU": 16}) == 4
    assert cfg.train_decode_pools == (2, 1)
    assert apply_overrides(cfg, ["data.decode_actors=3"]).train_decode_pools == (2, 2)  # at least a share each
    split = apply_overrides(cfg, ["data.per_rank_plan=false"])  # one train pool of data.decode_actors
    assert split.train_decode_pools == (1, 1)
    assert trial_resources(split) == {"CPU": pytest.approx(3.01)}
    assert trial_resources(apply_overrides(cfg, ["data.decode_actors=4"])) == {"CPU": pytest.approx(2 + 2 + 4 * 0.5 + 0.01)}
    gpu = apply_overrides(cfg, ["scaling.use_gpu=true", "data.decode_resource=decode"])
    assert max_concurrent_trials(gpu, {"CPU": 64, "GPU": 4, "decode": 8}) == 2  # GPUs bind
    assert max_concurrent_trials(gpu, {"CPU": 64, "GPU": 8, "decode": 3}) == 1  # decode slots bind
    with pytest.raises(ConfigError, match="GPU"):
        max_concurrent_trials(gpu, {"CPU": 64, "decode": 8})
    assert max_concurrent_trials(apply_overrides(cfg, ["sweep.max_concurrent_trials=3"]), {"CPU": 4}) == 3


def test_asha_on_an_eval_metric_evaluates_during_training():
    cfg = apply_overrides(Config(), ["sweep.scheduler=asha", "checkpoint.every=10"])
    prepared, notes = prepare_sweep_config(cfg)
    assert prepared.eval.every == 10 and notes
    with pytest.raises(ConfigError, match="sweep.metric"):
        prepare_sweep_config(apply_overrides(cfg, ["sweep.metric=accuracy"]))
    _, notes = prepare_sweep_config(apply_overrides(Config(), ["sweep.metric=loss", "sweep.mode=max"]))
    assert any("lower is better" in n for n in notes)
    with pytest.raises(ConfigError, match="eval.every"):
        apply_overrides(Config(), ["checkpoint.every=10", "eval.every=15"])


def test_trials_sort_best_first_and_the_table_lists_them():
    rows = [TrialRow("a", {"mask.high_ratio": 0.2}, 10.0, 8, "finished"),
            TrialRow("b", {"mask.high_ratio": 0.3}, None, 0, "error"),
            TrialRow("c", {"mask.high_ratio": 0.5}, 30.0, 8, "finished"),
            TrialRow("d", {"mask.high_ratio": 0.4}, 5.0, 2, "stopped early")]
    assert [r.trial_id for r in sort_trials(rows, "max")] == ["c", "a", "d", "b"]
    assert [r.trial_id for r in sort_trials(rows, "min")] == ["d", "a", "c", "b"]
    table = trials_table(sort_trials(rows, "max"), "t2v_R1").splitlines()
    assert "mask.high_ratio" in table[0] and "t2v_R1" in table[0]
    assert table[2].split()[:4] == ["1", "c", "0.5", "30"] and "stopped early" in table[4]


def test_best_config_round_trips_into_train(tmp_path):
    cfg = apply_overrides(Config(), ["sweep.name=s1", "run.name=base"])
    best = best_trial_config(cfg, {"mask.high_ratio": 0.5, "method.mascot.lambda_rec": 2.5})
    path = tmp_path / "best.yaml"
    path.write_text("# comment\n" + yaml.safe_dump(best.to_dict(), sort_keys=False))
    again = load_config(path)
    assert again == best and again.mask.high_ratio == 0.5 and again.run.name == "s1-best"


def test_sweep_trials_share_one_frame_cache(tmp_path):
    cfg = apply_overrides(Config(), [f"run.storage_path={tmp_path}", "sweep.name=s", "data.cache=frames"])
    prepared, notes = prepare_sweep_config(cfg)
    assert prepared.data.cache_dir == str(tmp_path / "s" / "frame_cache")
    assert any("share one frame cache" in n for n in notes)
    mine = apply_overrides(cfg, ["data.cache_dir=s3://bucket/cache"])
    assert prepare_sweep_config(mine)[0].data.cache_dir == "s3://bucket/cache"  # the user's choice stays
    assert prepare_sweep_config(apply_overrides(cfg, ["data.cache=none"]))[0].data.cache_dir == ""


def test_planning_imports_no_ray():
    code = "import sys, raytrain.tune.plan; print(sorted(m for m in sys.modules if m.split('.')[0] == 'ray'))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert done.stdout.strip() == "[]"


def test_corners_span_every_searched_key():
    space = _space("""
space:
  train.batch_size: {grid: [4, 8, 16]}
  optim.lr: {loguniform: [1.0e-4, 1.0e-2]}
  train.seed: {randint: [0, 5]}
""")
    low, high = corner_params(space)
    assert low == {"train.batch_size": 4, "optim.lr": 1e-4, "train.seed": 0}
    assert high == {"train.batch_size": 16, "optim.lr": 1e-2, "train.seed": 4}  # randint's high is exclusive


def test_a_trial_short_of_its_plan_was_stopped_early():
    assert ended_status(2, 6) == "stopped early"
    assert ended_status(6, 6) == "finished"
    assert ended_status(7, 6) == "finished"


def test_trial_values_become_plain_python():
    import numpy as np

    params = plain_params({"optim.lr": np.float64(0.5), "train.seed": np.int64(3), "model.temporal": "meanP"})
    assert params == {"optim.lr": 0.5, "train.seed": 3, "model.temporal": "meanP"}
    assert type(params["optim.lr"]) is float and type(params["train.seed"]) is int
    assert plain_params(None) == {}
