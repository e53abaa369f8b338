"""SynthVTT generation: split, held-out combinations, determinism, captions and the encoded clips."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from pathlib import Path

import av
import numpy as np
import pyarrow.parquet as pq
import pytest

from raytrain.data.manifest import load_manifest, read_manifest_metadata
from raytrain.data.synth import (
    COLOURS,
    DIRECTIONS,
    SHAPES,
    ClipSpec,
    ObjectSpec,
    describe,
    generate_synthvtt,
    held_out_pairs,
    load_attributes,
    main_synth,
    render_frames,
    sample_clip_spec,
)

N = 40
SEED = 3


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth")
    manifest = generate_synthvtt(out, num_videos=N, seed=SEED, test_fraction=0.2)
    return out, manifest


def _pairs(attrs: dict, split: str, primary_only: bool = True) -> set[tuple[str, str]]:
    out = set()
    for a in attrs.values():
        if a["split"] != split:
            continue
        objs = a["objects"][:1] if primary_only else a["objects"]
        out |= {(o["shape"], o["colour"]) for o in objs}
    return out


def test_manifest_layout_and_counts(synth):
    out, manifest = synth
    assert manifest == out / "manifest.parquet"
    rows = load_manifest(manifest)
    assert len(rows) == N
    assert len({r.video_id for r in rows}) == N
    raw = pq.read_table(manifest).to_pylist()
    for rec in raw:
        assert rec["path"] == f"videos/{rec['video_id']}.mp4"
        assert (out / rec["path"]).is_file()
        assert rec["start_s"] is None and rec["end_s"] is None
    counts = Counter(r.split for r in rows)
    assert set(counts) == {"train", "test"}
    assert counts["train"] > 0 and counts["test"] > 0
    assert counts["test"] == round(0.2 * N)
    assert len(load_manifest(manifest, split="test")) == counts["test"]
    attrs = load_attributes(out)
    assert set(attrs) == {r.video_id for r in rows}
    assert all(attrs[r.video_id]["split"] == r.split for r in rows)
    meta = read_manifest_metadata(manifest)
    assert meta["dataset"] == "synthvtt" and meta["seed"] == SEED and meta["num_videos"] == N
    assert meta["split_counts"] == {"train": counts["train"], "test": counts["test"]}


def test_held_out_pairs_never_seen_in_train(synth):
    out, manifest = synth
    attrs = load_attributes(out)
    held = {tuple(p) for p in read_manifest_metadata(manifest)["held_out_pairs"]}
    assert held
    test_primary = _pairs(attrs, "test")
    train_all = _pairs(attrs, "train", primary_only=False)
    assert test_primary and test_primary <= held
    assert not (test_primary & train_all)
    assert not (held & train_all)   # not even as a second object of a training clip


def test_every_shape_and_colour_in_train(synth):
    out, _ = synth
    train_primary = _pairs(load_attributes(out), "train")
    assert {s for s, _ in train_primary} == set(SHAPES)
    assert {c for _, c in train_primary} == set(COLOURS)


def test_hard_negatives_exist(synth):
    """No single attribute identifies a clip: most clips share shape or colour with another clip."""
    out, _ = synth
    attrs = load_attributes(out)
    prim = {vid: a["objects"][0] for vid, a in attrs.items()}
    shape_counts = Counter(o["shape"] for o in prim.values())
    colour_counts = Counter(o["colour"] for o in prim.values())
    assert all(shape_counts[o["shape"]] > 1 for o in prim.values())
    assert all(colour_counts[o["colour"]] > 1 for o in prim.values())
    # same shape, other colour AND same colour, other shape, for most clips
    hard = 0
    for vid, o in prim.items():
        others = [p for v, p in prim.items() if v != vid]
        if any(p["shape"] == o["shape"] and p["colour"] != o["colour"] for p in others) and \
                any(p["colour"] == o["colour"] and p["shape"] != o["shape"] for p in others):
            hard += 1
    assert hard >= 0.8 * N
    # both one- and two-object scenes, several directions, backgrounds and sizes
    assert {len(a["objects"]) for a in attrs.values()} == {1, 2}
    assert len({o["direction"] for o in prim.values()}) == 4
    assert len({a["pattern"] for a in attrs.values()}) >= 3
    assert {o["size"] for o in prim.values()} == {"small", "large"}


def test_captions_mention_attributes(synth):
    out, manifest = synth
    attrs = load_attributes(out)
    for row in load_manifest(manifest):
        caps = row.captions
        assert 3 <= len(caps) <= 5
        assert len(set(caps)) == len(caps)
        objs = attrs[row.video_id]["objects"]
        for cap in caps:
            words = cap.replace(",", " ").replace(":", " ").split()
            for o in objs:
                assert o["colour"] in words and o["shape"] in words, (cap, o)
            # exactly the clip's shapes/colours, nothing else
            assert {w for w in words if w in SHAPES} == {o["shape"] for o in objs}
            assert {w for w in words if w in COLOURS} == {o["colour"] for o in objs}


def test_clips_are_h264_with_valid_length_and_fps(synth):
    out, manifest = synth
    attrs = load_attributes(out)
    fps_seen = set()
    for row in load_manifest(manifest):
        with av.open(row.path) as c:
            s = c.streams.video[0]
            assert s.codec_context.name == "h264"
            assert s.codec_context.pix_fmt == "yuv420p"
            assert (s.width, s.height) == (160, 120)
            fps = float(s.average_rate)
            n = sum(1 for _ in c.decode(s))
        assert 24 <= fps <= 30
        assert n == attrs[row.video_id]["num_frames"]
        assert 2.0 - 1e-6 <= n / fps <= 6.0 + 1e-6
        fps_seen.add(fps)
    assert len(fps_seen) > 1


def test_same_seed_same_dataset_other_seed_differs(tmp_path):
    a = generate_synthvtt(tmp_path / "a", num_videos=10, seed=7)
    b = generate_synthvtt(tmp_path / "b", num_videos=10, seed=7)
    c = generate_synthvtt(tmp_path / "c", num_videos=10, seed=8)
    rows = {k: pq.read_table(m).to_pylist() for k, m in {"a": a, "b": b, "c": c}.items()}
    assert rows["a"] == rows["b"]
    assert rows["a"] != rows["c"]
    assert [r["captions"] for r in rows["a"]] != [r["captions"] for r in rows["c"]]
    assert load_attributes(a.parent) == load_attributes(b.parent)
    assert load_attributes(a.parent) != load_attributes(c.parent)
    assert read_manifest_metadata(a) == read_manifest_metadata(b)
    # x264 runs single-threaded, so the bytes are reproducible too
    for r in rows["a"]:
        assert (a.parent / r["path"]).read_bytes() == (b.parent / r["path"]).read_bytes()


def test_dataset_is_pinned_for_its_seed(synth):
    """The same seed gives the same SynthVTT as before, not only the same as another run today.

    The hashes were taken from the generator before it was split into modules. A change here changes
    every SynthVTT dataset (and the figures measured on it): update them only on purpose.
    """
    out, manifest = synth
    attrs = load_attributes(out)
    rows = pq.read_table(manifest).to_pylist()
    described = hashlib.sha256(json.dumps([attrs, rows], sort_keys=True).encode()).hexdigest()
    assert described == "615013296c3f46ec45a32d2d94c8d4bd20c4f9eaa2d08ab78eff06ee3a16a1c7"
    drawn = hashlib.sha256()
    for vid in sorted(attrs)[:4]:
        drawn.update(render_frames(ClipSpec.from_dict(attrs[vid])).tobytes())
    assert drawn.hexdigest() == "78e27adaeee2daec4183466023f64ed1800b823236d0d850764e58cf1695368b"


@pytest.mark.parametrize("n", [4, 5, 7])
def test_small_datasets_have_both_splits(tmp_path, n):
    m = generate_synthvtt(tmp_path, num_videos=n, seed=n, test_fraction=0.2)
    splits = Counter(r.split for r in load_manifest(m))
    assert splits["train"] >= 1 and splits["test"] >= 1 and sum(splits.values()) == n


@pytest.mark.parametrize("frac", [0.05, 0.2, 0.5, 0.8])
def test_held_out_pairs_keep_every_attribute_trainable(frac):
    held = held_out_pairs(frac, seed=11)
    assert held == held_out_pairs(frac, seed=11)
    assert len(held) == len(set(held)) >= 1
    target = min(round(frac * 30), 30 - 6)   # every colour keeps >= 1 of its 5 pairs
    assert target - 2 <= len(held) <= target
    train = {(s, c) for s in SHAPES for c in COLOURS} - set(held)
    assert {s for s, _ in train} == set(SHAPES)
    assert {c for _, c in train} == set(COLOURS)


def test_bad_arguments():
    with pytest.raises(ValueError, match="test_fraction"):
        held_out_pairs(0.0, seed=0)
    with pytest.raises(ValueError, match="num_videos"):
        generate_synthvtt("/nonexistent/never", num_videos=0, seed=0)
    with pytest.raises(ValueError, match="even"):
        generate_synthvtt("/nonexistent/never", num_videos=1, seed=0, width=161)


def test_describe_two_objects_mentions_both():
    objs = (ObjectSpec("circle", "red", "small", "left", "quickly", 10, (100, 50), (40, 50)),
            ObjectSpec("triangle", "green", "large", "down", "slowly", 20, (40, 30), (40, 80)))
    spec = ClipSpec("v", 25, 100, 160, 120, "striped", "dark", objs)
    first_mentions = set()
    for seed in range(20):
        caps = describe(spec, np.random.default_rng(seed), num_captions=4)
        assert len(caps) == 4
        for cap in caps:
            assert "red circle" in cap and "green triangle" in cap
            first_mentions.add(cap.index("red") < cap.index("green"))
    assert first_mentions == {True, False}   # both object orders occur
    assert describe(spec, np.random.default_rng(1)) == describe(spec, np.random.default_rng(1))


@pytest.mark.parametrize("direction", DIRECTIONS)
def test_rendered_motion_follows_direction(direction):
    rng = np.random.default_rng(0)
    spec = sample_clip_spec("v", ("square", "red"), rng)
    obj = spec.objects[0]
    # one object, forced direction
    from raytrain.data.synth_scene import _place
    start, end = _place(direction, "quickly", obj.radius, spec.width, spec.height, rng)
    spec = ClipSpec("v", spec.fps, spec.num_frames, spec.width, spec.height, "plain", "dark",
                    (ObjectSpec("square", "red", obj.size, direction, "quickly", obj.radius, start, end),))
    frames = render_frames(spec)
    assert frames.shape == (spec.num_frames, spec.height, spec.width, 3) and frames.dtype == np.uint8

    def centroid(f):
        ys, xs = np.nonzero((f[..., 0] > 200) & (f[..., 1] < 80))
        assert len(xs) > 20
        return xs.mean(), ys.mean()

    (x0, y0), (x1, y1) = centroid(frames[0]), centroid(frames[-1])
    delta = {"left": x0 - x1, "right": x1 - x0, "up": y0 - y1, "down": y1 - y0}[direction]
    assert delta > 30


def test_main_synth_prints_summary(tmp_path, capsys):
    main_synth(str(tmp_path / "d"), num_videos=5, seed=1, test_fraction=0.2)
    line = capsys.readouterr().out.strip()
    assert "train" in line and "test" in line and "manifest.parquet" in line
    meta = read_manifest_metadata(tmp_path / "d" / "manifest.parquet")
    assert json.loads(json.dumps(meta)) == meta
    assert Path(tmp_path / "d" / "attributes.json").is_file()
