"""The unCLIP decoder and upsampler (lesson 06): presets, conditioning, blur, training and resuming, sampling."""
import dataclasses

import pytest
import torch
from conftest import first_and_last

from minidalle import checkpoint
from minidalle.clip import train as clip_train
from minidalle.clip.model import CLIP, clip_config
from minidalle.config import InputError, override
from minidalle.dalle2 import decoder, upsampler
from minidalle.dalle2.decoder import Decoder, DecoderConfig, decode, decoder_config
from minidalle.dalle2.upsampler import Upsampler, UpsamplerConfig, blur, upsample, upsampler_config
from minidalle.diffusion import glide
from minidalle.runtime import seed_everything
from minidalle.text.words import tokenize
from minidalle.world.data import training_data

MODULES = {"decoder": decoder, "upsampler": upsampler}



def test_presets_are_complete_frozen_and_match_glide_and_clip():
    assert DecoderConfig() == decoder.PRESETS["cpu"] and UpsamplerConfig() == upsampler.PRESETS["cpu"]
    for name in ("ci", "cpu", "gpu"):
        d, u, g, clip = decoder_config(name), upsampler_config(name), glide.glide_config(name), clip_config(name)
        assert (d.unet, d.diffusion, d.text_width, d.text_layers) == (g.unet, g.diffusion, g.text_width,
                                                                      g.text_layers), name   # GLIDE's, + z_i
        assert d.embed_dim == u.embed_dim == u.unet.cond_dim == clip.embed_dim, name
        assert u.unet.res == 2 * d.unet.res and u.unet.in_ch == 6 and d.diffusion.prediction == "v", name
    with pytest.raises(dataclasses.FrozenInstanceError):
        decoder.PRESETS["cpu"].train.p_drop_emb = 0.0
    changed, _ = override(upsampler_config("ci"), ["train.blur=0.2,0.8", "sample_blur=0.3"])
    assert (changed.train.blur, changed.sample_blur) == ((0.2, 0.8), 0.3)


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
    from torchvision.transforms.functional import gaussian_blur     # test-only reference

    torch.manual_seed(0)
    x = torch.rand(3, 3, 8, 8)
    sigma = torch.tensor([0.4, 0.7, 1.0])
    ours = blur(x, sigma)
    for i, s in enumerate(sigma.tolist()):
        ref = gaussian_blur(x[i:i + 1], kernel_size=[3, 3], sigma=[s, s])      # reflect padding at the border
        assert torch.allclose(ours[i, :, 1:-1, 1:-1], ref[0, :, 1:-1, 1:-1], atol=1e-6)
    assert torch.allclose(blur(x, torch.full((3,), 1e-4)), x, atol=1e-6)          # σ → 0: the identity


@pytest.mark.parametrize("kind", ["decoder", "upsampler"])
def test_training_lowers_the_loss_and_resumes(tmp_path, ci_clip, kind):
    torch.manual_seed(0)
    module = MODULES[kind]
    Model = Decoder if kind == "decoder" else Upsampler
    base = decoder_config("ci") if kind == "decoder" else upsampler_config("ci")
    c, _ = override(base, {"train.steps": 80, "train.n_train": 64, "train.log_every": 1, "train.save_every": 40})
    model = Model(c)
    info = module.train(model, ci_clip, name=tmp_path / kind, show_progress=False)
    first, last = first_and_last(info, k=8)
    assert last < 0.8 * first, (first, last)
    resumed = Model(c)
    again = module.train(resumed, ci_clip, name=tmp_path / kind, resume=True, show_progress=False)
    assert again["steps"] == 80
    checkpoint.load_into(Model(c), tmp_path / kind, c,
                         trained_on={"clip": checkpoint.fingerprint(clip_train.checkpoint_name("ci"))})
    seed_everything(0)
    with pytest.raises(InputError, match="same preset's CLIP"):
        module.train(Model(c), CLIP(clip_config("cpu")), show_progress=False)


def test_a_missing_checkpoint_names_its_train_command(tmp_path, monkeypatch):
    monkeypatch.setattr(checkpoint, "SHIPPED", tmp_path)
    for kind, module in MODULES.items():
        with pytest.raises(checkpoint.CheckpointError, match=f"python -m minidalle train {kind}"):
            module.load("ci")


def test_embedded_scenes_embed_the_same_scenes_at_clips_resolution(ci_clip):
    images, captions, emb = decoder.embedded_scenes(6, 16, 0.5, 3, ci_clip)
    at32, same = training_data(6, 32, 0.5, 3)
    assert images.shape == (6, 3, 16, 16) and same == captions
    pictures = ((at32 + 1) * 127.5).round().to(torch.uint8)
    assert torch.allclose(emb, ci_clip.encode_image(pictures.float() / 255), atol=1e-6)
    assert torch.allclose(emb.norm(dim=-1), torch.ones(6), atol=1e-5)


def test_decode_and_upsample_are_seeded_and_refuse_bad_input():
    torch.manual_seed(0)
    dec, up = Decoder(decoder_config("ci")).eval(), Upsampler(upsampler_config("ci")).eval()
    emb = torch.nn.functional.normalize(torch.randn(2, dec.config.embed_dim), dim=-1)
    a = decode(dec, emb, ["a red circle", "a blue square"], guidance=2.0, steps=4, seed=1)
    assert a.shape == (2, 3, 16, 16) and a.min() >= 0 and a.max() <= 1
    assert torch.equal(a, decode(dec, emb, ["a red circle", "a blue square"], guidance=2.0, steps=4, seed=1))
    assert not torch.equal(a, decode(dec, emb, ["a red circle", "a blue square"], guidance=2.0, steps=4, seed=2))
    b = upsample(up, a, emb, steps=3)
    assert b.shape == (2, 3, 32, 32) and torch.equal(b, upsample(up, a, emb, steps=3))
    with pytest.raises(InputError, match="unknown word"):
        decode(dec, emb, ["a red unicorn", "a blue square"], steps=2)
    with pytest.raises(InputError, match="captions"):
        decode(dec, emb, ["a red circle"], steps=2)
    with pytest.raises(InputError, match="16, 16"):
        upsample(up, b, emb, steps=2)                                              # already upsampled
