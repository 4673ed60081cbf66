"""Lessons 05–07 measured: the prior's embeddings (`eval prior`) and the unCLIP cascade (`eval unclip`).

Ramesh et al. 2022 (unCLIP). `evaluate_prior` compares the prior's samples with the true CLIP image
embeddings of held-out scenes (§2.2; lesson 05); `reconstruction` asks the decoder and the upsampler
to redraw held-out scenes from their true embeddings (§2.1; lesson 06); `ablation` is §5.1's
comparison — the decoder fed the prior's embedding, fed the caption's text embedding, and GLIDE —
judged by the oracle (lesson 07). `evaluate` prints the reports of `python -m minidalle eval prior`
and `eval unclip` that the book quotes; `train_metrics` is what `train prior|decoder|upsampler`
records in the manifest.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from minidalle import checkpoint
from minidalle.clip import train as clip_train
from minidalle.config import get_preset
from minidalle.dalle2 import decoder, prior, unclip, upsampler
from minidalle.dalle2.unclip import UnCLIP
from minidalle.diffusion import glide
from minidalle.eval.prompts import SINGLE_PROMPTS, guidance_sweep, print_suite, prompt_suite
from minidalle.eval.rates import Rate, rate
from minidalle.runtime import progress
from minidalle.world.data import training_data
from minidalle.world.oracle import judge


# ------------------------------------------------------------------ the prior (lesson 05)
@torch.no_grad()
def evaluate_prior(model: prior.Prior, clip_model, n: int = 500, seed: int = 909, batch: int = 250,
                   nearest: bool = True, **sampling) -> dict[str, Rate]:
    """Cosine similarity to the true CLIP image embedding of n held-out captioned scenes.

    Compared: the prior's sample; the caption's text embedding itself; and the training-set
    image embedding nearest to the text embedding (a retrieval "prior"; skipped with nearest=False,
    as it embeds the whole training set). {name: Rate} — the mean cosine with its 95% bootstrap
    interval. sampling: `prior.sample`'s options (guidance, steps, candidates).
    """
    tc = model.config.train
    size = clip_model.config.image_size
    images, captions = training_data(n, size, tc.two_objects, seed)
    tokens, text, image = prior.clip_embeddings(clip_model, images, captions)
    pred = torch.cat([prior.sample(model, tk, tx, seed=seed + i, **sampling)
                      for i, (tk, tx) in enumerate(progress(list(zip(tokens.split(batch), text.split(batch))),
                                                            desc="prior sampling", leave=False))])
    rivals = [("prior", pred), ("text embedding", text)]
    if nearest:
        train_images, train_captions = training_data(tc.n_train, size, tc.two_objects, tc.seed)
        _, _, train_image = prior.clip_embeddings(clip_model, train_images, train_captions)   # (N, D)
        rivals.append(("nearest training image", train_image[(text @ train_image.T).argmax(1)]))
    return {name: rate(F.cosine_similarity(z, image, dim=-1)) for name, z in rivals}


# ------------------------------------------------------------------ the decoder and upsampler (lesson 06)
def reconstruction(model: decoder.Decoder | upsampler.Upsampler, clip_model, n: int = 160,
                   seed: int = 4242) -> Rate:
    """Oracle exact match of held-out captions on pictures made from their scenes' true CLIP embeddings.

    Decoder: decoded from the embedding alone. Upsampler: the true low-resolution render upsampled.
    """
    c, tc = model.config, model.config.train
    _, captions, emb = decoder.embedded_scenes(n, c.unet.res, tc.two_objects, seed, clip_model)
    if isinstance(model, upsampler.Upsampler):
        low, _ = training_data(n, c.unet.res // 2, tc.two_objects, seed)         # the same scenes at half res
        out = upsampler.upsample(model, (low + 1) / 2, emb, seed=seed)
    else:
        out = decoder.decode(model, emb, seed=seed)
    return rate([v["exact"] for v in judge(out, captions)])


# ------------------------------------------------------------------ the cascade (lesson 07)
def ablation(pipe: UnCLIP, glide_model=None, per_prompt: int = 4,
             guidance: float = decoder.GUIDANCE) -> dict[str, dict[str, Rate]]:
    """unCLIP §5.1 with the oracle: {variant: prompt_suite result} (single- and two-object prompts, 95% intervals).

    Each model samples as it does by default: the decoder variants with DDIM 50 at η = `decoder.ETA` and
    decoder guidance `guidance`, GLIDE with DDIM 50 at η = 0 and its own scale `glide.GUIDANCE` (each scale the
    best of its own sweep).
    """
    variants = {
        "unCLIP: prior embedding → decoder → upsampler":
            lambda caps, s: unclip.generate(pipe, caps, s, "prior", guidance),
        "decoder fed the prior's embedding (base res)":
            lambda caps, s: unclip.generate(pipe, caps, s, "prior", guidance, upsampled=False),
        "decoder fed the text embedding (base res)":
            lambda caps, s: unclip.generate(pipe, caps, s, "text", guidance, upsampled=False),
    }
    if glide_model is not None:
        name = f"GLIDE: text only (base res, s = {glide.GUIDANCE:g})"
        variants[name] = lambda caps, s: glide.generate(glide_model, caps, seed=s)
    return {name: prompt_suite(fn, per_prompt) for name, fn in variants.items()}


# ------------------------------------------------------------------ the commands
def evaluate(kind: str, n: int = 500, per_prompt: int = 4, guidance: float | None = None) -> dict:
    """`python -m minidalle eval prior` (n held-out scenes; guidance: the prior's scale, default 1) or
    `eval unclip` (per_prompt samples a prompt; guidance: the decoder's, default `decoder.GUIDANCE`):
    print the lesson's report, return its numbers."""
    if kind == "prior":
        return _eval_prior(n, 1.0 if guidance is None else guidance)
    if kind == "unclip":
        return _eval_unclip(per_prompt, decoder.GUIDANCE if guidance is None else guidance)
    raise ValueError(f"eval.dalle2 evaluates 'prior' or 'unclip', not {kind!r}")


def _eval_prior(n: int, guidance: float) -> dict[str, Rate]:
    clip_model, model = clip_train.load(), prior.load()
    print(f"prior at preset {get_preset().name}: cosine similarity to the true CLIP image embedding of {n} "
          f"held-out captioned scenes (mean, 95% interval); two candidates, DDIM 64, s = {guidance:g}")
    out = evaluate_prior(model, clip_model, n=n, guidance=guidance)
    for k, (v, lo, hi, _) in out.items():
        print(f"  {k:24s} {v:.3f}  [{lo:.3f}, {hi:.3f}]")
    return out


def _eval_unclip(per_prompt: int, guidance: float) -> dict:
    pipe = unclip.load()
    try:
        glide_model = glide.load()
    except checkpoint.CheckpointError:
        glide_model = None
        print("(no GLIDE checkpoint: `python -m minidalle train glide` adds it to the ablation)")
    torch.manual_seed(0)
    out = ablation(pipe, glide_model, per_prompt, guidance)
    p = get_preset()
    for name, suite in out.items():
        print_suite(suite, f"{name}; preset {p.name}, decoder s = {guidance:g}, {per_prompt} samples a prompt")
    for kind, model in (("decoder", pipe.decoder), ("upsampler", pipe.upsampler)):
        r, lo, hi, n = reconstruction(model, pipe.clip)
        print(f"{kind} from the true embedding of held-out scenes: caption exact {r:.3f} [{lo:.3f}, {hi:.3f}] n={n}")
    out["sweep"] = guidance_sweep(lambda s: lambda caps, seed: unclip.generate(pipe, caps, seed, guidance=s),
                                  (1, 2, 3, 5, 8), SINGLE_PROMPTS, per_prompt=2, seed=3)
    print("decoder guidance sweep, the whole cascade (40 single-object prompts × 2, prompt seed 3; "
          "decoder.GUIDANCE is its smallest best scale)")
    for r in out["sweep"]:
        v, lo, hi, _ = r["exact"]
        print(f"  s = {r['scale']:g}  exact {v:.3f} [{lo:.3f}, {hi:.3f}]  diversity {r['diversity']:.3f}")
    return out


def train_metrics(kind: str, model, clip_model) -> dict:
    """What `python -m minidalle train prior|decoder|upsampler` records in the manifest after training: the
    prior's cosine to the true image embedding (200 held-out scenes, each rival), or the decoder's or
    upsampler's caption exact match from the true embedding (160 held-out scenes)."""
    if kind == "prior":
        r = evaluate_prior(model, clip_model, n=200)
        return {f"cosine to true image embedding, {k}": round(v.value, 4) for k, v in r.items()}
    if kind in ("decoder", "upsampler"):
        r = reconstruction(model, clip_model, n=160)
        return {"held-out caption exact, from true embedding": round(r.value, 4),
                "ci95": [round(r.lo, 4), round(r.hi, 4)], "n": r.n}
    raise ValueError(f"eval.dalle2 has training metrics for 'prior', 'decoder' or 'upsampler', not {kind!r}")
