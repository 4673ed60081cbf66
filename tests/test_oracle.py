"""The oracle's acceptance test (issue: ≥ 99% clean, ≥ 95% under blur + noise, 16×16 singles)."""
import numpy as np
import pytest
import torch

from minidalle.data import generate
from minidalle.oracle import as_images, judge, read, validation_suite
from minidalle.render import render_scenes
from minidalle.world import Obj, Scene


@pytest.fixture(scope="module")
def suite():
    return validation_suite(n=2000, seed=12345)


@pytest.mark.parametrize("measure", ["shape", "colour", "size", "count", "relations", "stated"])
def test_clean_32px_at_least_99_percent(suite, measure):
    assert suite["32×32 clean"][measure] >= 0.99


@pytest.mark.parametrize("measure", ["shape", "colour", "size", "count", "relations", "stated"])
def test_blur_and_noise_32px_at_least_95_percent(suite, measure):
    assert suite["32×32 blur+noise"][measure] >= 0.95


def test_single_objects_at_16px(suite):
    assert suite["16×16 single, clean"]["colour"] >= 0.95
    assert suite["16×16 single, clean"]["shape"] >= 0.90


def test_judge_agrees_with_the_captions_of_renders():
    b = generate(500, 32, seed=77)
    verdicts = judge(b.images, b.captions)
    assert np.mean([v["exact"] for v in verdicts]) >= 0.99


def test_judge_rejects_wrong_captions():
    b = generate(200, 32, seed=78)
    wrong = [c.replace("red", "TMP").replace("blue", "red").replace("TMP", "blue") for c in b.captions]
    changed = [i for i, (c, w) in enumerate(zip(b.captions, wrong)) if c != w]
    verdicts = judge(b.images[changed], [wrong[i] for i in changed])
    assert len(changed) > 20 and np.mean([v["exact"] for v in verdicts]) < 0.1


def test_reads_depth_order_and_partly_hidden_objects():
    back = Obj("square", "blue", "large", 0.45, 0.45, 0)
    front = Obj("circle", "red", "large", 0.62, 0.62, 1)
    r = read(render_scenes([Scene((back, front))], 32))[0]
    assert [o.describe() for o in r.objects] == ["large blue square", "large red circle"]
    assert (1, "in front of", 0) in r.scene.relations()


def test_accepts_uint8_and_float_and_batches():
    img = render_scenes([Scene((Obj("cross", "green", "large", 0.5, 0.5),))], 32)
    u8 = (img * 255).round().to(torch.uint8)
    assert read(u8)[0].objects[0].shape == read(img[0])[0].objects[0].shape == "cross"
    assert read(torch.zeros(3, 32, 32))[0].objects == ()


@pytest.mark.parametrize("bad, says", [
    (torch.zeros(32, 32, 3), "channels last"),
    (torch.zeros(4, 32, 32), r"RGB image \(3, H, W\)"),
    (torch.zeros(3, 20, 20), "square images of 16, 32, 64"),
    (torch.zeros(3, 32, 16), "square images"),
    (torch.zeros(3, 32, 32, dtype=torch.int32), "uint8"),
    (torch.full((3, 32, 32), -1.0), r"\(x \+ 1\) / 2"),
])
def test_bad_images_get_clear_errors(bad, says):
    with pytest.raises(ValueError, match=says):
        as_images(bad)


def test_caption_count_mismatch():
    with pytest.raises(ValueError, match="2 images but 1 captions"):
        judge(torch.zeros(2, 3, 32, 32), ["a red circle"])
