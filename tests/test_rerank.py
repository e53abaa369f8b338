"""Tier 1: test-time re-ranking (DSL, inverted softmax, QB-Norm) against hand formulas, CLIP4Clip's
multi-sentence video→text protocol against a hand example, and blocked == full for every method,
both directions and both protocols on a non-square multi-caption matrix."""

import math

import numpy as np
import pytest
import torch

from raytrain.eval.metrics import (
    both_directions,
    clip4clip_video_to_text_metrics,
    group_max,
    retrieval_metrics,
    video_to_text,
    video_to_text_metrics,
)
from raytrain.eval.rerank import RerankParams, apply_rerank, column_stats, rerank_matrix
from raytrain.eval.sharded import Bank, sharded_both_directions, sharded_scores


def test_dual_softmax_matches_the_hand_formula_and_demotes_a_hub():
    # Two texts, two videos; video 0 is a "hub": the best video of both texts. Text 1 belongs to video 1.
    s = [[0.9, 0.1], [0.8, 0.7]]
    temp = 0.1
    expected = np.zeros((2, 2))
    for j in range(2):  # s' = s * exp(s/T) / sum over texts of exp(s/T), per video column
        z = sum(math.exp(s[i][j] / temp) for i in range(2))
        for i in range(2):
            expected[i][j] = s[i][j] * math.exp(s[i][j] / temp) / z
    out = rerank_matrix(RerankParams("dsl", dsl_temperature=temp), np.array(s))
    np.testing.assert_allclose(out, expected, rtol=1e-12)
    assert np.argmax(s[1]) == 0 and np.argmax(out[1]) == 1  # the hub loses text 1 to its own video
    assert retrieval_metrics(np.array(s))["R1"] == 50.0 and retrieval_metrics(out)["R1"] == 100.0


def test_inverted_softmax_is_the_log_of_the_hand_formula():
    s = np.array([[0.3, -0.2, 0.5], [0.1, 0.4, 0.45], [0.2, 0.0, 0.6], [-0.1, 0.3, 0.2]])
    temp = 0.25
    expected = np.zeros_like(s)
    for i in range(4):
        for j in range(3):
            expected[i, j] = math.exp(s[i, j] / temp) / sum(math.exp(s[q, j] / temp) for q in range(4))
    out = rerank_matrix(RerankParams("inverted_softmax", inverted_softmax_temperature=temp), s)
    np.testing.assert_allclose(np.exp(out), expected, rtol=1e-12)
    np.testing.assert_array_equal(np.argsort(-out, axis=1), np.argsort(-expected, axis=1))  # same ranking


def test_inverted_softmax_does_not_overflow_on_logit_scaled_scores():
    s = 100.0 * np.array([[0.9, 0.2], [0.3, 0.8]])  # logits: exp(s / 0.05) overflows float64
    out = rerank_matrix(RerankParams("inverted_softmax", inverted_softmax_temperature=0.05), s)
    assert np.isfinite(out).all() and (np.argmax(out, axis=1) == [0, 1]).all()


def test_qb_norm_normalises_only_rows_whose_top1_is_activated():
    beta = 2.0
    bank = np.array([[0.9, 0.1, 0.0], [0.7, 0.2, 0.3], [0.2, 0.8, 0.1]])  # top-1: videos 0, 0, 1
    test = np.array([[0.6, 0.5, 0.1],    # top-1 video 0 (activated): normalised
                     [0.1, 0.2, 0.9],    # top-1 video 2 (never a bank top-1): kept as is
                     [0.4, 0.45, 0.3]])  # top-1 video 1 (activated): normalised
    sums = [sum(math.exp(beta * bank[b, j]) for b in range(3)) for j in range(3)]
    expected = test.copy()
    for i in (0, 2):
        expected[i] = [math.exp(beta * test[i, j]) / sums[j] for j in range(3)]
    out = rerank_matrix(RerankParams("qb_norm", qb_norm_beta=beta, qb_norm_k=1), test, bank)
    np.testing.assert_allclose(np.exp(out[[0, 2]]), expected[[0, 2]], rtol=1e-12)
    np.testing.assert_array_equal(out[1], test[1])
    # Normalised by the bank's sums, row 0's best becomes video 1 (video 0 is a hub of the bank).
    assert np.argmax(expected[0]) == 1 and np.argmax(out[0]) == 1
    # With k = 2 the bank activates video 2 too (bank row 1's second best), so row 1 is normalised.
    out_k2 = rerank_matrix(RerankParams("qb_norm", qb_norm_beta=beta, qb_norm_k=2), test, bank)
    np.testing.assert_allclose(np.exp(out_k2[1]), [math.exp(beta * test[1, j]) / sums[j] for j in range(3)])


