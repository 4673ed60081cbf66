import math

import pytest
import torch

from minidalle.world.render import PALETTE, degrade, masks, render, render_scenes
from minidalle.world.sampler import sample_scenes
from minidalle.world.scenes import SIZES, Obj, Scene


def test_clean_renders_hold_only_palette_colours_and_black():
    img = render(sample_scenes(200, seed=1), 32)                       # (N, 3, 32, 32)
    px = img.permute(0, 2, 3, 1).reshape(-1, 3)
    allowed = torch.cat([PALETTE, torch.zeros(1, 3)])
    assert (px[:, None, :] == allowed[None]).all(-1).any(-1).all()


def test_scene_list_and_arrays_render_alike():
    sa = sample_scenes(20, seed=2)
    assert torch.equal(render(sa, 16), render_scenes(sa.to_scenes(), 16))


@pytest.mark.parametrize("shape, area", [(0, math.pi / 4), (1, 1.0), (2, 0.5), (3, 0.5), (4, 7 / 16)])
def test_shape_areas_match_geometry(shape, area):
    # fraction of the object's box each shape fills, at 64 px where rasterisation error is small
    m = masks(torch.tensor([shape]), torch.tensor([1]), torch.tensor([[0.5, 0.5]]), 64)
    box = (SIZES["large"] * 64) ** 2
    assert abs(m.sum().item() / box - area) < 0.06


def test_later_objects_are_drawn_on_top():
    back = Obj("square", "blue", "large", 0.5, 0.5, 0)
    front = Obj("circle", "red", "small", 0.5, 0.5, 1)
    img = render_scenes([Scene((back, front))], 32)[0]
    assert torch.allclose(img[:, 16, 16], PALETTE[0])           # red on top at the centre


def test_unsupported_resolution_is_refused():
    with pytest.raises(ValueError, match="use one of"):
        render(sample_scenes(2), 48)


def test_degrade_is_seeded_and_stays_in_range():
    img = render(sample_scenes(4), 32)
    a, b = degrade(img, seed=3), degrade(img, seed=3)
    assert torch.equal(a, b) and a.min() >= 0 and a.max() <= 1 and not torch.equal(a, img)
