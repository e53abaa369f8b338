"""MASCOT, part by part, without Ray."""

import pytest
import torch
from ddp_check import assert_two_workers_match_single, micro_batch

from raytrain.config import Config, apply_overrides
from raytrain.methods import build_objective
from raytrain.methods.mascot import (
    Mascot,
    co_learning_loss,
    isc_weights,
    reconstruction_loss,
    text_aware_attention,
    text_patch_alignment,
)
from raytrain.methods.masks import informed_masks, mask_count, random_mask, visible_index
from raytrain.model.clip_video import build_model

# ---------------------------------------------------------------- masks


def test_informed_masks_pick_exact_top_and_bottom_shares():
    torch.manual_seed(0)
    attn = torch.rand(3, 4, 49).softmax(-1)
    high, low = informed_masks(attn, 0.3, 0.2)
    k_high, k_low = mask_count(49, 0.3), mask_count(49, 0.2)
    assert (k_high, k_low) == (15, 10)
    assert (high.sum(-1) == k_high).all() and (low.sum(-1) == k_low).all()
    # Every high-masked patch outranks every unmasked one; every low-masked one is below them.
    for b in range(3):
        for t in range(4):
            a, h, lo = attn[b, t], high[b, t], low[b, t]
            assert a[h].min() >= a[~h].max()
            assert a[lo].max() <= a[~lo].min()
    assert not (high & low).any()


def test_informed_masks_deterministic_under_ties():
    attn = torch.tensor([[0.2, 0.5, 0.5, 0.5, 0.1, 0.1]])
    high, low = informed_masks(attn, 0.34, 0.34)  # 3 of 6 (ceil of 2.04)
    assert high.tolist() == [[False, True, True, True, False, False]]
    attn = torch.tensor([[0.5, 0.5, 0.5, 0.5]])  # all tied: lowest positions rank first
    high, low = informed_masks(attn, 0.5, 0.25)
    assert high.tolist() == [[True, True, False, False]]
    assert low.tolist() == [[False, False, False, True]]
    again = informed_masks(attn, 0.5, 0.25)
    assert torch.equal(again[0], high) and torch.equal(again[1], low)


def test_random_mask_counts_and_seed():
    import numpy as np

    m = random_mask((4, 49), 0.3, np.random.default_rng(1))
    assert (m.sum(-1) == 15).all()
    assert (m == random_mask((4, 49), 0.3, np.random.default_rng(1))).all()
    assert not (m == random_mask((4, 49), 0.3, np.random.default_rng(2))).all()


def test_visible_index_sorted_and_complementary():
    mask = torch.tensor([[True, False, True, False, False]])
    assert visible_index(mask).tolist() == [[1, 3, 4]]
    with pytest.raises(ValueError):
        visible_index(torch.tensor([[True, False], [False, False]]))


# ---------------------------------------------------------------- masked encoding


@pytest.fixture(scope="module")
def micro():
    torch.manual_seed(0)
    return build_model(Config().model.__class__(arch="RT-Micro-ViT", temporal="meanP"))


def test_dropped_token_encoding_equals_full_when_nothing_masked(micro):
    frames = torch.randint(0, 256, (2, 3, 32, 32, 3), dtype=torch.uint8)
    images = micro.images_from_frames(frames)
    full = micro.encode_images(images, 3, return_attention=True)
    nothing = torch.zeros(2, 3, micro.num_patches, dtype=torch.bool)
    kept = micro.encode_images(images, 3, visible_index(nothing))
    assert torch.allclose(full.frame_embeds, kept.frame_embeds, atol=1e-6)
    assert full.attention.shape == (2, 3, micro.num_patches)


def test_cls_attention_is_what_multihead_attention_returns(micro):
    """The recomputed CLS→patch attention of the last block equals the head-averaged weights that
    ``nn.MultiheadAttention(need_weights=True)`` returns on that block's own input and weights."""
    frames = torch.randint(0, 256, (2, 3, 32, 32, 3), dtype=torch.uint8)
    last = micro.clip.visual.transformer.resblocks[-1]
    seen = []
    hook = last.register_forward_pre_hook(lambda _module, args: seen.append(args[0].detach()))
    try:
        full = micro.encode_images(micro.images_from_frames(frames), 3, return_attention=True)
    finally:
        hook.remove()
    h = last.ln_1(seen[-1])
    with torch.no_grad():
        _, weights = last.attn(h, h, h, need_weights=True, average_attn_weights=True)  # (n, 1 + K, 1 + K)
    expected = weights[:, 0, 1:].reshape(2, 3, micro.num_patches)
    torch.testing.assert_close(full.attention, expected, rtol=1e-5, atol=1e-6)
    assert (full.attention.sum(-1) < 1).all()  # the CLS token's attention to itself is left out


