"""MILES, part by part, without Ray."""

import numpy as np
import pytest
import torch
from ddp_check import assert_two_workers_match_single, micro_batch

from raytrain.config import Config, ConfigError, apply_overrides
from raytrain.methods import build_objective
from raytrain.methods.masks import mask_count, tube_mask
from raytrain.methods.miles import EMA_PREFIX, Miles, ema_update, mvm_loss

# ---------------------------------------------------------------- pure parts


def test_ema_update_rule_and_buffers():
    online, ema = torch.nn.BatchNorm1d(2), torch.nn.BatchNorm1d(2)
    with torch.no_grad():
        online.weight.fill_(3.0)
        ema.weight.fill_(1.0)
        online.running_mean.fill_(7.0)
    ema_update(ema, online, momentum=0.9)
    assert torch.allclose(ema.weight, torch.full((2,), 0.9 * 1.0 + 0.1 * 3.0))
    assert torch.equal(ema.running_mean, online.running_mean)  # buffers copied, not averaged
    ema_update(ema, online, momentum=0.0)
    assert torch.equal(ema.weight, online.weight)


@pytest.mark.parametrize("grid,ratio", [(7, 0.5), (4, 0.5), (4, 0.3), (14, 0.75)])
def test_tube_mask_covers_exactly_and_reproduces(grid, ratio):
    m = tube_mask(grid, grid, ratio, np.random.default_rng(5))
    assert m.shape == (grid * grid,) and m.dtype == bool
    assert m.sum() == mask_count(grid * grid, ratio)
    assert np.array_equal(m, tube_mask(grid, grid, ratio, np.random.default_rng(5)))
    assert any(not np.array_equal(m, tube_mask(grid, grid, ratio, np.random.default_rng(s))) for s in range(6, 10))


def test_tube_mask_is_made_of_blocks():
    # With a target that one rectangle can fill, the mask is one 2..4 x 2..4 rectangle (or part of it).
    m = tube_mask(8, 8, 4 / 64, np.random.default_rng(0)).reshape(8, 8)
    rows, cols = np.nonzero(m)
    assert m.sum() == 4 and rows.max() - rows.min() <= 3 and cols.max() - cols.min() <= 3


def test_mvm_loss_hand_case_and_gradient_only_at_masked_slots():
    target = torch.nn.functional.normalize(torch.randn(2, 3, 4, 8), dim=-1)
    mask = torch.zeros(2, 3, 4, dtype=torch.bool)
    mask[:, :, :2] = True
    assert mvm_loss(target * 5, target, mask).item() == pytest.approx(0.0, abs=1e-6)  # scale-free
    # Opposite direction at one slot: ‖-y - y‖² = 4 there, 0 at the other masked slots.
    pred = target.clone()
    pred[0, 0, 0] = -target[0, 0, 0]
    assert mvm_loss(pred, target, mask).item() == pytest.approx(4.0 / mask.sum().item(), rel=1e-5)
    pred = torch.randn(2, 3, 4, 8, requires_grad=True)
    mvm_loss(pred, target, mask).backward()
    assert (pred.grad[~mask] == 0).all() and (pred.grad[mask].abs().sum(-1) > 0).all()


# ---------------------------------------------------------------- the objective


def _cfg(*extra):
    return apply_overrides(Config(), ["model.arch=RT-Micro-ViT", "method.name=miles", "data.num_frames=3",
                                      "data.max_words=16", *extra])


def _batch(n=4, seed=0):
    rng = np.random.default_rng(seed)
    return {**micro_batch(n, seed), "mask_tube": torch.from_numpy(np.stack([tube_mask(4, 4, 0.5, rng) for _ in range(n)]))}


def _objective(*extra) -> Miles:
    torch.manual_seed(0)
    return build_objective(_cfg(*extra))


def test_ema_is_a_frozen_fp32_submodule_outside_the_optimizer_and_always_in_eval_mode():
    obj = _objective()
    ema_ids = {id(p) for p in obj.ema_visual.parameters()}
    assert all(not p.requires_grad and p.dtype == torch.float32 for p in obj.ema_visual.parameters())
    towers, new = obj.parameter_groups()
    assert not ema_ids & {id(p) for p in towers + new}  # never trained
    trainable = {id(p) for p in obj.parameters() if p.requires_grad}
    assert not ema_ids & trainable  # DDP registers no gradient hook for it, all-reduces nothing
    obj.train()
    assert obj.training and obj.predictor.training and not obj.ema_visual.training
    obj.eval().train()
    assert not obj.ema_visual.training
    obj.to(torch.float64)  # an ordinary submodule: it moves with the objective (devices, dtypes)
    assert all(p.dtype == torch.float64 for p in obj.ema_visual.parameters())


