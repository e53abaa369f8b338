"""SynthVTT's pretraining corpus: deterministic, disjoint from the benchmark's test pairs, still
scenes with appearance-only captions (pure; small corpora)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from raytrain.cli import main
from raytrain.data.manifest import load_manifest, read_manifest_metadata
from raytrain.data.synth import held_out_pairs
from raytrain.data.synth_captions import _MOVE, _MOVING
from raytrain.data.synth_pretrain import generate_synth_pretrain, pretrain_specs
from raytrain.data.synth_render import render_frames


def _rows(manifest):
    return [(r.video_id, r.split, tuple(r.captions)) for split in ("train", "test")
            for r in load_manifest(manifest, split=split)]


def test_same_seed_same_corpus_other_seed_differs(tmp_path):
    a = generate_synth_pretrain(tmp_path / "a", 12, seed=4)
    b = generate_synth_pretrain(tmp_path / "b", 12, seed=4)
    c = generate_synth_pretrain(tmp_path / "c", 12, seed=5)
    assert _rows(a) == _rows(b) and _rows(a) != _rows(c)
    for vid, _, _ in _rows(a):
        rel = f"videos/{vid}.mp4"
        assert (a.parent / rel).read_bytes() == (b.parent / rel).read_bytes(), vid


@pytest.mark.parametrize("synthvtt_seed,fraction", [(0, 0.2), (3, 0.3)])
def test_no_object_shows_a_test_pair_of_synthvtt(synthvtt_seed, fraction):
    held = held_out_pairs(fraction, synthvtt_seed)
    specs = pretrain_specs(300, seed=1, held=held)
    seen = {o.pair for spec, _ in specs for o in spec.objects}
    assert not seen & set(held)
    assert len(seen) == 30 - len(held)  # and every training pair is taught


def test_scenes_are_still_and_captions_name_no_motion():
    motion = {w for phrases in (*_MOVE.values(), *_MOVING.values()) for p in phrases for w in p.split()[-1:]}
    motion |= {"slowly", "quickly", "rapidly", "swiftly", "moving", "moves"}
    for spec, captions in pretrain_specs(40, seed=2, held=held_out_pairs(0.2, 0)):
        frames = render_frames(spec)
        assert len(frames) == 4 and all(np.array_equal(frames[0], f) for f in frames[1:])
        for text in captions:
            assert not set(text.split()) & motion, text
            for o in spec.objects:
                assert o.colour in text and o.shape in text, text


def test_synth_command_writes_the_corpus(tmp_path, capsys):
    out = tmp_path / "pre"
    assert main(["synth", "--pretrain-corpus", "--out", str(out), "--num-videos", "20", "--seed", "1",
                 "--synthvtt-seed", "7"]) == 0
    meta = read_manifest_metadata(out / "manifest.parquet")
    assert meta["dataset"] == "synthvtt-pretrain" and meta["synthvtt_seed"] == 7
    assert [tuple(p) for p in meta["excluded_pairs"]] == held_out_pairs(0.2, 7)
    assert len(json.loads((out / "attributes.json").read_text())) == 20
    assert len(load_manifest(out / "manifest.parquet", split="test")) == 1
    assert "pretraining corpus" in capsys.readouterr().out
