"""Retrieval examples (``eval.retrieval_examples``): a few test captions with the clips the model ranks
first, to look at in TensorBoard beside the R@K curves.

The evaluation fills a :class:`RetrievalExamples` with each example caption's top clips and scores
(the raw similarity, before any ``eval.rerank``); the pure functions here pick the captions, rank the
clips, and draw one picture per caption: its text, then the top clips' thumbnail strips left to right,
the right clip framed in green and the others in grey (a caption whose clip is not in the top k gets a
red bar under the strips).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

RIGHT, WRONG, MISSED = (40, 170, 60), (170, 170, 170), (210, 40, 40)


def example_queries(num_texts: int, count: int) -> list[int]:
    """``count`` caption indices spread evenly over ``num_texts`` (the same ones at every evaluation)."""
    if count <= 0 or num_texts <= 0:
        return []
    return sorted({int(i) for i in np.linspace(0, num_texts - 1, num=min(count, num_texts)).round()})


def top_k(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` best gallery items of one query's ``scores`` (best first; ties by index) and their scores."""
    scores = np.asarray(scores, dtype=np.float64).ravel()
    order = np.lexsort((np.arange(scores.size), -scores))[:k]
    return order, scores[order]


@dataclass
class RetrievalExamples:
    """What ``evaluate_model`` fills: for each caption index of ``queries``, its top ``k`` clips."""
    queries: list[int]
    k: int = 5
    found: dict[int, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)  # caption -> (clips, scores)

    def add(self, caption: int, scores: np.ndarray) -> None:
        self.found[caption] = top_k(scores, self.k)

    def table(self, texts: list[str], text_to_video: list[int], names: list[str]) -> str:
        """A markdown table: caption, the right clip's place in the top k, and the top clips with scores."""
        lines = ["| caption | right clip | top clips (score) |", "|---|---|---|"]
        for caption, (clips, scores) in sorted(self.found.items()):
            right = text_to_video[caption]
            place = next((f"#{i + 1}" for i, c in enumerate(clips) if c == right), f"not in top {self.k}")
            top = ", ".join(f"{names[c]} ({s:.3f})" for c, s in zip(clips, scores))
            lines.append(f"| {texts[caption]} | {names[right]} {place} | {top} |")
        return "\n".join(lines)


def example_sheet(caption: str, strips: list[np.ndarray], right: list[bool], border: int = 3,
                  gap: int = 4) -> np.ndarray:
    """One caption's picture, ``(H, W, 3) uint8``: the caption's text on top, then ``strips`` (each
    ``(h, w, 3)`` uint8, the same height) side by side, framed green where ``right`` and grey elsewhere;
    a red bar below when no strip is the right one."""
    from PIL import Image, ImageDraw

    if not strips or len(strips) != len(right):
        raise ValueError(f"example_sheet needs one 'right' flag per strip, got {len(strips)} strips, {len(right)} flags")
    h = max(s.shape[0] for s in strips)
    framed = []
    for strip, ok in zip(strips, right):
        box = np.full((h + 2 * border, strip.shape[1] + 2 * border, 3), RIGHT if ok else WRONG, np.uint8)
        box[border:border + strip.shape[0], border:border + strip.shape[1]] = strip
        framed.append(box)
    width = sum(b.shape[1] for b in framed) + gap * (len(framed) - 1)
    text_h, bar = 14, 0 if any(right) else 6
    out = np.full((text_h + framed[0].shape[0] + bar + (gap if bar else 0), width, 3), 255, np.uint8)
    x = 0
    for box in framed:
        out[text_h:text_h + box.shape[0], x:x + box.shape[1]] = box
        x += box.shape[1] + gap
    if bar:
        out[-bar:] = MISSED
    image = Image.fromarray(out)
    ImageDraw.Draw(image).text((2, 1), caption[: max(8, width // 6)], fill=(0, 0, 0))  # PIL's built-in font
    return np.asarray(image)
