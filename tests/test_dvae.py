"""The dVAE (lesson 08): presets, the relaxation, the schedules, training, loading, bad input, the shipped model."""
import dataclasses
import json

import pytest
import torch
from conftest import first_and_last

from minidalle import checkpoint
from minidalle.config import InputError, override
from minidalle.dalle1 import dvae
from minidalle.dalle1.dvae import (DVAE, PRESETS, WORLD_COLOURS, DVAEConfig, DVAETrain, checkpoint_name, colour_index,
                                   dvae_config, gumbel_softmax, kl_weight, load, temperature, train, trained_on, usage)
from minidalle.eval.dalle1 import evaluate, evaluate_dvae, placement, train_metrics
from minidalle.trainer import TrainConfig
from minidalle.world.data import generate
from minidalle.world.oracle import same_scene, scene_difference
from minidalle.world.scenes import Obj, Scene


def test_presets_are_complete_frozen_configs():
    """The class defaults are the cpu preset; training-only settings live in `train`; no fingerprints."""
    assert DVAEConfig() == PRESETS["cpu"] and dvae_config("cpu") is PRESETS["cpu"]
    assert set(PRESETS) == {"ci", "cpu", "gpu"} and dvae_config("ci").codes == 64 and dvae_config("gpu").codes == 1024
    for c in PRESETS.values():
        assert isinstance(c.train, DVAETrain) and isinstance(c.train, TrainConfig)
        assert c.train.tau_steps == int(0.8 * c.train.steps) and c.train.kl_steps == max(1, c.train.steps // 5)
        assert c.res == 4 * c.grid and c.train.ema == 0.0
    assert {f.name for f in dataclasses.fields(DVAEConfig)} == {"res", "grid", "codes", "code_dim", "channels",
                                                               "recon", "train"}
    with pytest.raises(dataclasses.FrozenInstanceError):
        PRESETS["ci"].train.steps = 5
    changed, applied = override(PRESETS["ci"], ["train.steps=20", "codes=32"])
    assert (changed.train.steps, changed.codes, applied) == (20, 32, {"train.steps": 20, "codes": 32})
    assert trained_on("cpu") == {} and checkpoint_name("ci").name == "dvae-ci"


def test_gumbel_max_samples_the_softmax():
    """At low τ the relaxed sample is one-hot, and its argmax is distributed as softmax(logits)."""
    logits = torch.tensor([1.0, 0.0, -1.0, 2.0]).log_softmax(0)
    g = torch.Generator().manual_seed(0)
    z = gumbel_softmax(logits.expand(20_000, 4), tau=0.05, dim=1, generator=g)      # (N, 4)
    assert torch.allclose(z.sum(1), torch.ones(20_000))
    assert (z.max(1).values > 0.9).float().mean() > 0.9                            # nearly one-hot
    freq = torch.bincount(z.argmax(1), minlength=4).float() / 20_000
    assert torch.allclose(freq, logits.exp(), atol=0.015), (freq, logits.exp())
    soft = gumbel_softmax(logits.expand(1000, 4), tau=10.0, dim=1, generator=g)
    assert soft.max(1).values.mean() < 0.35                                        # high τ: close to uniform


def test_schedules_follow_the_paper():
    c = dvae_config("cpu")
    taus = [temperature(s, c) for s in range(0, c.train.steps + 1, 50)]
    assert taus[0] == 1.0 and taus[-1] == pytest.approx(1 / 16)
    assert all(a >= b for a, b in zip(taus, taus[1:]))                            # annealed, never raised
    betas = [kl_weight(s, c) for s in range(0, c.train.steps + 1, 50)]
    assert betas[0] == 0.0 and betas[-1] == pytest.approx(c.train.kl_max)
    assert all(a <= b for a, b in zip(betas, betas[1:]))


def test_shapes_round_trip_and_bad_input():
    c = dvae_config("ci")
    vae = DVAE(c).eval()
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    assert vae.logits(x).shape == (2, c.codes, 8, 8)
    tokens = vae.encode(x)
    assert tokens.shape == (2, 8, 8) and tokens.dtype == torch.long
    y = vae.decode(tokens)
    assert y.shape == (2, 3, 32, 32) and y.min() >= -1 and y.max() <= 1
    fine = DVAE(dataclasses.replace(c, grid=16)).eval()                          # one stride-2 step: 2×2-pixel tokens
    assert fine.encode(x).shape == (2, 16, 16) and fine.decode(fine.encode(x)).shape == (2, 3, 32, 32)
    assert fine.state_dict().keys() == vae.state_dict().keys()                    # the same layers, one stride changed
    with pytest.raises(InputError, match="float images"):
        vae.encode((x * 127).to(torch.uint8))
    with pytest.raises(InputError, match=r"\(B, 3, 32, 32\)"):
        vae.encode(torch.zeros(2, 3, 16, 16))
    with pytest.raises(InputError, match="ints in 0.."):
        vae.decode(torch.full((2, 8, 8), c.codes))
    with pytest.raises(InputError, match="res must be 2·grid or 4·grid"):
        DVAEConfig(res=32, grid=4)
    with pytest.raises(InputError, match="recon must be one of"):
        override(dvae_config("ci"), ["recon=gaussian"])


def test_palette_likelihood_is_the_cross_entropy_over_the_world_colours(monkeypatch):
    """recon="palette": a render maps onto the 9 world colours; the loss is log 9 for uniform logits, ≈ 0 for
    sure and right ones; decoding paints only world colours. The default decoder gives pixel values instead."""
    x = generate(8, 32, seed=3).images.float() / 127.5 - 1                       # (8, 3, 32, 32)
    index = colour_index(x)                                                       # (8, 32, 32) in 0..8
    assert (WORLD_COLOURS[index].permute(0, 3, 1, 2) - x).abs().max() < 0.01     # exact, up to uint8 rounding
    assert set(index.unique().tolist()) > {0}                                     # black and some colours
    vae = DVAE(dataclasses.replace(dvae_config("ci"), recon="palette"))
    recon = {}
    for name, out in (("uniform", torch.zeros(8, 9, 32, 32)),
                      ("sure", torch.nn.functional.one_hot(index, 9).permute(0, 3, 1, 2) * 50.0)):
        monkeypatch.setattr(vae, "decode_soft", lambda z, out=out: out)
        recon[name] = vae.loss(x, tau=1.0, beta=0.0)[1]["recon"]
    assert recon["uniform"] == pytest.approx(torch.tensor(9.0).log().item(), abs=1e-5)
    assert recon["sure"] == pytest.approx(0.0, abs=1e-5)
    monkeypatch.undo()
    y = vae.decode(vae.encode(x))                                                 # untrained: any colours, but world ones
    assert (WORLD_COLOURS[colour_index(y)].permute(0, 3, 1, 2) == y).all()
    assert DVAE(dvae_config("ci")).decode_soft(torch.rand(2, 64, 8, 8)).shape == (2, 3, 32, 32)


def test_kl_to_uniform_is_zero_for_uniform_logits():
    vae = DVAE(dvae_config("ci"))
    vae.encoder[-1].weight.data.zero_()
    vae.encoder[-1].bias.data.zero_()
    _, logs = vae.loss(torch.zeros(2, 3, 32, 32), tau=1.0, beta=1.0)
    assert logs["kl"] == pytest.approx(0.0, abs=1e-6)


def test_diversity_term_penalises_an_unused_codebook_not_confident_tokens(monkeypatch):
    """KL(batch-mean q ‖ uniform) is ≈ 0 when confident tokens share the codes out evenly, ≈ log K when all pick one."""
    c = dvae_config("ci")                                                          # 64 codes, an 8×8 grid
    vae = DVAE(c)
    spread = torch.eye(c.codes).view(c.codes, 8, 8).unsqueeze(0) * 30.0             # cell h·8+w is sure of code h·8+w
    one = torch.zeros(1, c.codes, 8, 8)
    one[:, 0] = 30.0                                                               # every cell sure of code 0
    logs = {}
    for name, logits in (("spread", spread), ("one", one)):
        monkeypatch.setattr(vae, "logits", lambda x, lg=logits: lg.expand(len(x), -1, -1, -1))
        logs[name] = vae.loss(torch.zeros(2, 3, 32, 32), tau=1.0, beta=0.0)[1]
    log_k = torch.tensor(float(c.codes)).log().item()
    assert logs["spread"]["kl"] == pytest.approx(log_k, abs=1e-3) == logs["one"]["kl"]   # per token: both confident
    assert logs["spread"]["kl_batch"] == pytest.approx(0.0, abs=1e-3)
    assert logs["one"]["kl_batch"] == pytest.approx(log_k, abs=1e-3)


def test_usage_perplexity():
    assert usage(torch.arange(16), 16)["perplexity"] == pytest.approx(16)
    u = usage(torch.zeros(10, dtype=torch.long), 16)
    assert u["perplexity"] == pytest.approx(1) and u["used"] == pytest.approx(1 / 16)


def test_training_lowers_the_reconstruction_error_and_load_reads_it_back(tmp_path, monkeypatch):
    c, _ = override(dvae_config("ci"), {"train.steps": 60, "train.n_train": 256, "train.log_every": 1,
                                        "train.lr": 3e-3, "train.tau_steps": 40, "train.kl_steps": 10})
    torch.manual_seed(0)
    vae = DVAE(c)
    info = train(vae, name=tmp_path / "v", show_progress=False)
    first, last = first_and_last(info, "recon")
    assert last < 0.6 * first, (first, last)
    step, _, logs = info["losses"][20]                                             # τ follows c.train's schedule
    assert step == 20 and logs["tau"] == pytest.approx(temperature(20, c), abs=1e-5) and logs["tau"] > 0.5
    again = DVAE(c)
    checkpoint.load_into(again, tmp_path / "v", dvae_config("ci"))                 # training settings may differ
    assert all(torch.equal(a, b) for a, b in zip(again.state_dict().values(), vae.state_dict().values()))
    with pytest.raises(checkpoint.CheckpointError):
        checkpoint.load_into(DVAE(dvae_config("cpu")), tmp_path / "v", dvae_config("cpu"))
    monkeypatch.setattr(dvae, "checkpoint_name", lambda preset=None: tmp_path / "v")
    loaded = load("ci")                                                            # the model alone, eval mode
    assert isinstance(loaded, DVAE) and not loaded.training
    assert torch.equal(loaded.codebook.cpu(), vae.codebook.cpu())


def test_load_says_how_to_train_a_missing_dvae(tmp_path, monkeypatch):
    monkeypatch.setattr(dvae, "checkpoint_name", lambda preset=None: tmp_path / "none")
    with pytest.raises(checkpoint.CheckpointError, match="python -m minidalle train dvae"):
        load("ci")


def test_train_metrics_and_eval_kinds():
    """What `train dvae` records in the manifest: JSON, rates as {value, lo, hi, n}. ≈ 5 s."""
    torch.manual_seed(0)
    m = train_metrics("dvae", DVAE(dvae_config("ci")).eval())
    assert set(m) == {"1 object", "2 objects", "1-4 objects"}
    assert set(m["2 objects"]["same_scene"]) == {"value", "lo", "hi", "n"} and m["2 objects"]["same_scene"]["n"] == 200
    assert "by_placement" in m["2 objects"] and "same_scene" not in m["1-4 objects"]
    json.dumps(m)
    with pytest.raises(InputError, match="dvae or dalle"):
        evaluate("vae")


def test_same_scene():
    a = Scene((Obj("circle", "red", "small", 0.3, 0.3, 0), Obj("square", "blue", "large", 0.7, 0.7, 1)))
    b = Scene(tuple(reversed(a.objects)))                                         # order does not matter
    assert same_scene(a, b)
    c = Scene((a.objects[0], Obj("square", "green", "large", 0.7, 0.7, 1)))
    assert not same_scene(a, c) and not same_scene(a, Scene(a.objects[:1]))
    assert scene_difference(a, b) is None
    assert scene_difference(a, c) == "colour"
    assert scene_difference(a, Scene(a.objects[:1])) == "fewer objects"
    assert scene_difference(a, Scene(a.objects + (Obj("cross", "red", "small", 0.1, 0.9, 2),))) == "more objects"
    assert scene_difference(a, Scene((dataclasses.replace(a.objects[0], shape="triangle"), a.objects[1]))) == "shape"
    assert scene_difference(a, Scene((dataclasses.replace(a.objects[0], x=0.9, y=0.1), a.objects[1]))) == "moved"


def test_placement_names_how_a_pair_touches():
    inner = Scene((Obj("square", "blue", "large", 0.5, 0.5, 0), Obj("circle", "red", "small", 0.5, 0.5, 1)))
    apart = Scene((inner.objects[0], dataclasses.replace(inner.objects[1], x=0.1, y=0.1)))
    assert placement(inner.relations()) == "inside"
    assert placement(apart.relations()) == "apart"
    assert placement([]) == "apart"


# ------------------------------------------------------- the shipped checkpoint
@pytest.fixture(scope="module")
def shipped():
    """data/checkpoints/dvae-cpu measured on 150 held-out scenes of each kind (≈ 10 s)."""
    return evaluate_dvae(load("cpu"), n=150)


def test_shipped_dvae_keeps_single_objects_and_uses_its_codebook(shipped):
    assert shipped["1 object"]["same_scene"].value >= 0.98, shipped["1 object"]
    assert shipped["1-4 objects"]["perplexity"] > 50 and shipped["1-4 objects"]["used"] > 0.5   # no collapse
    pairs = shipped["2 objects"]
    assert sum(pairs["differences"].values()) == round((1 - pairs["same_scene"].value) * pairs["same_scene"].n)
    where = pairs["by_placement"]
    assert sum(h["kept"].n for h in where.values()) == pairs["same_scene"].n
    assert where["apart"]["kept"].value >= 0.98, where                          # pairs fail only where they touch


@pytest.mark.xfail(strict=True, reason="issue 5: two-object reconstructions keep the scene ≈ 0.84 of the time "
                                        "(bar 0.98; originals blurred by one pixel: 0.94); pairs apart are all "
                                        "kept, but a small object inside (0.21) or in front of (0.55) a larger "
                                        "one smudges within a 4×4-pixel token cell")
def test_shipped_dvae_meets_the_two_object_bar(shipped):
    assert shipped["2 objects"]["same_scene"].value >= 0.98, shipped["2 objects"]
