"""Bad input through the CLI: a clear message naming the key, file or path, exit code 2, no Ray."""

import pytest

from raytrain.cli import main


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
