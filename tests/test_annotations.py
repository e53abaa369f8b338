"""Benchmark readers: small annotation files in each real format -> manifest rows, protocols, errors."""

import csv
import json
import pickle

import numpy as np
import pytest

from raytrain.data.annotations import READERS, AnnotationError, VideoIndex, prepare, read_rows
from raytrain.data.annotations.common import strip_video_extension
from raytrain.data.manifest import load_manifest, read_manifest_metadata


def touch(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x00\x00\x00\x18ftypmp42")  # readers only check that the file exists
    return path


def by_id(rows):
    return {r.video_id: r for r in rows}


def run(tmp_path, dataset, ann, videos, protocol=None, allow_missing=False, name="m.parquet"):
    out = prepare(dataset, ann, videos, tmp_path / name, split_protocol=protocol,
                  allow_missing=allow_missing, quiet=True)
    return out, by_id(load_manifest(out))


# --------------------------------------------------------------------------------------------------
# MSR-VTT

MSRVTT_IDS = [f"video{i}" for i in range(10)]
TRAIN_9K = MSRVTT_IDS[:8]
TRAIN_7K = MSRVTT_IDS[:5]
TEST_1KA = MSRVTT_IDS[8:]


def write_csv(path, header, rows):
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)


def make_msrvtt(root, caps_per_video=3):
    ann = root / "msrvtt_ann"
    ann.mkdir()
    videos = [{"video_id": v, "category": 1, "url": "x", "split": "train" if i < 7 else
               ("validate" if i < 8 else "test"), "id": i} for i, v in enumerate(MSRVTT_IDS)]
    sentences = [{"video_id": v, "caption": f"{v} caption {k}", "sen_id": i * caps_per_video + k}
                 for i, v in enumerate(MSRVTT_IDS) for k in range(caps_per_video)]
    (ann / "MSRVTT_data.json").write_text(json.dumps({"info": {}, "videos": videos, "sentences": sentences}))
    write_csv(ann / "MSRVTT_train.9k.csv", ["video_id"], [[v] for v in TRAIN_9K])
    write_csv(ann / "MSRVTT_train.7k.csv", ["video_id"], [[v] for v in TRAIN_7K])
    write_csv(ann / "MSRVTT_JSFUSION_test.csv", ["key", "vid_key", "video_id", "sentence"],
              [[f"ret{i}", f"msr{v[5:]}", v, f"the 1k-A sentence of {v}"] for i, v in enumerate(TEST_1KA)])
    vids = root / "msrvtt_videos"
    for v in MSRVTT_IDS:
        touch(vids / f"{v}.mp4")
    return ann, vids


def test_msrvtt_9k_default(tmp_path):
    ann, vids = make_msrvtt(tmp_path)
    out, rows = run(tmp_path, "msrvtt", ann, vids)
    assert sorted(rows) == sorted(TRAIN_9K + TEST_1KA)
    train = [r for r in rows.values() if r.split == "train"]
    assert len(train) == 8 and all(len(r.captions) == 3 for r in train)
    assert rows["video0"].captions == ("video0 caption 0", "video0 caption 1", "video0 caption 2")
    for v in TEST_1KA:  # 1k-A: one caption per test video, taken from the JSFUSION csv
        assert rows[v].split == "test" and rows[v].captions == (f"the 1k-A sentence of {v}",)
    assert rows["video3"].path == str(vids / "video3.mp4") and rows["video3"].start_s is None
    meta = read_manifest_metadata(out)
    assert meta["dataset"] == "msrvtt" and meta["protocol"] == "9k" and meta["missing_videos"] == 0
    assert meta["split_counts"]["test"] == {"clips": 2, "captions": 2}


def test_msrvtt_7k_and_full(tmp_path):
    ann, vids = make_msrvtt(tmp_path)
    _, rows = run(tmp_path, "msrvtt", ann, vids, protocol="7k")
    assert sorted(v for v, r in rows.items() if r.split == "train") == TRAIN_7K
    assert sorted(v for v, r in rows.items() if r.split == "test") == TEST_1KA
    _, full = run(tmp_path, "msrvtt", ann, vids, protocol="full", name="full.parquet")
    assert [full[v].split for v in MSRVTT_IDS] == ["train"] * 7 + ["val", "test", "test"]
    assert all(len(r.captions) == 3 for r in full.values())  # every caption of a test video is a query


