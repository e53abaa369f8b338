"""One SynthVTT clip as data: the attribute vocabulary, the clip/object specs and how a clip is sampled.

A clip has one or two moving objects over a patterned background. An object has a shape, a colour, a
size and a motion (direction + speed); its straight path stays inside the frame. Everything here is a
function of the random generator handed in, so the dataset built on it is reproducible.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

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
# Sampling a clip


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

