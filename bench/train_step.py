"""raytrain's training step vs a bare PyTorch CLIP4Clip step of the same model and batch, side by side.

The bare step is what a researcher would write by hand: open_clip's model, frames normalised, every
frame through the image tower, mean pooling, symmetric InfoNCE with the learnable scale, AdamW (fused
on CUDA). raytrain's step is the training loop's sequence on one worker: the method objective
(``build_objective``), zero_grad, backward, gradient clipping, the finite-loss check, AdamW with its two
parameter groups and the LR scheduler, and the loss read back for logging: ``raytrain.train.step.train_step``
itself, as the loop calls it. Both see the same uint8 frames and the same 77-token captions; medians of
interleaved steps.

    .venv/bin/python bench/train_step.py                        # ViT-B-32 random init, 8 clips x 4 frames
    .venv/bin/python bench/train_step.py --arch ViT-B-16 --batch 64 --frames 12   # on a GPU
    .venv/bin/python bench/train_step.py --compile --grad-checkpointing  # also those two variants

MFU: the model FLOPs of one step (forward + backward, counted once by ``torch.utils.flop_counter`` on
the bare step; optimizer excluded) divided by the step time and by the device's peak: dense bf16
tensor-core peak for known GPUs (``--peak-tflops`` to give one), none on a CPU (achieved TFLOP/s only).
"""

from __future__ import annotations

import argparse
import platform

import torch
import torch.nn.functional as F
from timing import time_steps  # bench/timing.py (the script folder is on sys.path)

from raytrain.train.step import autocast_dtype, train_step  # the loop's own step


def bare_step_fn(arch: str, batch: dict, device: torch.device, amp, optimizer: bool = True):
    import open_clip

    torch.manual_seed(0)
    clip = open_clip.create_model(arch, pretrained=None).to(device).train()
    mean = torch.tensor(clip.visual.image_mean or (0.48145466, 0.4578275, 0.40821073), device=device)
    std = torch.tensor(clip.visual.image_std or (0.26862954, 0.26130258, 0.27577711), device=device)
    opt = torch.optim.AdamW(clip.parameters(), lr=1e-5, weight_decay=0.2, fused=device.type == "cuda" or None)
    frames, tokens = batch["frames"], batch["tokens"]
    b, t = frames.shape[:2]
    labels = torch.arange(b, device=device)

    def step() -> None:
        with amp():
            x = (frames.float() / 255.0 - mean) / std  # (B, T, H, W, 3)
            x = x.permute(0, 1, 4, 2, 3).reshape(b * t, 3, *frames.shape[2:4])
            video = F.normalize(clip.encode_image(x).view(b, t, -1).mean(dim=1), dim=-1)
            text = F.normalize(clip.encode_text(tokens), dim=-1)
            logits = clip.logit_scale.exp().clamp(max=100) * text @ video.t()
            loss = (F.cross_entropy(logits, labels) + F.cross_entropy(logits.t(), labels)) / 2
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if optimizer:
            opt.step()
    return step


def raytrain_step_fn(cfg, batch: dict, device: torch.device):
    """raytrain's step on one worker: the objective (compiled when ``train.compile`` asks for it) and
    ``raytrain.train.step.train_step``, the very function the training loop calls."""
    from raytrain.methods import build_objective
    from raytrain.train.schedule import build_optimizer, build_scheduler

    torch.manual_seed(0)
    module = build_objective(cfg).to(device).train()
    opt = build_optimizer(module, cfg.optim)
    objective = module  # what the loop calls: compiled when train.compile asks for it
    if cfg.train.compile != "none":
        objective = torch.compile(module, mode=None if cfg.train.compile == "default" else cfg.train.compile)
    scheduler = build_scheduler(opt, 10_000, cfg.optim)
    amp = autocast_dtype(cfg, device)  # train.precision=auto: bf16 on CUDA, as the bare step's amp()

    def step() -> None:
        train_step(objective, opt, scheduler, batch, amp=amp, grad_clip=cfg.optim.grad_clip,
                   after_optimizer_step=module.after_optimizer_step)
    return step


# Dense bf16 tensor-core peaks (TFLOP/s, no sparsity), by a substring of torch.cuda.get_device_name().
PEAK_BF16_TFLOPS = {"H200": 989.0, "H100 SXM": 989.0, "H100 80GB HBM3": 989.0, "H100 PCIe": 756.0,
                    "H100 NVL": 835.0, "A100": 312.0, "L40S": 362.0, "L4": 121.0, "A10G": 125.0}


def peak_tflops(device: torch.device, given: float) -> float | None:
    if given:
        return given
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name()
    return next((v for k, v in PEAK_BF16_TFLOPS.items() if k in name), None)


def step_flops(arch: str, batch: dict, device: torch.device, amp) -> int:
    """Model FLOPs of one bare CLIP4Clip forward + backward (what every variant computes; MASCOT more)."""
    from torch.utils.flop_counter import FlopCounterMode

    step = bare_step_fn(arch, batch, device, amp, optimizer=False)
    counter = FlopCounterMode(display=False)
    with counter:
        step()
    return counter.get_total_flops()