def test_unknown_protocol(tmp_path):
    ann, vids = make_msrvtt(tmp_path)
    with pytest.raises(AnnotationError, match=r"unknown split protocol '8k'.*'9k', '7k'"):
        prepare("msrvtt", ann, vids, tmp_path / "m.parquet", split_protocol="8k")
    with pytest.raises(AnnotationError, match="unknown dataset 'youcook'"):
        prepare("youcook", ann, vids, tmp_path / "m.parquet")


def test_msrvtt_truncated_json(tmp_path):
    ann, vids = make_msrvtt(tmp_path)
    path = ann / "MSRVTT_data.json"
    path.write_text(path.read_text()[:200])
    with pytest.raises(AnnotationError, match=r"MSRVTT_data\.json: not valid JSON at line 1"):
        prepare("msrvtt", ann, vids, tmp_path / "m.parquet")


def test_msrvtt_sentence_without_caption(tmp_path):
    ann, vids = make_msrvtt(tmp_path)
    path = ann / "MSRVTT_data.json"
    data = json.loads(path.read_text())
    del data["sentences"][17]["caption"]
    path.write_text(json.dumps(data))
    with pytest.raises(AnnotationError, match=r"MSRVTT_data\.json: sentences\[17\] has no 'caption'"):
        prepare("msrvtt", ann, vids, tmp_path / "m.parquet")


def test_msrvtt_csv_missing_column(tmp_path):
    ann, vids = make_msrvtt(tmp_path)
    write_csv(ann / "MSRVTT_JSFUSION_test.csv", ["key", "vid_key", "video_id"], [["ret0", "msr8", "video8"]])
    with pytest.raises(AnnotationError, match=r"MSRVTT_JSFUSION_test\.csv: missing column\(s\) \['sentence'\]"):
        prepare("msrvtt", ann, vids, tmp_path / "m.parquet")


def test_msrvtt_short_csv_line_and_unknown_train_id(tmp_path):
    ann, vids = make_msrvtt(tmp_path)
    (ann / "MSRVTT_JSFUSION_test.csv").write_text("key,vid_key,video_id,sentence\nret0,msr8,video8,ok\nret1,msr9\n")
    with pytest.raises(AnnotationError, match=r"MSRVTT_JSFUSION_test\.csv line 3: no value for column"):
        prepare("msrvtt", ann, vids, tmp_path / "m.parquet")
    (tmp_path / "b").mkdir()
    ann2, vids2 = make_msrvtt(tmp_path / "b")
    with open(ann2 / "MSRVTT_train.9k.csv", "a") as fh:
        fh.write("video77\n")
    with pytest.raises(AnnotationError, match=r"MSRVTT_train\.9k\.csv line 10: video 'video77' has no captions"):
        prepare("msrvtt", ann2, vids2, tmp_path / "m.parquet")


def test_missing_annotation_file_is_named(tmp_path):
    ann, vids = make_msrvtt(tmp_path)
    (ann / "MSRVTT_train.7k.csv").unlink()
    with pytest.raises(AnnotationError, match=r"annotation file 'MSRVTT_train\.7k\.csv' not found"):
        prepare("msrvtt", ann, vids, tmp_path / "m.parquet", split_protocol="7k")


# --------------------------------------------------------------------------------------------------
# Missing videos


def test_missing_videos_error_lists_ids(tmp_path):
    ann, vids = make_msrvtt(tmp_path)
    for v in ("video2", "video9"):
        (vids / f"{v}.mp4").unlink()
    with pytest.raises(AnnotationError) as exc:
        prepare("msrvtt", ann, vids, tmp_path / "m.parquet")
    msg = str(exc.value)
    assert "2 of 10 videos" in msg and "video2, video9" in msg and "--allow-missing" in msg
    assert "holds 8 video files" in msg
    assert not (tmp_path / "m.parquet").exists()