def test_gradients_reach_mask_token_and_predictor_never_the_ema():
    obj = _objective()
    loss, logs = obj(_batch())
    assert {"loss_nce", "loss_mvm"} <= set(logs) and torch.isfinite(loss)
    loss.backward()
    assert obj.mask_token.grad.abs().sum() > 0
    assert all(p.grad is not None for p in obj.predictor.parameters())
    assert all(p.grad is None for p in obj.ema_visual.parameters())


def test_masked_slots_use_the_mask_token_unmasked_replace_is_identity():
    obj = _objective()
    model = obj.model
    frames = _batch()["frames"]
    images = model.images_from_frames(frames)
    plain = model.encode_images(images, 3, return_tokens=True)
    none = torch.zeros(4, 3, model.num_patches, dtype=torch.bool)
    same = model.encode_images(images, 3, return_tokens=True, replace=none, mask_token=obj.mask_token)
    assert torch.allclose(plain.tokens, same.tokens, atol=1e-6)
    some = none.clone()
    some[:, :, :5] = True
    masked = model.encode_images(images, 3, return_tokens=True, replace=some, mask_token=obj.mask_token)
    assert not torch.allclose(plain.frame_embeds, masked.frame_embeds)


def test_after_optimizer_step_moves_the_ema_towards_the_online_tower():
    obj = _objective("method.miles.momentum=0.5")
    with torch.no_grad():
        obj.model.clip.visual.proj.add_(1.0)
    before = obj.ema_visual.proj.clone()
    obj.after_optimizer_step()
    assert torch.allclose(obj.ema_visual.proj, 0.5 * before + 0.5 * obj.model.clip.visual.proj)


def test_ema_state_round_trips_through_state_dict():
    obj = _objective()
    with torch.no_grad():
        obj.ema_visual.proj.mul_(3.0)
    state = obj.state_dict()
    assert EMA_PREFIX + "proj" in state and torch.equal(state[EMA_PREFIX + "proj"], obj.ema_visual.proj)
    fresh = _objective()
    assert not torch.equal(fresh.ema_visual.proj, obj.ema_visual.proj)
    fresh.load_state_dict(state)
    for (n, a), (_, b) in zip(fresh.ema_visual.state_dict().items(), obj.ema_visual.state_dict().items()):
        assert torch.equal(a, b), n
    with pytest.raises(RuntimeError, match="Missing"):  # a checkpoint without the EMA is an error
        _objective().load_state_dict({k: v for k, v in state.items() if not k.startswith(EMA_PREFIX)})


def test_checkpoints_written_before_the_ema_was_a_submodule_still_load():
    """Older checkpoints put the snapshot's state under ``ema_visual.*`` after the module's own keys
    (a ``state_dict`` override); a submodule named ``ema_visual`` has exactly those keys."""
    obj = _objective()
    with torch.no_grad():
        obj.ema_visual.proj.mul_(3.0)
    own = {k: v for k, v in obj.state_dict().items() if not k.startswith(EMA_PREFIX)}
    old_layout = {**own, **{EMA_PREFIX + k: v for k, v in obj.ema_visual.state_dict().items()}}
    assert set(old_layout) == set(obj.state_dict())
    fresh = _objective()
    fresh.load_state_dict(old_layout)  # strict
    assert torch.equal(fresh.ema_visual.proj, obj.ema_visual.proj)


def test_option_a_and_linear_predictor_and_negnce_compose():
    for extra in (["method.miles.contrastive_view=masked"], ["method.miles.predictor=linear"],
                  ["method.contrastive=negnce"]):
        obj = _objective(*extra)
        loss, _ = obj(_batch())
        loss.backward()
        assert torch.isfinite(loss), extra
    assert not obj.model.clip.logit_scale.requires_grad  # NegNCE's scale is fixed: the CLIP one is frozen


def test_miles_config_checks():
    with pytest.raises(ConfigError, match="block_max"):
        _cfg("method.miles.block_min=4", "method.miles.block_max=2")
    with pytest.raises(ConfigError, match="momentum"):
        _cfg("method.miles.momentum=1.0")


def test_a_batch_without_the_tube_mask_names_the_column():
    batch = _batch()
    del batch["mask_tube"]
    with pytest.raises(KeyError, match="method 'miles' needs the batch column 'mask_tube'"):
        _objective()(batch)


def test_miles_on_two_workers_trains_the_single_worker_objective():
    """Under DDP (ddp_check wraps the objective as the loop does) the EMA submodule needs nothing."""
    overrides = ["model.arch=RT-Micro-ViT", "method.name=miles", "data.num_frames=3", "data.max_words=16"]
    assert_two_workers_match_single(overrides, {k: v.numpy() for k, v in _batch().items()})
