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

Layout of ``out_dir``: ``manifest.parquet`` (metadata key ``raytrain``: dataset info, held-out pairs),
``attributes.json`` (every clip's attributes) and ``videos/<video_id>.mp4``.

Everything is a function of ``(num_videos, seed, test_fraction, width, height)``: the manifest,
attributes and captions are identical across runs, and so are the video bytes (x264 runs on one
thread).
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from raytrain.data.manifest import write_manifest

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

SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "cross", "diamond")
COLOUR_RGB: dict[str, tuple[int, int, int]] = {
    "red": (225, 35, 35),
    "green": (40, 200, 60),
    "blue": (45, 95, 240),
    "yellow": (240, 225, 40),
    "purple": (160, 55, 215),
    "orange": (250, 140, 20),
}
COLOURS: tuple[str, ...] = tuple(COLOUR_RGB)
SIZES: tuple[str, ...] = ("small", "large")
DIRECTIONS: tuple[str, ...] = ("left", "right", "up", "down")
SPEEDS: tuple[str, ...] = ("slowly", "quickly")
PATTERNS: tuple[str, ...] = ("plain", "striped", "checkered", "dotted")
TONES: dict[str, tuple[int, int, int]] = {"dark": (28, 28, 34), "grey": (100, 100, 106)}

FPS_RANGE = (24, 30)            # inclusive
DURATION_RANGE_S = (2.0, 6.0)   # inclusive
SECOND_OBJECT_PROB = 0.5
# object radius as a fraction of min(width, height), and the share of the free travel range covered
SIZE_RADIUS = {"small": 0.09, "large": 0.17}
SPEED_TRAVEL = {"slowly": 0.35, "quickly": 0.9}

_MANIFEST_NAME = "manifest.parquet"
_ATTRIBUTES_NAME = "attributes.json"


# --------------------------------------------------------------------------------------------------
# Specs


@dataclass(frozen=True)
class ObjectSpec:
    shape: str
    colour: str
    size: str
    direction: str
    speed: str
    radius: float = 0.0
    start_xy: tuple[float, float] = (0.0, 0.0)
    end_xy: tuple[float, float] = (0.0, 0.0)

    @property
    def pair(self) -> tuple[str, str]:
        return (self.shape, self.colour)


@dataclass(frozen=True)
class ClipSpec:
    video_id: str
    fps: int
    num_frames: int
    width: int
    height: int
    pattern: str
    tone: str
    objects: tuple[ObjectSpec, ...] = field(default_factory=tuple)

    @property
    def duration_s(self) -> float:
        return self.num_frames / self.fps

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["objects"] = [dict(o, start_xy=list(o["start_xy"]), end_xy=list(o["end_xy"]))
                        for o in d["objects"]]
        d["duration_s"] = self.duration_s
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ClipSpec:
        objs = tuple(ObjectSpec(**{**o, "start_xy": tuple(o["start_xy"]), "end_xy": tuple(o["end_xy"])})
                     for o in d["objects"])
        keys = ("video_id", "fps", "num_frames", "width", "height", "pattern", "tone")
        return cls(**{k: d[k] for k in keys}, objects=objs)


# --------------------------------------------------------------------------------------------------
# Held-out combinations and per-clip attribute sampling


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


def _place(direction: str, speed: str, radius: float, width: int, height: int,
           rng: np.random.Generator) -> tuple[tuple[float, float], tuple[float, float]]:
    """Start/end centres of a straight move in ``direction`` that stays inside the frame."""
    horizontal = direction in ("left", "right")
    along, across = (width, height) if horizontal else (height, width)
    lo, hi = radius, along - radius                 # centre range along the motion axis
    travel = SPEED_TRAVEL[speed] * (hi - lo)
    a0 = lo + rng.random() * (hi - lo - travel)
    a1 = a0 + travel
    if direction in ("left", "up"):
        a0, a1 = along - a0, along - a1
    c = radius + rng.random() * (across - 2 * radius)
    if horizontal:
        return (a0, c), (a1, c)
    return (c, a0), (c, a1)


def _min_gap(a: ObjectSpec, b: ObjectSpec, steps: int = 12) -> float:
    t = np.linspace(0.0, 1.0, steps)
    pa = np.array(a.start_xy)[None] + t[:, None] * (np.array(a.end_xy) - np.array(a.start_xy))[None]
    pb = np.array(b.start_xy)[None] + t[:, None] * (np.array(b.end_xy) - np.array(b.start_xy))[None]
    return float(np.min(np.linalg.norm(pa - pb, axis=1)) - (a.radius + b.radius))


