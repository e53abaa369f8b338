"""Pictures of the patch masks (issue 21 item 4): for the first few clips of the eval split, the frames
with MASCOT's high-informed (red) and low-informed (blue) masks and MILES's tube mask (amber) drawn on
them, from a checkpoint's model or a random-init one. Writes ``<out>/<label>-clip<i>.png`` (rows: plain
frames, high, low, tube; frames left to right) and the same images to TensorBoard in ``<out>/tensorboard``.
With ``--stats N`` it also prints, over the first N eval clips, the share of the object's patches
(SynthVTT: patches with a saturated pixel, ``object_patches``) each mask hides, against the share of the
frame it hides: a mask ranked by attention on the object hides more of it than its ratio.
No Ray: the clips are decoded in this process, the model runs on the CPU.

    .venv/bin/python bench/mask_pictures.py --checkpoint runs/.../checkpoint_final --out docs/img
    .venv/bin/python bench/mask_pictures.py --config configs/ablation.yaml --label random-init --out docs/img
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch


def load_model(checkpoint: str | None, config: str, overrides: list[str]):
    """The dual encoder of ``checkpoint`` (its own config, then ``overrides``), or a random-init one."""
    from raytrain.config import apply_overrides, load_config
    from raytrain.methods import build_objective
    from raytrain.train.state import find_checkpoint, load_checkpoint_config, load_training_state

    if checkpoint:
        ckpt = find_checkpoint(checkpoint)
        cfg = apply_overrides(load_checkpoint_config(ckpt), overrides)
        objective = build_objective(cfg)
        objective.load_state_dict(load_training_state(ckpt)["model"])
    else:
        cfg = load_config(config, overrides)
        torch.manual_seed(cfg.train.seed)
        objective = build_objective(cfg)
    return cfg, objective.model.eval()


def eval_frames(cfg, num_clips: int) -> np.ndarray:
    """``(num_clips, T, H, W, 3) uint8``: the first eval-split clips, decoded as evaluation does."""
    from raytrain.data.decode_clips import DecodeClips
    from raytrain.data.manifest import load_manifest
    from raytrain.data.spec import DecodeSpec
    from raytrain.model.clip_video import model_image_size

    rows = load_manifest(cfg.data.manifest, split=cfg.data.eval_split)[:num_clips]
    decode = DecodeClips(DecodeSpec.from_config(cfg, model_image_size(cfg.model.arch), train=False))
    batch = {"path": np.array([r.path for r in rows]), "video_index": np.arange(len(rows)),
             "start_s": np.array([np.nan if r.start_s is None else r.start_s for r in rows]),
             "end_s": np.array([np.nan if r.end_s is None else r.end_s for r in rows])}
    return decode(batch)["frames"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", help="a checkpoint or run folder; without it, a random-init model")
    parser.add_argument("--config", default="configs/ablation.yaml", help="the config of a random-init model")
    parser.add_argument("--clips", type=int, default=3)
    parser.add_argument("--scale", type=int, default=4, help="enlarge each frame this many times")
    parser.add_argument("--label", default=None, help="file-name prefix (default: trained / random-init)")
    parser.add_argument("--out", default="mask_pictures")
    parser.add_argument("--stats", type=int, default=0, help="object-hiding shares over this many eval clips")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    from PIL import Image

    from raytrain.methods.mask_pictures import clip_masks, hidden_share, mask_sheet, object_patches
    from raytrain.storage import TensorBoardLog

    cfg, model = load_model(args.checkpoint, args.config, args.overrides)
    label = args.label or ("trained" if args.checkpoint else "random-init")
    frames = eval_frames(cfg, args.clips)
    masks = clip_masks(model, frames, cfg, seed=cfg.train.seed)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    writer = TensorBoardLog(str(out / "tensorboard"))
    for i, clip in enumerate(frames):
        sheet = mask_sheet(clip, {k: masks[k][i] for k in ("high", "low", "tube")}, scale=args.scale)
        path = out / f"{label}-clip{i}.png"
        Image.fromarray(sheet).quantize(colors=64).save(path, optimize=True)  # small files for docs/
        writer.add_image(f"masks/{label}/clip{i}", sheet, 0, dataformats="HWC")
        print(f"{path} ({sheet.shape[1]}x{sheet.shape[0]}, {path.stat().st_size} bytes)")
    writer.close()
    if args.stats:
        frames = eval_frames(cfg, args.stats)
        masks = clip_masks(model, frames, cfg, seed=cfg.train.seed)
        objects = object_patches(frames, model.num_patches)
        print(f"{label}: {len(frames)} clips, objects cover {objects.mean():.1%} of the patches; "
              "share of the object hidden (share of the frame hidden):")
        for kind, mask in masks.items():
            print(f"  {kind}: {hidden_share(mask, objects):.1%} ({mask.mean():.1%})")


if __name__ == "__main__":
    main()
