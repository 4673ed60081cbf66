"""The unCLIP pipeline (lessons 06–07): slerp, inpainting, the cascade and its capabilities, the CLI, the shipped
cascade."""
import math

import pytest
import torch

from minidalle import checkpoint
from minidalle.clip import train as clip_train
from minidalle.clip.model import CLIP, clip_config
from minidalle.config import InputError
from minidalle.dalle2 import unclip
from minidalle.dalle2.decoder import Decoder, decoder_config
from minidalle.dalle2.prior import Prior, prior_config
from minidalle.dalle2.unclip import UnCLIP, generate, inpaint, interpolate, slerp, text_diff, variations
from minidalle.dalle2.upsampler import Upsampler, upsampler_config
from minidalle.diffusion.gaussian import Diffusion, DiffusionConfig
from minidalle.eval.prompts import SINGLE_PROMPTS, judge_samples
from minidalle.runtime import seed_everything
from minidalle.world.data import generate as scenes


def test_slerp_keeps_unit_length_and_splits_the_angle():
    a, b = torch.tensor([1.0, 0.0, 0.0]), torch.tensor([0.0, 1.0, 0.0])
    assert torch.allclose(slerp(a, b, 0.0), a, atol=1e-6) and torch.allclose(slerp(a, b, 1.0), b, atol=1e-6)
    mid = slerp(a, b, 0.5)
    assert torch.allclose(mid, torch.tensor([1.0, 1.0, 0.0]) / math.sqrt(2), atol=1e-6)
    w = slerp(a, b, 0.3)
    assert math.isclose(float(w.norm()), 1.0, rel_tol=1e-6)
    assert math.isclose(float(torch.arccos(w @ a)), 0.3 * math.pi / 2, rel_tol=1e-5)


def test_inpainting_keeps_the_known_region_exactly():
    d = Diffusion(DiffusionConfig(schedule="cosine", prediction="eps", timesteps=50))
    x0 = torch.rand(2, 3, 8, 8) * 2 - 1
    keep = torch.zeros(2, 1, 8, 8)
    keep[..., :4, :] = 1                                                           # the top half is given
    out = d.sample(lambda x, t: torch.zeros_like(x), x0.shape, steps=5, method="ddim",
                   generator=torch.Generator().manual_seed(0), known=(x0, keep))
    assert torch.equal(out[..., :4, :], x0[..., :4, :])
    assert not torch.allclose(out[..., 4:, :], x0[..., 4:, :])


@pytest.fixture(scope="module")
def ci_pipe():
    """The ci preset's cascade: a CLIP trained for its few steps, untrained prior, decoder and upsampler."""
    seed_everything(0)
    clip_model = CLIP(clip_config("ci"))
    clip_train.train(clip_model, show_progress=False)
    torch.manual_seed(0)
    return UnCLIP(clip_model.eval(), Prior(prior_config("ci")).eval(), Decoder(decoder_config("ci")).eval(),
                  Upsampler(upsampler_config("ci")).eval())


def test_pipeline_shapes_seeds_and_bad_prompts(ci_pipe):
    up = upsampler_config("ci").unet.res
    images = generate(ci_pipe, ["a red circle", "a blue square above a green cross"], seed=0)
    assert images.shape == (2, 3, up, up) and images.min() >= 0 and images.max() <= 1
    assert torch.equal(images, generate(ci_pipe, ["a red circle", "a blue square above a green cross"], seed=0))
    base = generate(ci_pipe, "a red circle", embedding="text", upsampled=False)
    assert base.shape[-1] == decoder_config("ci").unet.res
    for bad, says in (("", "empty"), ("a purple unicorn", "unknown word"), (" ".join(["a red circle"] * 20), "long")):
        with pytest.raises(InputError, match=says):
            generate(ci_pipe, bad)
    with pytest.raises(InputError, match="embedding"):
        generate(ci_pipe, "a red circle", embedding="image")


