"""Which attention kernels one training forward pass dispatches: ``aten::scaled_dot_product_attention``
once per attention layer (open_clip's blocks call ``nn.MultiheadAttention(need_weights=False)``, which
goes to SDPA: flash / memory-efficient kernels on a GPU) and no explicit ``softmax(QKᵀ)``. A
regression to the explicit path shows here as SDPA calls below the layer count or softmax calls above
zero (the MASCOT CLS-attention recomputation is one explicit softmax, by design: ``cls_attention``).
The results are the same either way (``tests/test_fast_path.py``); this is about speed and memory.

    .venv/bin/python bench/attention_kernels.py [--arch RT-Micro-ViT] [--frames 3] [--batch 4]
"""

from __future__ import annotations

import argparse

import torch
from torch.profiler import ProfilerActivity, profile


def op_counts(fn, names: tuple[str, ...]) -> dict[str, int]:
    """How often each aten op in ``names`` runs during ``fn()`` (CPU profiler events)."""
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    events = [e.name for e in prof.events()]
    return {n: events.count(n) for n in names}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--arch", default="RT-Micro-ViT")
    p.add_argument("--frames", type=int, default=3)
    p.add_argument("--batch", type=int, default=4)
    args = p.parse_args()

    from raytrain.config import Config, apply_overrides
    from raytrain.methods import build_objective
    from raytrain.model.clip_video import get_tokenizer, model_image_size

    size = model_image_size(args.arch)
    g = torch.Generator().manual_seed(0)
    batch = {"frames": torch.randint(0, 256, (args.batch, args.frames, size, size, 3), dtype=torch.uint8,
                                     generator=g),
             "tokens": get_tokenizer(args.arch, 16)(["a red circle moves left"] * args.batch)}
    names = ("aten::scaled_dot_product_attention", "aten::_softmax")
    print(f"model {args.arch}, batch {args.batch} x {args.frames} frames @ {size}px, one forward pass, torch "
          f"{torch.__version__}")
    print(f"{'temporal head':<16}{'attention layers':>18}{'SDPA calls':>12}{'softmax calls':>15}  verdict")
    failed = False
    for temporal in ("meanP", "seqTransf"):
        torch.manual_seed(0)
        cfg = apply_overrides(Config(), [f"model.arch={args.arch}", f"model.temporal={temporal}",
                                         "model.temporal_layers=2", f"data.num_frames={args.frames}"])
        objective = build_objective(cfg)
        clip = objective.model.clip
        layers = len(clip.visual.transformer.resblocks) + len(clip.transformer.resblocks)
        layers += cfg.model.temporal_layers if temporal == "seqTransf" else 0
        counts = op_counts(lambda: objective(batch), names)  # noqa: B023 (called at once)
        sdpa, softmax = counts[names[0]], counts[names[1]]
        ok = sdpa == layers and softmax == 0
        failed |= not ok
        print(f"{temporal:<16}{layers:>18}{sdpa:>12}{softmax:>15}  {'fused' if ok else 'NOT all fused'}")
    raise SystemExit(1 if failed else 0)


if __name__ == "__main__":
    main()
