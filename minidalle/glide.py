"""Lessons 03 and 04: an unconditional DDPM and a text-conditional GLIDE, trained and judged on the shapes world.

- `DDPM` (lesson 03; Ho et al. 2020): the `unet.UNet` alone, learning single-object
  scenes from noise with `diffusion.Diffusion`.
- `GLIDE` (lesson 04; Nichol et al. 2022, §2.3 and §3.2): the same U-Net conditioned on
  a caption. GLIDE does not borrow a pre-trained language model: it trains its own
  transformer text encoder jointly with the diffusion model. The caption's tokens go
  through that transformer; the final (end-of-text) token, projected, is added to the
  time embedding, and all token features are attended to by every attention layer.
  For classifier-free guidance (Ho & Salimans 2022) the caption is replaced by the
  empty caption `p_uncond` of the time (GLIDE: 20%), so one network is both the
  conditional and the unconditional model.

The tokenizer here is word-level over the shapes-world grammar (`captions.VOCABULARY`,
captions of at most 32 words); prompts are validated by `captions.parse`, which refuses
empty, over-long and unknown-word prompts with a clear message. (Lesson 02's CLIP has
its own tokenizer; GLIDE's is deliberately separate, as in the paper.)

Training (`train`) and evaluation (`evaluate_*`) used by `python -m minidalle train|eval
ddpm|glide` and the notebooks also live here; checkpoints hold the model, the AdamW state
and the step, so a run can be resumed.
"""
from __future__ import annotations

import dataclasses
import re
import time
from dataclasses import dataclass, field

import torch
import torch.nn as nn

from . import checkpoint, evaluation
from .captions import MAX_CAPTION_WORDS, VOCABULARY, parse
from .diffusion import Diffusion, DiffusionConfig, classifier_free_guidance
from .evaluation import SINGLE_PROMPTS, judge_samples, print_suite, prompt_suite, rate
from .presets import get_preset
from .runtime import device
from .trainer import TrainConfig, fit, ship
from .unet import UNet, UNetConfig, unet_config
from .world import SceneSpec

# ------------------------------------------------------------------ tokenizer
PAD, EOT = 0, 1
WORDS = ["<pad>", "<eot>", ","] + list(VOCABULARY)
INDEX = {w: i for i, w in enumerate(WORDS)}
MAX_TOKENS = 2 * MAX_CAPTION_WORDS + 1          # words, commas, and the end-of-text token


def words(text: str) -> list[str]:
    """Lower-case words, with commas kept as tokens: "A red circle, and ..." → ["a", "red", "circle", ",", ...]."""
    return re.sub(r"[.!]", " ", text.lower()).replace(",", " , ").split()


