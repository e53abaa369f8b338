"""``raytrain config``: the reference covers every field of every section (walked here independently of
the reference's own code), with its default, type or allowed values and a line of meaning; the resolved
config of a YAML plus overrides; ``--help`` pointing to it; ``--version``."""

import dataclasses
import re
import typing

import pytest
import yaml

from raytrain.cli import main
from raytrain.config import Config, load_config


def _leaves(cls, prefix=""):
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if dataclasses.is_dataclass(hints[f.name]):
            yield from _leaves(hints[f.name], prefix + f.name + ".")
        else:
            yield prefix + f.name, f


def test_the_reference_lists_every_field_with_default_type_and_meaning(capsys):
    assert main(["config"]) == 0
    lines = capsys.readouterr().out.splitlines()
    heads = {line.split(" = ")[0].strip(): i for i, line in enumerate(lines) if re.match(r"  \S+ = ", line)}
    defaults = Config().to_dict()
    leaves = dict(_leaves(Config))
    assert set(heads) == set(leaves) and len(leaves) > 100
    for key, i in heads.items():
        value = defaults
        for part in key.split("."):
            value = value[part]
        assert lines[i].startswith(f"  {key} = {value!r}  ("), lines[i]
        meaning = lines[i + 1]
        assert meaning.startswith("      ") and len(meaning.strip()) > 5, (key, meaning)  # a line of meaning
    assert "(one of 'error', 'skip')" in lines[heads["data.on_bad_video"]]
    assert "int; >= 1" in lines[heads["train.log_every"]]  # the field's own check
    assert "error\" stops the run" in lines[heads["data.on_bad_video"] + 1]  # the comment beside the field


def test_config_prints_the_resolved_yaml_of_a_file_plus_overrides(tmp_path, capsys):
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  epochs: 3\n")
    assert main(["config", "--config", str(path), "optim.lr=2e-3"]) == 0
    resolved = yaml.safe_load(capsys.readouterr().out)
    assert Config.from_dict(resolved) == load_config(path, ["optim.lr=2e-3"])
    assert resolved["train"]["epochs"] == 3 and resolved["optim"]["lr"] == 0.002


@pytest.mark.parametrize("command", ["train", "eval", "demo", "cache", "sweep"])
def test_help_points_to_raytrain_config(command, capsys):
    with pytest.raises(SystemExit):
        main([command, "--help"])
    assert "`raytrain config`" in capsys.readouterr().out


def test_version_and_synth_flag_descriptions(capsys):
    with pytest.raises(SystemExit):
        main(["--version"])
    assert capsys.readouterr().out.startswith("raytrain ")
    with pytest.raises(SystemExit):
        main(["synth", "--help"])
    assert "clips to generate" in capsys.readouterr().out
