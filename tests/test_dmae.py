"""DMAE similarity, NegNCE and TPM-CL, part by part, without Ray."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from ddp_check import assert_two_workers_match_single, micro_batch

from raytrain.config import Config, DmaeSection, TpmclSection, apply_overrides
from raytrain.eval.metrics import both_directions
from raytrain.eval.retrieval import evaluate_model
from raytrain.methods import build_objective, retrieval_model
from raytrain.methods.dmae import (
    Dmae,
    TokenWeightPredictor,
    dmae_similarity,
    frame_neighbours,
    importance_keep,
    partial_margin,
    token_similarity,
    tpm_loss,
)
from raytrain.methods.losses import hard_negatives, negnce_loss
from raytrain.model.clip_video import get_tokenizer

# ---------------------------------------------------------------- similarity


def _frames():
    return torch.tensor([[[1.0, 0.0], [0.6, 0.8], [0.0, 1.0]]])  # one video, 3 frames


def test_frame_neighbour_enhancement_hand_case():
    f, fm = _frames(), torch.ones(1, 3, dtype=torch.bool)
    index, weight = frame_neighbours(f, fm)
    assert index[0].tolist() == [1, 2, 1] and torch.allclose(weight[0], torch.tensor([0.6, 0.8, 0.8]))
    x, xm = torch.tensor([[[1.0, 0.0]]]), torch.ones(1, 1, dtype=torch.bool)
    # A = [1, 0.6, 0]: j* = 0, j2 = 1 (C = 0.6): t2v = 1 + 0.5·0.6·0.6; v2t = mean(1, 0.6, 0).
    v2t = (1 + 0.6 + 0) / 3
    plain = token_similarity(x, xm, f, fm)
    enhanced = token_similarity(x, xm, f, fm, (index, weight), 0.5)
    assert plain.item() == pytest.approx((1.0 + v2t) / 2)
    assert enhanced.item() == pytest.approx((1.0 + 0.5 * 0.6 * 0.6 + v2t) / 2)


def test_masked_words_and_frames_are_left_out():
    x = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])
    f = torch.tensor([[[1.0, 0.0], [0.0, -1.0]]])
    all_valid = token_similarity(x, torch.ones(1, 2, dtype=torch.bool), f, torch.ones(1, 2, dtype=torch.bool))
    # t2v = mean(1, 0) = 0.5; v2t = mean(max(1, 0), max(0, -1)) = 0.5
    assert all_valid.item() == pytest.approx(0.5)
    masked = token_similarity(x, torch.tensor([[True, False]]), f, torch.tensor([[True, False]]))
    assert masked.item() == pytest.approx(1.0)


def _naive_pair(x, xm, f, fm, w):
    """Loop-by-loop reading of methods.md §3.1 for one text token set and one video."""
    xs, fs = x[xm], f[fm]
    a = xs @ fs.t()
    c = fs @ fs.t()
    t2v = []
    for i in range(len(xs)):
        j = int(a[i].argmax())
        score = a[i, j]
        if w is not None and len(fs) > 1:
            others = [k for k in range(len(fs)) if k != j]
            k2 = max(others, key=lambda k: float(c[j, k]))
            score = score + w * c[j, k2] * a[i, k2]
        t2v.append(score)
    return 0.5 * (torch.stack(t2v).mean() + a.max(dim=0).values.mean())


def _features(nt=7, nv=5, length=6, t=4, d=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    words = F.normalize(torch.randn(nt, length, d, generator=g), dim=-1)
    word_mask = torch.arange(length)[None] < torch.randint(2, length + 1, (nt, 1), generator=g)
    texts = {"sentence": F.normalize(torch.randn(nt, d, generator=g), dim=-1), "words": words, "word_mask": word_mask}
    frame_mask = torch.ones(nv, t, dtype=torch.bool)
    frame_mask[1, -1] = False  # one padded video
    videos = {"frames": F.normalize(torch.randn(nv, t, d, generator=g), dim=-1), "frame_mask": frame_mask}
    return texts, videos


def test_dmae_similarity_matches_the_naive_definition():
    texts, videos = _features()
    sim = dmae_similarity(texts, videos, DmaeSection())
    one = torch.ones(1, dtype=torch.bool)
    for a in range(7):
        for b in range(5):
            f, fm = videos["frames"][b], videos["frame_mask"][b]
            s = _naive_pair(texts["sentence"][a][None], one, f, fm, 0.5)
            w = _naive_pair(texts["words"][a], texts["word_mask"][a], f, fm, 0.5)
            assert sim[a, b].item() == pytest.approx(0.5 * (s + w).item(), abs=1e-5), (a, b)


@pytest.mark.parametrize("interaction", ["att_ti", "sentence", "words"])
def test_blocked_similarity_equals_unblocked(interaction):
    texts, videos = _features(nt=11, nv=9)
    whole = dmae_similarity(texts, videos, DmaeSection(interaction=interaction, text_block=100, video_block=100))
    blocked = dmae_similarity(texts, videos, DmaeSection(interaction=interaction, text_block=3, video_block=2))
    assert torch.allclose(whole, blocked, atol=1e-6)


def test_thousand_by_thousand_in_blocks():
    # Unblocked, the (texts, videos, words, frames) tensor alone would be 1000·1000·16·8·4 B = 0.5 GB
    # (1.5 GB at CLIP4Clip's 32 words x 12 frames); a block holds 32·256·16·8 entries.
    texts, videos = _features(nt=1000, nv=1000, length=16, t=8, d=16, seed=1)
    cfg = DmaeSection()
    sim = dmae_similarity(texts, videos, cfg)
    assert sim.shape == (1000, 1000) and torch.isfinite(sim).all()
    rows = [0, 517, 999]
    part = dmae_similarity({k: v[rows] for k, v in texts.items()}, videos, cfg)
    assert torch.allclose(sim[rows], part, atol=1e-6)


# ---------------------------------------------------------------- NegNCE


def test_hard_negative_set_hand_case():
    s = torch.tensor([[0.5, 0.6, 0.1], [0.1, 0.4, 0.3], [0.2, 0.45, 0.9]])
    # (0,1): 0.6 > S00; (2,1): 0.45 > S11 = 0.4 (beats its column's positive); the rest beat neither.
    assert hard_negatives(s).nonzero().tolist() == [[0, 1], [2, 1]]
    assert hard_negatives(s, margin=0.2).sum() > 2


def _neg_rows(s, scale=100.0, c_neg=0.5):
    p = (scale * s).softmax(1).clamp(1e-6, 1 - 1e-6)
    hard = hard_negatives(s)
    loss = -p.diagonal().log().mean()
    return loss + (c_neg * -(1 - p[hard]).log().mean() if hard.any() else 0)


def test_negnce_hand_case_and_empty_hard_set():
    s = torch.tensor([[0.50, 0.51], [0.48, 0.52]])
    p = (100 * s).softmax(1)
    pt = (100 * s.t()).softmax(1)
    # S: H = {(0,1)}; Sᵀ: H = {(1,0)} (the same pair seen from the other side).
    row = -(math.log(p[0, 0]) + math.log(p[1, 1])) / 2 + 0.5 * -math.log(1 - p[0, 1])
    col = -(math.log(pt[0, 0]) + math.log(pt[1, 1])) / 2 + 0.5 * -math.log(1 - pt[1, 0])
    assert negnce_loss(s).item() == pytest.approx(0.5 * (row + col), rel=1e-4)
    easy = torch.tensor([[0.9, 0.1], [0.2, 0.8]])  # no negative beats a positive: first term only
    pe, pet = (100 * easy).softmax(1).clamp(1e-6, 1 - 1e-6), (100 * easy.t()).softmax(1).clamp(1e-6, 1 - 1e-6)
    first = 0.5 * (-pe.diagonal().log().mean() - pet.diagonal().log().mean())
    assert negnce_loss(easy).item() == pytest.approx(first.item(), rel=1e-5)
    s = torch.randn(6, 6) * 0.2
    assert negnce_loss(s).item() == pytest.approx(0.5 * (_neg_rows(s) + _neg_rows(s.t())).item(), rel=1e-5)


# ---------------------------------------------------------------- TPM-CL


def test_cumulative_weight_masking():
    keep = importance_keep(torch.tensor([[0.5, 0.3, 0.2], [0.2, 0.5, 0.3]]), 0.6)
    assert keep.tolist() == [[False, True, True], [True, False, True]]  # cumsum 0.5 < 0.6 only
    assert importance_keep(torch.tensor([[0.2, 0.5, 0.3]]), 0.85).tolist() == [[True, False, False]]
    # The top token alone reaches τ: nothing is masked.
    assert importance_keep(torch.tensor([[0.1, 0.7, 0.2]]), 0.6).all()


def test_partial_margin_hand_case():
    loss = partial_margin(torch.tensor([0.9, 0.5]), torch.tensor([0.1, 0.4]), 0.6)
    assert loss.item() == pytest.approx((0.0 + 0.5) / 2)


def test_token_weights_sum_to_one_over_valid_tokens():
    pred = TokenWeightPredictor(3, 5, 8)
    mask = torch.tensor([[True, True, True, False, False]])
    u = pred(torch.randn(1, 3, 8), torch.randn(1, 5, 8), mask)
    assert u.sum().item() == pytest.approx(1.0) and (u[~mask] == 0).all() and (u[mask] > 0).all()


def test_tpm_margins_by_hand():
    # One pair, 2 words, 2 frames; weights mask word 0 and frame 0 (τ = 0.6, each weight 0.55 first).
    t = torch.tensor([[1.0, 0.0]])
    w = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])
    f = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])
    m = torch.ones(1, 2, dtype=torch.bool)
    u = torch.tensor([[0.55, 0.45]])
    r = torch.tensor([[0.55, 0.45]])
    cfg = TpmclSection(margin=0.6)
    loss, logs = tpm_loss(t, w, m, f, m, u, r, cfg)
    # s1 = sim(t, F) = ½(1 + ½) = 0.75; F^p = [0, f1] (zeroed, mask kept): ½(0 + ½·0) = 0.
    # t_g = norm(0.55, 0.45): sim(t_g, F) = ½(0.55/n + ½(0.55 + 0.45)/n); with F^p: ½(0.45/n + ½·0.45/n).
    n = math.hypot(0.55, 0.45)
    s2, s2p = 0.5 * (0.55 / n + 0.5 / n), 0.5 * (0.45 / n + 0.225 / n)
    s3p = 0.5 * (1.0 + 0.5)  # t_g^p = norm(0, 0.45) = (0, 1): sim with F = ½(1 + ½)
    expected = max(0, 0.6 - (0.75 - 0.0)) + max(0, 0.6 - (s2 - s2p)) + max(0, 0.6 - (s2 - s3p))
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    assert logs["tpm_words_masked"].item() == pytest.approx(0.5)
    only3 = tpm_loss(t, w, m, f, m, u, r, TpmclSection(margin=0.6, margin1=False, margin2=False))[0]
    assert only3.item() == pytest.approx(max(0, 0.6 - (s2 - s3p)), rel=1e-5)


# ---------------------------------------------------------------- the objective


def _overrides(*extra):
    return ["model.arch=RT-Micro-ViT", "method.name=dmae", "data.num_frames=3", "data.max_words=16", *extra]


def _batch(n=4, seed=0):
    return micro_batch(n, seed)


def _objective(*extra) -> Dmae:
    torch.manual_seed(0)
    return build_objective(apply_overrides(Config(), _overrides(*extra)))


def test_dmae_gradients_go_where_they_should():
    obj = _objective()
    assert obj.contrastive.kind == "negnce" and not obj.model.clip.logit_scale.requires_grad
    loss, logs = obj(_batch())
    assert {"loss_nce", "loss_tpm", "tpm_words_masked", "tpm_frames_masked"} <= set(logs)
    loss.backward()
    assert all(p.grad is not None for p in obj.word_weights.parameters())
    # The frame-weight predictor only selects frames (hard threshold): frozen, no gradient.
    assert all(not p.requires_grad and p.grad is None for p in obj.frame_weights.parameters())
    assert all(p.grad is not None for p in obj.parameters() if p.requires_grad)


def test_dmae_variants_compose():
    infonce = _objective("method.contrastive=infonce", "method.tpmcl.enabled=false", "method.dmae.neighbour=false")
    assert infonce.model.clip.logit_scale.requires_grad and infonce.word_weights is None
    loss, logs = infonce(_batch())
    assert torch.isfinite(loss) and "loss_tpm" not in logs
    torch.manual_seed(0)
    mascot = build_objective(apply_overrides(Config(), [
        "model.arch=RT-Micro-ViT", "method.name=mascot", "method.mascot.decoder_heads=4", "method.contrastive=negnce"]))
    loss, _ = mascot(_batch())
    assert torch.isfinite(loss) and mascot.model.clip.logit_scale.requires_grad  # L_mv / L_co still use it


@pytest.mark.parametrize("sim_block", [1024, 3, 1])
def test_retrieval_uses_the_dmae_similarity(sim_block):
    """Scored with DMAE's own similarity, ``sim_block`` queries at a time (exactly the full-matrix metrics)."""
    obj = _objective()
    assert retrieval_model(obj) is obj
    clip4clip = build_objective(apply_overrides(Config(), ["model.arch=RT-Micro-ViT"]))
    assert retrieval_model(clip4clip) is clip4clip.model
    batch = _batch()
    captions = ["a red circle moves left", "a blue square", "two green stars", "a yellow cross moves up",
                "a circle going left", "three stars"]
    owner = np.array([0, 1, 2, 3, 0, 2])  # multi-caption videos
    tok = get_tokenizer("RT-Micro-ViT", 16)
    batches = [{"frames": batch["frames"][:3], "video_index": torch.tensor([0, 1, 2])},
               {"frames": batch["frames"][3:], "video_index": torch.tensor([3])}]
    metrics = evaluate_model(obj, batches, captions, owner, 4, tok, "cpu", text_batch_size=3, sim_block=sim_block)
    obj.eval()
    with torch.no_grad():
        sim = obj.similarity(obj.text_features(tok(captions)), obj.video_features(batch["frames"]))
    expected = both_directions(sim.numpy(), owner)
    assert {k: metrics[k] for k in expected} == pytest.approx(expected)


def test_dmae_on_two_workers_trains_the_single_worker_objective():
    assert_two_workers_match_single(_overrides(), {k: v.numpy() for k, v in _batch().items()})


def test_dmae_infonce_local_loss_on_two_workers_trains_the_single_worker_objective():
    """Local rows of the token-wise S in both directions (words and frames gathered padded, with grad)."""
    overrides = _overrides("method.contrastive=infonce", "method.local_loss=true")
    assert_two_workers_match_single(overrides, {k: v.numpy() for k, v in _batch().items()})
