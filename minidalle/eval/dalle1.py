"""Lessons 08–09 measured: the dVAE's reconstructions, DALL·E's samples, the re-ranking curve, the completion probe.

`notebooks/08_dvae.ipynb` and `09_dalle.ipynb` run these; every number of the DALL·E 1 chapter
(book/dalle1.md) comes from `python -m minidalle eval dvae` or `eval dalle` (`evaluate`) at the
preset named in book/results.md, and `train_metrics` is what `train dvae|dalle` records in the
manifest. Ramesh et al. 2021: the dVAE of §2.1, the samples of §3, CLIP re-ranking of §2.6
(Figure 9 draws its curve for FID; here the oracle judges), image completion of §3.
"""
from __future__ import annotations

import time
from collections import Counter

import torch
import torch.nn.functional as F

from minidalle.clip.train import load as load_clip
from minidalle.config import InputError, get_preset
from minidalle.dalle1 import dvae, transformer
from minidalle.dalle1.dvae import DVAE, usage
from minidalle.dalle1.transformer import DALLE, SAMPLING, sampler
from minidalle.eval.prompts import SINGLE_PROMPTS, judge_samples, print_suite, prompt_suite
from minidalle.eval.rates import Rate, rate
from minidalle.world.captions import Desc
from minidalle.world.data import generate, held_out
from minidalle.world.oracle import judge, read, same_scene, scene_difference
from minidalle.world.scenes import COLOUR_NAMES, CONTACT, SHAPES, SIZES, SceneSpec


KINDS = ("dvae", "dalle")


# ------------------------------------------------------------------ lesson 08: the dVAE
def blur(images: torch.Tensor) -> torch.Tensor:
    """A 3×3 Gaussian blur, (B, 3, H, W) → same, edges replicated: the yardstick of `evaluate_dvae`."""
    kernel = torch.tensor([[1.0, 2, 1], [2, 4, 2], [1, 2, 1]]) / 16
    return F.conv2d(F.pad(images, (1, 1, 1, 1), mode="replicate"), kernel.expand(3, 1, 3, 3), groups=3)


def placement(relations) -> str:
    """How a scene's objects touch: the first contact relation among them ("on", "inside",
    "in front of", see `world.scenes.CONTACT`), or "apart"."""
    held = {r for _, r, _ in relations}
    return next((r for r in CONTACT if r in held), "apart")


@torch.no_grad()
def evaluate_dvae(model: DVAE, n: int, seed: int = 777) -> dict:
    """Held-out reconstruction error, codebook usage, and the oracle check of lesson 08.

    The oracle reads each original and its reconstruction (from hard tokens); a scene
    passes when both readings are the same scene graph (`oracle.same_scene`), and the
    others are counted by how they differ (`oracle.scene_difference`), and two-object
    scenes are also scored by how the pair is placed (`placement`).
    Single- and two-object scenes are checked separately, n of each. For scale, the
    same check on the originals blurred by a 3×3 Gaussian (about one pixel) is
    reported too: a reconstruction must be about that sharp to pass as often.

    Returns {"1 object" | "2 objects" | "1-4 objects": row}; a row holds mse, perplexity, used, and for
    1 and 2 objects same_scene and same_scene_blurred (`Rate`s), differences ({how: count}), and for
    2 objects by_placement ({placement: {"kept": Rate, "blurred": Rate}}).
    """
    model.eval()
    dev = model.codebook.device
    out = {}
    for k, probs in ((1, (1, 0, 0, 0)), (2, (0, 1, 0, 0)), ("1-4", SceneSpec().n_objects)):
        batch = held_out(n, model.config.res, probs, seed)
        x = batch.images.float() / 127.5 - 1                                       # (n, 3, res, res) in [−1, 1]
        tokens = torch.cat([model.encode(b.to(dev)) for b in x.split(256)])        # (n, grid, grid)
        recon = torch.cat([model.decode(t) for t in tokens.split(256)]).cpu()
        row = {"mse": F.mse_loss(recon, x).item(), **usage(tokens, model.config.codes)}
        if k != "1-4":
            seen = read((x + 1) / 2)
            differences = [scene_difference(a.scene, b.scene) for a, b in zip(seen, read((recon + 1) / 2))]
            row["same_scene"] = rate([d is None for d in differences])
            row["differences"] = dict(Counter(d for d in differences if d).most_common())   # how the others fail
            blurred = [same_scene(a.scene, b.scene) for a, b in zip(seen, read(blur((x + 1) / 2)))]
            row["same_scene_blurred"] = rate(blurred)
            if k == 2:                                                             # where: by how the pair is placed
                kinds = [placement(r) for r in batch.scenes.relations()]
                row["by_placement"] = {p: {"kept": rate([d is None for d, q in zip(differences, kinds) if q == p]),
                                           "blurred": rate([b for b, q in zip(blurred, kinds) if q == p])}
                                       for p in ("apart",) + CONTACT if p in kinds}
        out[f"{k} object{'s' if k != 1 else ''}"] = row
    return out


