"""The CLIP4Clip baseline objective (the default method), without Ray."""

import dataclasses

import pytest
import torch
from ddp_check import assert_two_workers_match_single, micro_batch

from raytrain.config import Config, MethodSection, apply_overrides
from raytrain.methods import METHODS, build_objective, data_columns, retrieval_model
from raytrain.methods.base import Objective
from raytrain.methods.clip4clip import Clip4Clip
from raytrain.methods.losses import symmetric_infonce

MICRO = ["model.arch=RT-Micro-ViT"]


def test_the_default_method_is_clip4clip_and_its_loss_is_symmetric_infonce():
    torch.manual_seed(0)
    objective = build_objective(apply_overrides(Config(), MICRO))
    assert isinstance(objective, Clip4Clip) and isinstance(objective, Objective)
    batch = micro_batch()
    loss, logs = objective(batch)
    model = objective.model
    sim = model.encode_text(batch["tokens"]).float() @ model.encode_video(batch["frames"]).float().t()
    assert loss.item() == pytest.approx(symmetric_infonce(model.logit_scale() * sim).item(), rel=1e-6)
    assert set(logs) == {"loss_nce", "logit_scale"}
    assert data_columns(apply_overrides(Config(), MICRO)) == ()
    assert retrieval_model(objective) is model  # the plain dual encoder


def test_registry_names_every_method_and_refuses_others():
    assert set(METHODS) == {"clip4clip", "mascot", "miles", "dmae"}
    assert all(issubclass(cls, Objective) for cls in METHODS.values())
    unknown = dataclasses.replace(Config(), method=MethodSection(name="nope"))  # past the config's own check
    with pytest.raises(ValueError, match="unknown method 'nope'"):
        build_objective(unknown)


def test_negnce_freezes_the_clip_scale():
    objective = build_objective(apply_overrides(Config(), [*MICRO, "method.contrastive=negnce"]))
    assert not objective.uses_logit_scale() and not objective.model.clip.logit_scale.requires_grad


@pytest.mark.parametrize("extra", [[], ["method.local_loss=true"]], ids=["full", "local_loss"])
def test_clip4clip_on_two_workers_trains_the_single_worker_objective(extra):
    assert_two_workers_match_single([*MICRO, *extra], {k: v.numpy() for k, v in micro_batch().items()})
