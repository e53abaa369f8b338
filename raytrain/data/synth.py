"""SynthVTT: a generated, compositional text-video retrieval benchmark of real H.264 clips.

Each clip is a 2-6 s scene (24-30 fps, ``width`` x ``height``) with one or two moving objects over a
patterned background. An object has a shape, a colour, a size and a motion (direction + speed); the
background has a pattern and a tone. Attributes are sampled independently, so most clips have hard
negatives that share their shape or colour, and retrieval has to combine attributes.

Each clip gets 3-5 captions from varied templates with synonyms for verbs, directions and speeds.

Split: a deterministic subset (about ``test_fraction``) of the (shape, colour) pairs is held out. Clips
whose *primary* (first) object has a held-out pair form the ``test`` split; all other clips are
``train`` and only ever show non-held-out pairs (for both objects), so the test set asks for
combinations never seen in training while every shape and every colour still appears in training.

The parts live beside this module: ``synth_scene`` (vocabulary, specs, sampling one clip),
``synth_captions`` (the caption grammar), ``synth_render`` (frames) and ``synth_h264`` (the mp4 writer);
this module holds the split and writes the dataset, and every public name is importable from here.

Layout of ``out_dir``: ``manifest.parquet`` (metadata key ``raytrain``: dataset info, held-out pairs),
``attributes.json`` (every clip's attributes) and ``videos/<video_id>.mp4``.

Everything is a function of ``(num_videos, seed, test_fraction, width, height, extra_test)``: the manifest,
attributes and captions are identical across runs, and so are the video bytes (x264 runs on one
thread).
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from raytrain.data.manifest import write_manifest
from raytrain.data.synth_captions import describe
from raytrain.data.synth_h264 import encode_h264
from raytrain.data.synth_render import render_frames
from raytrain.data.synth_scene import (
    COLOUR_RGB,
    COLOURS,
    DIRECTIONS,
    DURATION_RANGE_S,
    FPS_RANGE,
    PATTERNS,
    SHAPES,
    SIZES,
    SPEEDS,
    TONES,
    ClipSpec,
    ObjectSpec,
    sample_clip_spec,
)

__all__ = [
    "COLOURS",
    "COLOUR_RGB",
    "DIRECTIONS",
    "DURATION_RANGE_S",
    "FPS_RANGE",
    "PATTERNS",
    "SHAPES",
    "SIZES",
    "SPEEDS",
    "TONES",
    "ClipSpec",
    "ObjectSpec",
    "describe",
    "encode_h264",
    "generate_synthvtt",
    "held_out_pairs",
    "load_attributes",
    "main_synth",
    "render_frames",
    "sample_clip_spec",
]

_MANIFEST_NAME = "manifest.parquet"
_ATTRIBUTES_NAME = "attributes.json"


# --------------------------------------------------------------------------------------------------
# Held-out combinations and the split


def held_out_pairs(test_fraction: float, seed: int) -> list[tuple[str, str]]:
    """A deterministic set of about ``test_fraction`` of the (shape, colour) pairs, held out for test.

    Held-out pairs are spread over shapes and colours (no shape or colour is held out much more often
    than the others) and every shape and every colour keeps at least one training pair.
    """
    if not 0.0 < float(test_fraction) < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    all_pairs = [(s, c) for s in SHAPES for c in COLOURS]
    # each colour must keep one of its len(SHAPES) pairs, so at most len(all_pairs) - len(COLOURS) go
    k = min(max(1, round(test_fraction * len(all_pairs))), len(all_pairs) - len(COLOURS))
    rng = np.random.default_rng([int(seed), 0x5EED])
    order = [all_pairs[i] for i in rng.permutation(len(all_pairs))]
    cap_s = math.ceil(k / len(SHAPES))
    cap_c = math.ceil(k / len(COLOURS))
    per_shape = {s: 0 for s in SHAPES}
    per_colour = {c: 0 for c in COLOURS}
    chosen: list[tuple[str, str]] = []
    while len(chosen) < k:
        progressed = False
        for s, c in order:
            if len(chosen) >= k:
                break
            if (s, c) in chosen or per_shape[s] >= cap_s or per_colour[c] >= cap_c:
                continue
            # keep at least one training pair for every shape and colour
            if per_shape[s] + 1 >= len(COLOURS) or per_colour[c] + 1 >= len(SHAPES):
                continue
            chosen.append((s, c))
            per_shape[s] += 1
            per_colour[c] += 1
            progressed = True
        if not progressed:  # caps too tight for this order: loosen them (up to the hard limits)
            if cap_s >= len(COLOURS) and cap_c >= len(SHAPES):
                break
            cap_s += 1
            cap_c += 1
    return sorted(chosen, key=lambda p: (SHAPES.index(p[0]), COLOURS.index(p[1])))


def _covering_order(pairs: list[tuple[str, str]], rng: np.random.Generator) -> list[tuple[str, str]]:
    """``pairs`` reordered (randomly) so the first few cover every shape and colour among them."""
    shuffled = [pairs[i] for i in rng.permutation(len(pairs))]
    need_s = {s for s, _ in pairs}
    need_c = {c for _, c in pairs}
    head: list[tuple[str, str]] = []
    rest = list(shuffled)
    while need_s or need_c:
        best = max(rest, key=lambda p: (p[0] in need_s) + (p[1] in need_c))
        head.append(best)
        rest.remove(best)
        need_s.discard(best[0])
        need_c.discard(best[1])
    return head + rest


def _assign_primary_pairs(num_videos: int, test_fraction: float, seed: int,
                          held: list[tuple[str, str]]) -> list[tuple[tuple[str, str], str]]:
    """(primary pair, split) for each clip index: about ``test_fraction`` of the clips are test."""
    rng = np.random.default_rng([int(seed), 0xA551])
    if num_videos >= 2:
        n_test = min(max(1, round(test_fraction * num_videos)), num_videos - 1)
    else:
        n_test = 0
    n_train = num_videos - n_test
    held_set = set(held)
    train_pairs = [(s, c) for s in SHAPES for c in COLOURS if (s, c) not in held_set]
    train_cycle = _covering_order(train_pairs, rng)
    test_cycle = [held[i] for i in rng.permutation(len(held))]
    slots = [(train_cycle[i % len(train_cycle)], "train") for i in range(n_train)]
    slots += [(test_cycle[i % len(test_cycle)], "test") for i in range(n_test)]
    return [slots[i] for i in rng.permutation(num_videos)]


# --------------------------------------------------------------------------------------------------
# The dataset


def _extra_test_pairs(extra_test: int, seed: int, held: list[tuple[str, str]]) -> list[tuple[tuple[str, str], str]]:
    """(primary pair, "test") for ``extra_test`` more test clips: the held-out pairs in a cycle of their
    own random order, drawn from a stream the base plan never uses (so the base clips stay as they are)."""
    rng = np.random.default_rng([int(seed), 0x7E57])
    cycle = [held[i] for i in rng.permutation(len(held))]
    return [(cycle[i % len(cycle)], "test") for i in range(int(extra_test))]


def _build_specs(num_videos: int, seed: int, test_fraction: float, width: int, height: int, extra_test: int = 0):
    held = held_out_pairs(test_fraction, seed)
    held_set = set(held)
    train_pairs = [(s, c) for s in SHAPES for c in COLOURS if (s, c) not in held_set]
    all_pairs = [(s, c) for s in SHAPES for c in COLOURS]
    # the extra test clips come after the base ones (ids num_videos, ...): every clip's attributes and
    # captions are seeded by its index, so the base clips, train split included, do not change
    plan = _assign_primary_pairs(num_videos, test_fraction, seed, held) + _extra_test_pairs(extra_test, seed, held)
    specs: list[tuple[ClipSpec, str, list[str]]] = []
    for i, (pair, split) in enumerate(plan):
        video_id = f"synth_{i:05d}"
        attr_rng = np.random.default_rng([int(seed), i, 0])
        cap_rng = np.random.default_rng([int(seed), i, 1])
        spec = sample_clip_spec(video_id, pair, attr_rng,
                                secondary_pairs=train_pairs if split == "train" else all_pairs,
                                width=width, height=height)
        specs.append((spec, split, describe(spec, cap_rng)))
    return held, specs


def generate_synthvtt(out_dir: str | Path, num_videos: int, seed: int, test_fraction: float = 0.2,
                      width: int = 160, height: int = 120, extra_test: int = 0) -> Path:
    """Generate SynthVTT into ``out_dir`` and return the manifest path ``out_dir/manifest.parquet``.

    Clips go to ``out_dir/videos/<video_id>.mp4`` (manifest paths are relative, e.g.
    ``videos/synth_00017.mp4``), every clip's attributes to ``out_dir/attributes.json``; the manifest
    metadata holds the generation parameters and the held-out (shape, colour) pairs.

    ``extra_test`` adds that many test clips (held-out pairs, ids after the ``num_videos`` base clips)
    and changes nothing else: the train split, and the base test clips, are byte for byte those of
    ``extra_test=0``. This grows the test split (e.g. 400 clips + 240 → 320 test clips) without the
    fewer training pairs a larger ``test_fraction`` would hold out, or the other clips a larger
    ``num_videos`` would draw.
    """
    num_videos = int(num_videos)
    if num_videos <= 0:
        raise ValueError(f"num_videos must be > 0, got {num_videos}")
    if int(extra_test) < 0:
        raise ValueError(f"extra_test must be >= 0, got {extra_test}")
    if width <= 0 or height <= 0 or width % 2 or height % 2:
        raise ValueError(f"width and height must be positive and even (H.264 yuv420p), got {width}x{height}")
    if min(width, height) < 32:
        raise ValueError(f"frames of {width}x{height} are too small to draw on; use at least 32 px")
    out_dir = Path(out_dir)
    videos = out_dir / "videos"
    videos.mkdir(parents=True, exist_ok=True)
    held, specs = _build_specs(num_videos, int(seed), float(test_fraction), int(width), int(height), int(extra_test))
    rows, attributes = [], {}
    for spec, split, captions in specs:
        rel = f"videos/{spec.video_id}.mp4"
        encode_h264(render_frames(spec), out_dir / rel, spec.fps)
        rows.append({"video_id": spec.video_id, "path": rel, "captions": captions, "split": split,
                     "start_s": None, "end_s": None})
        attributes[spec.video_id] = {**spec.to_dict(), "split": split}
    attr_path = out_dir / _ATTRIBUTES_NAME
    tmp = attr_path.with_name(attr_path.name + ".tmp")
    tmp.write_text(json.dumps(attributes, indent=1, sort_keys=True))
    os.replace(tmp, attr_path)
    counts = {s: sum(1 for r in rows if r["split"] == s) for s in ("train", "test")}
    metadata = {
        "dataset": "synthvtt",
        "version": 1,
        "seed": int(seed),
        "num_videos": num_videos,
        "test_fraction": float(test_fraction),
        "extra_test": int(extra_test),
        "width": int(width),
        "height": int(height),
        "held_out_pairs": [list(p) for p in held],
        "split_counts": counts,
        "attributes_file": _ATTRIBUTES_NAME,
        "vocabulary": {"shapes": list(SHAPES), "colours": list(COLOURS), "sizes": list(SIZES),
                       "directions": list(DIRECTIONS), "speeds": list(SPEEDS),
                       "patterns": list(PATTERNS), "tones": list(TONES)},
    }
    return write_manifest(rows, out_dir / _MANIFEST_NAME, metadata=metadata)


def load_attributes(out_dir: str | Path) -> dict[str, dict[str, Any]]:
    """The per-clip attributes written by :func:`generate_synthvtt` (``video_id`` -> dict)."""
    return json.loads((Path(out_dir) / _ATTRIBUTES_NAME).read_text())


def main_synth(out: str, num_videos: int, seed: int, test_fraction: float = 0.2, extra_test: int = 0) -> None:
    """CLI entry: generate SynthVTT and print a one-line summary."""
    t0 = time.perf_counter()
    manifest = generate_synthvtt(out, num_videos, seed, test_fraction, extra_test=extra_test)
    from raytrain.data.manifest import read_manifest_metadata

    meta = read_manifest_metadata(manifest)
    counts = meta.get("split_counts", {})
    print(f"SynthVTT: {num_videos + extra_test} clips ({counts.get('train', 0)} train, {counts.get('test', 0)} test; "
          f"{len(meta.get('held_out_pairs', []))} (shape, colour) pairs held out for test), seed {seed}, "
          f"{time.perf_counter() - t0:.1f} s -> {manifest}")