def test_allow_missing_drops_and_records(tmp_path, capsys):
    ann, vids = make_msrvtt(tmp_path)
    for v in ("video2", "video9"):
        (vids / f"{v}.mp4").unlink()
    out = prepare("msrvtt", ann, vids, tmp_path / "m.parquet", allow_missing=True)
    assert "2 missing videos dropped" in capsys.readouterr().out
    rows = by_id(load_manifest(out))
    assert "video2" not in rows and "video9" not in rows and len(rows) == 8
    meta = read_manifest_metadata(out)
    assert meta["missing_videos"] == 2 and meta["missing_examples"] == ["video2", "video9"]


def test_video_index_extensions_and_recursion(tmp_path):
    touch(tmp_path / "a.mp4")
    touch(tmp_path / "sub" / "b.WEBM")
    touch(tmp_path / "sub" / "deeper" / "c.mkv")
    touch(tmp_path / "sub" / "a.avi")  # same stem deeper down: the top-level file wins
    (tmp_path / "notes.txt").write_text("x")
    index = VideoIndex.build(tmp_path)
    assert len(index) == 3
    assert index.find("a") == str(tmp_path / "a.mp4")
    assert index.find("nope", "c") == str(tmp_path / "sub" / "deeper" / "c.mkv")
    assert index.find("notes") is None
    assert strip_video_extension("x@N00_1_ab.mov") == "x@N00_1_ab" and strip_video_extension("v.1") == "v.1"
    with pytest.raises(AnnotationError, match="videos folder .* not found"):
        VideoIndex.build(tmp_path / "absent")


# --------------------------------------------------------------------------------------------------
# MSVD

MSVD_SPLITS = {"train": ["-4wsuPCjDBc_5_15", "tr1_0_5"], "val": ["va1_2_9"], "test": ["te1_1_4", "te2_3_8"]}


def make_msvd(root, captions=None):
    ann = root / "msvd_ann"
    ann.mkdir()
    if captions is None:
        captions = {v: [["a", "clip", v, "caption", str(k)] for k in range(2 + i)]
                    for split in MSVD_SPLITS.values() for i, v in enumerate(split)}
    with open(ann / "raw-captions.pkl", "wb") as fh:
        pickle.dump(captions, fh)
    for split, ids in MSVD_SPLITS.items():
        (ann / f"{split}_list.txt").write_text("\n".join(ids) + "\n")
    vids = root / "YouTubeClips"
    for ids in MSVD_SPLITS.values():
        for v in ids:
            touch(vids / f"{v}.avi")
    return ann, vids


def test_msvd_multi_caption(tmp_path):
    ann, vids = make_msvd(tmp_path)
    _, rows = run(tmp_path, "msvd", ann, vids)
    assert {v: r.split for v, r in rows.items()} == {v: s for s, ids in MSVD_SPLITS.items() for v in ids}
    assert rows["-4wsuPCjDBc_5_15"].captions == ("a clip -4wsuPCjDBc_5_15 caption 0",
                                                 "a clip -4wsuPCjDBc_5_15 caption 1")
    # multi-caption test: every caption of every test video is a query
    assert [len(rows[v].captions) for v in MSVD_SPLITS["test"]] == [2, 3]
    assert rows["te2_3_8"].path.endswith("te2_3_8.avi")


def test_msvd_pickle_of_wrong_shape(tmp_path):
    ann, vids = make_msvd(tmp_path, captions=[["a", "man"]])
    with pytest.raises(AnnotationError, match=r"raw-captions\.pkl: expected a dict .* got list"):
        prepare("msvd", ann, vids, tmp_path / "m.parquet")
    bad = {v: [["ok"]] for ids in MSVD_SPLITS.values() for v in ids}
    bad["te1_1_4"] = "a man is cooking"
    with open(ann / "raw-captions.pkl", "wb") as fh:
        pickle.dump(bad, fh)
    with pytest.raises(AnnotationError, match=r"raw-captions\.pkl: video 'te1_1_4': expected a non-empty list"):
        prepare("msvd", ann, vids, tmp_path / "m.parquet")
    with open(ann / "raw-captions.pkl", "wb") as fh:
        pickle.dump({"x": np.arange(3)}, fh)  # objects are refused, not built
    with pytest.raises(AnnotationError, match=r"raw-captions\.pkl: not a pickle of a dict.*numpy"):
        prepare("msvd", ann, vids, tmp_path / "m.parquet")


