"""The prompt suites and the sampling loop every text→image model is judged by (lessons 04–11).

GLIDE (lesson 04), DALL·E (lesson 09) and unCLIP (lessons 05–07) are judged alike: a model is
just `sample(prompts, seed) -> images in [0, 1]`, the same prompts are asked of each, the
oracle (`world.oracle.judge`) checks every sample against its prompt, and every rate carries
its 95% bootstrap interval (`eval.rates`).
"""
from __future__ import annotations

import torch

from minidalle.eval.rates import Rate, rate
from minidalle.runtime import progress
from minidalle.world.captions import Desc
from minidalle.world.oracle import judge
from minidalle.world.scenes import COLOUR_NAMES, SHAPES


SINGLE_PROMPTS = [Desc(s, c).phrase() for c in COLOUR_NAMES for s in SHAPES]     # 40: "a red circle", "an orange cross"
PAIR_RELATIONS = ("left of", "right of", "above", "below")   # the relations two-object prompts ask for


def pair_prompts(n: int = 20, seed: int = 0) -> list[str]:
    """n two-object prompts "a C1 S1 REL a C2 S2" (or "an …") with two different colours and shapes."""
    g = torch.Generator().manual_seed(seed)
    out = []
    while len(out) < n:
        c = torch.randperm(len(COLOUR_NAMES), generator=g)[:2].tolist()
        s = torch.randperm(len(SHAPES), generator=g)[:2].tolist()
        r = PAIR_RELATIONS[int(torch.randint(len(PAIR_RELATIONS), (1,), generator=g))]
        out.append(f"{Desc(SHAPES[s[0]], COLOUR_NAMES[c[0]]).phrase()} {r} {Desc(SHAPES[s[1]], COLOUR_NAMES[c[1]]).phrase()}")
    return out


def judge_samples(sample, prompts: list[str], per_prompt: int = 4, seed: int = 0, batch: int = 160):
    """Ask `sample(captions, seed)` for per_prompt images of each prompt, in batches; judge them.

    Returns (images (N, 3, R, R) in [0, 1], captions, verdicts), the samples of one prompt adjacent.
    """
    caps = [p for p in prompts for _ in range(per_prompt)]
    imgs = torch.cat([sample(caps[i:i + batch], seed + i)
                      for i in progress(range(0, len(caps), batch), desc="sampling", leave=False)])
    return imgs, caps, judge(imgs, caps)


def prompt_suite(sample, per_prompt: int = 4, seed: int = 1) -> dict[str, Rate]:
    """Single objects (40 prompts) and two objects (20 prompts): {what: Rate}."""
    out = {}
    _, _, v = judge_samples(sample, SINGLE_PROMPTS, per_prompt, seed)
    for key in ("exact", "colour", "shape"):
        out[f"single {key}"] = rate([x[key] for x in v])
    _, _, v = judge_samples(sample, pair_prompts(20), per_prompt, seed)
    position = [next(x[k] for k in x if k.startswith("relation")) for x in v]
    for key, hits in (("pair colour attribution (both bindings)", [x["objects"] for x in v]),
                      ("pair position (relation holds)", position), ("pair exact", [x["exact"] for x in v])):
        out[key] = rate(hits)
    return out


def guidance_sweep(sampler_at, scales, prompts: list[str], per_prompt: int = 2, seed: int = 3) -> list[dict]:
    """Fidelity against diversity per classifier-free guidance scale (lessons 04 and 06).

    sampler_at(scale) is a model as `sample(captions, seed)`; each scale is judged on the same prompts and
    seed. A row: {"scale", "exact": Rate, "diversity": the mean pairwise pixel distance among one prompt's
    samples}. The course picks each model's default scale from such a sweep at seed 3, which no headline uses.
    """
    rows = []
    for s in scales:
        imgs, _, v = judge_samples(sampler_at(float(s)), prompts, per_prompt, seed)
        rows.append({"scale": s, "exact": rate([x["exact"] for x in v]), "diversity": pixel_diversity(imgs, per_prompt)})
    return rows


def print_suite(out: dict[str, Rate], heading: str) -> None:
    """Print a `prompt_suite` as the book quotes it: one line a rate, with its interval and n."""
    print(heading)
    for k, (r, lo, hi, n) in out.items():
        print(f"  {k:42s} {r:.3f}  [{lo:.3f}, {hi:.3f}]  n={n}")


def pixel_diversity(images: torch.Tensor, per_prompt: int) -> float:
    """Mean pairwise L2 pixel distance among the samples of one prompt, averaged over prompts."""
    x = images.flatten(1).view(-1, per_prompt, images[0].numel())                 # (P, k, D)
    d = torch.cdist(x, x)                                                         # (P, k, k)
    k = per_prompt
    return float(d.sum() / (len(x) * k * (k - 1)))