def test_masked_pass_really_drops_tokens(micro):
    frames = torch.randint(0, 256, (2, 3, 32, 32, 3), dtype=torch.uint8)
    images = micro.images_from_frames(frames)
    high, _ = informed_masks(torch.rand(2, 3, micro.num_patches), 0.5, 0.5)
    out = micro.encode_images(images, 3, visible_index(high), return_tokens=True)
    assert out.tokens.shape[2] == 1 + micro.num_patches - mask_count(micro.num_patches, 0.5)


# ---------------------------------------------------------------- losses


def test_reconstruction_ignores_unmasked_and_low_informed_slots():
    torch.manual_seed(0)
    attn = torch.rand(2, 3, 16).softmax(-1)
    high, low = informed_masks(attn, 0.25, 0.25)
    pred = torch.randn(2, 3, 16, 8, requires_grad=True)
    target = torch.randn(2, 3, 16, 8)
    loss = reconstruction_loss(pred, target, isc_weights(attn, high))
    loss.backward()
    grad_norm = pred.grad.norm(dim=-1)
    assert (grad_norm[~high] == 0).all()
    assert (grad_norm[low] == 0).all()
    assert (grad_norm[high] > 0).all()
    # A perfect prediction at the high-informed slots gives zero loss, whatever the other slots hold.
    perfect = torch.where(high.unsqueeze(-1), target, torch.randn_like(target))
    assert reconstruction_loss(perfect, target, isc_weights(attn, high)).item() == pytest.approx(0, abs=1e-6)


def test_isc_weights_favour_attended_patches():
    attn = torch.tensor([[[0.6, 0.3, 0.1, 0.0]]])
    high = torch.tensor([[[True, True, False, False]]])
    w = isc_weights(attn, high)
    assert w.sum().item() == pytest.approx(1.0)
    assert w[0, 0, 0].item() == pytest.approx(2 / 3) and w[0, 0, 2].item() == 0


def test_co_learning_zero_for_identical_inputs_positive_otherwise():
    torch.manual_seed(0)
    s = torch.randn(6, 6)
    assert co_learning_loss(s, s, s).item() == pytest.approx(0.0, abs=1e-6)
    assert co_learning_loss(s, s + torch.randn(6, 6), s).item() > 0
    # Stop-gradient: the full-view logits get no gradient from L_co.
    full = s.clone().requires_grad_()
    high = torch.randn(6, 6, requires_grad=True)
    co_learning_loss(full, high, torch.randn(6, 6)).backward()
    assert full.grad is None or (full.grad == 0).all()
    assert high.grad.abs().sum() > 0


def test_co_learning_low_view_only_is_the_full_to_low_kl():
    torch.manual_seed(0)
    full, low = torch.randn(5, 7), torch.randn(5, 7)
    p, log_q = full.softmax(1), low.log_softmax(1)
    expected = (p * (p.log() - log_q)).sum(1).mean()
    assert co_learning_loss(full, None, low).item() == pytest.approx(expected.item(), rel=1e-5)
    assert co_learning_loss(full, torch.randn(5, 7), low).item() != pytest.approx(expected.item(), rel=1e-3)


def test_text_patch_alignment_prefers_matching_pairs():
    words = torch.nn.functional.normalize(torch.randn(3, 5, 8), dim=-1)
    mask = torch.ones(3, 5, dtype=torch.bool)
    matched = text_patch_alignment(words.clone(), words, mask, torch.tensor(10.0))
    shuffled = text_patch_alignment(words[[1, 2, 0]], words, mask, torch.tensor(10.0))
    assert matched < shuffled


def test_text_aware_attention_reweights_towards_caption():
    attn = torch.full((1, 1, 2), 0.5)
    text = torch.tensor([[1.0, 0.0]])
    feats = torch.tensor([[[[1.0, 0.0], [0.0, 1.0]]]])
    out = text_aware_attention(attn, feats, text)
    assert out[0, 0, 0] > out[0, 0, 1]


# ---------------------------------------------------------------- the objective


def _mascot_config(**over):
    items = [f"method.mascot.{k}={v}" for k, v in over.items()]
    return apply_overrides(Config(), ["model.arch=RT-Micro-ViT", "method.name=mascot",
                                      "method.mascot.decoder_heads=4", *items])


def _batch(n=4, seed=0):
    return micro_batch(n, seed)


def test_mascot_losses_logged_and_finite():
    torch.manual_seed(0)
    objective = build_objective(_mascot_config(lambda_tp=0.1))
    assert isinstance(objective, Mascot)
    loss, logs = objective(_batch())
    assert set(logs) >= {"loss_nce", "loss_mv", "loss_rec", "loss_co", "loss_tp"}
    assert torch.isfinite(loss)
    loss.backward()
    assert objective.decoder.mask_token.grad.abs().sum() > 0


def test_mascot_with_every_part_off_equals_the_baseline():
    torch.manual_seed(0)
    off = build_objective(_mascot_config(masked_views=False, isc=False, co_learning=False))
    torch.manual_seed(0)
    base = build_objective(apply_overrides(Config(), ["model.arch=RT-Micro-ViT"]))
    batch = _batch()
    assert off(batch)[0].item() == pytest.approx(base(batch)[0].item(), rel=1e-6)


