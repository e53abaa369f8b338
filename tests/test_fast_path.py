"""The fast model path without Ray: SDPA attention in every tower, activation checkpointing that
changes memory and not results, and torch.compile of the training objective."""

from unittest import mock

import pytest
import torch
from ddp_check import micro_batch

from raytrain.config import Config, apply_overrides
from raytrain.methods import build_objective


def _objective(*overrides):
    torch.manual_seed(0)
    return build_objective(apply_overrides(Config(), ["model.arch=RT-Micro-ViT", *overrides]))


def _ops(fn) -> list[str]:
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    return [e.name for e in prof.events()]


def _explicit_attention():
    """Every ``nn.MultiheadAttention`` call with ``need_weights=True``: the explicit ``softmax(QKᵀ)V``
    path instead of the fused SDPA one that open_clip's ``need_weights=False`` selects."""
    fused = torch.nn.MultiheadAttention.forward

    def explicit(self, *args, **kwargs):
        kwargs["need_weights"] = True
        return fused(self, *args, **kwargs)
    return mock.patch.object(torch.nn.MultiheadAttention, "forward", explicit)


@pytest.mark.parametrize("temporal", ["meanP", "seqTransf"])
def test_fused_attention_computes_what_explicit_attention_computes(temporal):
    """open_clip's blocks call nn.MultiheadAttention with need_weights=False, which dispatches to SDPA
    (flash / memory-efficient kernels on a GPU): the same loss and gradients as the explicit path.
    That every layer really takes the fused kernel is counted in bench/attention_kernels.py."""
    overrides = (f"model.temporal={temporal}", "model.temporal_layers=2")
    batch = micro_batch()
    fused_loss, fused = _grads(_objective(*overrides), batch)
    with _explicit_attention():
        explicit_loss, explicit = _grads(_objective(*overrides), batch)
    assert fused_loss.item() == pytest.approx(explicit_loss.item(), rel=1e-5)
    assert fused.keys() == explicit.keys()
    for k in fused:
        # float32 summation order differs between the kernels: tolerate 1e-6 of the tensor's scale
        # (the text tower's embedding gradients reach ~15 here, so an absolute 1e-6 is below rounding)
        scale = explicit[k].abs().max().item()
        torch.testing.assert_close(fused[k], explicit[k], rtol=1e-4, atol=1e-6 * max(scale, 1.0), msg=k)


def _grads(objective, batch):
    loss, _ = objective(batch)
    loss.backward()
    return loss.detach(), {k: p.grad.clone() for k, p in objective.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("method", [["method.name=clip4clip"],
                                    ["method.name=mascot", "method.mascot.decoder_heads=4"],
                                    ["model.temporal=seqTransf", "model.temporal_layers=2"]])
def test_activation_checkpointing_keeps_loss_and_gradients(method):
    batch = micro_batch()
    plain_loss, plain = _grads(_objective(*method), batch)
    ckpt = _objective(*method, "model.grad_checkpointing=true")
    assert ckpt.model.clip.visual.transformer.grad_checkpointing
    ops = _ops(lambda: _grads(ckpt, batch))
    torch.manual_seed(0)
    ckpt_loss, grads = _grads(_objective(*method, "model.grad_checkpointing=true"), batch)
    assert ckpt_loss.item() == pytest.approx(plain_loss.item(), rel=1e-6)
    assert grads.keys() == plain.keys()
    for k in plain:
        torch.testing.assert_close(grads[k], plain[k], rtol=1e-5, atol=1e-7, msg=k)
    # Recomputation really happens: the backward pass runs the attention kernels again.
    fwd_only = _ops(lambda: ckpt(batch))
    assert ops.count("aten::scaled_dot_product_attention") > fwd_only.count("aten::scaled_dot_product_attention")


def test_compiled_objective_matches_eager():
    """train.compile compiles the objective (inductor; on a CPU it builds C++ kernels, ~30 s here)."""
    batch = micro_batch()
    eager_loss, eager = _grads(_objective(), batch)
    compiled = torch.compile(_objective())
    loss, grads = _grads(compiled, batch)
    assert loss.item() == pytest.approx(eager_loss.item(), rel=1e-4)
    assert grads.keys() == {f"_orig_mod.{k}" for k in eager}
    for k in eager:
        torch.testing.assert_close(grads[f"_orig_mod.{k}"], eager[k], rtol=1e-3, atol=1e-5, msg=k)