def _sample_object(pair: tuple[str, str], width: int, height: int, rng: np.random.Generator) -> ObjectSpec:
    size = SIZES[rng.integers(len(SIZES))]
    direction = DIRECTIONS[rng.integers(len(DIRECTIONS))]
    speed = SPEEDS[rng.integers(len(SPEEDS))]
    radius = SIZE_RADIUS[size] * min(width, height)
    start, end = _place(direction, speed, radius, width, height, rng)
    return ObjectSpec(pair[0], pair[1], size, direction, speed, float(radius),
                      (float(start[0]), float(start[1])), (float(end[0]), float(end[1])))


def sample_clip_spec(video_id: str, primary_pair: tuple[str, str], rng: np.random.Generator,
                     secondary_pairs: Sequence[tuple[str, str]] | None = None,
                     width: int = 160, height: int = 120) -> ClipSpec:
    """Sample a clip: fps, length, background and 1-2 objects (the first has ``primary_pair``).

    A second object (probability 1/2) gets a (shape, colour) pair from ``secondary_pairs`` (default: all
    pairs) different from the primary one; its trajectory is re-drawn a few times to avoid overlaps.
    """
    if primary_pair[0] not in SHAPES or primary_pair[1] not in COLOURS:
        raise ValueError(f"unknown (shape, colour) pair {primary_pair}")
    fps = int(rng.integers(FPS_RANGE[0], FPS_RANGE[1] + 1))
    duration = DURATION_RANGE_S[0] + rng.random() * (DURATION_RANGE_S[1] - DURATION_RANGE_S[0])
    n_min = math.ceil(DURATION_RANGE_S[0] * fps)
    n_max = math.floor(DURATION_RANGE_S[1] * fps)
    num_frames = int(min(max(round(duration * fps), n_min), n_max))
    pattern = PATTERNS[rng.integers(len(PATTERNS))]
    tone = tuple(TONES)[rng.integers(len(TONES))]
    objects = [_sample_object(primary_pair, width, height, rng)]
    if rng.random() < SECOND_OBJECT_PROB:
        pool = list(secondary_pairs) if secondary_pairs is not None else \
            [(s, c) for s in SHAPES for c in COLOURS]
        pool = [p for p in pool if p != tuple(primary_pair)]
        pair = pool[rng.integers(len(pool))]
        best = None
        for _ in range(20):
            cand = _sample_object(pair, width, height, rng)
            gap = _min_gap(objects[0], cand)
            if best is None or gap > best[0]:
                best = (gap, cand)
            if gap > 0:
                break
        objects.append(best[1])
    return ClipSpec(video_id, fps, num_frames, int(width), int(height), pattern, tone, tuple(objects))


# --------------------------------------------------------------------------------------------------
# Captions

_MOVE = {
    "left": ["moves left", "travels to the left", "heads leftward", "slides to the left",
             "drifts left", "goes left"],
    "right": ["moves right", "travels to the right", "heads rightward", "slides to the right",
              "drifts right", "goes right"],
    "up": ["moves up", "rises", "drifts upwards", "travels upward", "heads up", "climbs upward"],
    "down": ["moves down", "sinks", "falls downward", "drifts downwards", "travels downward",
             "heads down"],
}
_MOVING = {
    "left": ["moving left", "travelling to the left", "heading leftward", "sliding to the left",
             "drifting left"],
    "right": ["moving right", "travelling to the right", "heading rightward", "sliding to the right",
              "drifting right"],
    "up": ["moving up", "rising", "drifting upwards", "travelling upward", "climbing upward"],
    "down": ["moving down", "sinking", "falling downward", "drifting downwards", "travelling downward"],
}
_ADVERB_PRE = {"slowly": ["slowly", "gently", "leisurely"], "quickly": ["quickly", "rapidly", "swiftly"]}
_ADVERB_POST = {"slowly": ["slowly", "at a slow pace", "without hurry"],
                "quickly": ["quickly", "at high speed", "fast"]}
_SIZE_WORDS = {"small": ["small", "little", "tiny"], "large": ["large", "big"]}
_BG_PREP = ["over", "on", "against", "in front of"]
_BG_NOUN = ["background", "backdrop"]
_PATTERN_WORDS = {"plain": ["plain", "solid"], "striped": ["striped"], "checkered": ["checkered"],
                  "dotted": ["dotted", "polka-dot"]}

_TEMPLATES_ONE = [
    "{np} {vp} {bg}",
    "{bgc}, {np} {vp}",
    "{np} {ving} {bg}",
    "there is {np} that {vp}",
    "{np} {vp}",
    "we see {np} {ving} {bg}",
    "a video of {np} {ving}",
]
_TEMPLATES_TWO = [
    "{np1} {ving1} and {np2} {ving2}",
    "{np1} {vp1} while {np2} {vp2}",
    "{bgc}, {np1} {vp1} and {np2} {vp2}",
    "two shapes {bg}: {np1} {ving1} and {np2} {ving2}",
    "{np1} {vp1} {bg}, and {np2} {vp2}",
    "we see {np1} {ving1} as {np2} {vp2}",
]


