import numpy as np
import pytest

from raytrain.eval.metrics import chance_metrics, retrieval_metrics, video_to_text_metrics


def test_perfect_diagonal():
    m = retrieval_metrics(np.eye(20))
    assert m == {"R1": 100.0, "R5": 100.0, "R10": 100.0, "MdR": 1.0, "MnR": 1.0}


def test_hand_checked_ranks():
    # text i's correct video is i. Ranks: text0 -> 1, text1 -> 3, text2 -> 2.
    sim = np.array([[0.9, 0.1, 0.2],
                    [0.8, 0.1, 0.5],
                    [0.1, 0.9, 0.3]])
    m = retrieval_metrics(sim)
    assert m["R1"] == pytest.approx(100 / 3)
    assert m["R5"] == 100.0
    assert m["MdR"] == 2.0
    assert m["MnR"] == pytest.approx(2.0)


def test_ties_are_expected_random_order():
    # Constant matrix: every text ties with all 10 videos -> exactly chance.
    m = retrieval_metrics(np.zeros((10, 10)))
    assert m["R1"] == pytest.approx(10.0)
    assert m["R5"] == pytest.approx(50.0)
    assert m["R10"] == pytest.approx(100.0)
    assert m["MnR"] == pytest.approx(5.5) and m["MdR"] == pytest.approx(5.5)
    # One wrong video ties with the right one, none above: R@1 = 1/2, rank 1.5.
    sim = np.array([[1.0, 1.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    m = retrieval_metrics(sim)
    assert m["R1"] == pytest.approx(100 * (0.5 + 1 + 1) / 3)
    assert m["MnR"] == pytest.approx((1.5 + 1 + 1) / 3)


def test_matches_chance():
    c = chance_metrics(10)
    m = retrieval_metrics(np.zeros((10, 10)))
    for k in ("R1", "R5", "R10", "MnR"):
        assert m[k] == pytest.approx(c[k])


def test_multi_caption_text_to_video():
    # 2 videos, 4 captions: captions 0,1 -> video 0; 2,3 -> video 1.
    owner = np.array([0, 0, 1, 1])
    sim = np.array([[0.9, 0.1],   # right
                    [0.2, 0.8],   # wrong: rank 2
                    [0.1, 0.7],   # right
                    [0.3, 0.6]])  # right
    m = retrieval_metrics(sim, owner)
    assert m["R1"] == pytest.approx(75.0)
    assert m["MnR"] == pytest.approx((1 + 2 + 1 + 1) / 4)


def test_multi_caption_video_to_text_any_caption_counts():
    owner = np.array([0, 0, 1, 1])
    # Video 0's column: best own caption (text 1, 0.8) is beaten only by text 2 (0.9): rank 2.
    # Video 1's column: own caption text 3 is the top: rank 1 (text 2's own 0.1 does not matter).
    sim = np.array([[0.1, 0.0],
                    [0.8, 0.2],
                    [0.9, 0.1],
                    [0.0, 0.95]])
    m = video_to_text_metrics(sim, owner)
    assert m["R1"] == pytest.approx(50.0)
    assert m["R5"] == pytest.approx(100.0)
    assert m["MnR"] == pytest.approx(1.5)


def test_video_to_text_ties_with_several_correct():
    # One video with 2 correct captions tied with 2 wrong ones at the top, among 4 texts.
    owner = np.array([0, 0, 1, 1])
    sim = np.ones((4, 2))
    m = video_to_text_metrics(sim, owner)
    # P(first of a random order of {c,c,w,w} is correct) = 1/2; expected first-correct rank = 1 + 2/3.
    assert m["R1"] == pytest.approx(50.0)
    assert m["MnR"] == pytest.approx(1 + 2 / 3)


def test_bad_inputs():
    with pytest.raises(ValueError, match="non-square|text_to_video"):
        retrieval_metrics(np.zeros((3, 2)))
    with pytest.raises(ValueError, match="outside"):
        retrieval_metrics(np.zeros((2, 2)), [0, 5])
    with pytest.raises(ValueError, match="NaN"):
        retrieval_metrics(np.array([[np.nan]]))
    with pytest.raises(ValueError, match="no caption"):
        video_to_text_metrics(np.zeros((2, 3)), [0, 1])


def test_random_matrix_agrees_with_argsort_reference():
    rng = np.random.default_rng(0)
    sim = rng.normal(size=(50, 40))
    owner = rng.integers(0, 40, size=50)
    m = retrieval_metrics(sim, owner)
    order = np.argsort(-sim, axis=1)
    ranks = np.array([np.where(order[i] == owner[i])[0][0] + 1 for i in range(50)])
    assert m["R1"] == pytest.approx(100 * np.mean(ranks <= 1))
    assert m["R5"] == pytest.approx(100 * np.mean(ranks <= 5))
    assert m["R10"] == pytest.approx(100 * np.mean(ranks <= 10))
    assert m["MdR"] == pytest.approx(np.median(ranks))
    assert m["MnR"] == pytest.approx(ranks.mean())
