"""``--probe`` / ``data.probe_videos``: broken files named by manifest row before anything trains."""

import shutil
from pathlib import Path

import pytest

from raytrain.data.manifest import ManifestError, load_manifest, write_manifest
from raytrain.data.probe import probe_file, probe_manifest


def _bad_files(folder: Path, good: Path) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    files = {"truncated": good.read_bytes()[:600], "empty": b"", "text": b"just some words\n" * 20}
    out = {}
    for name, data in files.items():
        out[name] = folder / f"{name}.mp4"
        out[name].write_bytes(data)
    return out


def test_a_good_file_passes_and_each_broken_one_says_why(synth_dir, tmp_path):
    good = Path(load_manifest(synth_dir / "manifest.parquet")[0].path)
    assert probe_file(good) is None
    bad = _bad_files(tmp_path, good)
    for name, path in bad.items():
        why = probe_file(path)
        assert why and "Error" in why, (name, why)
    assert probe_file(tmp_path / "absent.mp4").startswith("FileNotFoundError")


def _manifest_with_bad_rows(synth_dir: Path, tmp_path: Path) -> Path:
    rows = [{"video_id": r.video_id, "path": r.path, "captions": list(r.captions), "split": r.split}
            for r in load_manifest(synth_dir / "manifest.parquet")]
    bad = _bad_files(tmp_path / "bad", Path(rows[0]["path"]))
    first_test = next(i for i, r in enumerate(rows) if r["split"] == "test")
    rows[3]["path"], rows[first_test]["path"] = str(bad["truncated"]), str(bad["text"])
    return write_manifest(rows, tmp_path / "m.parquet")


def test_the_probe_names_each_failing_row_its_id_and_file(synth_dir, tmp_path):
    manifest = _manifest_with_bad_rows(synth_dir, tmp_path)
    rows = load_manifest(manifest)
    with pytest.raises(ManifestError) as failed:
        probe_manifest(manifest, workers=2)
    text = str(failed.value)
    assert f"2 of {len(rows)} clips of '{manifest}' failed the video probe" in text
    assert f"m.parquet row 3 (video_id '{rows[3].video_id}'): '{rows[3].path}'" in text
    assert "truncated.mp4" in text and "text.mp4" in text and "data.on_bad_video=skip" in text
    # only the splits asked for: the test split's bad row alone
    with pytest.raises(ManifestError, match=r"(?s)^1 of \d+ clips.*text\.mp4"):
        probe_manifest(manifest, ["test"])
    good = [{"video_id": r.video_id, "path": r.path, "captions": list(r.captions), "split": r.split}
            for r in load_manifest(synth_dir / "manifest.parquet")]
    assert probe_manifest(write_manifest(good, tmp_path / "good.parquet")) == len(good)


def test_training_validation_probes_when_asked_before_ray_starts(synth_dir, tiny_config, tmp_path, capsys):
    from raytrain.config import apply_overrides
    from raytrain.train.trainer import validate_inputs

    manifest = _manifest_with_bad_rows(synth_dir, tmp_path)
    cfg = apply_overrides(tiny_config, [f"data.manifest={manifest}"])
    validate_inputs(cfg)  # off by default: the broken files are found only when decoded
    with pytest.raises(ManifestError, match=r"2 of \d+ clips .* failed the video probe"):
        validate_inputs(apply_overrides(cfg, ["data.probe_videos=true"]))
    validate_inputs(apply_overrides(tiny_config, ["data.probe_videos=true"]))
    assert "[raytrain] data.probe_videos: 60 videos open and decode" in capsys.readouterr().out


def test_prepare_probe_writes_the_manifest_and_fails_naming_the_row(synth_dir, tmp_path, capsys):
    from raytrain.cli import main

    videos = tmp_path / "videos"
    videos.mkdir()
    src = load_manifest(synth_dir / "manifest.parquet")[:3]
    for i, r in enumerate(src):
        shutil.copy(r.path, videos / f"clip{i}.mp4")
    (videos / "clip2.mp4").write_bytes(b"")  # a zero-byte download
    annotations = tmp_path / "own.csv"
    annotations.write_text("video,caption,split\n" + "".join(f"clip{i}.mp4,caption {i},train\n" for i in range(3)))
    args = ["prepare", "--dataset", "csv", "--annotations", str(annotations), "--videos", str(videos)]
    assert main([*args, "--out", str(tmp_path / "plain.parquet")]) == 0  # no probe: written, nothing opened
    assert main([*args, "--out", str(tmp_path / "m.parquet"), "--probe"]) != 0
    out = capsys.readouterr()
    assert "1 of 3 clips" in out.err + out.out and "clip2.mp4" in out.err + out.out
    assert "Traceback" not in out.err + out.out
    assert len(load_manifest(tmp_path / "m.parquet")) == 3  # the manifest is kept
    (videos / "clip2.mp4").write_bytes(Path(src[2].path).read_bytes())
    assert main([*args, "--out", str(tmp_path / "m.parquet"), "--probe"]) == 0
    assert "probe: 3 videos open and decode" in capsys.readouterr().out
