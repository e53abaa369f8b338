"""SynthVTT captions: a small grammar of templates with synonyms for verbs, directions and speeds.

Every caption names the colour and shape of every object in the clip (the retrieval task needs them);
size, speed and background are worded in varied ways so that no caption is a fixed string per clip.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from raytrain.data.synth_scene import ClipSpec, ObjectSpec

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