def print_dvae(out: dict) -> None:
    """Print `evaluate_dvae`'s rows as `eval dvae` does."""
    for k, row in out.items():
        same, blurred = row.get("same_scene"), row.get("same_scene_blurred")
        extra = (f"  same scene graph {same.value:.3f} [{same.lo:.3f}, {same.hi:.3f}] n={same.n}"
                 f"  (originals blurred 3×3: {blurred.value:.3f} [{blurred.lo:.3f}, {blurred.hi:.3f}])" if same else "")
        print(f"  {k:11s} MSE {row['mse']:.4f}  perplexity {row['perplexity']:.1f}  codes used "
              f"{row['used']:.3f}{extra}")
        if row.get("differences"):
            print(f"  {'':11s} read differently: " + ", ".join(f"{d} {c}" for d, c in row["differences"].items()))
        if row.get("by_placement"):
            print(f"  {'':11s} by placement (n; kept; originals blurred): " + ", ".join(
                f"{p} ({h['kept'].n}; {h['kept'].value:.3f}; {h['blurred'].value:.3f})"
                for p, h in row["by_placement"].items()))


# ------------------------------------------------------------------ lesson 09: the transformer
def rerank_curve(model: DALLE, vae: DVAE, clip_model, ns=(1, 4, 16, 64), prompts=SINGLE_PROMPTS,
                 seed: int = 5) -> list[dict]:
    """Oracle exact match when CLIP keeps the best of N, for each N and both scores (§2.6; the paper draws this
    curve for FID).

    One pool of max(ns) samples a prompt; for each N it is cut into groups of N and CLIP keeps
    one image a group, so every N and both scores are judged on the same samples (max(ns)/N kept a prompt).
    Scores (`transformer.rerank`): "cosine", the paper's, and "caption probability", CLIP's probability of the
    prompt against the other prompts. N = 1 keeps every sample, under either score.
    A row: {"score", "N", "exact": Rate, "n": images kept}.
    """
    top = max(ns)
    images, _, verdicts = judge_samples(sampler(model, vae), prompts, top, seed)  # (P·top, 3, R, R), judged once
    rows = []
    for score, against in (("cosine", None), ("caption probability", list(prompts))):
        scores = transformer.clip_scores(images, list(prompts), top, clip_model, against)   # (P·top,) once for every N
        for n in ns:
            hits = [verdicts[i]["exact"] for i in transformer.best_of(scores, n).tolist()]  # the kept image of each group
            rows.append({"score": score, "N": n, "exact": rate(hits), "n": len(hits)})
    return rows


def completion_probe(model: DALLE, vae: DVAE, n: int = 80, seed: int = 11) -> dict:
    """Image completion (the paper's image-to-image demonstrations, §3, in the shapes world).

    Held-out scenes of one object wholly in the top half; the transformer keeps the top
    half of the tokens and completes the bottom half for "a C1 S1 above a C2 S2" with a new
    C2 S2. Rates: both objects right, the whole prompt exact. Of 8·n scenes drawn, those with the
    object in the top half are used, at most n (so possibly fewer).
    Returns {"prompts", "given" (images in [0, 1]), "completed", "rates": {what: Rate}}.
    """
    b = generate(8 * n, vae.config.res, SceneSpec(n_objects=(1, 0, 0, 0)), seed=seed)
    top = [i for i in range(len(b)) if (o := b.scenes.scene(i).objects[0]).y + SIZES[o.size] / 2 < 0.45][:n]
    g = torch.Generator().manual_seed(seed)
    prompts = []
    for i in top:
        o = b.scenes.scene(i).objects[0]
        colour = [c for c in COLOUR_NAMES if c != o.colour][int(torch.randint(len(COLOUR_NAMES) - 1, (1,), generator=g))]
        shape = SHAPES[int(torch.randint(len(SHAPES), (1,), generator=g))]
        prompts.append(f"{Desc(o.shape, o.colour).phrase()} above {Desc(shape, colour).phrase()}")
    images = b.images[top].float() / 255                                           # (m, 3, res, res) in [0, 1]
    done = transformer.complete(model, vae, images, prompts, seed=seed, **SAMPLING)
    v = judge(done, prompts)
    return {"prompts": prompts, "given": images, "completed": done,
            "rates": {"whole prompt exact": rate([x["exact"] for x in v]),
                      "both objects right": rate([x["objects"] for x in v])}}


