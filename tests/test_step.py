"""The training step (raytrain.train.step), pure torch on one process: the NaN guard, clipping, the
all-ranks check and the precision rule shared with evaluation."""

import pytest
import torch

from raytrain.config import Config, apply_overrides
from raytrain.train.step import any_rank, autocast_dtype, train_step


class _Quadratic(torch.nn.Module):
    """``forward(batch) -> (loss, logs)`` like an objective; ``sqrt_zero`` gives a finite loss (0) with a
    NaN gradient."""

    def __init__(self, sqrt_zero: bool = False):
        super().__init__()
        self.lin = torch.nn.Linear(3, 1)
        self.sqrt_zero = sqrt_zero

    def forward(self, batch):
        if self.sqrt_zero:
            loss = torch.sqrt(self.lin.weight.sum() * 0.0)
        else:
            loss = self.lin(batch["x"]).pow(2).mean()
        return loss, {"aux": loss.detach() * 2}


def _setup(sqrt_zero=False, lr=0.1):
    torch.manual_seed(0)
    model = _Quadratic(sqrt_zero)
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0 / (s + 1))
    return model, opt, sched, {"x": torch.randn(8, 3) * 10}


def _weights(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_a_finite_step_updates_the_weights_runs_the_hook_and_steps_the_scheduler():
    model, opt, sched, batch = _setup()
    before, calls = _weights(model), []
    r = train_step(model, opt, sched, batch, amp=None, grad_clip=0.0, after_optimizer_step=lambda: calls.append(1))
    assert not r.skipped and isinstance(r.loss, float) and r.loss > 0
    assert not torch.equal(before["lin.weight"], model.lin.weight)
    assert calls == [1] and sched.last_epoch == 1 and float(r.logs["aux"]) == pytest.approx(2 * r.loss)
    assert r.compute_s > 0


@pytest.mark.parametrize("sqrt_zero", [False, True], ids=["nan loss", "nan gradient, finite loss"])
def test_a_non_finite_step_leaves_the_weights_unchanged_and_still_steps_the_scheduler(sqrt_zero):
    model, opt, sched, batch = _setup(sqrt_zero)
    before, calls = _weights(model), []
    r = train_step(model, opt, sched, batch, amp=None, grad_clip=1.0, poison_loss=not sqrt_zero,
                   after_optimizer_step=lambda: calls.append(1))
    assert r.skipped and r.loss is None
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(p.grad is None for p in model.parameters())  # no stale NaN gradient left behind
    assert calls == [] and sched.last_epoch == 1 and sched.get_last_lr() == [0.1 / 2]


def test_grad_clip_zero_means_no_clipping():
    reference, _, _, batch = _setup(lr=1.0)
    reference(batch)[0].backward()
    grad = reference.lin.weight.grad.clone()
    assert grad.norm() > 1.0  # large enough that a clip at 1 would change it

    model, opt, sched, _ = _setup(lr=1.0)
    before = model.lin.weight.detach().clone()
    r = train_step(model, opt, sched, batch, amp=None, grad_clip=0.0)
    assert torch.allclose(model.lin.weight, before - grad)  # SGD with lr 1: the whole gradient
    assert float(r.grad_norm) > 1.0

    clipped, opt, sched, _ = _setup(lr=1.0)
    train_step(clipped, opt, sched, batch, amp=None, grad_clip=1.0)
    total = torch.cat([p.grad.flatten() for p in clipped.parameters()]).norm()
    assert float(total) == pytest.approx(1.0, rel=1e-4)


def test_flags_ride_on_the_finite_check_and_come_back_agreed():
    model, opt, sched, batch = _setup()
    assert train_step(model, opt, sched, batch, amp=None, grad_clip=0.0, flags=[True, False]).flags == [True, False]
    assert train_step(model, opt, sched, batch, amp=None, grad_clip=0.0).flags == []
    assert any_rank([True, False, True], world_size=1) == [True, False, True]


@pytest.mark.parametrize("precision,device,expected", [
    ("auto", "cpu", None), ("auto", "cuda", torch.bfloat16), ("bf16", "cpu", torch.bfloat16),
    ("fp32", "cuda", None), ("fp32", "cpu", None)])
def test_one_precision_rule_for_training_and_evaluation(precision, device, expected):
    cfg = apply_overrides(Config(), [f"train.precision={precision}"])
    assert autocast_dtype(cfg, torch.device(device)) == expected