def _pick(options: Sequence[str], rng: np.random.Generator) -> str:
    return options[int(rng.integers(len(options)))]


def _with_article(phrase: str) -> str:
    return ("an " if phrase[:1] in "aeiou" else "a ") + phrase


def _noun_phrase(obj: ObjectSpec, rng: np.random.Generator) -> str:
    words = [obj.colour, obj.shape]
    if rng.random() < 0.8:  # size is usually, not always, mentioned
        words.insert(0, _pick(_SIZE_WORDS[obj.size], rng))
    return _with_article(" ".join(words))


def _verb_phrase(obj: ObjectSpec, rng: np.random.Generator, gerund: bool) -> str:
    verb = _pick((_MOVING if gerund else _MOVE)[obj.direction], rng)
    if rng.random() < 0.5:
        return f"{_pick(_ADVERB_PRE[obj.speed], rng)} {verb}"
    return f"{verb} {_pick(_ADVERB_POST[obj.speed], rng)}"


def _background(spec: ClipSpec, rng: np.random.Generator) -> str:
    words = _pick(_PATTERN_WORDS[spec.pattern], rng)
    if rng.random() < 0.5:
        words = f"{spec.tone} {words}"
    return f"{_with_article(words)} {_pick(_BG_NOUN, rng)}"


def describe(spec: ClipSpec, rng: np.random.Generator, num_captions: int | None = None) -> list[str]:
    """3-5 distinct captions for a clip (``num_captions`` overrides the count), from varied templates.

    Every caption names the colour and shape of every object; with two objects their order varies.
    """
    objs = list(spec.objects)
    if not objs:
        raise ValueError(f"clip '{spec.video_id}' has no objects to describe")
    templates = _TEMPLATES_ONE if len(objs) == 1 else _TEMPLATES_TWO
    n = int(rng.integers(3, 6)) if num_captions is None else int(num_captions)
    if n <= 0:
        raise ValueError(f"num_captions must be > 0, got {n}")
    chosen = [templates[i] for i in rng.permutation(len(templates))[:min(n, len(templates))]]
    while len(chosen) < n:
        chosen.append(_pick(templates, rng))
    captions: list[str] = []
    for tpl in chosen:
        for _attempt in range(10):
            order = objs if len(objs) == 1 or rng.random() < 0.5 else objs[::-1]
            bg = _background(spec, rng)
            fields = {"bg": f"{_pick(_BG_PREP, rng)} {bg}", "bgc": f"{_pick(['on', 'against'], rng)} {bg}"}
            for k, o in enumerate(order, start=1):
                suffix = "" if len(objs) == 1 else str(k)
                fields["np" + suffix] = _noun_phrase(o, rng)
                fields["vp" + suffix] = _verb_phrase(o, rng, gerund=False)
                fields["ving" + suffix] = _verb_phrase(o, rng, gerund=True)
            text = tpl.format(**fields)
            if text not in captions:
                break
        captions.append(text)
    return captions


# --------------------------------------------------------------------------------------------------
# Rendering and encoding


