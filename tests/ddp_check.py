"""A 2-process gloo check that a method objective, wrapped in ``DistributedDataParallel`` as the train
loop wraps it (``prepare_model``), trains exactly the single-process objective on the whole batch
(loss and gradients): DDP averages the gradients of the parameters that train and leaves the others
(frozen ones such as MILES's EMA snapshot) alone. Batches travel as numpy."""

import os
import socket

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.nn.parallel import DistributedDataParallel

from raytrain.config import Config, apply_overrides
from raytrain.methods import build_objective


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _grads(objective):
    return {n: p.grad.clone() for n, p in objective.named_parameters() if p.grad is not None}


def _build(overrides):
    torch.manual_seed(0)
    return build_objective(apply_overrides(Config(), overrides))


def _worker(rank, world, port, queue, overrides, batch):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    objective = _build(overrides)
    model = DistributedDataParallel(objective)  # averages the gradients over the ranks in backward
    per = len(batch["frames"]) // world
    local = {k: torch.from_numpy(v[rank * per:(rank + 1) * per]) for k, v in batch.items()}
    loss, _ = model(local)
    loss.backward()
    grads = _grads(objective)
    t = torch.tensor([loss.item()])
    dist.all_reduce(t)
    queue.put((rank, t.item() / world, {n: g.numpy() for n, g in grads.items()}))
    dist.destroy_process_group()


def assert_two_workers_match_single(overrides: list[str], batch: dict[str, np.ndarray]) -> None:
    objective = _build(overrides)
    loss, _ = objective({k: torch.from_numpy(v) for k, v in batch.items()})
    loss.backward()
    ref = _grads(objective)
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    port = _free_port()
    procs = [ctx.Process(target=_worker, args=(r, 2, port, queue, overrides, batch)) for r in range(2)]
    for p in procs:
        p.start()
    results = [queue.get(timeout=180) for _ in range(2)]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    for _, mean_loss, grads in results:
        assert mean_loss == pytest.approx(loss.item(), rel=1e-4)
        assert grads.keys() == ref.keys()
        for name, g in grads.items():
            assert torch.allclose(torch.from_numpy(g), ref[name], atol=1e-5, rtol=1e-3), name


def micro_batch(n: int = 4, seed: int = 0) -> dict[str, torch.Tensor]:
    """A train batch for the RT-Micro-ViT model: ``n`` clips of 3 frames at 32 px, 16-token captions."""
    from raytrain.model.clip_video import get_tokenizer

    g = torch.Generator().manual_seed(seed)
    tok = get_tokenizer("RT-Micro-ViT", 16)
    caps = ["a red circle moves left", "a blue square", "two green stars", "a yellow cross moves up"]
    return {"frames": torch.randint(0, 256, (n, 3, 32, 32, 3), dtype=torch.uint8, generator=g),
            "tokens": tok((caps * 4)[:n])}
