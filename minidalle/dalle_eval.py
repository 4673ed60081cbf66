"""Lessons 08–09 measured: `train dvae|dalle`, `eval dvae|dalle`, the re-ranking curve and the completion probe.

Every number of the DALL·E 1 chapter comes from `python -m minidalle eval dvae`
or `eval dalle` at the preset named in `book/results.md`.
"""
from __future__ import annotations

import time

import torch

from . import dalle, dvae
from .captions import Desc
from .evaluation import SINGLE_PROMPTS, judge_samples, print_suite, prompt_suite, rate
from .oracle import judge
from .presets import get_preset
from .runtime import device
from .trainer import ship
from .world import COLOUR_NAMES, SHAPES, SIZES, SceneSpec

SAMPLING = {"top_k": 32}            # the course's default; lesson 09 shows temperature, top-k and top-p


def sampler(model, vae, **sampling):
    """The DALL·E model as `sample(captions, seed) -> images`, for `evaluation.judge_samples`."""
    kw = {**SAMPLING, **sampling}
    return lambda caps, seed: dalle.generate(model, vae, caps, seed=seed, **kw)[0]


def rerank_curve(model, vae, clip_model, ns=(1, 4, 16, 64), prompts=SINGLE_PROMPTS, seed: int = 5) -> list[dict]:
    """Oracle exact match when CLIP keeps the best of N, for each N and both scores (§2.6; the paper draws this
    curve for FID).

    One pool of max(ns) samples a prompt; for each N it is cut into groups of N and CLIP keeps
    one image a group, so every N and both scores are judged on the same samples (max(ns)/N kept a prompt).
    Scores (`dalle.rerank`): "cosine", the paper's, and "caption probability", CLIP's probability of the
    prompt against the other prompts. N = 1 keeps every sample, under either score.
    """
    top = max(ns)
    images, _, verdicts = judge_samples(sampler(model, vae), prompts, top, seed)  # (P·top, 3, R, R), judged once
    rows = []
    for score, against in (("cosine", None), ("caption probability", list(prompts))):
        scores = dalle.clip_scores(images, list(prompts), top, clip_model, against)   # (P·top,) once for every N
        for n in ns:
            hits = [verdicts[i]["exact"] for i in dalle.best_of(scores, n).tolist()]  # the kept image of each group
            rows.append({"score": score, "N": n, "exact": rate(hits), "n": len(hits)})
    return rows


def completion_probe(model, vae, n: int = 80, seed: int = 11) -> dict:
    """Image completion (the paper's image-to-image demonstrations, §3, in the shapes world).

    Held-out scenes of one object wholly in the top half; the transformer keeps the top
    half of the tokens and completes the bottom half for "a C1 S1 above a C2 S2" with a new
    C2 S2. Rates: both objects right, the whole prompt exact. Of 8·n scenes drawn, those with the
    object in the top half are used, at most n (so possibly fewer).
    """
    from .data import generate

    b = generate(8 * n, vae.config.res, SceneSpec(n_objects=(1, 0, 0, 0)), seed=seed)
    top = [i for i in range(len(b)) if (o := b.scenes.scene(i).objects[0]).y + SIZES[o.size] / 2 < 0.45][:n]
    g = torch.Generator().manual_seed(seed)
    prompts = []
    for i in top:
        o = b.scenes.scene(i).objects[0]
        colour = [c for c in COLOUR_NAMES if c != o.colour][int(torch.randint(len(COLOUR_NAMES) - 1, (1,), generator=g))]
        shape = SHAPES[int(torch.randint(len(SHAPES), (1,), generator=g))]
        prompts.append(f"{Desc(o.shape, o.colour).phrase()} above {Desc(shape, colour).phrase()}")
    images = b.images[top].float() / 255
    done = dalle.complete(model, vae, images, prompts, seed=seed, **SAMPLING)
    v = judge(done, prompts)
    return {"prompts": prompts, "given": images, "completed": done,
            "rates": {"whole prompt exact": (*rate([x["exact"] for x in v]), len(v)),
                      "both objects right": (*rate([x["objects"] for x in v]), len(v))}}


