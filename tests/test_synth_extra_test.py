"""SynthVTT's ``extra_test``: a larger test split with the train split (and the base test clips)
byte for byte unchanged, deterministic, and still made of held-out pairs only."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest

from raytrain.data.manifest import read_manifest_metadata
from raytrain.data.synth import generate_synthvtt, held_out_pairs, load_attributes, main_synth


def test_extra_test_clips_leave_the_base_set_unchanged(tmp_path):
    base = generate_synthvtt(tmp_path / "base", num_videos=10, seed=5, width=64, height=64)
    grown = generate_synthvtt(tmp_path / "grown", num_videos=10, seed=5, width=64, height=64, extra_test=7)
    again = generate_synthvtt(tmp_path / "again", num_videos=10, seed=5, width=64, height=64, extra_test=7)
    rows_base, rows_grown = pq.read_table(base).to_pylist(), pq.read_table(grown).to_pylist()
    assert rows_grown[:10] == rows_base  # every base clip, train and test, as it was
    for r in rows_base:
        assert (base.parent / r["path"]).read_bytes() == (grown.parent / r["path"]).read_bytes()
    extra = rows_grown[10:]
    assert [r["video_id"] for r in extra] == [f"synth_{i:05d}" for i in range(10, 17)]
    assert {r["split"] for r in extra} == {"test"}
    held = {tuple(p) for p in held_out_pairs(0.2, 5)}
    attrs = load_attributes(grown.parent)
    assert {(attrs[r["video_id"]]["objects"][0]["shape"], attrs[r["video_id"]]["objects"][0]["colour"])
            for r in extra} <= held
    meta_base, meta_grown = read_manifest_metadata(base), read_manifest_metadata(grown)
    assert meta_grown["split_counts"]["train"] == meta_base["split_counts"]["train"]
    assert meta_grown["split_counts"]["test"] == meta_base["split_counts"]["test"] + 7
    assert meta_grown["extra_test"] == 7 and meta_grown["held_out_pairs"] == meta_base["held_out_pairs"]
    assert pq.read_table(again).to_pylist() == rows_grown  # deterministic
    for r in extra:
        assert (again.parent / r["path"]).read_bytes() == (grown.parent / r["path"]).read_bytes()


def test_extra_test_is_checked_and_counted(tmp_path, capsys):
    with pytest.raises(ValueError, match="extra_test"):
        generate_synthvtt(tmp_path / "bad", num_videos=4, seed=0, extra_test=-1)
    main_synth(str(tmp_path / "cli"), 5, 0, 0.2, extra_test=3)
    assert "8 clips (4 train, 4 test" in capsys.readouterr().out
