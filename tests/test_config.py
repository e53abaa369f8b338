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
    ("train.use_gpu=3", "train.use_gpu"),
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
