"""CLIP4Clip's optimisation semantics (pure, no Ray): its gradient is 1/W of raytrain's (logit scale
apart), clipping in that frame (``optim.grad_clip_mode=clip4clip``), and the logit scale clamped after
the step (``model.logit_scale_clamp=after_step``)."""

import math

import pytest
import torch
from torch import nn

from raytrain.config import ModelSection
from raytrain.methods.losses import symmetric_infonce
from raytrain.train.clipping import clip_gradients
from raytrain.train.logit_scale import after_step_hook, use_logit_scale_clamp


class TwoTower(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.video = nn.Linear(6, 4)
        self.text = nn.Linear(5, 4)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(20.0)))

    def loss(self, v, t, keep=None):
        """Symmetric InfoNCE on the full batch; ``keep`` (a slice): only those rows carry gradient,
        the others are detached (what one CLIP4Clip rank back-propagates through its AllGather)."""
        fv, ft = self.video(v), self.text(t)
        if keep is not None:
            mask = torch.zeros(len(v), 1, dtype=torch.bool)
            mask[keep] = True
            fv = torch.where(mask, fv, fv.detach())
            ft = torch.where(mask, ft, ft.detach())
        return symmetric_infonce(self.logit_scale.exp() * ft @ fv.t())


def grads(model):
    return {n: p.grad.clone() for n, p in model.named_parameters()}


def test_raytrain_gradient_is_world_size_times_clip4clips_except_the_logit_scale():
    world, b = 4, 3
    v, t = torch.randn(world * b, 6), torch.randn(world * b, 5)
    model = TwoTower()
    model.loss(v, t).backward()  # raytrain: the exact gradient of the global-batch loss
    ours = grads(model)
    clip4clip = {n: torch.zeros_like(g) for n, g in ours.items()}
    for rank in range(world):  # CLIP4Clip: each rank's gradient through its own slice, DDP's mean
        model.zero_grad()
        model.loss(v, t, keep=slice(rank * b, (rank + 1) * b)).backward()
        for n, g in grads(model).items():
            clip4clip[n] += g / world
    for n in ours:
        expected = ours[n] if n == "logit_scale" else ours[n] / world
        assert torch.allclose(clip4clip[n], expected, atol=1e-6), n
    # clip4clip mode turns raytrain's gradient into exactly that one (before any clipping)
    model.zero_grad()
    model.loss(v, t).backward()
    norm = clip_gradients(model, 0.0, "clip4clip", world)
    for n, p in model.named_parameters():
        assert torch.allclose(p.grad, clip4clip[n], atol=1e-6), n
    assert norm == pytest.approx(float(torch.cat([g.flatten() for g in clip4clip.values()]).norm()), rel=1e-5)


def set_grads(model, values):
    names = ["video.weight", "video.bias", "text.weight", "text.bias", "logit_scale"]
    params = dict(model.named_parameters())
    for name, g in zip(names, values, strict=True):
        params[name].grad = torch.full_like(params[name], g)


def test_clip4clip_mode_clips_globally_then_per_tensor():
    model = TwoTower()  # video.weight (24), video.bias (4), text.weight (20), text.bias (4), logit_scale (1)
    set_grads(model, [1.0, 0.0, 0.0, 0.0, 0.5])
    norm = clip_gradients(model, 1.0, "clip4clip", world_size=2)
    # video.weight: 0.5 each after /W (norm sqrt(24)/2 = 2.449); logit scale kept at 0.5
    assert float(norm) == pytest.approx(math.sqrt(24 * 0.25 + 0.25))
    assert float(model.video.weight.grad.norm()) == pytest.approx(2.449 / math.sqrt(6.25), rel=1e-3)
    assert float(model.logit_scale.grad) == pytest.approx(0.5 / math.sqrt(6.25), rel=1e-3)
    set_grads(model, [0.0, 0.0, 0.3, 0.0, 0.0])  # global norm 0.3*sqrt(20)/2 = 0.67 < 1: no global clip
    clip_gradients(model, 0.5, "clip4clip", world_size=2)  # ... but per tensor at 0.5
    assert float(model.text.weight.grad.norm()) == pytest.approx(0.5, rel=1e-4)
    set_grads(model, [1.0, 0.0, 0.0, 0.0, 0.5])  # the default: the global norm of the gradient as it is
    norm = clip_gradients(model, 1.0, "global", world_size=2)
    assert float(norm) == pytest.approx(math.sqrt(24 + 0.25))
    assert float(model.video.weight.grad[0, 0]) == pytest.approx(1 / math.sqrt(24.25), rel=1e-4)
    with pytest.raises(ValueError, match="grad_clip_mode"):
        clip_gradients(model, 1.0, "bogus")


