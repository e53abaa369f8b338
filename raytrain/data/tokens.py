"""Tokenising the planned captions of a train batch with the model's own tokenizer (set up once per
decode actor: building it reads the vocabulary). No Ray here.

``import open_clip`` runs its package ``__init__``, which imports every model (CoCa, timm towers,
torchvision ops, torch._dynamo): seconds per decode actor, for a tokenizer that needs none of it.
When open_clip picks its BPE ``SimpleTokenizer`` for the model (every CLIP-style model, raytrain's
``RT-*`` ones included), the driver says so in the :class:`~raytrain.data.spec.DecodeSpec`
(:func:`simple_tokenizer_kwargs`, decided there by open_clip itself) and the actor loads only
``open_clip/tokenizer.py`` (:func:`open_clip_tokenizer_module`): the same code and vocabulary, so the
same ids. Any other tokenizer (Hugging Face, SigLIP) is built through ``open_clip.get_tokenizer``.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np

_MODULE = "raytrain._open_clip_tokenizer"


def open_clip_tokenizer_module():
    """``open_clip.tokenizer``, without running ``open_clip/__init__`` (its model imports) unless
    open_clip is already imported. The file imports only ftfy, regex, numpy and torch."""
    if "open_clip" in sys.modules:
        return sys.modules["open_clip"].tokenizer
    if _MODULE not in sys.modules:
        package = importlib.util.find_spec("open_clip")  # finds the folder; imports nothing
        if package is None or not package.submodule_search_locations:
            raise ImportError("open_clip is not installed (pip install open_clip_torch)")
        path = Path(next(iter(package.submodule_search_locations))) / "tokenizer.py"
        spec = importlib.util.spec_from_file_location(_MODULE, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[_MODULE] = module
        try:
            spec.loader.exec_module(module)
        except BaseException:
            del sys.modules[_MODULE]
            raise
    return sys.modules[_MODULE]


@lru_cache(maxsize=16)
def simple_tokenizer_kwargs(arch: str, max_words: int) -> tuple[tuple[str, object], ...] | None:
    """Driver side: the ``SimpleTokenizer`` arguments that ``open_clip.get_tokenizer(arch)`` uses (the
    context length and the model config's ``tokenizer_kwargs``), or None when it picks another class."""
    import open_clip

    from raytrain.model.clip_video import get_tokenizer, register_tiny_configs

    if ":" in arch:  # hf-hub:... or local-dir:...: open_clip reads (or downloads) that model's config
        return None
    register_tiny_configs()
    text_cfg = (open_clip.get_model_config(arch) or {}).get("text_cfg", {})
    if text_cfg.get("hf_tokenizer_name") or "siglip" in arch.lower():
        return None  # a Hugging Face or SigLIP tokenizer: decided without building it (it may download)
    if type(get_tokenizer(arch, max_words)) is not open_clip.tokenizer.SimpleTokenizer:
        return None
    return (("context_length", max_words), *sorted(dict(text_cfg.get("tokenizer_kwargs", {})).items()))


class CaptionTokenizer:
    """``captions`` → ``(B, max_words)`` int64 token ids for ``arch``'s text tower. ``simple``: what
    :func:`simple_tokenizer_kwargs` returned (open_clip's SimpleTokenizer, loaded without the rest of
    open_clip); None: ``open_clip.get_tokenizer`` (imports all of open_clip)."""

    def __init__(self, arch: str, max_words: int, simple: Sequence[tuple[str, object]] | None = None):
        if simple is not None:
            self._tokenize = open_clip_tokenizer_module().SimpleTokenizer(**dict(simple))
        else:
            from raytrain.model.clip_video import get_tokenizer

            self._tokenize = get_tokenizer(arch, max_words)

    def __call__(self, captions: Sequence[str]) -> np.ndarray:
        return self._tokenize(list(captions)).numpy().astype(np.int64)
