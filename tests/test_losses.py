"""The gathered loss (full G×G, or local B×G rows) on W shards equals the single-process loss on the
whole batch, and so do the gradients after DDP-style averaging."""

import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F

from raytrain.config import Config, ConfigError, NegNCESection, apply_overrides
from raytrain.methods.losses import ContrastiveLoss, gather_features, gather_with_grad, symmetric_infonce


def test_symmetric_infonce_hand_value():
    logits = torch.tensor([[2.0, 0.0], [0.0, 2.0]])
    expected = -torch.log_softmax(torch.tensor([2.0, 0.0]), 0)[0]
    assert torch.allclose(symmetric_infonce(logits), expected)
    with pytest.raises(ValueError):
        symmetric_infonce(torch.zeros(2, 3))


def test_single_process_gather_is_identity():
    x = torch.randn(3, 4, requires_grad=True)
    assert gather_features(x) is x and gather_with_grad(x) is x


def test_one_process_local_loss_is_the_full_loss():
    t, v = F.normalize(torch.randn(6, 4), dim=-1), F.normalize(torch.randn(6, 4), dim=-1)
    scale = torch.tensor(10.0)
    full = ContrastiveLoss()(t, v, scale)
    assert torch.allclose(full, symmetric_infonce(scale * t @ v.t()))
    assert torch.allclose(ContrastiveLoss(local_loss=True)(t, v, scale), full)


def test_local_loss_refuses_negnce():
    with pytest.raises(ValueError, match="method.local_loss"):
        ContrastiveLoss("negnce", NegNCESection(), local_loss=True)
    with pytest.raises(ConfigError, match="method.local_loss"):  # dmae's auto contrastive is NegNCE
        apply_overrides(Config(), ["method.name=dmae", "method.local_loss=true"])
    cfg = apply_overrides(Config(), ["method.name=dmae", "method.contrastive=infonce", "method.local_loss=true"])
    assert cfg.method.main_loss == "infonce" and cfg.method.local_loss


def _problem(seed=0, n=8, d_in=6, d=5):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(n, d_in, generator=g), torch.randn(n, d_in, generator=g),
            torch.randn(d_in, d, generator=g), torch.randn(d_in, d, generator=g))


def _loss(xt, xv, wt, wv, log_scale, local_loss=False):
    t = F.normalize(xt @ wt, dim=-1)
    v = F.normalize(xv @ wv, dim=-1)
    return ContrastiveLoss(local_loss=local_loss)(t, v, log_scale.exp())


def _worker(rank, world, port, queue, local_loss):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    xt, xv, wt, wv = _problem()
    wt, wv = wt.clone().requires_grad_(), wv.clone().requires_grad_()
    log_scale = torch.tensor(2.0, requires_grad=True)
    shard = slice(rank * len(xt) // world, (rank + 1) * len(xt) // world)
    loss = _loss(xt[shard], xv[shard], wt, wv, log_scale, local_loss)
    loss.backward()
    grads = [wt.grad, wv.grad, log_scale.grad]
    for g in grads:  # what DDP does: average gradients over ranks
        dist.all_reduce(g)
        g /= world
    mean_loss = loss.detach().clone()  # full: the same on every rank; local: this rank's rows
    dist.all_reduce(mean_loss)
    queue.put((loss.item(), mean_loss.item() / world, [g.numpy().copy() for g in grads]))
    dist.destroy_process_group()


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("local_loss", [False, True], ids=["full", "local"])
@pytest.mark.parametrize("world", [2, 4])
def test_gathered_loss_and_grads_match_single_process(world, local_loss):
    xt, xv, wt, wv = _problem()
    wt, wv = wt.clone().requires_grad_(), wv.clone().requires_grad_()
    log_scale = torch.tensor(2.0, requires_grad=True)
    ref = _loss(xt, xv, wt, wv, log_scale)
    ref.backward()
    ref_grads = [wt.grad, wv.grad, log_scale.grad]

    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    port = _free_port()
    procs = [ctx.Process(target=_worker, args=(r, world, port, queue, local_loss)) for r in range(world)]
    for p in procs:
        p.start()
    results = [queue.get(timeout=120) for _ in range(world)]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    for own_loss, loss, grads in results:
        assert loss == pytest.approx(ref.item(), rel=1e-5)
        if not local_loss:  # every rank computes the whole global loss
            assert own_loss == pytest.approx(ref.item(), rel=1e-5)
        for g, r in zip(grads, ref_grads):
            assert torch.allclose(torch.from_numpy(g), r, atol=1e-6), (g, r)
