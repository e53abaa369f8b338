import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from raytrain.data.manifest import ManifestError, load_manifest, read_manifest_metadata, write_manifest


def rows(tmp_path, n=3):
    (tmp_path / "videos").mkdir(exist_ok=True)
    out = []
    for i in range(n):
        (tmp_path / "videos" / f"v{i}.mp4").write_bytes(b"x")
        out.append({"video_id": f"v{i}", "path": f"videos/v{i}.mp4", "captions": [f"cap {i}", "other"],
                    "split": "train" if i else "test"})
    return out


def test_round_trip_and_relative_paths(tmp_path):
    path = write_manifest(rows(tmp_path), tmp_path / "manifest.parquet", metadata={"source": "t"})
    loaded = load_manifest(path)
    assert [r.video_id for r in loaded] == ["v0", "v1", "v2"]
    assert loaded[1].path == str(tmp_path / "videos" / "v1.mp4")
    assert loaded[0].captions == ("cap 0", "other") and loaded[0].start_s is None
    assert [r.video_id for r in load_manifest(path, split="train")] == ["v1", "v2"]
    assert read_manifest_metadata(path) == {"source": "t"}


def test_missing_file_names_row_and_file(tmp_path):
    r = rows(tmp_path)
    (tmp_path / "videos" / "v2.mp4").unlink()
    path = write_manifest(r, tmp_path / "manifest.parquet")
    with pytest.raises(ManifestError, match=r"manifest.parquet row 2: video 'videos/v2.mp4' not found"):
        load_manifest(path)


def test_empty_captions(tmp_path):
    r = rows(tmp_path)
    r[1]["captions"] = []
    with pytest.raises(ManifestError, match="row 1: video 'v1' has no captions"):
        load_manifest(write_manifest(r, tmp_path / "m.parquet"))


def test_missing_column(tmp_path):
    table = pa.table({"video_id": ["a"], "path": ["a.mp4"], "split": ["train"]})
    pq.write_table(table, tmp_path / "m.parquet")
    with pytest.raises(ManifestError, match=r"lacks required column\(s\) \['captions'\]"):
        load_manifest(tmp_path / "m.parquet")


def test_duplicate_ids_and_bad_segment(tmp_path):
    r = rows(tmp_path)
    r[2]["video_id"] = "v1"
    with pytest.raises(ManifestError, match="row 2: video_id 'v1' repeats row 1"):
        load_manifest(write_manifest(r, tmp_path / "m.parquet"))
    r = rows(tmp_path)
    r[0].update(start_s=5.0, end_s=2.0)
    with pytest.raises(ManifestError, match="row 0: video 'v0' end_s 2.0 must be > start_s 5.0"):
        load_manifest(write_manifest(r, tmp_path / "m.parquet"))


def test_not_parquet_and_absent(tmp_path):
    (tmp_path / "m.parquet").write_text("not parquet")
    with pytest.raises(ManifestError, match="not a readable Parquet"):
        load_manifest(tmp_path / "m.parquet")
    with pytest.raises(ManifestError, match="not found"):
        load_manifest(tmp_path / "absent.parquet")


def test_unknown_split(tmp_path):
    path = write_manifest(rows(tmp_path), tmp_path / "m.parquet")
    with pytest.raises(ManifestError, match="no rows with split 'val'"):
        load_manifest(path, split="val")
