"""One MASCOT training step vs one CLIP4Clip step on the same batch, measured side by side.

The ideal ratio of methods.md's design is one full pass plus two passes over the (1 - ρ) visible
tokens: 1 + 2(1 - ρ) (2.4 at ρ = 0.3). It only holds if masked tokens are really dropped, so the
script also times the masked passes with nothing dropped (the counterfactual of zeroing tokens).

    .venv/bin/python bench/mascot_overhead.py [--arch ViT-B-32] [--frames 4] [--batch 4] [--ratio 0.3]
"""

from __future__ import annotations

import argparse
import platform
from unittest import mock

import torch
from timing import time_steps  # bench/timing.py (the script folder is on sys.path)


def make_step(objective, batch):
    params = [p for p in objective.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-5)

    def step():
        loss, _ = objective(batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return step


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--arch", default="ViT-B-32")
    p.add_argument("--frames", type=int, default=4)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--ratio", type=float, default=0.3)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: leave as is)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    from raytrain.config import Config, apply_overrides
    from raytrain.methods import build_objective
    from raytrain.methods import mascot as mascot_module
    from raytrain.model.clip_video import get_tokenizer, model_image_size

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    size = model_image_size(args.arch)
    base_cfg = apply_overrides(Config(), [f"model.arch={args.arch}", f"mask.high_ratio={args.ratio}",
                                          f"mask.low_ratio={args.ratio}"])
    mascot_cfg = apply_overrides(base_cfg, ["method.name=mascot"])
    passes_cfg = apply_overrides(mascot_cfg, ["method.mascot.isc=false"])
    g = torch.Generator().manual_seed(0)
    tok = get_tokenizer(args.arch, 32)
    batch = {"frames": torch.randint(0, 256, (args.batch, args.frames, size, size, 3), dtype=torch.uint8,
                                     generator=g).to(device),
             "tokens": tok(["a small red circle moves left over a striped background"] * args.batch).to(device)}
    objectives = {}
    for name, cfg in (("baseline", base_cfg), ("mascot", mascot_cfg), ("mascot_passes_only", passes_cfg)):
        torch.manual_seed(0)
        objectives[name] = build_objective(cfg).to(device).train()
    steps = {name: make_step(obj, batch) for name, obj in objectives.items()}
    amp = torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")

    original_visible_index = mascot_module.visible_index

    def keep_everything(mask):  # counterfactual: masked passes that drop nothing
        return original_visible_index(torch.zeros_like(mask))
    with amp:
        t = time_steps(steps, args.repeats, args.warmup)
        with mock.patch.object(mascot_module, "visible_index", keep_everything):
            t.update({"mascot_no_dropping": time_steps({"x": steps["mascot"]}, args.repeats, args.warmup)["x"]})

    ideal = 1 + 2 * (1 - args.ratio)
    ratio = t["mascot"] / t["baseline"]
    print(f"device: {torch.cuda.get_device_name() if device.type == 'cuda' else platform.processor() or 'cpu'}"
          f" ({torch.get_num_threads()} CPU threads), torch {torch.__version__}")
    print(f"model {args.arch}, batch {args.batch} x {args.frames} frames @ {size}px, mask ratio {args.ratio}, "
          f"median of {args.repeats} steps (forward + backward + AdamW)")
    print(f"{'step':<34}{'seconds':>10}{'x baseline':>12}")
    for name, label in (("baseline", "CLIP4Clip baseline"), ("mascot_passes_only", "MASCOT masked passes only"),
                        ("mascot", "MASCOT full (passes + ISC + co)"),
                        ("mascot_no_dropping", "MASCOT, masked tokens not dropped")):
        print(f"{label:<34}{t[name]:>10.3f}{t[name] / t['baseline']:>12.2f}")
    print(f"\nideal ratio 1 + 2(1 - {args.ratio}) = {ideal:.2f}; measured {ratio:.2f} = {ratio / ideal:.2f} x ideal "
          f"(target <= 1.10: {'met' if ratio / ideal <= 1.10 else 'NOT met'})")


if __name__ == "__main__":
    main()