def peak_memory_gb(steps: dict, device: torch.device) -> dict[str, float]:
    """Peak GPU memory of one step of each variant, run alone (CUDA only: CPU allocations are not
    tracked by torch; an empty dict there)."""
    if device.type != "cuda":
        return {}
    out = {}
    for name, fn in steps.items():
        fn()  # the first step allocates the optimizer state
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        fn()
        torch.cuda.synchronize()
        out[name] = torch.cuda.max_memory_allocated() / 2**30
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--arch", default="ViT-B-32")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--frames", type=int, default=4)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: leave as is)")
    p.add_argument("--compile", action="store_true", help="also time raytrain with train.compile=default")
    p.add_argument("--grad-checkpointing", action="store_true",
                   help="also time raytrain with model.grad_checkpointing=true")
    p.add_argument("--peak-tflops", type=float, default=0.0, help="the device's peak for MFU (default: known GPUs)")
    p.add_argument("--out", default=None)
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    import open_clip

    from raytrain.config import Config, apply_overrides
    from raytrain.model.clip_video import model_image_size

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    size = model_image_size(args.arch)
    base = apply_overrides(Config(), [f"model.arch={args.arch}", "model.temporal=meanP", "data.max_words=77",
                                      "optim.lr=1e-5", "optim.tower_lr=1e-5"])
    mascot = apply_overrides(base, ["method.name=mascot"])
    g = torch.Generator().manual_seed(0)
    tokenizer = open_clip.get_tokenizer(args.arch)
    captions = [f"a small red circle moves left over a striped background, clip {i}" for i in range(args.batch)]
    batch = {"frames": torch.randint(0, 256, (args.batch, args.frames, size, size, 3), dtype=torch.uint8,
                                     generator=g).to(device),
             "tokens": tokenizer(captions).to(device)}

    def amp():
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")

    steps = {"bare": bare_step_fn(args.arch, batch, device, amp),
             "raytrain": raytrain_step_fn(base, batch, device),
             "raytrain_mascot": raytrain_step_fn(mascot, batch, device)}
    labels = {"bare": "bare PyTorch CLIP4Clip", "raytrain": "raytrain CLIP4Clip (baseline)",
              "raytrain_mascot": "raytrain MASCOT"}
    if args.compile:
        steps["compiled"] = raytrain_step_fn(apply_overrides(base, ["train.compile=default"]), batch, device)
        labels["compiled"] = "raytrain CLIP4Clip, train.compile"
    if args.grad_checkpointing:
        steps["ckpt"] = raytrain_step_fn(apply_overrides(base, ["model.grad_checkpointing=true"]), batch, device)
        labels["ckpt"] = "raytrain CLIP4Clip, grad checkpointing"
    flops = step_flops(args.arch, batch, device, amp)
    memory = peak_memory_gb(steps, device)
    t = time_steps(steps, args.repeats, args.warmup)
    peak = peak_tflops(device, args.peak_tflops)

    where = torch.cuda.get_device_name() if device.type == "cuda" else (platform.processor() or "cpu")
    lines = [(f"# bench/train_step.py on {platform.node()}: {where} ({torch.get_num_threads()} CPU threads), "
             f"torch {torch.__version__}, {'bf16 autocast, fused AdamW' if device.type == 'cuda' else 'fp32'}"),
             (f"# model {args.arch} (random init), batch {args.batch} clips x {args.frames} frames @ {size}px, "
             f"77-token captions, median of {args.repeats} interleaved steps (forward + backward + AdamW)"),
             (f"# model FLOPs per step (CLIP4Clip forward + backward): {flops / 1e12:.3f} TFLOP; "
              f"peak {f'{peak:g} TFLOP/s' if peak else 'unknown (CPU): MFU not computed'}"),
             f"{'step':<40}{'seconds':>9}{'clips/s':>9}{'vs bare':>9}{'TFLOP/s':>9}{'MFU':>7}{'peak GB':>9}"]
    for name, label in labels.items():
        achieved = flops / t[name] / 1e12
        mfu = f"{achieved / peak:7.1%}" if peak and name != "raytrain_mascot" else f"{'-':>7}"
        tflops = f"{achieved:9.3f}" if name != "raytrain_mascot" else f"{'-':>9}"
        mem = f"{memory[name]:9.2f}" if name in memory else f"{'-':>9}"
        lines.append(f"{label:<40}{t[name]:>9.3f}{args.batch / t[name]:>9.1f}{t['bare'] / t[name]:>9.3f}"
                     f"{tflops}{mfu}{mem}")
    ratio = t["bare"] / t["raytrain"]
    lines.append(f"baseline throughput ratio raytrain / bare = {ratio:.3f} "
                 f"(target >= 0.95: {'met' if ratio >= 0.95 else 'NOT met'}); MASCOT's extra passes are not "
                 f"counted in the FLOPs, so it has no TFLOP/s or MFU figure")
    print("\n".join(lines))
    if args.out:
        with open(args.out, "w") as f:
            f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