class Holder(nn.Module):
    """An objective's shape as the hooks see it: ``.model.clip.logit_scale``, ``.model.max_log_scale``."""

    def __init__(self):
        super().__init__()
        self.model = nn.Module()
        self.model.clip = nn.Module()
        self.model.clip.logit_scale = nn.Parameter(torch.tensor(math.log(150.0)))
        self.model.max_log_scale = math.log(100.0)
        self.steps = 0

    def after_optimizer_step(self):
        self.steps += 1

    def scale(self):  # VideoTextDualEncoder.logit_scale
        return self.model.clip.logit_scale.clamp(max=self.model.max_log_scale).exp()


def test_logit_scale_after_step_clamps_the_parameter_and_keeps_its_gradient():
    holder, cfg = Holder(), ModelSection(logit_scale_clamp="after_step")
    use_logit_scale_clamp(holder, cfg)
    holder.scale().backward()
    assert float(holder.model.clip.logit_scale.grad) == pytest.approx(150.0, rel=1e-5)  # d e^s / ds, no clamp
    after_step_hook(holder, cfg)()
    assert holder.steps == 1  # the method's own hook still runs
    assert float(holder.model.clip.logit_scale.detach()) == pytest.approx(math.log(100.0))


def test_logit_scale_forward_clamp_is_the_default():
    holder, cfg = Holder(), ModelSection()
    use_logit_scale_clamp(holder, cfg)
    holder.scale().backward()
    assert float(holder.model.clip.logit_scale.grad) == 0.0  # past ln 100: no gradient
    hook = after_step_hook(holder, cfg)
    hook()
    assert holder.steps == 1 and float(holder.model.clip.logit_scale.detach()) == pytest.approx(math.log(150.0))


def test_clip4clip_groups_put_the_logit_scale_with_the_towers_and_decay_by_name():
    from raytrain.config import Config
    from raytrain.methods import build_objective
    from raytrain.train.schedule import build_optimizer

    cfg = Config().replace(**{"model.arch": "RT-Micro-ViT", "model.temporal": "seqTransf"})
    objective = build_objective(cfg)
    names = {id(p): n for n, p in objective.named_parameters()}

    def where(optimizer):
        """name -> (lr, weight decay) of its group."""
        return {names[id(p)]: (g["lr"], g["weight_decay"]) for g in optimizer.param_groups for p in g["params"]}

    ours = where(build_optimizer(objective, cfg.optim))
    theirs = where(build_optimizer(objective, cfg.replace(**{"optim.groups": "clip4clip"}).optim))
    assert set(ours) == set(theirs) == set(names.values())  # every trainable parameter, once
    scale, ln = "model.clip.logit_scale", next(n for n in names.values() if n.endswith("ln_final.weight"))
    head = next(n for n in names.values() if n.startswith("model.temporal.") and n.endswith("weight")
                and "ln" not in n)
    assert ours[scale] == (1e-4, 0.0) and theirs[scale] == (1e-7, 0.2)  # CLIP4Clip: a clip.* parameter
    assert ours[ln] == (1e-7, 0.0) and theirs[ln] == (1e-7, 0.2)  # its no_decay names miss CLIP's ln_*
    bias = next(n for n in names.values() if n.startswith("model.clip.") and n.endswith("bias"))
    assert ours[bias] == theirs[bias] == (1e-7, 0.0)
    assert ours[head][0] == theirs[head][0] == 1e-4  # new modules at optim.lr in both


def test_train_step_can_match_a_four_gpu_clip4clip_run_on_one_gpu():
    from raytrain.train.step import train_step

    class Objective(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.ones(3))
            self.logit_scale = nn.Parameter(torch.tensor(1.0))

        def forward(self, batch):
            return (self.w * batch["x"]).sum() + self.logit_scale * 2.0, {}

    seen = {}
    for ranks in (0, 4):
        model = Objective()
        opt = torch.optim.SGD(model.parameters(), lr=1.0)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
        result = train_step(model, opt, sched, {"x": torch.tensor([0.1, 0.2, 0.3])}, amp=None, grad_clip=0.0,
                            grad_clip_mode="clip4clip", clip_ranks=ranks)
        seen[ranks] = (model.w.detach().clone(), float(model.logit_scale.detach()), float(result.grad_norm))
    assert torch.allclose(seen[0][0], torch.tensor([0.9, 0.8, 0.7]))  # one rank: the gradient as it is
    assert torch.allclose(seen[4][0], torch.tensor([0.975, 0.95, 0.925]))  # as one of 4 CLIP4Clip ranks: / 4
    assert seen[0][1] == seen[4][1] == pytest.approx(-1.0)  # the logit scale's gradient is never divided