def test_none_is_the_identity_and_bad_inputs_are_named():
    s = np.random.default_rng(0).normal(size=(4, 3))
    np.testing.assert_array_equal(rerank_matrix(RerankParams(), s), s)
    with pytest.raises(ValueError, match="unknown re-ranking method 'dsm'"):
        RerankParams("dsm")
    with pytest.raises(ValueError, match="qb_norm needs the bank"):
        rerank_matrix(RerankParams("qb_norm"), s)
    with pytest.raises(ValueError, match=r"\(rows, 3\)"):
        column_stats(RerankParams("dsl"), [np.zeros((2, 4))], 3)
    with pytest.raises(ValueError, match="column statistics for 3"):
        apply_rerank(RerankParams("dsl"), None, s)


# The hand example of the two video→text protocols: 3 videos; captions 0, 1 of video 0, caption 2 of
# video 1, captions 3, 4 of video 2. Column u holds every caption's score against video u.
SIM = np.array([[0.5, 0.3, 0.7],
                [0.2, 0.1, 0.65],
                [0.1, 0.6, 0.2],
                [0.8, 0.2, 0.6],
                [0.9, 0.4, 0.1]])
OWNER = np.array([0, 0, 1, 2, 2])


def test_clip4clip_video_to_text_protocol_on_a_hand_example():
    # Video 0: own best 0.5; above it captions 3 and 4, both of video 2 -> raytrain rank 3 (two wrong
    # captions), clip4clip rank 2 (one wrong video). Video 1: own 0.6 is the top -> rank 1 in both.
    # Video 2: own best 0.6; above it captions 0 and 1, both of video 0 -> ranks 3 and 2.
    ours = video_to_text_metrics(SIM, OWNER)
    assert ours["R1"] == pytest.approx(100 / 3) and ours["R5"] == 100.0
    assert ours["MdR"] == 3.0 and ours["MnR"] == pytest.approx(7 / 3)
    c4c = clip4clip_video_to_text_metrics(SIM, OWNER)
    assert c4c["R1"] == pytest.approx(100 / 3) and c4c["MdR"] == 2.0 and c4c["MnR"] == pytest.approx(5 / 3)
    np.testing.assert_array_equal(group_max(SIM.T, OWNER, 3), [[0.5, 0.1, 0.9], [0.3, 0.6, 0.4], [0.7, 0.2, 0.6]])
    # Text→video is the same under both protocols; one caption per video makes v2t the same too.
    assert both_directions(SIM, OWNER, "clip4clip")["t2v_R1"] == both_directions(SIM, OWNER)["t2v_R1"]
    square = SIM[[0, 2, 3]]
    assert clip4clip_video_to_text_metrics(square) == video_to_text_metrics(square)
    with pytest.raises(ValueError, match="unknown video→text protocol 'c4c'"):
        video_to_text("c4c")


def test_clip4clip_protocol_blocked_equals_full_on_the_hand_example():
    for block in (1, 2, 5):
        got = sharded_scores(lambda a, b: torch.tensor(SIM[a:b]), lambda a, b: torch.tensor(SIM.T[a:b]), 3, OWNER,
                             block=block, v2t_protocol="clip4clip")
        assert got["v2t_MnR"] == pytest.approx(5 / 3) and got["t2v_R1"] == retrieval_metrics(SIM, OWNER)["R1"]