# ------------------------------------------------------------------ commands
def cli_train(kind: str, resume: bool = False) -> dict:
    """`python -m minidalle train dvae|dalle` at the active preset (dalle needs the preset's dVAE first)."""
    if kind == "dvae":
        config = dvae.dvae_config()
        model, name = dvae.DVAE(config), dvae.checkpoint_name()
        info = dvae.train(model, name, resume=resume)
        r = dvae.evaluate(model, 200)
        metrics = {k: {m: round(x, 4) if isinstance(x, float) else x for m, x in row.items()} for k, row in r.items()}
    else:
        vae = dvae.load_trained()[0]
        config = dalle.dalle_config(codes=vae.config.codes)
        model, name = dalle.DALLE(config), dalle.checkpoint_name()
        info = dalle.train(model, vae, name, resume=resume)
        _, _, v = judge_samples(sampler(model.eval(), vae), SINGLE_PROMPTS, 4, seed=1)
        r, lo, hi = rate([x["exact"] for x in v])
        metrics = {"single_object_exact_top_k32": round(r, 4), "ci95": [round(lo, 4), round(hi, 4)], "n": len(v)}
    ship(kind, name, config, info, metrics)
    return info


def cli_eval(kind: str, n: int = 500, per_prompt: int = 4) -> dict:
    """`python -m minidalle eval dvae|dalle`: print lesson 08's or 09's measurements."""
    p = get_preset()
    print(f"{kind} at preset {p.name}, oracle-judged, 95% bootstrap intervals")
    if kind == "dvae":
        model, _ = dvae.load_trained()
        out = dvae.evaluate(model, n)
        for k, row in out.items():
            same, blur = row.get("same_scene"), row.get("same_scene_blurred")
            extra = (f"  same scene graph {same['value']:.3f} [{same['lo']:.3f}, {same['hi']:.3f}] n={same['n']}"
                     f"  (originals blurred 3×3: {blur['value']:.3f} [{blur['lo']:.3f}, {blur['hi']:.3f}])" if same else "")
            print(f"  {k:11s} MSE {row['mse']:.4f}  perplexity {row['perplexity']:.1f}  codes used "
                  f"{row['used']:.3f}{extra}")
            if row.get("differences"):
                print(f"  {'':11s} read differently: " + ", ".join(f"{d} {c}" for d, c in row["differences"].items()))
            if row.get("by_placement"):
                print(f"  {'':11s} by placement (n; kept; originals blurred): " + ", ".join(
                    f"{p} ({h['kept']['n']}; {h['kept']['value']:.3f}; {h['blurred']['value']:.3f})"
                    for p, h in row["by_placement"].items()))
        return out
    model, vae = dalle.load_trained()
    t0 = time.perf_counter()
    out = prompt_suite(sampler(model, vae), per_prompt)
    print_suite(out, f"'a COLOUR SHAPE' (40 prompts × {per_prompt}) and 20 two-object prompts × {per_prompt}; "
                     f"top-k {SAMPLING['top_k']}, no re-ranking ({time.perf_counter() - t0:.0f} s)")
    from .clip import load_trained as load_clip

    clip_model = load_clip(train_if_missing=False)[0].to(device())
    curve = rerank_curve(model, vae, clip_model)
    print("CLIP re-ranking: exact match of the kept image, best of N (40 single-object prompts, one pool of 64 each)")
    for r in curve:
        x, lo, hi = r["exact"]
        print(f"  {r['score']:19s}  N = {r['N']:2d}  {x:.3f}  [{lo:.3f}, {hi:.3f}]  n={r['n']}")
    comp = completion_probe(model, vae)
    print_suite(comp["rates"], "completion: top half kept, 'a C1 S1 above a C2 S2' asked for")
    return {**out, "rerank": curve, "completion": comp["rates"]}
