"""Tokenising the planned captions of a train batch with the model's own tokenizer (set up once per
decode actor: building it reads the vocabulary). No Ray here."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


class CaptionTokenizer:
    """``captions`` → ``(B, max_words)`` int64 token ids for ``arch``'s text tower."""

    def __init__(self, arch: str, max_words: int):
        from raytrain.model.clip_video import get_tokenizer

        self._tokenize = get_tokenizer(arch, max_words)

    def __call__(self, captions: Sequence[str]) -> np.ndarray:
        return self._tokenize(list(captions)).numpy().astype(np.int64)