def _multi_caption_case(seed=0, num_videos=23, num_bank_texts=31, num_bank_videos=17):
    gen = torch.Generator().manual_seed(seed)
    videos = torch.nn.functional.normalize(torch.randn(num_videos, 8, generator=gen), dim=1)
    owner = np.repeat(np.arange(num_videos), np.random.default_rng(seed).integers(1, 5, size=num_videos))
    texts = torch.nn.functional.normalize(videos[owner] + 0.9 * torch.randn(len(owner), 8, generator=gen), dim=1)
    bank_t = torch.nn.functional.normalize(torch.randn(num_bank_texts, 8, generator=gen), dim=1)
    bank_v = torch.nn.functional.normalize(torch.randn(num_bank_videos, 8, generator=gen), dim=1)
    return texts, videos, owner, bank_t, bank_v


def _full(params, protocol, texts, videos, owner, bank_t, bank_v):
    sim = (texts @ videos.T).double().numpy()
    t2v = rerank_matrix(params, sim, (bank_t @ videos.T).double().numpy())
    v2t = rerank_matrix(params, sim.T, (bank_v @ texts.T).double().numpy())  # videos x texts
    out = {f"t2v_{k}": v for k, v in retrieval_metrics(t2v, owner).items()}
    out.update({f"v2t_{k}": v for k, v in video_to_text(protocol)(v2t.T, owner).items()})
    return out


PARAMS = [RerankParams("none"), RerankParams("dsl", dsl_temperature=0.05),
          RerankParams("inverted_softmax", inverted_softmax_temperature=0.1),
          RerankParams("qb_norm", qb_norm_beta=20.0, qb_norm_k=1), RerankParams("qb_norm", qb_norm_beta=5.0, qb_norm_k=3)]


@pytest.mark.parametrize("protocol", ["raytrain", "clip4clip"])
@pytest.mark.parametrize("params", PARAMS, ids=lambda p: f"{p.method}-{p.qb_norm_k}")
def test_blocked_equals_full_for_every_method_both_directions(params, protocol):
    texts, videos, owner, bank_t, bank_v = _multi_caption_case()
    assert len(owner) != len(videos)  # non-square: several captions per video
    full = _full(params, protocol, texts, videos, owner, bank_t, bank_v)
    for block in (1, 4, 9, 1000):
        got = sharded_both_directions(texts, videos, owner, block=block, v2t_protocol=protocol, rerank=params,
                                      bank_text_emb=bank_t, bank_video_emb=bank_v)
        assert got == pytest.approx(full, abs=1e-9), (block, got, full)


def test_reranking_changes_the_metrics_it_should():
    # A guard against a re-ranking that silently does nothing: on this case each method moves t2v.
    texts, videos, owner, bank_t, bank_v = _multi_caption_case(seed=3)
    plain = _full(RerankParams(), "raytrain", texts, videos, owner, bank_t, bank_v)
    for params in PARAMS[1:]:
        moved = _full(params, "raytrain", texts, videos, owner, bank_t, bank_v)
        assert moved["t2v_MnR"] != plain["t2v_MnR"], params.method


def test_qb_norm_without_a_bank_for_a_direction_is_named():
    texts, videos, owner, bank_t, _ = _multi_caption_case()
    with pytest.raises(ValueError, match="query bank for v2t"):
        sharded_both_directions(texts, videos, owner, rerank=RerankParams("qb_norm"), bank_text_emb=bank_t)
    bank = Bank(lambda a, b: (bank_t @ videos.T)[a:b], 0)
    with pytest.raises(ValueError, match="at least one bank row"):
        sharded_scores(lambda a, b: texts[a:b] @ videos.T, lambda a, b: videos[a:b] @ texts.T, len(videos), owner,
                       rerank=RerankParams("qb_norm"), banks={"t2v": bank, "v2t": bank})


# ---- config keys and the evaluation plumbing (no Ray) ----

