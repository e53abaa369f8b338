"""Users' own data (``raytrain prepare --dataset csv|jsonl``): the readers without Ray, row-numbered
errors, grouping of a clip's rows, the hash split, the manifest they write, and the command."""

import hashlib
import json
import random

import pytest

from raytrain.cli import main
from raytrain.data.annotations import AnnotationError, prepare
from raytrain.data.annotations.own import (
    default_split,
    group_clips,
    hash_fraction,
    read_csv_records,
    read_jsonl_records,
    read_own,
)
from raytrain.data.manifest import load_manifest, read_manifest_metadata


@pytest.fixture
def videos(tmp_path):
    root = tmp_path / "videos"
    for name in ("a.mp4", "b.mp4", "sub/c.avi", "a.avi"):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(b"\0")
    return root


def _csv(tmp_path, text, name="annotations.csv"):
    path = tmp_path / name
    path.write_text(text)
    return path


def _jsonl(tmp_path, objs, name="annotations.jsonl"):
    path = tmp_path / name
    path.write_text("\n".join(o if isinstance(o, str) else json.dumps(o) for o in objs) + "\n")
    return path


def test_csv_rows_of_a_clip_are_grouped_in_file_order(tmp_path, videos):
    ann = _csv(tmp_path, 'video,caption,split\na.mp4,a dog runs,train\nsub/c.avi,"red, then blue",test\n'
                         'a.mp4,  a dog   runs fast ,\nb.mp4,a cat,train\n')
    rows, missing = read_own("csv", ann, videos)
    assert missing == []
    assert [r["video_id"] for r in rows] == ["a", "sub/c", "b"]
    assert rows[0]["captions"] == ["a dog runs", "a dog runs fast"]  # whitespace collapsed, file order
    assert rows[1]["captions"] == ["red, then blue"]
    assert rows[0]["path"] == str((videos / "a.mp4").absolute())
    assert [r["split"] for r in rows] == ["train", "test", "train"]  # the empty cell keeps row 2's split
    assert all(r["start_s"] is None and r["end_s"] is None for r in rows)


def test_jsonl_takes_caption_or_captions_and_segments_make_separate_clips(tmp_path, videos):
    ann = _jsonl(tmp_path, [{"video": "a.mp4", "captions": ["one", "two"], "start": 0, "end": 4.5},
                            "",
                            {"video": "a.mp4", "caption": "three", "start": "4.5", "end": 9},
                            {"video": "a.mp4", "caption": "again", "start": 0, "end": 4.5, "split": "val"}])
    rows, _ = read_own("jsonl", ann, videos)
    assert [(r["video_id"], r["captions"], r["start_s"], r["end_s"]) for r in rows] == [
        ("a@0-4.5", ["one", "two", "again"], 0.0, 4.5), ("a@4.5-9", ["three"], 4.5, 9.0)]
    assert rows[0]["split"] == "val"  # given on a later row of the clip


def test_an_id_column_groups_rows_and_names_the_clip(tmp_path, videos):
    ann = _csv(tmp_path, "id,video,caption\nclip7,a.mp4,x\nclip8,a.mp4,y\nclip7,a.mp4,z\n")
    rows = group_clips(read_csv_records(ann), videos, 0.0)
    assert [(r["video_id"], r["captions"]) for r in rows] == [("clip7", ["x", "z"]), ("clip8", ["y"])]


@pytest.mark.parametrize("text, message", [
    ("video,caption\na.mp4,ok\nmissing.mp4,x\n", "annotations.csv row 3: video 'missing.mp4' not found under"),
    ("video,caption\na.mp4,ok\nb.mp4,   \n", "annotations.csv row 3: empty caption"),
    ("video,caption,start,end\na.mp4,x,-1,3\n", "annotations.csv row 2: start -1 must be >= 0"),
    ("video,caption,start,end\na.mp4,x,5,5\n", "annotations.csv row 2: end 5 must be > start 5"),
    ("video,caption,start,end\na.mp4,x,1s,3\n", "annotations.csv row 2: 'start' must be a number of seconds (got '1s')"),
    ("video,caption,end\na.mp4,x,nan\n", "row 2: 'end' must be a finite number"),
    ("id,video,caption\nk,a.mp4,x\nk,b.mp4,y\n", "annotations.csv row 3: clip id 'k' is 'b.mp4' here but 'a.mp4' at row 2"),
    ("video,caption\na.mp4,x\na.avi,y\n", "add an 'id' column"),  # both derive the id 'a'
    ("video,caption,split\na.mp4,x,train\na.mp4,y,test\n", "row 3: clip 'a' has split 'test' here but 'train' at row 2"),
    ("video,text\na.mp4,x\n", "annotations.csv row 1: unknown column(s) ['text']"),
    ("video,captions\na.mp4,x\n", "one caption per row in CSV"),
    ("video,split\na.mp4,train\n", "annotations.csv row 1: missing column(s) ['caption']"),
    ("video,caption\na.mp4,x,extra\n", "annotations.csv row 2: 3 fields, the header has 2"),
    ("video,caption\n", "no rows after the header"),
    ("video,caption\n,x\n", "annotations.csv row 2: no 'video'"),
])
def test_csv_errors_name_the_row(tmp_path, videos, text, message):
    with pytest.raises(AnnotationError) as err:
        read_own("csv", _csv(tmp_path, text), videos)
    assert message in str(err.value)


