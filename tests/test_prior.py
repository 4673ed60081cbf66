"""The diffusion prior (lesson 05): presets, shapes, the two-candidate rule, training, the CLIP it was trained on,
guidance, the shipped model."""
import dataclasses

import pytest
import torch
from conftest import first_and_last

from minidalle import checkpoint
from minidalle.clip import train as clip_train
from minidalle.clip.model import CLIP, clip_config
from minidalle.config import InputError, override
from minidalle.dalle2 import prior
from minidalle.dalle2.prior import PRESETS, Prior, PriorConfig, keep_closest, null_caption, prior_config, sample
from minidalle.eval.dalle2 import evaluate_prior
from minidalle.runtime import seed_everything
from minidalle.text.bpe import Tokenizer



def test_presets_are_complete_frozen_and_sized_to_their_clip():
    assert PriorConfig() == PRESETS["cpu"] == prior_config("cpu")
    for name, c in PRESETS.items():
        clip = clip_config(name)
        assert (c.embed_dim, c.vocab, c.text_len) == (clip.embed_dim, clip.vocab_size, clip.context_length), name
        assert c.diffusion.prediction == "x0" and not c.diffusion.clip_x0           # embeddings: x0, never clamped
    with pytest.raises(dataclasses.FrozenInstanceError):
        PRESETS["cpu"].train.steps = 1
    changed, applied = override(prior_config("ci"), ["train.p_uncond=0.2", "width=64"])
    assert (changed.train.p_uncond, changed.width, applied) == (0.2, 64, {"train.p_uncond": 0.2, "width": 64})


def test_forward_shapes_and_the_query_reads_the_caption():
    torch.manual_seed(0)
    c = prior_config("ci")
    model = Prior(c).eval()
    tok = Tokenizer(c.text_len)(["a red circle", "a blue square left of a green cross"])
    z, t, txt = torch.randn(2, c.embed_dim), torch.tensor([5, 50]), torch.randn(2, c.embed_dim)
    out = model(z, t, tok, txt)
    assert out.shape == (2, c.embed_dim)
    other = model(z, t, Tokenizer(c.text_len)(["a white diamond", "a red circle"]), txt)
    assert not torch.allclose(out, other)                                    # the caption tokens reach the query
    null_tok, null_txt = null_caption(c, 3)
    assert null_tok.shape == (3, c.text_len) and (null_txt == 0).all()


def test_keep_closest_picks_the_candidate_nearest_the_text():
    text = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    cands = torch.tensor([[[0.0, 1.0], [0.8, 0.6]], [[0.6, 0.8], [1.0, 0.0]]])    # (B=2, k=2, D=2)
    assert torch.equal(keep_closest(cands, text), torch.tensor([[0.8, 0.6], [0.6, 0.8]]))


def test_training_lowers_the_loss_and_sampling_gives_unit_embeddings(tmp_path, ci_clip):
    torch.manual_seed(0)
    c, _ = override(prior_config("ci"), {"train.steps": 60, "train.n_train": 128, "train.log_every": 1,
                                         "train.lr": 3e-3})
    model = Prior(c)
    info = prior.train(model, ci_clip, name=tmp_path / "p", show_progress=False)
    first, last = first_and_last(info)
    assert last < 0.7 * first, (first, last)
    checkpoint.load_into(Prior(c), tmp_path / "p", c)
    tok = Tokenizer(c.text_len)(["a red circle", "a blue square"])
    for guidance in (1.0, 3.0):
        z = sample(model, tok, torch.randn(2, c.embed_dim), guidance=guidance, steps=4)
        assert z.shape == (2, c.embed_dim) and torch.allclose(z.norm(dim=-1), torch.ones(2), atol=1e-5)
    assert torch.equal(sample(model, tok, torch.randn(2, c.embed_dim, generator=torch.Generator().manual_seed(1)),
                              steps=4, seed=3),
                       sample(model, tok, torch.randn(2, c.embed_dim, generator=torch.Generator().manual_seed(1)),
                              steps=4, seed=3))                                    # seeded


def test_a_clip_of_another_size_is_refused():
    seed_everything(0)
    other = CLIP(clip_config("cpu"))
    with pytest.raises(InputError, match="same preset's CLIP"):
        prior.train(Prior(prior_config("ci")), other, show_progress=False)


def test_load_refuses_a_prior_trained_on_another_clip(tmp_path, monkeypatch, ci_clip):
    """The checkpoint records the CLIP it learned from (`trained_on`); `load` says which command trains it when
    it is missing, and refuses it once that CLIP checkpoint changes."""
    monkeypatch.setattr(checkpoint, "SHIPPED", tmp_path)
    with pytest.raises(checkpoint.CheckpointError, match="python -m minidalle train prior"):
        prior.load("ci")
    checkpoint.save(clip_train.checkpoint_name("ci"), {"model": ci_clip.state_dict()}, ci_clip.config)
    c, _ = override(prior_config("ci"), {"train.steps": 2, "train.n_train": 32})   # training settings: provenance
    model = Prior(c)
    prior.train(model, ci_clip, name=prior.checkpoint_name("ci"), show_progress=False)
    assert checkpoint.load(prior.checkpoint_name("ci"))[2]["steps"] == 2
    assert prior.trained_on("ci") == {"clip": checkpoint.fingerprint(clip_train.checkpoint_name("ci"))} != {"clip": ""}
    loaded = prior.load("ci")
    weights = zip(loaded.state_dict().values(), model.state_dict().values())
    assert all(torch.equal(a, b.to(a.device)) for a, b in weights)
    changed = {k: v + 1 if v.is_floating_point() else v for k, v in ci_clip.state_dict().items()}
    checkpoint.save(clip_train.checkpoint_name("ci"), {"model": changed}, ci_clip.config)
    with pytest.raises(checkpoint.CheckpointError, match="trained on another clip"):
        prior.load("ci")


def test_shipped_prior_beats_the_text_embedding():
    """data/checkpoints/prior-cpu: its samples are closer to the true image embedding than the caption's
    text embedding is (eval prior has the figures and the nearest-neighbour baseline); ≈ 15 s."""
    model, clip_model = prior.load("cpu"), clip_train.load("cpu")
    r = evaluate_prior(model, clip_model, n=100, nearest=False)
    assert r["prior"].value > r["text embedding"].value + 0.02, r
