"""The DALL·E transformer (lesson 09): presets, sequence layout, loss, cache, sampling filters, prompts, training,
loading, the shipped model."""
import dataclasses
import json

import pytest
import torch
import torch.nn.functional as F
from conftest import first_and_last

from minidalle import checkpoint
from minidalle.clip.train import load as load_clip
from minidalle.config import InputError, override
from minidalle.dalle1 import dvae, transformer
from minidalle.dalle1.dvae import DVAE, dvae_config
from minidalle.dalle1.transformer import (DALLE, PRESETS, DALLEConfig, DALLETrain, checkpoint_name, complete,
                                          dalle_config, encode_text, filter_logits, generate, load, sample_tokens,
                                          sampler, train, trained_on)
from minidalle.eval.dalle1 import rerank_curve, train_metrics
from minidalle.eval.prompts import SINGLE_PROMPTS, judge_samples
from minidalle.nn.transformer import Block
from minidalle.text.words import PAD, WORDS


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return DALLE(dalle_config("ci")).eval(), DVAE(dvae_config("ci")).eval()


def test_presets_follow_their_dvae():
    """Class defaults = the cpu preset; each preset's codes and grid are its dVAE's; the dVAE is named by the
    checkpoint's trained_on, not by a config field; the loss weights and data mix are training settings."""
    assert DALLEConfig() == PRESETS["cpu"] and dalle_config("cpu") is PRESETS["cpu"]
    for p, c in PRESETS.items():
        assert (c.codes, c.grid) == (dvae_config(p).codes, dvae_config(p).grid), p
        assert isinstance(c.train, DALLETrain) and c.train.text_weight == 1 / 8 and c.train.ema == 0.0
    assert {f.name for f in dataclasses.fields(DALLEConfig)} == {"text_len", "text_vocab", "codes", "grid", "width",
                                                                "layers", "heads", "train"}
    assert trained_on("cpu") == {"dvae": checkpoint.fingerprint(dvae.checkpoint_name("cpu"))}
    assert checkpoint_name("ci").name == "dalle-ci"
    with pytest.raises(dataclasses.FrozenInstanceError):
        PRESETS["ci"].width = 8


def test_blocks_are_the_course_block(tiny):
    model, _ = tiny
    assert all(type(b) is Block for b in model.blocks)
    assert {"blocks.0.ln_1.weight", "blocks.0.attn.qkv.weight", "blocks.0.attn.proj.bias", "blocks.0.ln_2.bias",
            "blocks.0.mlp.0.weight", "blocks.0.mlp.2.weight"} <= set(model.state_dict())


def test_text_layout_pads_per_position(tiny):
    model, _ = tiny
    T = model.config.text_len
    text = encode_text(["a red circle", ""], T)
    assert text.shape == (2, T) and (text[1] == PAD).all()                     # "" is the unconditional caption
    assert [WORDS[i] for i in text[0, :4]] == ["a", "red", "circle", "<eot>"]
    ids = model.text_ids(text)
    assert ids[0, 4] == model.config.text_vocab + 4 and ids[0, 5] == model.config.text_vocab + 5
    with pytest.raises(InputError, match="at most"):
        encode_text(["a cyan square covering an orange cross, and a large white diamond and a small purple diamond"], T)
    with pytest.raises(ValueError):
        encode_text(["a red dog"], T)
    with pytest.raises(InputError, match="empty prompt"):
        generate(model, tiny[1], ["  "])


def test_attention_is_causal(tiny):
    model, _ = tiny
    text = encode_text(["a red circle"], model.config.text_len)
    a = torch.randint(0, model.config.codes, (1, 64))
    b = a.clone()
    b[0, 40:] = (b[0, 40:] + 1) % model.config.codes
    with torch.no_grad():
        la, lb = model(text, a)[1], model(text, b)[1]
    assert torch.allclose(la[0, :41], lb[0, :41], atol=1e-6)                   # logits up to token 40 unchanged
    assert not torch.allclose(la[0, 41:], lb[0, 41:])


def test_loss_weights_text_one_eighth(tiny):
    model, _ = tiny
    text = encode_text(["a red circle", "a blue square"], model.config.text_len)
    image = torch.randint(0, model.config.codes, (2, 64))
    loss, logs = model.loss(text, image)
    t_logits, i_logits = model(text, image)
    t = F.cross_entropy(t_logits.flatten(0, 1), model.text_ids(text)[:, 1:].flatten())
    i = F.cross_entropy(i_logits.flatten(0, 1), image.flatten())
    assert loss.item() == pytest.approx((t / 8 + 7 * i / 8).item(), rel=1e-5)
    assert logs["text"] == pytest.approx(t.item(), rel=1e-5)
    half = DALLE(override(model.config, {"train.text_weight": 0.5})[0])            # the weight is read from train
    half.load_state_dict(model.state_dict())
    assert half.loss(text, image)[0].item() == pytest.approx(((t + i) / 2).item(), rel=1e-5)


def test_cache_gives_the_same_samples(tiny):
    model, _ = tiny
    text = encode_text(["a red circle", "a blue cross left of a green square"], model.config.text_len)
    for kw in ({}, {"guidance": 3.0, "top_k": 5}, {"prefix": torch.randint(0, model.config.codes, (2, 24))}):
        a = sample_tokens(model, text, generator=torch.Generator().manual_seed(1), use_cache=True, **kw)
        b = sample_tokens(model, text, generator=torch.Generator().manual_seed(1), use_cache=False, **kw)
        assert a.shape == (2, 64) and torch.equal(a, b), kw
        if "prefix" in kw:
            assert torch.equal(a[:, :24], kw["prefix"])


