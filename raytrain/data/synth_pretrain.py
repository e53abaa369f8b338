"""SynthVTT's pretraining corpus: short *static* clip-caption pairs that teach what an image-text CLIP
knows (shapes, colours, sizes, backgrounds), for the pretrain → zero-shot → fine-tune protocol.

Each item is a still scene (1-2 objects that do not move, over a patterned background) written as a
short H.264 clip of ``frames`` identical frames: an image as a few-frame clip, so every decoder and
frame sampler of the video path reads it unchanged. Captions name colour, shape, usually the size and
often the background, and never a motion, a speed, a direction or an order: those are left for video
fine-tuning on SynthVTT itself.

Disjointness: every object's (shape, colour) pair is one of SynthVTT's *training* pairs, i.e. not in
``held_out_pairs(test_fraction, synthvtt_seed)``, so the corpus never shows a combination that the
benchmark's test split asks for. Everything is a function of the arguments (seeded generators).
Layout as SynthVTT's: ``manifest.parquet`` (all rows ``train`` except a small ``test`` split of the
same pairs, for the pretraining run's own evaluation), ``attributes.json``, ``videos/*.mp4``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from raytrain.data.manifest import write_manifest
from raytrain.data.synth_captions import _background, _noun_phrase, _pick
from raytrain.data.synth_h264 import encode_h264
from raytrain.data.synth_render import render_frames
from raytrain.data.synth_scene import COLOURS, SHAPES, ClipSpec, ObjectSpec, sample_clip_spec

_TEMPLATES_ONE = ["{np} {bg}", "a picture of {np} {bg}", "{np}", "{bgc}, {np}", "there is {np} {bg}",
                  "an image of {np}"]
_TEMPLATES_TWO = ["{np1} and {np2} {bg}", "a picture of {np1} and {np2}", "{bgc}, {np1} and {np2}",
                  "two shapes {bg}: {np1} and {np2}", "{np1} next to {np2}"]


def _still(spec: ClipSpec, frames: int) -> ClipSpec:
    """``spec`` with every object fixed at its start position, ``frames`` frames long."""
    objs = tuple(ObjectSpec(o.shape, o.colour, o.size, o.direction, o.speed, o.radius, o.start_xy, o.start_xy)
                 for o in spec.objects)
    return ClipSpec(spec.video_id, spec.fps, frames, spec.width, spec.height, spec.pattern, spec.tone, objs)


def describe_still(spec: ClipSpec, rng: np.random.Generator, num_captions: int = 3) -> list[str]:
    """Appearance-only captions: colour and shape of every object (size usually), background often."""
    objs = list(spec.objects)
    templates = _TEMPLATES_ONE if len(objs) == 1 else _TEMPLATES_TWO
    captions: list[str] = []
    for _ in range(num_captions * 4):
        if len(captions) == num_captions:
            break
        bg = _background(spec, rng)
        order = objs if rng.random() < 0.5 else objs[::-1]
        fields = {"bg": f"{_pick(['on', 'over', 'against'], rng)} {bg}", "bgc": f"on {bg}"}
        if len(objs) == 1:
            fields["np"] = _noun_phrase(objs[0], rng)
        else:
            fields.update(np1=_noun_phrase(order[0], rng), np2=_noun_phrase(order[1], rng))
        text = _pick(templates, rng).format(**fields)
        if text not in captions:
            captions.append(text)
    return captions


def pretrain_specs(num_items: int, seed: int, held: list[tuple[str, str]], frames: int = 4,
                   width: int = 160, height: int = 120) -> list[tuple[ClipSpec, list[str]]]:
    """The corpus's still scenes and captions; every object's pair avoids ``held``."""
    held_set = {tuple(p) for p in held}
    pairs = [(s, c) for s in SHAPES for c in COLOURS if (s, c) not in held_set]
    out = []
    for i in range(int(num_items)):
        rng = np.random.default_rng([int(seed), i, 0x9E7])
        primary = pairs[int(rng.integers(len(pairs)))]
        spec = sample_clip_spec(f"pre_{i:05d}", primary, rng, secondary_pairs=pairs, width=width, height=height)
        spec = _still(spec, frames)
        out.append((spec, describe_still(spec, rng)))
    return out


def generate_synth_pretrain(out_dir: str | Path, num_items: int, seed: int, synthvtt_seed: int = 0,
                            test_fraction: float = 0.2, frames: int = 4, eval_fraction: float = 0.05) -> Path:
    """Write the corpus into ``out_dir`` (disjoint from SynthVTT(``synthvtt_seed``, ``test_fraction``)'s
    test pairs) and return its manifest path."""
    from raytrain.data.synth import held_out_pairs

    if int(num_items) < 2:
        raise ValueError(f"num_items must be >= 2, got {num_items}")
    held = held_out_pairs(test_fraction, synthvtt_seed)
    out_dir = Path(out_dir)
    n_eval = max(1, round(eval_fraction * int(num_items)))
    rows, attributes = [], {}
    for i, (spec, captions) in enumerate(pretrain_specs(num_items, seed, held, frames)):
        rel = f"videos/{spec.video_id}.mp4"
        encode_h264(render_frames(spec), out_dir / rel, spec.fps)
        split = "test" if i < n_eval else "train"
        rows.append({"video_id": spec.video_id, "path": rel, "captions": captions, "split": split,
                     "start_s": None, "end_s": None})
        attributes[spec.video_id] = {**spec.to_dict(), "split": split}
    tmp = out_dir / "attributes.json.tmp"
    tmp.write_text(json.dumps(attributes, indent=1, sort_keys=True))
    os.replace(tmp, out_dir / "attributes.json")
    metadata = {"dataset": "synthvtt-pretrain", "version": 1, "seed": int(seed), "num_items": int(num_items),
                "frames": int(frames), "synthvtt_seed": int(synthvtt_seed), "test_fraction": float(test_fraction),
                "excluded_pairs": [list(p) for p in held], "attributes_file": "attributes.json"}
    return write_manifest(rows, out_dir / "manifest.parquet", metadata=metadata)