@pytest.mark.parametrize(("override", "key"), [
    ("eval.rerank=dsm", "eval.rerank"), ("eval.v2t_protocol=c4c", "eval.v2t_protocol"),
    ("eval.dsl_temperature=0", "eval.dsl_temperature"),
    ("eval.inverted_softmax_temperature=-1", "eval.inverted_softmax_temperature"),
    ("eval.qb_norm_beta=0", "eval.qb_norm_beta"), ("eval.qb_norm_k=0", "eval.qb_norm_k"),
    ("eval.qb_norm_bank_size=0", "eval.qb_norm_bank_size"),
    ("eval.qb_norm_video_bank_size=0", "eval.qb_norm_video_bank_size"),
    ("eval.qb_norm_bank=5", "eval.qb_norm_bank"),
])
def test_bad_rerank_keys_are_config_errors_naming_the_key(override, key):
    from raytrain.config import ConfigError, load_config

    with pytest.raises(ConfigError, match=f"'{key}'"):
        load_config(None, [override])


def test_rerank_params_and_bank_rows_follow_the_config():
    from raytrain.config import load_config
    from raytrain.data.manifest import ClipRow
    from raytrain.eval.run import bank_rows, rerank_params

    cfg = load_config(None, ["eval.rerank=qb_norm", "eval.qb_norm_beta=7", "eval.qb_norm_k=2",
                             "eval.qb_norm_bank_size=5", "eval.qb_norm_video_bank_size=2"])
    assert rerank_params(cfg.eval) == RerankParams("qb_norm", 0.01, 0.05, 7.0, 2)
    rows = [ClipRow(f"v{i}", f"v{i}.mp4", tuple(f"caption {i}.{j}" for j in range(3)), "train") for i in range(4)]
    texts, clips = bank_rows(cfg.eval, rows)
    assert len(texts) == 5 == len(set(texts)) and len(clips) == 2 and len({c.path for c in clips}) == 2
    assert bank_rows(cfg.eval, rows) == (texts, clips)  # seeded: the same bank every evaluation
    everything = load_config(None, ["eval.qb_norm_bank_size=100", "eval.qb_norm_video_bank_size=100"]).eval
    assert bank_rows(everything, rows) == ([c for r in rows for c in r.captions], rows)  # all if fewer
    with pytest.raises(ValueError, match="train split has no clips"):
        bank_rows(cfg.eval, [])


class _DualEncoder(torch.nn.Module):
    """Frames (B, 1, 1, 1, 3) and tokens (B, 3) hold the embedding itself."""

    def encode_video(self, frames):
        return torch.nn.functional.normalize(frames.float().reshape(len(frames), 3), dim=1)

    def encode_text(self, tokens):
        return torch.nn.functional.normalize(tokens.float(), dim=1)


class _OwnSimilarity(_DualEncoder):
    """The same scores through a method's own similarity (the DMAE path of evaluate_model)."""

    def video_features(self, frames):
        return {"v": self.encode_video(frames)}

    def text_features(self, tokens):
        return {"t": self.encode_text(tokens)}

    def similarity(self, texts, videos):
        return texts["t"] @ videos["v"].T