@pytest.mark.parametrize("line, message", [
    ('{"video": "a.mp4", "caption": "x", "captions": ["y"]}', "give 'caption' or 'captions', not both"),
    ('{"video": "a.mp4", "captions": []}', "'captions' must be a non-empty list"),
    ('{"video": "a.mp4", "captions": ["ok", ""]}', "captions[1]: empty caption"),
    ('{"video": "a.mp4"}', "no 'caption'"),
    ('{"video": "a.mp4", "caption": "x", "start": true}', "'start' must be a number"),
    ('{"video": "a.mp4", "caption": "x", "fps": 30}', "unknown field(s) ['fps']"),
    ('{"video": "a.mp4", "caption": "x"', "not valid JSON"),
    ('["a.mp4", "x"]', "expected a JSON object"),
])
def test_jsonl_errors_name_the_row(tmp_path, videos, line, message):
    ann = _jsonl(tmp_path, [{"video": "b.mp4", "caption": "fine"}, line])
    with pytest.raises(AnnotationError) as err:
        read_jsonl_records(ann)
    assert str(err.value).startswith("annotations.jsonl row 2") and message in str(err.value)


def test_missing_videos_are_counted_and_dropped_on_request(tmp_path, videos):
    ann = _csv(tmp_path, "video,caption\na.mp4,x\ngone1.mp4,y\ngone2.mp4,z\n")
    with pytest.raises(AnnotationError) as err:
        read_own("csv", ann, videos)
    assert "row 3: video 'gone1.mp4' not found" in str(err.value) and "2 of 3 clips have no file" in str(err.value)
    rows, missing = read_own("csv", ann, videos, allow_missing=True)
    assert [r["video_id"] for r in rows] == ["a"] and missing == ["gone1.mp4", "gone2.mp4"]


def test_the_default_split_is_the_documented_hash_of_the_clip_id():
    for clip_id in ("a", "clips/x@1.5-3", "video7020"):
        expected = int(hashlib.sha256(clip_id.encode()).hexdigest()[:16], 16) / 2**64
        assert hash_fraction(clip_id) == expected
        assert default_split(clip_id, 0.3) == ("test" if expected < 0.3 else "train")
    ids = [f"v{i}" for i in range(2000)]
    share = sum(default_split(i, 0.2) == "test" for i in ids) / len(ids)
    assert 0.17 < share < 0.23
    assert all(default_split(i, 0.0) == "train" for i in ids)


def test_the_split_depends_on_the_id_only_not_on_row_order_or_other_clips(tmp_path, videos):
    for name in [f"v{i}.mp4" for i in range(40)]:
        (videos / name).write_bytes(b"\0")
    lines = [f"v{i}.mp4,caption {i}" for i in range(40)]
    first = read_own("csv", _csv(tmp_path, "video,caption\n" + "\n".join(lines) + "\n"), videos, 0.5)[0]
    random.Random(0).shuffle(lines)
    again = read_own("csv", _csv(tmp_path, "video,caption\n" + "\n".join(lines[:25]) + "\n", "b.csv"), videos, 0.5)[0]
    split_of = {r["video_id"]: r["split"] for r in first}
    assert {r["video_id"]: r["split"] for r in again} == {r["video_id"]: split_of[r["video_id"]] for r in again}
    assert {"train", "test"} == set(split_of.values())


def test_prepare_writes_a_manifest_the_pipeline_loads(tmp_path, videos):
    ann = _jsonl(tmp_path, [{"video": "a.mp4", "captions": ["p", "q"], "split": "train"},
                            {"video": "sub/c.avi", "caption": "r", "start": 1, "end": 2, "split": "test"}])
    out = prepare("jsonl", ann, videos, tmp_path / "m" / "manifest.parquet", quiet=True)
    rows = load_manifest(out)
    assert [(r.video_id, r.captions, r.split, r.start_s, r.end_s) for r in rows] == [
        ("a", ("p", "q"), "train", None, None), ("sub/c@1-2", ("r",), "test", 1.0, 2.0)]
    meta = read_manifest_metadata(out)
    assert meta["dataset"] == "jsonl" and meta["split_counts"]["train"] == {"clips": 1, "captions": 2}
    with pytest.raises(AnnotationError, match="--split-protocol is for the benchmarks"):
        prepare("csv", ann, videos, tmp_path / "x.parquet", split_protocol="9k")
    with pytest.raises(AnnotationError, match="--test-fraction is for csv/jsonl"):
        prepare("msvd", tmp_path, videos, tmp_path / "x.parquet", test_fraction=0.1)


def test_prepare_command_on_a_csv(tmp_path, videos, capsys):
    ann = _csv(tmp_path, "video,caption\na.mp4,one\nb.mp4,two\na.mp4,three\n")
    out = tmp_path / "manifest.parquet"
    argv = ["prepare", "--dataset", "csv", "--annotations", str(ann), "--videos", str(videos), "--out", str(out)]
    assert main([*argv, "--test-fraction", "0"]) == 0
    assert "csv: wrote" in capsys.readouterr().out
    assert [(r.video_id, r.captions, r.split) for r in load_manifest(out)] == [
        ("a", ("one", "three"), "train"), ("b", ("two",), "train")]
    assert main([*argv, "--test-fraction", "1.5"]) == 2
    assert "--test-fraction must be in [0, 1)" in capsys.readouterr().err
    ann.write_text("video,caption\na.mp4,one\nnope.mp4,two\n")
    assert main(argv) == 2
    assert "annotations.csv row 3: video 'nope.mp4' not found under" in capsys.readouterr().err
