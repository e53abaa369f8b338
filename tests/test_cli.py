"""The CLI: bad input gives a clear message naming the key, file or path (exit code 2, no Ray); `prepare`
offers exactly the annotation readers (and csv/jsonl); building the parser imports no heavy library."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

import raytrain
from raytrain.cli import build_parser, main
from raytrain.data.annotations import DATASETS


def test_unknown_config_key(tmp_path, capsys):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("train:\n  epochz: 2\n")
    assert main(["train", "--config", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert "train.epochz" in err and "bad.yaml" in err


def test_bad_override_value(capsys):
    assert main(["train", "optim.lr=-1"]) == 2
    assert "'optim.lr' must be > 0" in capsys.readouterr().err


def test_missing_checkpoint(tmp_path, capsys):
    assert main(["eval", "--checkpoint", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err
    assert "nope" in err and "not found" in err


def test_folder_without_checkpoints(tmp_path, capsys):
    assert main(["eval", "--checkpoint", str(tmp_path)]) == 2
    assert "checkpoint_*" in capsys.readouterr().err


def test_missing_manifest(tmp_path, capsys):
    assert main(["train", f"data.manifest={tmp_path / 'absent.parquet'}"]) == 2
    assert "absent.parquet" in capsys.readouterr().err


def test_synth_command(tmp_path, capsys):
    assert main(["synth", "--out", str(tmp_path / "s"), "--num-videos", "6", "--seed", "1"]) == 0
    assert (tmp_path / "s" / "manifest.parquet").is_file()
    assert "manifest.parquet" in capsys.readouterr().out


def test_unknown_command():
    with pytest.raises(SystemExit):
        main(["frobnicate"])


def test_cache_command_needs_the_cache_switched_on(capsys):
    assert main(["cache"]) == 2
    assert "set data.cache=frames" in capsys.readouterr().err


def test_prepare_help_lists_every_reader(capsys):
    with pytest.raises(SystemExit) as exited:
        main(["prepare", "--help"])
    assert exited.value.code == 0
    assert "{" + ",".join(DATASETS) + "}" in capsys.readouterr().out


@pytest.mark.parametrize("dataset", list(DATASETS))
def test_prepare_accepts_every_reader(dataset):
    args = build_parser().parse_args(["prepare", "--dataset", dataset, "--annotations", "a", "--videos", "v",
                                      "--out", "m.parquet"])
    assert args.dataset == dataset


def test_prepare_refuses_an_unknown_dataset(capsys):
    with pytest.raises(SystemExit) as exited:
        main(["prepare", "--dataset", "kinetics", "--annotations", "a", "--videos", "v", "--out", "m.parquet"])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert "invalid choice: 'kinetics'" in err and all(name in err for name in DATASETS)


def test_cli_starts_without_ray_or_torch():
    """Building the parser (every command's choices included) must not import the heavy libraries."""
    code = ("import sys; from raytrain.cli import build_parser; build_parser(); "
            "print(sorted(m for m in ('ray', 'torch', 'av', 'decord') if m in sys.modules))")
    env = {**os.environ, "PYTHONPATH": str(Path(raytrain.__file__).parents[1])}  # this checkout's raytrain
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env).stdout
    assert out.strip() == "[]"