def test_filter_logits():
    logits = torch.tensor([[3.0, 1.0, 2.0, 0.0]])
    assert torch.isinf(filter_logits(logits, top_k=2)).tolist() == [[False, True, False, True]]
    p = logits.softmax(-1)[0]                                                  # 0.64, 0.09, 0.24, 0.03
    kept = ~torch.isinf(filter_logits(logits, top_p=0.8))
    assert kept.tolist() == [[True, False, True, False]] and p[[0, 2]].sum() >= 0.8
    assert (~torch.isinf(filter_logits(logits, top_p=0.5))).sum() == 1       # the top token alone reaches 0.5


def test_generate_and_complete_shapes(tiny):
    model, vae = tiny
    images, tokens = generate(model, vae, ["a red circle", "a blue square"], per_prompt=2, top_k=16)
    assert images.shape == (4, 3, 32, 32) and tokens.shape == (4, 8, 8)
    assert 0 <= images.min() and images.max() <= 1
    done = complete(model, vae, images[:2], ["a red circle above a blue square"] * 2)
    assert done.shape == (2, 3, 32, 32)


def test_training_lowers_the_loss_and_checks_the_dvae(tmp_path, monkeypatch):
    monkeypatch.setenv("MINIDALLE_PRESET", "ci")                 # train records the active preset's dVAE fingerprint
    torch.manual_seed(0)
    c, _ = override(dalle_config("ci"), {"train.steps": 40, "train.n_train": 64, "train.log_every": 1,
                                         "train.batch": 16, "train.lr": 3e-3})
    vae = DVAE(dvae_config("ci")).eval()
    model = DALLE(c)
    info = train(model, vae, name=tmp_path / "d", show_progress=False)
    first, last = first_and_last(info)
    assert last < 0.8 * first, (first, last)
    checkpoint.load_into(DALLE(c), tmp_path / "d", c, trained_on=trained_on())    # the dVAE it was trained on
    with pytest.raises(checkpoint.CheckpointError, match="another dvae"):
        checkpoint.load_into(DALLE(c), tmp_path / "d", c, trained_on={"dvae": "0123456789abcdef"})
    with pytest.raises(InputError, match="expects a dVAE"):
        train(model, DVAE(dvae_config("cpu")), show_progress=False)
    monkeypatch.setattr(transformer, "checkpoint_name", lambda preset=None: tmp_path / "d")
    loaded = load("ci")                                                            # the transformer alone, eval mode
    assert isinstance(loaded, DALLE) and not loaded.training
    assert all(torch.equal(a.cpu(), b.cpu()) for a, b in zip(loaded.state_dict().values(), model.state_dict().values()))


def test_load_says_how_to_train_a_missing_transformer(tmp_path, monkeypatch):
    monkeypatch.setattr(transformer, "checkpoint_name", lambda preset=None: tmp_path / "none")
    with pytest.raises(checkpoint.CheckpointError, match="python -m minidalle train dalle"):
        load("ci")


def test_train_metrics_of_a_transformer(tiny):
    """What `train dalle` records in the manifest: 4 samples of each of the 40 single-object prompts. ≈ 5 s."""
    m = train_metrics("dalle", *tiny)
    assert set(m) == {"single_object_exact_top_k32", "ci95", "n"} and m["n"] == 160
    assert m["ci95"][0] <= m["single_object_exact_top_k32"] <= m["ci95"][1]
    json.dumps(m)
    with pytest.raises(InputError, match="needs the dVAE"):
        train_metrics("dalle", tiny[0])


# ------------------------------------------------------- the shipped checkpoints
@pytest.fixture(scope="module")
def shipped():
    """data/checkpoints/dvae-cpu + dalle-cpu, and clip-cpu for re-ranking."""
    return load("cpu"), dvae.load("cpu"), load_clip("cpu")


def test_shipped_dalle_reranking_raises_exact_match(shipped):
    """CLIP's choice by caption probability beats a single sample (eval dalle's pool of 64 a prompt, strict oracle:
    0.773 at N = 1, 0.822 at N = 4, 0.831 at N = 16). The paper's cosine score is computed too, and need not help.
    The floor at N = 1 guards the measured level; issue 5's bar, 0.80, is not met by the strict oracle. ≈ 40 s."""
    exact = {(r["score"], r["N"]): r["exact"].value for r in rerank_curve(*shipped, ns=(1, 4, 16, 64))}
    one = exact[("caption probability", 1)]
    assert one == exact[("cosine", 1)] >= 0.72, exact                    # N = 1 keeps every sample
    assert exact[("caption probability", 4)] >= one + 0.03, exact
    assert exact[("caption probability", 16)] >= one, exact


def test_shipped_dalle_single_object_exact_match(shipped):
    """Without re-ranking, on 320 samples (8 a prompt): 0.797 by the strict oracle. Issue 5's bar is 0.80 (eval dalle's
    160 samples: 0.762, not met); this floor guards the measured level. ≈ 7 s."""
    _, _, v = judge_samples(sampler(*shipped[:2]), SINGLE_PROMPTS, 8, seed=1)
    assert sum(x["exact"] for x in v) / len(v) >= 0.72
