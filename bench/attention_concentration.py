"""CLS-attention concentration on SynthVTT (issue 21 item 3): over the first N eval clips, the share of
the last layer's CLS→patch attention that falls on the object patches, against the objects' share of
the frame, for a random-init model, a ``model.pretrained=<run or weights>`` one, or a checkpoint.

A ratio near 1 is attention spread like the area (where a random network looks); well above 1 is
attention on the objects, the premise of MASCOT's attention-ranked masks. Object patches: patches
holding a saturated pixel of the decoded frame (``mask_pictures.object_patches``, equal to the
renderer's exact footprint on rendered frames). No Ray: the clips are decoded here, the model runs on
the CPU.

    .venv/bin/python bench/attention_concentration.py --config configs/ablation.yaml --clips 80
    .venv/bin/python bench/attention_concentration.py --config configs/ablation.yaml model.pretrained=runs/ablation/pre
    .venv/bin/python bench/attention_concentration.py --checkpoint runs/ablation/ablation-0-baseline-seed0
"""

from __future__ import annotations

import argparse
import json

import torch
from mask_pictures import eval_frames, load_model  # bench/mask_pictures.py (this folder is sys.path[0])


@torch.no_grad()
def concentration(model, frames, batch: int = 16) -> dict[str, float]:
    """The attention concentration of ``model`` on ``frames: (B, T, H, W, 3) uint8`` (eval mode)."""
    from raytrain.methods.attention_share import attention_concentration
    from raytrain.methods.mask_pictures import object_patches

    model.eval()
    attention = []
    for i in range(0, len(frames), batch):
        chunk = torch.as_tensor(frames[i:i + batch])
        out = model.encode_images(model.images_from_frames(chunk), chunk.shape[1], return_attention=True)
        attention.append(out.attention.float().cpu())
    objects = torch.as_tensor(object_patches(frames, model.num_patches))
    return attention_concentration(torch.cat(attention), objects)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", help="a checkpoint or run folder; without it, the model --config builds")
    parser.add_argument("--config", default="configs/ablation.yaml")
    parser.add_argument("--clips", type=int, default=80, help="the first N clips of the eval split")
    parser.add_argument("--label", default=None)
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    cfg, model = load_model(args.checkpoint, args.config, args.overrides)
    label = args.label or (args.checkpoint or f"model.pretrained={cfg.model.pretrained or '(random init)'}")
    frames = eval_frames(cfg, args.clips)
    res = concentration(model, frames)
    print(f"{label}: {len(frames)} clips x {frames.shape[1]} frames ({res['frames']} with an object), "
          f"{model.num_patches} patches: CLS attention on the objects {res['attention_share']:.1%}, "
          f"objects' share of the frame {res['area_share']:.1%}, ratio {res['ratio']:.2f}")
    print(json.dumps({"label": label, "clips": len(frames), **res}))


if __name__ == "__main__":
    main()
