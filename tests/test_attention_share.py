"""CLS-attention concentration (issue 21 item 3): the share of CLS attention on the object patches vs
their share of the frame, and the object footprint it is measured against."""

import numpy as np
import pytest
import torch

from raytrain.data.synth_render import object_footprint, render_frames
from raytrain.data.synth_scene import ClipSpec, ObjectSpec
from raytrain.methods.attention_share import attention_concentration
from raytrain.methods.mask_pictures import footprint_patches, object_patches


def _objects(n=16, on=(0, 5)):
    obj = torch.zeros(2, n, dtype=torch.bool)
    obj[:, list(on)] = True
    return obj


def test_all_attention_on_the_object_gives_share_one():
    obj = _objects()
    attention = obj.float() * torch.tensor([[3.0], [0.5]])  # any scale: each frame is renormalised
    out = attention_concentration(attention, obj)
    assert out["attention_share"] == pytest.approx(1.0)
    assert out["area_share"] == pytest.approx(2 / 16)
    assert out["ratio"] == pytest.approx(8.0)
    assert out["frames"] == 2


def test_uniform_attention_gives_the_area_share():
    obj = _objects(on=(1, 2, 3, 9))
    out = attention_concentration(torch.full((2, 16), 1 / 16), obj)
    assert out["attention_share"] == pytest.approx(4 / 16)
    assert out["ratio"] == pytest.approx(1.0)


def test_frames_without_objects_are_left_out_and_shapes_must_match():
    obj = _objects()
    obj[1] = False
    attention = torch.rand(2, 16)
    attention[0] = 0.0
    attention[0, 0] = 1.0
    out = attention_concentration(attention, obj)
    assert out["frames"] == 1 and out["attention_share"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="shape"):
        attention_concentration(torch.rand(2, 16), torch.zeros(2, 9, dtype=torch.bool))
    with pytest.raises(ValueError, match="no frame"):
        attention_concentration(torch.rand(2, 16), torch.zeros(2, 16, dtype=torch.bool))


def _spec():
    objects = (ObjectSpec("circle", "red", "large", "right", "quickly", 10.0, (14.0, 20.0), (40.0, 20.0)),
               ObjectSpec("square", "blue", "small", "down", "slowly", 5.0, (50.0, 44.0), (50.0, 56.0)))
    return ClipSpec("t", 24, 3, 64, 64, "checkered", "grey", objects)


def test_object_footprint_is_what_render_frames_draws():
    spec = _spec()
    frames = render_frames(spec)
    footprint = object_footprint(spec)
    assert footprint.shape == frames.shape[:3] and footprint.any(axis=(1, 2)).all()
    background = render_frames(ClipSpec(**{**spec.__dict__, "objects": ()}))
    np.testing.assert_array_equal(footprint, (frames != background).any(-1))
    # the saturation proxy the bench uses on decoded frames finds exactly the footprint's patches
    patches = footprint_patches(footprint, 64)
    np.testing.assert_array_equal(object_patches(frames, 64), patches)
    assert 0 < patches.mean() < 0.5
    # the circle moves right: its patches in the first and last frame differ
    assert (patches[0] != patches[-1]).any()
    with pytest.raises(ValueError, match="patch grid"):
        footprint_patches(np.zeros((1, 10, 10), bool), 9)