def tokenize(captions: list[str] | str, validate: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Captions → (tokens (B, L) long, mask (B, L) bool, True = a real token). "" is the empty caption.

    Every non-empty caption is first checked by `captions.parse`, which raises ValueError
    for an empty, over-long or unknown-word prompt; the empty caption is kept for
    classifier-free guidance's unconditional half.
    """
    if isinstance(captions, str):
        captions = [captions]
    rows = []
    for text in captions:
        if text.strip() and validate:
            parse(text)                                   # clear ValueError on anything the world cannot say
        ids = [INDEX[w] for w in words(text) if w in INDEX] + [EOT]
        rows.append(ids[:MAX_TOKENS])
    L = max(len(r) for r in rows)
    tokens = torch.full((len(rows), L), PAD, dtype=torch.long)
    for i, r in enumerate(rows):
        tokens[i, :len(r)] = torch.tensor(r)
    return tokens, tokens != PAD


def null_caption(n: int, length: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """The empty caption for n rows, padded to `length`: tokens [<eot>, <pad>, …], mask True at <eot> only."""
    tokens = torch.full((n, length), PAD, dtype=torch.long)
    tokens[:, 0] = EOT
    return tokens, tokens != PAD


def drop_captions(tokens: torch.Tensor, mask: torch.Tensor, drop: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows where drop (B,) is True become the empty caption: classifier-free guidance's unconditional half."""
    tokens, mask = tokens.masked_fill(drop[:, None], PAD), mask & ~drop[:, None]
    tokens[drop, 0], mask[drop, 0] = EOT, True
    return tokens, mask


def check_prompt(text: str) -> str:
    """Validate one user prompt (ValueError with the reason); the empty prompt is refused too."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError("empty prompt: describe one to four shapes, e.g. 'a red circle above a blue square'")
    parse(text)
    return text


# ------------------------------------------------------------------ configs
@dataclass
class DDPMConfig:
    """Lesson 03's unconditional model: a U-Net and a diffusion process."""

    unet: UNetConfig = field(default_factory=UNetConfig)
    diffusion: DiffusionConfig = field(default_factory=lambda: DiffusionConfig(schedule="cosine"))
    train: TrainConfig = field(default_factory=TrainConfig)


@dataclass
class GLIDEConfig:
    """Lesson 04's text-conditional model: text transformer + U-Net (+ the diffusion process)."""

    unet: UNetConfig = field(default_factory=UNetConfig)
    diffusion: DiffusionConfig = field(default_factory=lambda: DiffusionConfig(schedule="cosine"))
    train: TrainConfig = field(default_factory=TrainConfig)
    text_width: int = 64
    text_layers: int = 2
    text_heads: int = 4
    p_uncond: float = 0.15          # how often the caption is dropped (classifier-free guidance)
    two_objects: float = 0.5        # share of two-object scenes in the training data (the rest: one object)


def _preset_parts(preset: str | None, cpu_steps: int, **unet_changes):
    """What lessons 03 and 04 share at a preset: (preset, U-Net config, diffusion process, training config)."""
    p = get_preset(preset)
    unet = unet_config(p.name, attn_res=(4,)) if p.name == "cpu" else unet_config(p.name)
    unet = dataclasses.replace(unet, res=p.base_res, **unet_changes)
    steps, batch = {"ci": 10, "cpu": cpu_steps, "gpu": 20_000}[p.name], {"ci": 16, "cpu": 64, "gpu": 128}[p.name]
    diffusion = DiffusionConfig(schedule="cosine", prediction="v", timesteps=100 if p.name == "ci" else 1000, min_snr=5.0)
    train = TrainConfig(steps=steps, batch=batch, n_train=p.n_train, warmup=min(100, steps // 5),
                        log_every=max(1, steps // 50))
    return p, unet, diffusion, train


def ddpm_config(preset: str | None = None) -> DDPMConfig:
    """The named preset's DDPM config (ci: seconds; cpu: 16×16 in minutes; gpu: 32×32)."""
    _, unet, diffusion, train = _preset_parts(preset, cpu_steps=8000)
    return DDPMConfig(unet=unet, diffusion=diffusion, train=train)


TEXT_WIDTH = {"ci": 32, "cpu": 48, "gpu": 128}    # the text transformer's width, also the U-Net's conditioning size
WIDER_CPU = dict(channels=32, mults=(1, 2, 2), head_dim=32, attn_res=(8, 4))    # text-conditioned U-Nets at cpu:
# twice lesson 03's width, attention at 8×8 too: GLIDE 1.3M parameters; at lesson 03's width GLIDE missed its bar


def text_parts(preset: str | None = None):
    """GLIDE's and the decoder's parts (lessons 04, 06): (text width, preset, U-Net, diffusion, training) —
    the DDPM's, with vector and token conditioning and, at the cpu preset, a wider U-Net."""
    p = get_preset(preset)
    width = TEXT_WIDTH[p.name]
    wider = WIDER_CPU if p.name == "cpu" else {}
    return (width, *_preset_parts(p.name, cpu_steps=8000, cond_dim=width, context_dim=width, **wider))


def glide_config(preset: str | None = None) -> GLIDEConfig:
    """The named preset's GLIDE config: the DDPM's U-Net (wider at cpu), plus vector and token conditioning."""
    width, p, unet, diffusion, train = text_parts(preset)
    return GLIDEConfig(unet=unet, diffusion=diffusion, text_width=width, text_layers=1 if p.name == "ci" else 2,
                       train=train)


# ------------------------------------------------------------------ models
class DDPM(nn.Module):
    """ε_θ(x_t, t): lesson 03's unconditional U-Net, (B, 3, R, R) → (B, 3, R, R)."""

    def __init__(self, config: DDPMConfig):
        super().__init__()
        self.config = config
        self.unet = UNet(config.unet)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.unet(x, t)


class TextEncoder(nn.Module):
    """GLIDE §2.3's text transformer, in miniature: tokens (B, L) → features (B, L, W) and a pooled (B, W)."""

    def __init__(self, width: int, layers: int, heads: int):
        super().__init__()
        self.embed = nn.Embedding(len(WORDS), width)
        self.pos = nn.Parameter(torch.randn(MAX_TOKENS, width) * 0.02)
        layer = nn.TransformerEncoderLayer(width, heads, 4 * width, dropout=0.0, activation="gelu",
                                           batch_first=True, norm_first=True)
        self.blocks = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(width)

    def forward(self, tokens: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        L = tokens.shape[1]
        h = self.embed(tokens) + self.pos[:L]                                     # (B, L, W)
        h = self.norm(self.blocks(h, src_key_padding_mask=~mask))                 # (B, L, W)
        last = mask.long().sum(1) - 1                                             # index of <eot>
        pooled = h[torch.arange(len(h)), last]                                    # (B, W)
        return h, pooled


class GLIDE(nn.Module):
    """ε_θ(x_t, t | caption): text transformer + U-Net, trained together (lesson 04)."""

    def __init__(self, config: GLIDEConfig):
        super().__init__()
        self.config = config
        self.text = TextEncoder(config.text_width, config.text_layers, config.text_heads)
        self.unet = UNet(config.unet)

    def forward(self, x: torch.Tensor, t: torch.Tensor, tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        feats, pooled = self.text(tokens, mask)                                   # (B, L, W), (B, W)
        return self.unet(x, t, cond=pooled, context=feats, context_mask=mask)


# ------------------------------------------------------------------ data
def training_data(n: int, res: int, two_objects: float = 0.0, seed: int = 0):
    """Images in [−1, 1] (N, 3, res, res) and captions: single objects, plus a share of two-object scenes."""
    from .data import cached

    n2 = int(round(n * two_objects))
    parts = [cached(n - n2, res, SceneSpec(n_objects=(1, 0, 0, 0)), seed)]
    if n2:
        parts.append(cached(n2, res, SceneSpec(n_objects=(0, 1, 0, 0)), seed + 1))
    images = torch.cat([p.images for p in parts]).float() / 127.5 - 1
    captions = [c for p in parts for c in p.captions]
    return images, captions


# ------------------------------------------------------------------ training
def train(model: nn.Module, config, name=None, resume: bool = False, show_progress: bool = True,
          on_log=None, state=None) -> dict:
    """Train a `DDPM` or `GLIDE` with `trainer.fit`; `model` ends holding the EMA weights, saved to `name`.

    Each step draws a batch of scenes (GLIDE: with their captions, each dropped with
    probability p_uncond for classifier-free guidance) and minimises the diffusion loss.
    The full state goes to `state` (default `checkpoint.state_path(name)`, under runs/)
    every `save_every` steps; with `resume` training continues from it. Returns info:
    losses (step, loss) pairs, wall time, steps. `on_log(step, ema_model)` is called at
    every log step (the notebooks use it to collect samples over training).
    """
    tc = config.train
    dev = device()
    diffusion = Diffusion(config.diffusion)
    conditional = isinstance(model, GLIDE)
    images, captions = training_data(tc.n_train, config.unet.res, getattr(config, "two_objects", 0.0), tc.seed)
    if conditional:
        tokens, mask = tokenize(captions, validate=False)                         # (N, L): drawn from the grammar

    def batch_loss(step, gen):
        idx = torch.randint(0, len(images), (tc.batch,), generator=gen)
        x0 = images[idx].to(dev)                                                  # (B, 3, R, R) in [−1, 1]
        cond = {}
        if conditional:
            drop = torch.rand(tc.batch, generator=gen) < config.p_uncond          # classifier-free: forget the caption
            tok, msk = drop_captions(tokens[idx], mask[idx], drop)
            cond = {"tokens": tok.to(dev), "mask": msk.to(dev)}
        return diffusion.loss(model, x0, generator=gen, **cond), {}

    return fit(model, config, tc, batch_loss, name=name, state=state, resume=resume, show_progress=show_progress,
               on_log=on_log)


# ------------------------------------------------------------------ sampling
GUIDANCE = 2.0      # the classifier-free guidance scale GLIDE samples at by default: the smallest best scale of `eval glide`'s
                    # sweep (prompt seed 3), not of the headline measurement (seed 1); GLIDE's paper samples at 3


def to_images(x: torch.Tensor) -> torch.Tensor:
    """Model space [−1, 1] → pixels [0, 1]."""
    return ((x + 1) / 2).clamp(0, 1)


@torch.no_grad()
def sample_ddpm_model(model: DDPM, n: int, steps: int | None = None, method: str = "ddim", seed: int = 0,
                      show_progress: bool = False) -> torch.Tensor:
    """n unconditional samples, pixels (n, 3, R, R) in [0, 1]."""
    c = model.config.unet
    d = Diffusion(model.config.diffusion)
    dev = next(model.parameters()).device
    x = d.sample(model, (n, c.in_ch, c.res, c.res), steps=steps, method=method,
                 generator=torch.Generator().manual_seed(seed), device=dev, show_progress=show_progress)
    return to_images(x).cpu()


@torch.no_grad()
def generate(model: GLIDE, prompts: list[str] | str, guidance: float = GUIDANCE, steps: int | None = 50,
             method: str = "ddim", seed: int = 0, show_progress: bool = False, eta: float = 0.0) -> torch.Tensor:
    """Sample one image per prompt with classifier-free guidance scale s (DDIM noise level η). Pixels (B, 3, R, R) in [0, 1]."""
    prompts = [prompts] if isinstance(prompts, str) else list(prompts)
    for p in prompts:
        check_prompt(p)
    dev = next(model.parameters()).device
    tok, msk = tokenize(prompts)
    null_tok, null_msk = null_caption(*tok.shape)
    cond = {"tokens": tok.to(dev), "mask": msk.to(dev)}
    uncond = {"tokens": null_tok.to(dev), "mask": null_msk.to(dev)}
    guided = classifier_free_guidance(model, guidance, cond, uncond)
    c = model.config.unet
    d = Diffusion(model.config.diffusion)
    x = d.sample(guided, (len(prompts), c.in_ch, c.res, c.res), steps=steps, method=method, eta=eta,
                 generator=torch.Generator().manual_seed(seed), device=dev, show_progress=show_progress)
    return to_images(x).cpu()


# ------------------------------------------------------------------ evaluation
def judge_prompts(model: GLIDE, prompts: list[str], per_prompt: int = 4, guidance: float = GUIDANCE,
                  steps: int | None = 50, method: str = "ddim", seed: int = 0, batch: int = 160):
    """Sample per_prompt images for each prompt, judge them with the oracle. Returns (images, captions, verdicts)."""
    return judge_samples(lambda caps, s: generate(model, caps, guidance, steps, method, s), prompts, per_prompt,
                         seed, batch)


def one_clean_object(images: torch.Tensor) -> list[bool]:
    """For unconditional single-object samples: does the oracle read exactly one object whose shape, colour
    and size it can name (none of them `UNCLEAR`)?"""
    from .oracle import read
    from .world import UNCLEAR

    return [len(r.objects) == 1 and UNCLEAR not in (r.objects[0].shape, r.objects[0].colour, r.objects[0].size)
            for r in read(images)]


# ------------------------------------------------------------------ commands
KINDS = {"ddpm": (ddpm_config, DDPM), "glide": (glide_config, GLIDE)}


def checkpoint_name(kind: str, preset: str | None = None):
    """data/checkpoints/{ddpm,glide}-PRESET (the -ci ones are git-ignored)."""
    return checkpoint.shipped_name(kind, preset)


def build(kind: str, preset: str | None = None):
    """A fresh (model, config) of `kind` ("ddpm" or "glide") at the preset."""
    make_config, Model = KINDS[kind]
    config = make_config(preset)
    return Model(config), config


def load_trained(kind: str, preset: str | None = None):
    """The model trained by `python -m minidalle train KIND` (CheckpointError if there is none)."""
    model, config = build(kind, preset)
    info = checkpoint.load_into(model, checkpoint_name(kind, preset), config)
    return model.to(device()).eval(), info


def cli_train(kind: str, resume: bool = False) -> dict:
    """`python -m minidalle train ddpm|glide`: train, save, run a quick evaluation, record the checkpoint."""
    model, config = build(kind)
    name = checkpoint_name(kind)
    info = train(model, config, name, resume=resume)
    ship(kind, name, config, info, quick_eval(kind, model))
    return info


def quick_eval(kind: str, model) -> dict:
    """A cheap summary for the manifest: DDIM-50 samples judged by the oracle."""
    torch.manual_seed(0)
    if kind == "ddpm":
        ok = one_clean_object(sample_ddpm_model(model, 128, steps=50, method="ddim", seed=1))
        r, lo, hi = rate(ok)
        return {"one_clean_object_ddim50": round(r, 4), "ci95": [round(lo, 4), round(hi, 4)], "n": len(ok)}
    _, _, v = judge_prompts(model, SINGLE_PROMPTS, per_prompt=4, guidance=GUIDANCE, steps=50, seed=1)
    r, lo, hi = rate([x["exact"] for x in v])
    return {f"single_object_exact_ddim50_s{GUIDANCE:g}": round(r, 4), "ci95": [round(lo, 4), round(hi, 4)], "n": len(v)}


def sampler_table(kind: str, model, per_prompt: int = 2, guidance: float = GUIDANCE, seed: int = 2) -> list[dict]:
    """DDIM with 25/50/100 steps against DDPM with all T steps: oracle accuracy and wall time (lesson 03)."""
    rows = []
    T = model.config.diffusion.timesteps
    for method, steps in (("ddim", 25), ("ddim", 50), ("ddim", 100), ("ddpm", T)):
        t0 = time.perf_counter()
        if kind == "ddpm":
            n = per_prompt * len(SINGLE_PROMPTS)
            hits = one_clean_object(sample_ddpm_model(model, n, steps=steps, method=method, seed=seed))
        else:
            _, _, v = judge_prompts(model, SINGLE_PROMPTS, per_prompt, guidance, steps, method, seed)
            hits = [x["exact"] for x in v]
        wall = time.perf_counter() - t0
        r, lo, hi = rate(hits)
        rows.append({"sampler": f"{method.upper()} {steps}", "rate": r, "lo": lo, "hi": hi, "n": len(hits),
                     "wall_s": wall})
    return rows


def guidance_sweep(model, scales=(0, 1, 2, 3, 5, 8), per_prompt: int = 4, steps: int = 50, seed: int = 3,
                   prompts: list[str] | None = None) -> list[dict]:
    """Fidelity (oracle exact match) and diversity (pairwise pixel distance) per guidance scale (lesson 04)."""
    return evaluation.guidance_sweep(lambda s: lambda caps, sd: generate(model, caps, s, steps, "ddim", sd), scales,
                                     prompts or SINGLE_PROMPTS, per_prompt, seed)


def plot_sweep(rows: list[dict], path=None):
    """Fidelity against diversity, one point per guidance scale."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.5, 3.4))
    x = [r["diversity"] for r in rows]
    y = [r["exact"] for r in rows]
    err = [[r["exact"] - r["lo"] for r in rows], [r["hi"] - r["exact"] for r in rows]]
    ax.errorbar(x, y, yerr=err, marker="o", capsize=3)
    for r in rows:
        ax.annotate(f"s={r['scale']:g}", (r["diversity"], r["exact"]), textcoords="offset points", xytext=(5, 4), fontsize=8)
    ax.set_xlabel("diversity: mean pairwise pixel distance (one prompt)")
    ax.set_ylabel("fidelity: oracle exact match")
    ax.set_title("classifier-free guidance: fidelity vs diversity", fontsize=9)
    fig.tight_layout()
    if path:
        fig.savefig(path, dpi=100)
        plt.close(fig)
    return fig


def cli_eval(kind: str, per_prompt: int = 4, plot=None, guidance: float = GUIDANCE) -> dict:
    """`python -m minidalle eval ddpm|glide`: print the lesson's measurements (GLIDE's at guidance scale `guidance`)."""
    p = get_preset()
    model, _ = load_trained(kind)
    torch.manual_seed(0)
    out = {}
    print(f"{kind} at preset {p.name}, oracle-judged, 95% bootstrap intervals")
    if kind == "glide":
        out = prompt_suite(lambda caps, s: generate(model, caps, guidance, 50, "ddim", s), per_prompt)
        print_suite(out, f"'a COLOUR SHAPE' (40 prompts × {per_prompt}) and 20 two-object prompts × {per_prompt}; "
                         f"DDIM 50, s = {guidance:g}")
    table = sampler_table(kind, model, per_prompt=1, guidance=guidance)   # one sample per prompt: DDPM-1000 is slow
    what = "one clean object" if kind == "ddpm" else f"exact match, 40 prompts, s = {guidance:g}"
    print(f"sampler comparison ({what}; {table[0]['n']} samples each)")
    print(f"  {'sampler':10s} {'rate':>6s} {'95% interval':>16s} {'wall s':>8s}")
    for r in table:
        print(f"  {r['sampler']:10s} {r['rate']:6.3f} [{r['lo']:.3f}, {r['hi']:.3f}] {r['wall_s']:8.1f}")
    out["samplers"] = table
    if kind == "glide":
        sweep = guidance_sweep(model, per_prompt=2)
        print("guidance sweep (DDIM 50, 40 prompts × 2)")
        print(f"  {'scale':>5s} {'exact':>6s} {'95% interval':>16s} {'diversity':>9s}")
        for r in sweep:
            print(f"  {r['scale']:5g} {r['exact']:6.3f} [{r['lo']:.3f}, {r['hi']:.3f}] {r['diversity']:9.3f}")
        out["sweep"] = sweep
        if plot:
            plot_sweep(sweep, plot)
            print(f"wrote {plot}")
    return out
