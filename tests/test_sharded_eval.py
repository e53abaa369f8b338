"""Tier 1: blocked retrieval metrics equal the full-matrix metrics exactly, ties and multi-caption included."""

import numpy as np
import pytest
import torch

from raytrain.eval.metrics import both_directions
from raytrain.eval.sharded import sharded_both_directions


def _full(text_emb, video_emb, owner):
    return both_directions((text_emb @ video_emb.T).numpy(), owner)


@pytest.mark.parametrize("block", [1, 7, 64, 1000])
def test_blocks_match_the_full_matrix_with_multi_caption(block):
    gen = torch.Generator().manual_seed(0)
    videos = torch.nn.functional.normalize(torch.randn(53, 16, generator=gen), dim=1)
    owner = np.repeat(np.arange(53), np.random.default_rng(0).integers(1, 5, size=53))
    texts = torch.nn.functional.normalize(videos[owner] + 0.8 * torch.randn(len(owner), 16, generator=gen), dim=1)
    assert sharded_both_directions(texts, videos, owner, block=block) == _full(texts, videos, owner)


def test_ties_are_scored_exactly_as_the_full_matrix_does():
    # Small integer embeddings: many exact ties in the scores, in both directions.
    rng = np.random.default_rng(1)
    videos = torch.tensor(rng.integers(-1, 2, size=(40, 3)), dtype=torch.float32)
    owner = np.concatenate([np.arange(40), rng.integers(0, 40, size=25)])
    texts = torch.tensor(rng.integers(-1, 2, size=(len(owner), 3)), dtype=torch.float32)
    assert sharded_both_directions(texts, videos, owner, block=6) == _full(texts, videos, owner)
    # A constant matrix scores exactly chance in both directions.
    flat = sharded_both_directions(torch.ones(40, 4), torch.ones(40, 4), np.arange(40), block=9)
    assert flat["t2v_R1"] == pytest.approx(100 / 40) and flat["t2v_MnR"] == pytest.approx(20.5)


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match="one entry per text"):
        sharded_both_directions(torch.ones(3, 2), torch.ones(3, 2), np.arange(2))
    with pytest.raises(ValueError, match="video 2 has no caption"):
        sharded_both_directions(torch.ones(2, 2), torch.ones(3, 2), np.arange(2))
    with pytest.raises(ValueError, match="outside"):
        sharded_both_directions(torch.ones(2, 2), torch.ones(2, 2), np.array([0, 5]))