# ------------------------------------------------------------------ the commands
def _check(kind: str) -> None:
    if kind not in KINDS:
        raise InputError(f"unknown DALL·E 1 model {kind!r}: choose dvae or dalle")


def _plain(x):
    """Rates, also nested in dicts, as {value, lo, hi, n} dicts: JSON for the manifest."""
    if isinstance(x, Rate):
        return dict(x._asdict())
    if isinstance(x, dict):
        return {k: _plain(v) for k, v in x.items()}
    return x


def train_metrics(kind: str, model, vae: DVAE | None = None) -> dict:
    """What `python -m minidalle train dvae|dalle` records in the manifest after training `model` (JSON).

    dvae: `evaluate_dvae` on 200 held-out scenes of each kind, floats rounded to 4 digits, rates as
    {value, lo, hi, n}. dalle (needs `vae`): single-object exact match of 4 samples of each of the 40
    prompts at top-k 32, seed 1: {"single_object_exact_top_k32", "ci95": [lo, hi], "n"}.
    """
    _check(kind)
    if kind == "dvae":
        r = evaluate_dvae(model, 200)
        return {k: {m: round(x, 4) if isinstance(x, float) else _plain(x) for m, x in row.items()}
                for k, row in r.items()}
    if vae is None:
        raise InputError("train_metrics('dalle', model, vae) needs the dVAE whose tokens the transformer reads")
    _, _, v = judge_samples(sampler(model.eval(), vae), SINGLE_PROMPTS, 4, seed=1)
    r = rate([x["exact"] for x in v])
    return {"single_object_exact_top_k32": round(r.value, 4), "ci95": [round(r.lo, 4), round(r.hi, 4)], "n": len(v)}


def evaluate(kind: str, n: int = 500, per_prompt: int = 4, model=None) -> dict:
    """`python -m minidalle eval dvae|dalle`: print lesson 08's or 09's measurements of the preset's shipped models
    (or of `model`, the dVAE or the transformer, when given).

    dvae: `evaluate_dvae` on n held-out scenes of each kind. dalle: the prompt suite (per_prompt samples a
    prompt, top-k 32, no re-ranking), the CLIP re-ranking curve and the completion probe.
    """
    _check(kind)
    p = get_preset()
    print(f"{kind} at preset {p.name}, oracle-judged, 95% bootstrap intervals")
    if kind == "dvae":
        out = evaluate_dvae(model or dvae.load(), n)
        print_dvae(out)
        return out
    vae = dvae.load()
    model = model or transformer.load()
    t0 = time.perf_counter()
    out = prompt_suite(sampler(model, vae), per_prompt)
    print_suite(out, f"'a COLOUR SHAPE' (40 prompts × {per_prompt}) and 20 two-object prompts × {per_prompt}; "
                     f"top-k {SAMPLING['top_k']}, no re-ranking ({time.perf_counter() - t0:.0f} s)")
    curve = rerank_curve(model, vae, load_clip())
    print("CLIP re-ranking: exact match of the kept image, best of N (40 single-object prompts, one pool of 64 each)")
    for r in curve:
        x = r["exact"]
        print(f"  {r['score']:19s}  N = {r['N']:2d}  {x.value:.3f}  [{x.lo:.3f}, {x.hi:.3f}]  n={r['n']}")
    comp = completion_probe(model, vae)
    print_suite(comp["rates"], "completion: top half kept, 'a C1 S1 above a C2 S2' asked for")
    return {**out, "rerank": curve, "completion": comp["rates"]}
