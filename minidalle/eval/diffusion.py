"""Lessons 03–04 measured: `eval ddpm|glide`, the sampler comparison and the guidance sweep.

Every number of the diffusion and GLIDE chapters comes from `python -m minidalle eval ddpm` or
`eval glide` at the preset named in book/results.md.
"""
from __future__ import annotations

import time

import matplotlib.pyplot as plt
import torch

from minidalle.config import get_preset
from minidalle.diffusion import ddpm, glide
from minidalle.diffusion.glide import GLIDE, GUIDANCE, generate
from minidalle.eval import prompts
from minidalle.eval.prompts import SINGLE_PROMPTS, judge_samples, print_suite, prompt_suite
from minidalle.eval.rates import rate
from minidalle.world.oracle import read
from minidalle.world.scenes import UNCLEAR


def judge_prompts(model: GLIDE, prompts: list[str], per_prompt: int = 4, guidance: float = GUIDANCE,
                  steps: int | None = 50, method: str = "ddim", seed: int = 0, batch: int = 160):
    """Sample per_prompt images for each prompt, judge them with the oracle. Returns (images, captions, verdicts)."""
    return judge_samples(lambda caps, s: generate(model, caps, guidance, steps, method, s), prompts, per_prompt,
                         seed, batch)


def one_clean_object(images: torch.Tensor) -> list[bool]:
    """For unconditional single-object samples: does the oracle read exactly one object whose shape, colour
    and size it can name (none of them `UNCLEAR`)?"""

    return [len(r.objects) == 1 and UNCLEAR not in (r.objects[0].shape, r.objects[0].colour, r.objects[0].size)
            for r in read(images)]


def train_metrics(kind: str, model) -> dict:
    """What `train ddpm|glide` records in the manifest: DDIM-50 samples judged by the oracle."""
    torch.manual_seed(0)
    if kind == "ddpm":
        r = rate(one_clean_object(ddpm.sample(model, 128, steps=50, method="ddim", seed=1)))
        return {"one_clean_object_ddim50": round(r.value, 4), "ci95": [round(r.lo, 4), round(r.hi, 4)], "n": r.n}
    _, _, v = judge_prompts(model, SINGLE_PROMPTS, per_prompt=4, guidance=GUIDANCE, steps=50, seed=1)
    r = rate([x["exact"] for x in v])
    return {f"single_object_exact_ddim50_s{GUIDANCE:g}": round(r.value, 4), "ci95": [round(r.lo, 4), round(r.hi, 4)],
            "n": r.n}


def sampler_table(kind: str, model, per_prompt: int = 2, guidance: float = GUIDANCE, seed: int = 2) -> list[dict]:
    """DDIM with 25/50/100 steps against DDPM with all T steps: oracle accuracy and wall time (lesson 03).
    A row: {"sampler", "rate": Rate, "wall_s"}."""
    rows = []
    T = model.config.diffusion.timesteps
    for method, steps in (("ddim", 25), ("ddim", 50), ("ddim", 100), ("ddpm", T)):
        t0 = time.perf_counter()
        if kind == "ddpm":
            n = per_prompt * len(SINGLE_PROMPTS)
            hits = one_clean_object(ddpm.sample(model, n, steps=steps, method=method, seed=seed))
        else:
            _, _, v = judge_prompts(model, SINGLE_PROMPTS, per_prompt, guidance, steps, method, seed)
            hits = [x["exact"] for x in v]
        rows.append({"sampler": f"{method.upper()} {steps}", "rate": rate(hits), "wall_s": time.perf_counter() - t0})
    return rows


def guidance_sweep(model, scales=(0, 1, 2, 3, 5, 8), per_prompt: int = 4, steps: int = 50, seed: int = 3,
                   prompt_list: list[str] | None = None) -> list[dict]:
    """Fidelity (oracle exact match) and diversity (pairwise pixel distance) per guidance scale (lesson 04)."""
    return prompts.guidance_sweep(lambda s: lambda caps, sd: generate(model, caps, s, steps, "ddim", sd), scales,
                                  prompt_list or SINGLE_PROMPTS, per_prompt, seed)


def plot_sweep(rows: list[dict], path=None):
    """Fidelity against diversity, one point per guidance scale (rows of `guidance_sweep`)."""
    fig, ax = plt.subplots(figsize=(4.5, 3.4))
    x = [r["diversity"] for r in rows]
    y = [r["exact"].value for r in rows]
    err = [[r["exact"].value - r["exact"].lo for r in rows], [r["exact"].hi - r["exact"].value for r in rows]]
    ax.errorbar(x, y, yerr=err, marker="o", capsize=3)
    for r in rows:
        ax.annotate(f"s={r['scale']:g}", (r["diversity"], r["exact"].value), textcoords="offset points", xytext=(5, 4), fontsize=8)
    ax.set_xlabel("diversity: mean pairwise pixel distance (one prompt)")
    ax.set_ylabel("fidelity: oracle exact match")
    ax.set_title("classifier-free guidance: fidelity vs diversity", fontsize=9)
    fig.tight_layout()
    if path:
        fig.savefig(path, dpi=100)
        plt.close(fig)
    return fig


def evaluate(kind: str, per_prompt: int = 4, plot=None, guidance: float | None = None, model=None) -> dict:
    """`python -m minidalle eval ddpm|glide`: print the lesson's measurements of the preset's shipped model (or of
    `model`), GLIDE's at guidance scale `guidance` (default `glide.GUIDANCE`)."""
    guidance = GUIDANCE if guidance is None else guidance
    p = get_preset()
    model = model or (ddpm if kind == "ddpm" else glide).load()
    torch.manual_seed(0)
    out = {}
    print(f"{kind} at preset {p.name}, oracle-judged, 95% bootstrap intervals")
    if kind == "glide":
        out = prompt_suite(lambda caps, s: generate(model, caps, guidance, 50, "ddim", s), per_prompt)
        print_suite(out, f"'a COLOUR SHAPE' (40 prompts × {per_prompt}) and 20 two-object prompts × {per_prompt}; "
                         f"DDIM 50, s = {guidance:g}")
    table = sampler_table(kind, model, per_prompt=1, guidance=guidance)   # one sample per prompt: DDPM-1000 is slow
    what = "one clean object" if kind == "ddpm" else f"exact match, 40 prompts, s = {guidance:g}"
    print(f"sampler comparison ({what}; {table[0]['rate'].n} samples each)")
    print(f"  {'sampler':10s} {'rate':>6s} {'95% interval':>16s} {'wall s':>8s}")
    for r in table:
        v, lo, hi, _ = r["rate"]
        print(f"  {r['sampler']:10s} {v:6.3f} [{lo:.3f}, {hi:.3f}] {r['wall_s']:8.1f}")
    out["samplers"] = table
    if kind == "glide":
        sweep = guidance_sweep(model, per_prompt=2)
        print("guidance sweep (DDIM 50, 40 prompts × 2)")
        print(f"  {'scale':>5s} {'exact':>6s} {'95% interval':>16s} {'diversity':>9s}")
        for r in sweep:
            v, lo, hi, _ = r["exact"]
            print(f"  {r['scale']:5g} {v:6.3f} [{lo:.3f}, {hi:.3f}] {r['diversity']:9.3f}")
        out["sweep"] = sweep
        if plot:
            plot_sweep(sweep, plot)
            print(f"wrote {plot}")
    return out
