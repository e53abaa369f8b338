import pytest

from raytrain.config import Config, ConfigError, apply_overrides, load_config, parse_override


def write(tmp_path, text, name="c.yaml"):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_defaults_round_trip():
    cfg = Config()
    assert Config.from_dict(cfg.to_dict()) == cfg


def test_yaml_and_overrides(tmp_path):
    p = write(tmp_path, "train:\n  epochs: 3\nmodel:\n  arch: RT-Tiny-ViT\n")
    cfg = load_config(p, ["train.batch_size=8", "optim.lr=3e-4", "model.temporal=seqTransf"])
    assert cfg.train.epochs == 3 and cfg.train.batch_size == 8
    assert cfg.optim.lr == pytest.approx(3e-4) and isinstance(cfg.optim.lr, float)
    assert cfg.model.arch == "RT-Tiny-ViT" and cfg.model.temporal == "seqTransf"


def test_unknown_key_names_key_and_file(tmp_path):
    p = write(tmp_path, "train:\n  epoch: 3\n", "bad.yaml")
    with pytest.raises(ConfigError) as exc:
        load_config(p)
    assert "train.epoch" in str(exc.value) and "bad.yaml" in str(exc.value)


def test_unknown_section(tmp_path):
    with pytest.raises(ConfigError, match="'trian'"):
        load_config(write(tmp_path, "trian:\n  epochs: 3\n"))


@pytest.mark.parametrize("override, key", [
    ("optim.lr=-1", "optim.lr"),
    ("train.batch_size=1", "train.batch_size"),
    ("train.epochs=two", "train.epochs"),
    ("model.temporal=lstm", "model.temporal"),
    ("scaling.use_gpu=3", "scaling.use_gpu"),
])
def test_bad_values_name_key(override, key):
    with pytest.raises(ConfigError) as exc:
        apply_overrides(Config(), [override])
    assert f"'{key}'" in str(exc.value)


def test_override_syntax():
    assert parse_override("a.b=1") == (["a", "b"], 1)
    assert parse_override("a.b=1e-4")[1] == pytest.approx(1e-4)
    assert parse_override("model.pretrained=null")[1] is None
    with pytest.raises(ConfigError):
        parse_override("noequals")
    with pytest.raises(ConfigError, match="unknown config key 'train.nope'"):
        apply_overrides(Config(), ["train.nope=1"])


def test_int_for_float_and_optional():
    cfg = apply_overrides(Config(), ["optim.lr=1", "model.pretrained=/x.pt"])
    assert cfg.optim.lr == 1.0 and cfg.model.pretrained == "/x.pt"


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")


def test_shipped_configs_load():
    from pathlib import Path

    for path in sorted(Path(__file__).parents[1].joinpath("configs").glob("*.yaml")):
        load_config(path)


def test_names_that_look_like_numbers_stay_names():
    from raytrain.config import Config, apply_overrides

    assert apply_overrides(Config(), ["run.name=24e38_00000"]).run.name == "24e38_00000"
    assert apply_overrides(Config(), ["optim.lr=3e-4"]).optim.lr == 3e-4
    assert Config().replace(**{"run.name": "1e5", "optim.lr": 2e-3}).run.name == "1e5"


def test_every_checked_field_names_its_key_and_rule():
    """Each field's check sits beside it (config.knob): a bad value names the dotted key and the rule."""
    import dataclasses
    import typing

    from raytrain.config import Check

    def sections(cls, prefix=""):
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            if dataclasses.is_dataclass(hints[f.name]):
                yield from sections(hints[f.name], prefix + f.name + ".")
            elif "check" in f.metadata:
                yield prefix + f.name, f.metadata["check"]

    checked = dict(sections(Config))
    assert len(checked) > 50 and all(isinstance(c, Check) for c in checked.values())
    for key in ("optim.lr", "data.num_frames", "checkpoint.every", "faults.kill_rank", "sweep.metric"):
        assert key in checked
    with pytest.raises(ConfigError, match=r"config key 'checkpoint.every' must be >= 1 \(got 0\)"):
        apply_overrides(Config(), ["checkpoint.every=0"])
    with pytest.raises(ConfigError, match=r"'mask.high_ratio' must be in \(0, 1\)"):
        apply_overrides(Config(), ["mask.high_ratio=1"])
    with pytest.raises(ConfigError, match=r"'optim.beta1' must be in \[0, 1\)"):
        apply_overrides(Config(), ["optim.beta1=1"])


def test_cross_field_rules_name_the_key():
    with pytest.raises(ConfigError, match="'method.miles.block_max' must be >= method.miles.block_min"):
        apply_overrides(Config(), ["method.miles.block_min=5"])
    with pytest.raises(ConfigError, match="'eval.every' must be a multiple of checkpoint.every"):
        apply_overrides(Config(), ["checkpoint.every=10", "eval.every=15"])
    with pytest.raises(ConfigError, match="'faults.kill_rank' must be < scaling.num_workers"):
        apply_overrides(Config(), ["faults.kill_at_step=3", "faults.kill_rank=2"])
    with pytest.raises(ConfigError, match="'sweep.metric' must be a reported metric"):
        apply_overrides(Config(), ["sweep.metric=accuracy"])


def test_configs_from_before_the_train_split_still_load(tmp_path):
    """A checkpoint's config.yaml written with the old train keys loads into the new sections."""
    old = write(tmp_path, "train:\n  num_workers: 3\n  checkpoint_every: 5\n  eval_every: 10\n"
                          "  fault_nan_at_step: 2\n  batch_size: 8\n")
    cfg = load_config(old)
    assert (cfg.scaling.num_workers, cfg.checkpoint.every, cfg.eval.every, cfg.faults.nan_at_step,
            cfg.train.batch_size) == (3, 5, 10, 2, 8)
    with pytest.raises(ConfigError, match="'train.checkpoint_every' \\(old name\\) and 'checkpoint.every'"):
        load_config(write(tmp_path, "train:\n  checkpoint_every: 5\ncheckpoint:\n  every: 5\n", "both.yaml"))


def test_metric_names_are_defined_once():
    from raytrain.eval.metrics import EVAL_METRICS, LOWER_IS_BETTER, REPORTED_METRICS

    assert EVAL_METRICS[:5] == ("t2v_R1", "t2v_R5", "t2v_R10", "t2v_MdR", "t2v_MnR")
    assert set(LOWER_IS_BETTER) == {"loss", "t2v_MdR", "t2v_MnR", "v2t_MdR", "v2t_MnR"}
    assert set(LOWER_IS_BETTER) < set(REPORTED_METRICS)
    assert apply_overrides(Config(), ["sweep.metric=t2v_MdR"]).sweep.lower_is_better


def test_resolved_paths_are_typed_values_not_yaml(tmp_path, monkeypatch):
    """resolve_paths sets absolute paths as typed values: a path YAML would read otherwise (a '#'
    starts a comment there) stays whole."""
    from raytrain.train.trainer import resolve_paths

    monkeypatch.chdir(tmp_path)
    cfg = resolve_paths(apply_overrides(Config(), ["run.storage_path=runs"]).replace(
        **{"data.manifest": "data #1/manifest.parquet", "data.cache_dir": "cache: a", "model.pretrained": "w.pt"}))
    assert cfg.data.manifest == str(tmp_path / "data #1" / "manifest.parquet")
    assert cfg.data.cache_dir == str(tmp_path / "cache: a")
    assert cfg.run.storage_path == str(tmp_path / "runs") and cfg.model.pretrained == str(tmp_path / "w.pt")
