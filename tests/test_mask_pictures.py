"""The mask pictures (issue 21 item 4): pure drawing, and the masks a model gives, without Ray."""

import numpy as np
import pytest
import torch

from raytrain.config import Config, apply_overrides
from raytrain.methods.mask_pictures import COLOURS, clip_masks, draw_mask, mask_sheet
from raytrain.methods.masks import mask_count
from raytrain.model.clip_video import build_model


def _frame(h=8, w=8, value=100):
    return np.full((h, w, 3), value, dtype=np.uint8)


def test_draw_mask_tints_only_the_masked_patches():
    frame = np.arange(8 * 8 * 3, dtype=np.uint8).reshape(8, 8, 3)
    mask = np.zeros(4, dtype=bool)
    mask[1] = True  # top-right patch of a 2x2 grid (4x4 pixels each)
    img = draw_mask(frame, mask, colour=(255, 0, 0), dim=0.5)
    assert img.shape == (8, 8, 3) and img.dtype == np.uint8
    np.testing.assert_array_equal(img[:, :4], frame[:, :4])  # left half: visible patches untouched
    np.testing.assert_array_equal(img[4:, 4:], frame[4:, 4:])
    np.testing.assert_array_equal(img[0, 4:], [[255, 0, 0]] * 4)  # the outline is the colour itself
    inner = img[1:3, 5:7].astype(int)
    expected = (0.5 * frame[1:3, 5:7].astype(np.float32)).astype(int)  # darkened inside
    np.testing.assert_array_equal(inner, expected)


def test_draw_mask_scales_and_rejects_a_mismatched_grid():
    mask = np.array([True, False, False, False])
    img = draw_mask(_frame(), mask, scale=3)
    assert img.shape == (24, 24, 3)
    assert (img[12:, :] == 100).all()  # bottom patches visible
    with pytest.raises(ValueError, match="square grid"):
        draw_mask(_frame(), np.zeros(3, dtype=bool))
    with pytest.raises(ValueError, match="patch grid"):
        draw_mask(_frame(9, 9), np.zeros(4, dtype=bool))


def test_mask_sheet_lays_out_a_row_per_mask():
    frames = np.stack([_frame(value=v) for v in (10, 200, 90)])
    masks = {"high": np.eye(3, 4, dtype=bool), "tube": np.ones((3, 4), dtype=bool) & [1, 0, 0, 1]}
    sheet = mask_sheet(frames, masks, scale=2, gap=2)
    assert sheet.shape == (3 * 16 + 2 * 2, 3 * 16 + 2 * 2, 3)
    np.testing.assert_array_equal(sheet[:16, 18:34], 200)  # first row: plain frames
    assert (sheet[16:18] == 255).all()  # white gap
    tube_row = sheet[36:52, :16]
    assert tuple(tube_row[0, 0]) == COLOURS["tube"]  # masked corner outlined in the tube colour
    assert (tube_row[0:8, 8:16] == 10).all()  # unmasked patch untouched


def test_clip_masks_follow_the_model_and_the_ratios():
    cfg = apply_overrides(Config(), ["model.arch=RT-Micro-ViT", "mask.high_ratio=0.25", "mask.low_ratio=0.5",
                                     "method.miles.mask_ratio=0.5"])
    torch.manual_seed(0)
    model = build_model(cfg.model)
    size = model.clip.visual.image_size
    size = size[0] if isinstance(size, tuple) else size
    frames = torch.randint(0, 256, (2, 3, size, size, 3), dtype=torch.uint8)
    masks = clip_masks(model, frames, cfg, seed=5)
    n = model.num_patches
    assert {k: v.shape for k, v in masks.items()} == {k: (2, 3, n) for k in ("high", "low", "tube")}
    assert (masks["high"].sum(-1) == mask_count(n, 0.25)).all()
    assert (masks["low"].sum(-1) == mask_count(n, 0.5)).all()
    assert not (masks["high"] & masks["low"]).any()  # top and bottom of the same ranking
    assert (masks["tube"] == masks["tube"][:, :1]).all()  # a tube: the same patches every frame
    assert (masks["tube"].sum(-1) == mask_count(n, 0.5)).all()
    np.testing.assert_array_equal(clip_masks(model, frames, cfg, seed=5)["tube"], masks["tube"])
    assert model.training  # the train/eval mode is restored


class _Writer:
    def __init__(self):
        self.images = []

    def add_image(self, tag, img, step, dataformats):
        self.images.append((tag, img.shape, step, dataformats))


class _EvalShard:
    """Stands in for the eval dataset shard: one batch of frames, counting how often it is read."""

    def __init__(self, frames):
        self.frames, self.reads = frames, 0

    def iter_torch_batches(self, batch_size, dtypes=None):
        self.reads += 1
        return iter([{"frames": self.frames[:batch_size]}])


def test_in_run_mask_pictures_log_one_image_per_clip_for_mascot_and_miles_only():
    from raytrain.train.mask_pictures import MaskPictures

    torch.manual_seed(0)
    cfg = apply_overrides(Config(), ["model.arch=RT-Micro-ViT", "method.name=mascot", "eval.mask_pictures=2"])
    model = build_model(cfg.model)
    size = model.clip.visual.image_size
    size = size[0] if isinstance(size, tuple) else size
    shard = _EvalShard(torch.randint(0, 256, (4, 3, size, size, 3), dtype=torch.uint8))
    writer = _Writer()
    pictures = MaskPictures(cfg)
    pictures.log(model, shard, writer, step=10)
    pictures.log(model, shard, writer, step=20)
    assert shard.reads == 1  # the same clips every evaluation
    # rows: plain frames + high + low; scale 2, gap 2
    side = 3 * (2 * size + 2) - 2
    assert writer.images == [(f"masks/clip{i}", (side, 3 * (2 * size + 2) - 2, 3), s, "HWC")
                             for s in (10, 20) for i in range(2)]
    for name, over in (("clip4clip", []), ("mascot", ["eval.mask_pictures=0"])):
        off = MaskPictures(apply_overrides(cfg, [f"method.name={name}", *over]))
        assert not off.enabled
        off.log(model, shard, writer, step=30)
    assert len(writer.images) == 4
    miles = MaskPictures(apply_overrides(cfg, ["method.name=miles"]))
    miles.log(model, shard, writer, step=40)
    side_miles = 2 * (2 * size + 2) - 2  # plain frames + tube
    assert writer.images[-1][1][0] == side_miles
    with pytest.raises(ValueError, match="mask_pictures"):
        apply_overrides(Config(), ["eval.mask_pictures=-1"])


def test_object_patches_and_hidden_share():
    from raytrain.methods.mask_pictures import hidden_share, object_patches

    frame = np.full((8, 8, 3), 90, dtype=np.uint8)  # grey background, 2x2 grid of 4x4 patches
    frame[5, 1] = (200, 30, 30)  # one red pixel in the bottom-left patch
    frame[0, 6] = (120, 110, 100)  # a faintly coloured one in the top-right patch: not an object
    objects = object_patches(frame[None], 4)
    np.testing.assert_array_equal(objects, [[False, False, True, False]])
    assert hidden_share(np.array([[False, False, True, True]]), objects) == 1.0
    assert hidden_share(np.array([[True, True, False, False]]), objects) == 0.0
    assert hidden_share(np.zeros((1, 4), bool), np.zeros((1, 4), bool)) == 0.0