def test_evaluate_model_embeds_the_bank_and_scores_like_the_sharded_function():
    from raytrain.eval.retrieval import evaluate_model

    rng = np.random.default_rng(5)
    owner = np.array([0, 0, 1, 2, 2, 2, 3, 4, 4])
    video = rng.normal(size=(5, 3))
    text = video[owner] + 0.7 * rng.normal(size=(len(owner), 3))
    bank_t, bank_v = rng.normal(size=(6, 3)), rng.normal(size=(4, 3))
    table = {f"t{i}": row for i, row in enumerate(np.concatenate([text, bank_t]))}

    def tokenize(names):
        return torch.tensor(np.stack([table[n] for n in names]))

    def batches(emb):
        frames = torch.tensor(emb).reshape(len(emb), 1, 1, 1, 3)
        return [{"frames": frames[i:i + 2], "video_index": torch.arange(i, min(i + 2, len(emb)))}
                for i in range(0, len(emb), 2)]

    names = [f"t{i}" for i in range(len(owner))]
    bank_names = [f"t{len(owner) + i}" for i in range(len(bank_t))]
    params = RerankParams("qb_norm", qb_norm_beta=10.0)
    norm = torch.nn.functional.normalize
    expected = sharded_both_directions(norm(torch.tensor(text), dim=1), norm(torch.tensor(video), dim=1), owner,
                                       v2t_protocol="clip4clip", rerank=params,
                                       bank_text_emb=norm(torch.tensor(bank_t), dim=1),
                                       bank_video_emb=norm(torch.tensor(bank_v), dim=1))
    for model in (_DualEncoder(), _OwnSimilarity()):
        got = evaluate_model(model, batches(video), names, owner, 5, tokenize, "cpu", text_batch_size=4, sim_block=2,
                             v2t_protocol="clip4clip", rerank=params, bank_texts=bank_names,
                             bank_batches=batches(bank_v), num_bank_videos=4)
        assert got["qb_norm_bank_texts"] == 6 and got["qb_norm_bank_videos"] == 4
        assert {k: got[k] for k in expected} == pytest.approx(expected)
    with pytest.raises(ValueError, match="needs bank_texts and bank_batches"):
        evaluate_model(_DualEncoder(), batches(video), names, owner, 5, tokenize, "cpu", rerank=params)


def test_shipped_configs_name_their_v2t_protocol():
    # docs/reranking.md: the configs of published CLIP4Clip rows score v2t as CLIP4Clip does; the
    # SynthVTT configs keep raytrain's protocol (the figures in the README and docs stay comparable).
    from pathlib import Path

    from raytrain.config import load_config

    configs = Path(__file__).parent.parent / "configs"
    published = ["clip4clip_msrvtt", "clip4clip_msrvtt_seqtransf", "clip4clip_msrvtt_b16",
                 "clip4clip_msrvtt_b16_seqtransf", "msvd", "lsmdc", "didemo", "activitynet"]
    for name in published:
        assert load_config(configs / f"{name}.yaml").eval.v2t_protocol == "clip4clip", name
    for name in ("demo", "ablation", "sweep_mascot"):
        cfg = load_config(configs / f"{name}.yaml")
        assert cfg.eval.v2t_protocol == "raytrain" and cfg.eval.rerank == "none", name


def test_raytrain_eval_names_its_metrics_file_after_protocol_and_method():
    from raytrain.cli import metrics_file_name
    from raytrain.config import load_config

    assert metrics_file_name(load_config()) == "metrics.json"  # the default: the file training writes
    dsl = load_config(None, ["eval.rerank=dsl", "eval.v2t_protocol=clip4clip"])
    assert metrics_file_name(dsl) == "metrics-v2t_clip4clip-rerank_dsl.json"
    assert metrics_file_name(load_config(None, ["eval.v2t_protocol=clip4clip"])) == "metrics-v2t_clip4clip-rerank_none.json"


def test_dsl_and_inverted_softmax_read_the_other_test_queries_qb_norm_only_its_bank():
    # docs/reranking.md: DSL and inverted softmax are transductive (a query's scores change with the
    # rest of the test queries); QB-Norm answers each query from the bank alone.
    rng = np.random.default_rng(2)
    s, bank = rng.normal(size=(6, 5)), rng.normal(size=(4, 5))
    for params in (RerankParams("dsl", dsl_temperature=0.5), RerankParams("inverted_softmax")):
        assert not np.allclose(rerank_matrix(params, s)[:2], rerank_matrix(params, s[:2])), params.method
    qb = RerankParams("qb_norm", qb_norm_beta=3.0, qb_norm_k=2)
    np.testing.assert_array_equal(rerank_matrix(qb, s, bank)[:2], rerank_matrix(qb, s[:2], bank))
    np.testing.assert_array_equal(rerank_matrix(qb, s, bank)[2:3], rerank_matrix(qb, s[2:3], bank))