def test_msvd_list_id_without_captions(tmp_path):
    ann, vids = make_msvd(tmp_path)
    (ann / "val_list.txt").write_text("va1_2_9\n\nghost_0_1\n")
    with pytest.raises(AnnotationError, match=r"val_list\.txt line 3: video 'ghost_0_1' has no captions"):
        prepare("msvd", ann, vids, tmp_path / "m.parquet")


# --------------------------------------------------------------------------------------------------
# DiDeMo

DIDEMO_VIDEO = "10015567@N08_3655084291_d8b58466fa.mov"


def make_didemo(root):
    ann = root / "didemo_ann"
    ann.mkdir()

    def moment(video, text, i):
        return {"video": video, "description": text, "times": [[i, i], [i, i + 1]], "annotation_id": i,
                "num_segments": 6, "dl_link": "x"}

    splits = {
        "train": [moment(DIDEMO_VIDEO, "a dog runs in. ", 0), moment("tr2.mp4", "first.", 1),
                  moment(DIDEMO_VIDEO, " the dog jumps.", 2), moment(DIDEMO_VIDEO, "it stops", 3)],
        "val": [moment("va1.m4v", "only one", 0)],
        "test": [moment("te1.mov", "b first", 0), moment("te2.mp4", "c", 1), moment("te1.mov", "b second", 2)],
    }
    for split, items in splits.items():
        (ann / f"{split}_data.json").write_text(json.dumps(items))
    vids = root / "didemo_videos"
    touch(vids / "10015567@N08_3655084291_d8b58466fa.mp4")  # transcoded: extension swapped
    touch(vids / "tr2.mp4")
    touch(vids / "va1.m4v.mp4")  # transcoded: extension appended
    touch(vids / "te1.mov")
    touch(vids / "te2.mp4")
    return ann, vids


def test_didemo_paragraph_concatenation(tmp_path):
    ann, vids = make_didemo(tmp_path)
    _, rows = run(tmp_path, "didemo", ann, vids)
    assert {v: r.split for v, r in rows.items()} == {DIDEMO_VIDEO: "train", "tr2.mp4": "train",
                                                     "va1.m4v": "val", "te1.mov": "test", "te2.mp4": "test"}
    assert rows[DIDEMO_VIDEO].captions == ("a dog runs in. the dog jumps. it stops",)
    assert rows["te1.mov"].captions == ("b first b second",)  # file order, one paragraph per video
    assert rows[DIDEMO_VIDEO].path.endswith("10015567@N08_3655084291_d8b58466fa.mp4")
    assert rows["va1.m4v"].path.endswith("va1.m4v.mp4")
    assert all(r.start_s is None and r.end_s is None for r in rows.values())


def test_didemo_bad_record(tmp_path):
    ann, vids = make_didemo(tmp_path)
    items = json.loads((ann / "val_data.json").read_text())
    items.append({"description": "no video key"})
    (ann / "val_data.json").write_text(json.dumps(items))
    with pytest.raises(AnnotationError, match=r"val_data\.json: \[1\] has no 'video'"):
        prepare("didemo", ann, vids, tmp_path / "m.parquet")


# --------------------------------------------------------------------------------------------------
# ActivityNet Captions