def test_capabilities_run_and_keep_what_they_should(ci_pipe):
    img = scenes(2, 32, seed=3).images.float() / 255
    var = variations(ci_pipe, img[0], n=3)
    assert var.shape == (3, 3, 32, 32) and not torch.equal(var[0], var[1])         # fresh noise for each
    strip = interpolate(ci_pipe, img[0], img[1], n=3)
    assert strip.shape == (3, 3, 32, 32)
    own = unclip.pixels_from_embeddings(ci_pipe, unclip.image_embeddings(ci_pipe, img[:1]))
    assert torch.allclose(strip[:1], own, atol=1e-4)                               # w = 0: image a's embedding
    edits = text_diff(ci_pipe, img[0], "a red circle", "a blue circle", amounts=(0, 0.5))
    assert edits.shape == (2, 3, 32, 32) and torch.allclose(edits[:1], own, atol=1e-4)   # θ = 0: the image's own
    res = decoder_config("ci").unet.res
    keep = torch.zeros(res, res)
    keep[: res // 2] = 1
    assert inpaint(ci_pipe, img[0], keep, "a red circle", n=2).shape == (2, 3, 32, 32)
    kept = inpaint(ci_pipe, img[0], keep, None, n=2, seed=4)
    assert kept.shape == (2, 3, 32, 32)
    with pytest.raises(InputError, match="mask"):
        inpaint(ci_pipe, img[0], torch.zeros(5, 5))
    with pytest.raises(InputError, match="RGB"):
        variations(ci_pipe, torch.rand(32, 32))


def test_load_names_the_first_missing_checkpoint(tmp_path, monkeypatch):
    monkeypatch.setattr(checkpoint, "SHIPPED", tmp_path)
    with pytest.raises(checkpoint.CheckpointError, match="python -m minidalle train clip"):
        unclip.load("ci")


def test_generate_command_refuses_bad_input_clearly(capsys):
    from minidalle.cli import main            # imported here: a broken CLI fails its own tests, not the module's

    assert main(["generate", "a purple unicorn"]) == 2
    assert "unknown word 'unicorn'" in capsys.readouterr().err
    assert main(["generate", "a red circle", "--n", "0"]) == 2
    assert "--n" in capsys.readouterr().err


def test_generate_command_draws_from_the_shipped_checkpoints(tmp_path, monkeypatch, capsys):
    """README's main job, at the cpu preset whose checkpoints are shipped: a PNG, and the oracle's count."""
    from minidalle.cli import main

    monkeypatch.setenv("MINIDALLE_PRESET", "cpu")
    out = tmp_path / "g.png"
    assert main(["generate", "a red circle", "--n", "2", "--seed", "3", "--out", str(out)]) == 0
    assert out.stat().st_size > 1000
    assert "2 pictures of 32×32" in capsys.readouterr().out


@pytest.fixture(scope="module")
def shipped_pipe():
    return unclip.load("cpu")


@pytest.fixture(scope="module")
def shipped_verdicts(shipped_pipe):
    """The cascade on eval unclip's single-object suite (40 prompts × 4, prompt seed 1, decoder.GUIDANCE). ≈ 40 s."""
    return judge_samples(lambda caps, s: generate(shipped_pipe, caps, s), SINGLE_PROMPTS, 4, seed=1)[2]


def test_shipped_cascade_single_object_exact_match(shipped_verdicts):
    """Exact match 0.700 [0.631, 0.775] by the strict oracle (eval unclip); issue 6's bar, 0.80, is not met, and the
    floor guards the measured level. The colour is right every time."""
    assert sum(x["colour"] for x in shipped_verdicts) / len(shipped_verdicts) >= 0.95
    assert sum(x["exact"] for x in shipped_verdicts) / len(shipped_verdicts) >= 0.62


def test_a_missing_checkpoint_is_one_clear_line(monkeypatch, capsys):
    """No gpu-preset checkpoints ship: every command says which one is missing and how to use the shipped ones."""
    from minidalle.cli import main

    monkeypatch.setenv("MINIDALLE_PRESET", "gpu")
    for argv in (["generate", "a red circle"], ["eval", "prior"], ["eval", "dalle"]):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith("error: ") and "MINIDALLE_PRESET=cpu" in err, (argv, err)
