"""The unCLIP decoder, upsampler and pipeline (lessons 06–07): blur, slerp, inpainting, training, the CLI."""
import math

import pytest
import torch

from conftest import first_and_last
from minidalle import checkpoint
from minidalle.clip import load_trained as load_clip
from minidalle.decoder import (
    Decoder,
    Upsampler,
    blur,
    decode,
    decoder_config,
    train,
    upsample,
    upsampler_config,
)
from minidalle.diffusion import Diffusion, DiffusionConfig
from minidalle.glide import tokenize
from minidalle.unclip import UnCLIP, generate, inpaint, slerp, text_diff, variations


@pytest.fixture(scope="module")
def ci_clip():
    return load_clip("ci")[0].eval()


def test_decoder_reads_the_embedding_and_the_caption():
    torch.manual_seed(0)
    c = decoder_config("ci")
    model = Decoder(c).eval()
    for p in model.parameters():                      # residual branches start at zero: give them weights
        if not p.any():
            torch.nn.init.normal_(p, std=0.1)
    x, t = torch.randn(2, 3, c.unet.res, c.unet.res), torch.tensor([10, 60])
    tok, mask = tokenize(["a red circle", "a blue square"])
    emb = torch.nn.functional.normalize(torch.randn(2, c.embed_dim), dim=-1)
    out = model(x, t, emb, tok, mask)
    assert out.shape == x.shape
    assert not torch.allclose(out, model(x, t, torch.zeros_like(emb), tok, mask))      # the embedding matters
    tok2, mask2 = tokenize(["a green cross", "a white diamond"])
    assert not torch.allclose(out, model(x, t, emb, tok2, mask2))                      # and so does the caption


def test_blur_agrees_with_torchvision_inside_the_border():
    from torchvision.transforms.functional import gaussian_blur

    torch.manual_seed(0)
    x = torch.rand(3, 3, 8, 8)
    sigma = torch.tensor([0.4, 0.7, 1.0])
    ours = blur(x, sigma)
    for i, s in enumerate(sigma.tolist()):
        ref = gaussian_blur(x[i:i + 1], kernel_size=[3, 3], sigma=[s, s])      # reflect padding at the border
        assert torch.allclose(ours[i, :, 1:-1, 1:-1], ref[0, :, 1:-1, 1:-1], atol=1e-6)
    assert torch.allclose(blur(x, torch.full((3,), 1e-4)), x, atol=1e-6)          # σ → 0: the identity


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


@pytest.mark.parametrize("kind", ["decoder", "upsampler"])
def test_training_lowers_the_loss_and_resumes(tmp_path, ci_clip, kind):
    torch.manual_seed(0)
    c = decoder_config("ci") if kind == "decoder" else upsampler_config("ci")
    c.train.steps, c.train.n_train, c.train.log_every, c.train.save_every = 80, 64, 1, 40
    Model = Decoder if kind == "decoder" else Upsampler
    model = Model(c)
    info = train(model, ci_clip, name=tmp_path / kind, show_progress=False)
    first, last = first_and_last(info, k=8)
    assert last < 0.8 * first, (first, last)
    resumed = Model(c)
    again = train(resumed, ci_clip, name=tmp_path / kind, resume=True, show_progress=False)
    assert again["steps"] == 80
    checkpoint.load_into(Model(c), tmp_path / kind, c)


@pytest.fixture(scope="module")
def ci_pipe(ci_clip):
    from minidalle.prior import Prior, prior_config

    torch.manual_seed(0)
    return UnCLIP(ci_clip, Prior(prior_config("ci")).eval(), Decoder(decoder_config("ci")).eval(),
                  Upsampler(upsampler_config("ci")).eval())


def test_pipeline_shapes_and_bad_prompts(ci_pipe):
    up = upsampler_config("ci").unet.res
    images = generate(ci_pipe, ["a red circle", "a blue square above a green cross"], seed=0)
    assert images.shape == (2, 3, up, up) and images.min() >= 0 and images.max() <= 1
    assert torch.equal(images, generate(ci_pipe, ["a red circle", "a blue square above a green cross"], seed=0))
    base = generate(ci_pipe, "a red circle", embedding="text", upsampled=False)
    assert base.shape[-1] == decoder_config("ci").unet.res
    for bad, says in (("", "empty"), ("a purple unicorn", "unknown word"), (" ".join(["a red circle"] * 20), "long")):
        with pytest.raises(ValueError, match=says):
            generate(ci_pipe, bad)
    with pytest.raises(ValueError, match="embedding"):
        generate(ci_pipe, "a red circle", embedding="image")


def test_capabilities_run_and_keep_what_they_should(ci_pipe):
    from minidalle.data import generate as scenes

    img = scenes(1, 32, seed=3).images[0].float() / 255
    assert variations(ci_pipe, img, n=3).shape == (3, 3, 32, 32)
    assert text_diff(ci_pipe, img, "a red circle", "a blue circle", amounts=(0, 0.5)).shape == (2, 3, 32, 32)
    res = decoder_config("ci").unet.res
    keep = torch.zeros(res, res)
    keep[: res // 2] = 1
    assert inpaint(ci_pipe, img, keep, "a red circle", n=2).shape == (2, 3, 32, 32)
    with pytest.raises(ValueError, match="mask"):
        inpaint(ci_pipe, img, torch.zeros(5, 5))


def test_decode_and_upsample_are_seeded(ci_pipe):
    emb = torch.nn.functional.normalize(torch.randn(2, ci_pipe.decoder.config.embed_dim), dim=-1)
    a = decode(ci_pipe.decoder, emb, ["a red circle", "a blue square"], guidance=2.0, steps=4, seed=1)
    assert torch.equal(a, decode(ci_pipe.decoder, emb, ["a red circle", "a blue square"], guidance=2.0, steps=4, seed=1))
    assert upsample(ci_pipe.upsampler, a, emb, steps=3).shape[-1] == 2 * a.shape[-1]


def test_generate_command_refuses_bad_input_clearly(capsys):
    from minidalle.cli import main

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
    from minidalle.unclip import load

    return load("cpu")


@pytest.fixture(scope="module")
def shipped_verdicts(shipped_pipe):
    """The cascade on eval unclip's single-object suite (40 prompts × 4, prompt seed 1, decoder.GUIDANCE). ≈ 40 s."""
    from minidalle.evaluation import SINGLE_PROMPTS, judge_samples

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
