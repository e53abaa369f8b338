"""The gathered loss on W simulated shards equals the single-process loss on the whole batch,
and so do the gradients after DDP-style averaging."""

import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F

from raytrain.methods.losses import clip_loss, gather_features, symmetric_infonce


def test_symmetric_infonce_hand_value():
    logits = torch.tensor([[2.0, 0.0], [0.0, 2.0]])
    expected = -torch.log_softmax(torch.tensor([2.0, 0.0]), 0)[0]
    assert torch.allclose(symmetric_infonce(logits), expected)
    with pytest.raises(ValueError):
        symmetric_infonce(torch.zeros(2, 3))


def test_single_process_gather_is_identity():
    x = torch.randn(3, 4, requires_grad=True)
    assert gather_features(x) is x


def _problem(seed=0, n=8, d_in=6, d=5):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(n, d_in, generator=g), torch.randn(n, d_in, generator=g),
            torch.randn(d_in, d, generator=g), torch.randn(d_in, d, generator=g))


def _loss(xt, xv, wt, wv, log_scale):
    t = F.normalize(xt @ wt, dim=-1)
    v = F.normalize(xv @ wv, dim=-1)
    return clip_loss(t, v, log_scale.exp())


def _worker(rank, world, port, queue):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    xt, xv, wt, wv = _problem()
    wt, wv = wt.clone().requires_grad_(), wv.clone().requires_grad_()
    log_scale = torch.tensor(2.0, requires_grad=True)
    shard = slice(rank * len(xt) // world, (rank + 1) * len(xt) // world)
    loss = _loss(xt[shard], xv[shard], wt, wv, log_scale)
    loss.backward()
    grads = [wt.grad, wv.grad, log_scale.grad]
    for g in grads:  # what DDP does: average gradients over ranks
        dist.all_reduce(g)
        g /= world
    queue.put((rank, loss.item(), [g.numpy().copy() for g in grads]))
    dist.destroy_process_group()


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("world", [2, 4])
def test_gathered_loss_and_grads_match_single_process(world):
    xt, xv, wt, wv = _problem()
    wt, wv = wt.clone().requires_grad_(), wv.clone().requires_grad_()
    log_scale = torch.tensor(2.0, requires_grad=True)
    ref = _loss(xt, xv, wt, wv, log_scale)
    ref.backward()
    ref_grads = [wt.grad, wv.grad, log_scale.grad]

    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    port = _free_port()
    procs = [ctx.Process(target=_worker, args=(r, world, port, queue)) for r in range(world)]
    for p in procs:
        p.start()
    results = [queue.get(timeout=120) for _ in range(world)]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    for _, loss, grads in results:
        assert loss == pytest.approx(ref.item(), rel=1e-5)
        for g, r in zip(grads, ref_grads):
            assert torch.allclose(torch.from_numpy(g), r, atol=1e-6), (g, r)