def test_random_strategy_uses_the_batch_masks():
    torch.manual_seed(0)
    cfg = apply_overrides(_mascot_config(isc=False), ["mask.strategy=random"])
    objective = build_objective(cfg)
    batch = _batch()
    n = objective.model.num_patches
    with pytest.raises(KeyError, match="mask.strategy=random needs the batch column 'mask_high'"):
        objective(batch)
    import numpy as np

    rng = np.random.default_rng(0)
    batch["mask_high"] = torch.from_numpy(np.stack([random_mask((3, n), 0.3, rng) for _ in range(4)]))
    batch["mask_low"] = torch.from_numpy(np.stack([random_mask((3, n), 0.3, rng) for _ in range(4)]))
    loss, logs = objective(batch)
    assert torch.isfinite(loss) and "loss_mv" in logs


@pytest.mark.parametrize("co_views", ["both", "low"])
def test_co_views_low_leaves_the_high_view_out_of_co_learning(co_views):
    """Only L_co on (random masks from the batch): the high-informed mask changes the loss with
    ``co_views=both`` and cannot with ``co_views=low``."""
    import numpy as np

    cfg = apply_overrides(_mascot_config(masked_views=False, isc=False, co_views=co_views),
                          ["mask.strategy=random"])
    torch.manual_seed(0)
    objective = build_objective(cfg)
    batch, n = _batch(), objective.model.num_patches
    rng = np.random.default_rng(0)
    masks = [torch.from_numpy(np.stack([random_mask((3, n), 0.5, rng) for _ in range(4)])) for _ in range(3)]
    losses = []
    for high in masks[:2]:
        batch["mask_high"], batch["mask_low"] = high, masks[2]
        loss, logs = objective(batch)
        assert logs["loss_co"] > 0
        losses.append(loss.item())
    if co_views == "low":
        assert losses[0] == pytest.approx(losses[1], rel=1e-6)
    else:
        assert losses[0] != pytest.approx(losses[1], rel=1e-4)


def test_mascot_on_two_workers_trains_the_single_worker_objective():
    overrides = ["model.arch=RT-Micro-ViT", "method.name=mascot", "method.mascot.decoder_heads=4"]
    assert_two_workers_match_single(overrides, {k: v.numpy() for k, v in _batch().items()})


def test_mascot_local_loss_on_two_workers_trains_the_single_worker_objective():
    """With method.local_loss every term on gathered similarities (the main loss, the masked views,
    co-learning) uses this rank's B×G rows: the DDP-averaged gradients are still the global ones."""
    overrides = ["model.arch=RT-Micro-ViT", "method.name=mascot", "method.mascot.decoder_heads=4",
                 "method.local_loss=true"]
    assert_two_workers_match_single(overrides, {k: v.numpy() for k, v in _batch().items()})


def test_mascot_needs_a_vit():
    with pytest.raises(ValueError, match="ViT"):
        Mascot.from_config(Config(), build_model(Config().model.__class__(arch="RN50")))


def _decoder_io(decoder_input: str):
    """The ISC decoder's input tokens and output, captured by hooks, for one forward at seed 0."""
    torch.manual_seed(0)
    objective = build_objective(_mascot_config(co_learning=False, decoder_input=decoder_input))
    seen = {}
    objective.decoder.in_proj.register_forward_hook(lambda m, args, out: seen.setdefault("input", args[0]))
    objective.decoder.register_forward_hook(lambda m, args, out: seen.setdefault("pred", out))
    objective(_batch())
    return objective, seen


def test_decoder_input_switch_feeds_ln_post_or_the_residual_stream():
    residual_obj, residual = _decoder_io("residual")
    ln_obj, ln = _decoder_io("ln_post")
    assert ln["input"].shape == residual["input"].shape  # (B, T, V, Dv) in both arms
    ln_post = ln_obj.model.clip.visual.ln_post
    assert torch.allclose(ln["input"], ln_post(residual["input"]), atol=1e-5)
    assert not torch.allclose(ln["input"], residual["input"], atol=1e-3)
    # Gradient path: only the ln_post arm sends the decoder's output back into the tower's ln_post.
    grad_ln = torch.autograd.grad(ln["pred"].sum(), ln_post.weight, allow_unused=True, retain_graph=True)[0]
    assert grad_ln is not None and grad_ln.abs().sum() > 0
    res_ln_post = residual_obj.model.clip.visual.ln_post
    assert torch.autograd.grad(residual["pred"].sum(), res_ln_post.weight, allow_unused=True,
                               retain_graph=True)[0] is None
    # Both arms still reach the tower's blocks through the visible tokens.
    for obj, seen in ((residual_obj, residual), (ln_obj, ln)):
        block = obj.model.clip.visual.transformer.resblocks[-1].mlp.c_proj.weight
        assert torch.autograd.grad(seen["pred"].sum(), block)[0].abs().sum() > 0