def make_activitynet(root):
    ann = root / "anet_ann"
    ann.mkdir()
    train = {"v_QOlSCBRmfWY": {"duration": 82.73, "timestamps": [[0.8, 19.9], [17.3, 60.8], [56.3, 79.4]],
                               "sentences": [" A young woman is seen standing in a room.",
                                             " She then begins to dance. ", "She ends by bowing."]},
             "v_ehGHCYKzyZ8": {"duration": 61.72, "timestamps": [[0, 10]], "sentences": ["One line."]}}
    val = {"v_uqiMw7tQ1Cc": {"duration": 55.15, "timestamps": [[0.3, 19.4], [19.4, 55.1]],
                             "sentences": ["A weight lifting tutorial is given.", " The coach shows how."]}}
    (ann / "train.json").write_text(json.dumps(train))
    (ann / "val_1.json").write_text(json.dumps(val))
    vids = root / "anet_videos"
    touch(vids / "v_QOlSCBRmfWY.mp4")
    touch(vids / "ehGHCYKzyZ8.mkv")  # named without the v_ prefix, like CLIP4Clip expects
    touch(vids / "uqiMw7tQ1Cc.webm")
    return ann, vids


def test_activitynet_paragraphs(tmp_path):
    ann, vids = make_activitynet(tmp_path)
    _, rows = run(tmp_path, "activitynet", ann, vids)
    assert {v: r.split for v, r in rows.items()} == {"v_QOlSCBRmfWY": "train", "v_ehGHCYKzyZ8": "train",
                                                     "v_uqiMw7tQ1Cc": "test"}
    assert rows["v_QOlSCBRmfWY"].captions == (
        "A young woman is seen standing in a room. She then begins to dance. She ends by bowing.",)
    assert rows["v_uqiMw7tQ1Cc"].captions == ("A weight lifting tutorial is given. The coach shows how.",)
    assert rows["v_ehGHCYKzyZ8"].path.endswith("ehGHCYKzyZ8.mkv")
    assert rows["v_uqiMw7tQ1Cc"].start_s is None


def test_activitynet_bad_record(tmp_path):
    ann, vids = make_activitynet(tmp_path)
    (ann / "val_1.json").write_text(json.dumps({"v_x": {"duration": 3.0, "timestamps": []}}))
    with pytest.raises(AnnotationError, match=r"val_1\.json: 'v_x' has no 'sentences' list"):
        prepare("activitynet", ann, vids, tmp_path / "m.parquet")
    (ann / "val_1.json").write_text('{"v_x": {"duration": 3.0, "sentences": ["a", ')
    with pytest.raises(AnnotationError, match=r"val_1\.json: not valid JSON"):
        prepare("activitynet", ann, vids, tmp_path / "m.parquet")


# --------------------------------------------------------------------------------------------------
# LSMDC

LSMDC_CLIPS = {
    "train": [("1004_Juno_00.00.32.849-00.00.35.458", "SOMEONE walks in."),
              ("1004_Juno_00.00.32.849-00.00.35.458", "She sits down."),
              ("1004_Juno_00.00.40.000-00.00.42.100", "He waves.")],
    "val": [("1010_TITANIC_00.01.02.000-00.01.05.000", "The ship sails.")],
    "test": [("3001_21_JUMP_STREET_00.00.05.000-00.00.07.500", "Two cops run."),
             ("3001_21_JUMP_STREET_00.00.09.000-00.00.11.000", "They stop.")],
}
LSMDC_FILES = {"train": "LSMDC16_annos_training.csv", "val": "LSMDC16_annos_val.csv",
               "test": "LSMDC16_challenge_1000_publictect.csv"}


def make_lsmdc(root):
    ann = root / "lsmdc_ann"
    ann.mkdir()
    for split, clips in LSMDC_CLIPS.items():
        lines = [f"{c}\t00.00.32.849\t00.00.35.458\t00.00.32.000\t00.00.36.000\t{s}" for c, s in clips]
        (ann / LSMDC_FILES[split]).write_text("\n".join(lines) + "\n")
    vids = root / "lsmdc_videos"
    for clips in LSMDC_CLIPS.values():
        for clip, _ in clips:
            movie = clip.rsplit("_", 1)[0]
            # one movie flat, the others in per-movie subfolders
            touch(vids / f"{clip}.avi" if movie.startswith("1010") else vids / movie / f"{clip}.avi")
    return ann, vids


