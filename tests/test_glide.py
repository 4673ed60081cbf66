"""Lessons 03–04: the word tokenizer, GLIDE's text encoder, prompt errors, the DDPM and GLIDE, training, resuming."""
import pytest
import torch

from minidalle import checkpoint
from minidalle.cli import main
from minidalle.config import InputError, override
from minidalle.diffusion import ddpm, glide
from minidalle.diffusion.ddpm import DDPM, ddpm_config
from minidalle.diffusion.glide import GLIDE, GUIDANCE, TextEncoder, generate, glide_config
from minidalle.eval.prompts import SINGLE_PROMPTS, judge_samples, pixel_diversity
from minidalle.eval.rates import rate
from minidalle.text.words import EOT, PAD, check_prompt, tokenize
from minidalle.world.captions import MAX_CAPTION_WORDS


def test_tokenize_pads_and_masks():
    tok, mask = tokenize(["a red circle", "a blue square left of a red circle", ""])
    assert tok.shape == mask.shape and tok.shape[0] == 3
    assert tok[0, 3] == EOT and (tok[0, 4:] == PAD).all() and mask[0].sum() == 4
    assert tok[2, 0] == EOT and mask[2].sum() == 1                   # the empty caption: only <eot>
    assert not torch.equal(tok[0, :3], tokenize("a red square")[0][0, :3])


@pytest.mark.parametrize("prompt,match", [("", "empty"), ("   ", "empty"), ("a red banana", "unknown word"),
                                          (" ".join(["a red circle"] * 12), "too long")])
def test_bad_prompts_are_refused_clearly(prompt, match):
    assert len(" ".join(["a red circle"] * 12).split()) > MAX_CAPTION_WORDS
    with pytest.raises(InputError, match=match):
        check_prompt(prompt)
    model = GLIDE(glide_config("ci"))
    with pytest.raises(InputError, match=match):
        generate(model, [prompt], steps=2)


def test_text_encoder_shapes_and_padding():
    enc = TextEncoder(32, 1, 4).eval()
    tok, mask = tokenize(["a red circle", "two blue squares and a white cross"])
    feats, pooled = enc(tok, mask)
    assert feats.shape == (2, tok.shape[1], 32) and pooled.shape == (2, 32)
    alone, pooled_alone = enc(*tokenize(["a red circle"]))
    assert torch.allclose(pooled[0], pooled_alone[0], atol=1e-5)       # padding does not change the result


def test_models_and_samplers_shapes():
    g = GLIDE(glide_config("ci")).eval()
    x = generate(g, ["a red circle", "a green cross above a blue square"], guidance=3.0, steps=3)
    assert x.shape == (2, 3, 16, 16) and 0 <= x.min() and x.max() <= 1
    d = DDPM(ddpm_config("ci")).eval()
    y = ddpm.sample(d, 3, steps=3)
    assert y.shape == (3, 3, 16, 16) and 0 <= y.min() and y.max() <= 1


def test_glide_training_saves_the_ema_and_resumes(tmp_path):
    cfg, _ = override(glide_config("ci"), {"train.steps": 4, "train.save_every": 2, "train.n_train": 64})
    model = GLIDE(cfg)
    info = glide.train(model, tmp_path / "g", show_progress=False)
    assert len(info["losses"]) >= 2
    shipped, _, _ = checkpoint.load(tmp_path / "g", cfg)
    assert set(shipped) == {"model"}                                   # the shipped file: EMA weights only
    state, _, _ = checkpoint.load(tmp_path / "g-state", cfg)
    assert int(state["step"]) == 4 and {"optimizer", "ema"} <= set(state)
    for k, v in model.state_dict().items():                             # the model ends holding the EMA
        assert torch.equal(v, state["ema"][k]) and torch.equal(v, shipped["model"][k])
    assert any(not torch.equal(state["model"][k], state["ema"][k]) for k in state["ema"])
    wider, _ = override(cfg, ["text_width=64"])
    with pytest.raises(checkpoint.CheckpointError):                     # a checkpoint of other model settings
        checkpoint.load(tmp_path / "g", wider)
    again = glide.train(GLIDE(cfg), tmp_path / "g", resume=True, show_progress=False)
    assert again["losses"] == info["losses"]                            # nothing left to do


def test_resume_continues_where_training_stopped(tmp_path):
    """Four steps in one go equal a run stopped after step 2 (Ctrl-C) and resumed."""
    cfg, _ = override(ddpm_config("ci"), {"train.steps": 4, "train.save_every": 2, "train.n_train": 64,
                                           "train.log_every": 1})
    torch.manual_seed(0)
    whole = DDPM(cfg)
    init = {k: v.clone() for k, v in whole.state_dict().items()}
    ddpm.train(whole, tmp_path / "a", show_progress=False)

    def stop(step, _):
        if step == 2:
            raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        ddpm.train(DDPM(cfg), tmp_path / "b", show_progress=False, on_log=stop)
    assert int(checkpoint.load(tmp_path / "b-state", cfg)[0]["step"]) == 3
    rest = DDPM(cfg)
    rest.load_state_dict(init)
    ddpm.train(rest, tmp_path / "b", resume=True, show_progress=False)
    for k, v in whole.state_dict().items():
        assert torch.allclose(v, rest.state_dict()[k], atol=1e-6), k


def test_bootstrap_and_diversity():
    r, lo, hi, n = rate([1] * 90 + [0] * 10)
    assert r == pytest.approx(0.9) and lo < 0.9 < hi and hi - lo < 0.2 and n == 100
    assert str(rate([1, 1, 0, 0])).startswith("0.500 [")
    same = torch.zeros(8, 3, 4, 4)
    assert pixel_diversity(same, 4) == 0
    assert pixel_diversity(torch.rand(8, 3, 4, 4), 4) > 0


def test_cli_lists_the_targets(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    assert "ddpm" in capsys.readouterr().out


def test_shipped_glide_single_object_exact_match():
    """Exact match on eval glide's single-object suite (40 prompts × 4, prompt seed 1, DDIM 50, glide.GUIDANCE): 0.525
    by the strict oracle, which names no small shape at 16×16 (issue 4's bar, 0.90, is not met; the floor guards the
    measured level), and guidance helps: the same samples at s = 1, 0.362, fall short. ≈ 40 s."""
    model = glide.load("cpu")
    exact = {}
    for s in (1.0, GUIDANCE):
        _, _, v = judge_samples(lambda caps, seed: generate(model, caps, s, 50, "ddim", seed), SINGLE_PROMPTS, 4, 1)
        exact[s] = sum(x["exact"] for x in v) / len(v)
    assert exact[GUIDANCE] >= 0.45, exact
    assert exact[1.0] < exact[GUIDANCE] - 0.05, exact