def _background_image(spec: ClipSpec) -> np.ndarray:
    h, w = spec.height, spec.width
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.array(TONES[spec.tone], dtype=np.int16)
    alt = base + 34
    if spec.pattern == "plain":
        mask = np.zeros((h, w), dtype=bool)
    elif spec.pattern == "striped":
        mask = ((xx + yy) // 8) % 2 == 1
    elif spec.pattern == "checkered":
        mask = ((xx // 12) + (yy // 12)) % 2 == 1
    elif spec.pattern == "dotted":
        mask = ((xx % 12) - 6) ** 2 + ((yy % 12) - 6) ** 2 <= 5
    else:
        raise ValueError(f"unknown background pattern '{spec.pattern}'")
    img = np.where(mask[..., None], alt, base)
    return img.astype(np.uint8)


def _shape_mask(shape: str, dx: np.ndarray, dy: np.ndarray, r: float) -> np.ndarray:
    adx, ady = np.abs(dx), np.abs(dy)
    if shape == "circle":
        return dx * dx + dy * dy <= r * r
    if shape == "square":
        return np.maximum(adx, ady) <= 0.85 * r
    if shape == "diamond":
        return adx + ady <= 1.15 * r
    if shape == "triangle":  # apex up, base at 0.7 r below the centre
        return (dy >= -r) & (dy <= 0.7 * r) & (adx <= (dy + r) * (1.0 / 1.7))
    if shape == "cross":
        arm = 0.3 * r
        return ((adx <= r) & (ady <= arm)) | ((ady <= r) & (adx <= arm))
    raise ValueError(f"unknown shape '{shape}'")


def render_frames(spec: ClipSpec) -> np.ndarray:
    """The clip's frames, ``(num_frames, height, width, 3)`` uint8 RGB (objects drawn in order)."""
    t_count, h, w = spec.num_frames, spec.height, spec.width
    frames = np.broadcast_to(_background_image(spec), (t_count, h, w, 3)).copy()
    ys = np.arange(h, dtype=np.float32)[None, :, None] + 0.5
    xs = np.arange(w, dtype=np.float32)[None, None, :] + 0.5
    p = np.linspace(0.0, 1.0, t_count, dtype=np.float32) if t_count > 1 else np.zeros(1, np.float32)
    for obj in spec.objects:
        cx = obj.start_xy[0] + p * (obj.end_xy[0] - obj.start_xy[0])
        cy = obj.start_xy[1] + p * (obj.end_xy[1] - obj.start_xy[1])
        mask = _shape_mask(obj.shape, xs - cx[:, None, None], ys - cy[:, None, None], obj.radius)
        frames[mask] = np.array(COLOUR_RGB[obj.colour], dtype=np.uint8)
    return frames


def encode_h264(frames: np.ndarray, path: str | os.PathLike, fps: int, crf: int = 23,
                preset: str = "ultrafast") -> Path:
    """Write ``(T, H, W, 3)`` uint8 RGB frames as an H.264 (yuv420p) mp4 with PyAV, single-threaded.

    H and W must be even. The file is written next to ``path`` and renamed into place.
    """
    import av

    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"encode_h264 expects (T, H, W, 3) uint8 frames, got {frames.shape} {frames.dtype}")
    t_count, h, w, _ = frames.shape
    if t_count == 0 or h % 2 or w % 2:
        raise ValueError(f"encode_h264 needs >= 1 frame and an even frame size, got {t_count}x{h}x{w}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with av.open(str(tmp), "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=int(fps))
        stream.width, stream.height = w, h
        stream.pix_fmt = "yuv420p"
        stream.thread_count = 1
        stream.options = {"crf": str(crf), "preset": preset, "threads": "1"}
        for arr in frames:
            frame = av.VideoFrame.from_ndarray(arr, format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():  # flush the encoder
            container.mux(packet)
    os.replace(tmp, path)
    return path


# --------------------------------------------------------------------------------------------------
# The dataset


def _build_specs(num_videos: int, seed: int, test_fraction: float, width: int, height: int):
    held = held_out_pairs(test_fraction, seed)
    held_set = set(held)
    train_pairs = [(s, c) for s in SHAPES for c in COLOURS if (s, c) not in held_set]
    all_pairs = [(s, c) for s in SHAPES for c in COLOURS]
    plan = _assign_primary_pairs(num_videos, test_fraction, seed, held)
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
                      width: int = 160, height: int = 120) -> Path:
    """Generate SynthVTT into ``out_dir`` and return the manifest path ``out_dir/manifest.parquet``.

    Clips go to ``out_dir/videos/<video_id>.mp4`` (manifest paths are relative, e.g.
    ``videos/synth_00017.mp4``), every clip's attributes to ``out_dir/attributes.json``; the manifest
    metadata holds the generation parameters and the held-out (shape, colour) pairs.
    """
    num_videos = int(num_videos)
    if num_videos <= 0:
        raise ValueError(f"num_videos must be > 0, got {num_videos}")
    if width <= 0 or height <= 0 or width % 2 or height % 2:
        raise ValueError(f"width and height must be positive and even (H.264 yuv420p), got {width}x{height}")
    if min(width, height) < 32:
        raise ValueError(f"frames of {width}x{height} are too small to draw on; use at least 32 px")
    out_dir = Path(out_dir)
    videos = out_dir / "videos"
    videos.mkdir(parents=True, exist_ok=True)
    held, specs = _build_specs(num_videos, int(seed), float(test_fraction), int(width), int(height))
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


def main_synth(out: str, num_videos: int, seed: int, test_fraction: float = 0.2) -> None:
    """CLI entry: generate SynthVTT and print a one-line summary."""
    t0 = time.perf_counter()
    manifest = generate_synthvtt(out, num_videos, seed, test_fraction)
    from raytrain.data.manifest import read_manifest_metadata

    meta = read_manifest_metadata(manifest)
    counts = meta.get("split_counts", {})
    print(f"SynthVTT: {num_videos} clips ({counts.get('train', 0)} train, {counts.get('test', 0)} test; "
          f"{len(meta.get('held_out_pairs', []))} (shape, colour) pairs held out for test), seed {seed}, "
          f"{time.perf_counter() - t0:.1f} s -> {manifest}")