def test_lsmdc_subfolders_and_grouping(tmp_path):
    ann, vids = make_lsmdc(tmp_path)
    _, rows = run(tmp_path, "lsmdc", ann, vids)
    juno = rows["1004_Juno_00.00.32.849-00.00.35.458"]
    assert juno.split == "train" and juno.captions == ("SOMEONE walks in.", "She sits down.")
    assert juno.path == str(vids / "1004_Juno" / "1004_Juno_00.00.32.849-00.00.35.458.avi")
    assert rows["1010_TITANIC_00.01.02.000-00.01.05.000"].path.startswith(str(vids / "1010_TITANIC_"))
    assert sorted(v for v, r in rows.items() if r.split == "test") == [c for c, _ in LSMDC_CLIPS["test"]]
    assert all(r.start_s is None and r.end_s is None for r in rows.values())


def test_lsmdc_wrong_field_count(tmp_path):
    ann, vids = make_lsmdc(tmp_path)
    with open(ann / "LSMDC16_annos_val.csv", "a") as fh:
        fh.write("1010_TITANIC_00.02.00.000-00.02.01.000\t00.02.00.000\tno more fields\n")
    with pytest.raises(AnnotationError,
                       match=r"LSMDC16_annos_val\.csv line 2: expected 6 tab-separated fields.*got 3"):
        prepare("lsmdc", ann, vids, tmp_path / "m.parquet")


# --------------------------------------------------------------------------------------------------
# Registry, CLI


def test_msrvtt_defaults_to_the_9k_protocol():
    assert READERS["msrvtt"].default_protocol == "9k"


def test_read_rows_marks_missing_paths(tmp_path):
    ann, vids = make_lsmdc(tmp_path)
    (vids / "1004_Juno" / "1004_Juno_00.00.40.000-00.00.42.100.avi").unlink()
    rows = {r["video_id"]: r for r in read_rows("lsmdc", ann, vids)}
    assert rows["1004_Juno_00.00.40.000-00.00.42.100"]["path"] is None
    assert rows["1004_Juno_00.00.32.849-00.00.35.458"]["path"] is not None


def test_cli_prepare(tmp_path, capsys):
    from raytrain.cli import main

    ann, vids = make_msvd(tmp_path)
    out = tmp_path / "data" / "msvd.parquet"
    rc = main(["prepare", "--dataset", "msvd", "--annotations", str(ann), "--videos", str(vids),
               "--out", str(out)])
    assert rc == 0 and out.is_file()
    assert "msvd (multi-caption): wrote" in capsys.readouterr().out
    assert len(load_manifest(out, split="test")) == 2

    rc = main(["prepare", "--dataset", "msvd", "--annotations", str(tmp_path / "nope"), "--videos", str(vids),
               "--out", str(tmp_path / "x.parquet")])
    err = capsys.readouterr().err
    assert rc == 2 and "raytrain prepare: error: annotations folder" in err and "nope" in err


# --------------------------------------------------------------------------------------------------
# A real segment of a longer file is honoured by the decoders


def test_segment_limits_decoded_frames(tmp_path):
    from raytrain.data.decode import make_decoder, plan_frame_indices
    from raytrain.data.synth import encode_h264

    fps, n = 10, 30
    levels = (np.arange(n) * 8).astype(np.uint8)  # frame i is a flat grey of level 8 * i
    frames = np.broadcast_to(levels[:, None, None, None], (n, 32, 48, 3)).copy()
    path = encode_h264(frames, tmp_path / "long.mp4", fps, crf=0)

    idx = plan_frame_indices(n, float(fps), 4, train=False, start_s=1.0, end_s=2.0)
    assert idx.min() >= 10 and idx.max() <= 19
    out = make_decoder("pyav").decode(str(path), num_frames=4, size=16, train=False, start_s=1.0, end_s=2.0)
    assert out.shape == (4, 16, 16, 3)
    got = out.reshape(4, -1).mean(axis=1)
    assert np.allclose(got, levels[idx], atol=4), (got, levels[idx])
    whole = make_decoder("pyav").decode(str(path), num_frames=4, size=16, train=False)
    assert whole.reshape(4, -1).mean(axis=1).max() > 19 * 8 + 4  # without the segment, later frames too
