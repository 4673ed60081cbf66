"""Lessons 06–07: the unCLIP pipeline, what it can do with an image embedding, and the paper's ablation.

Ramesh et al. 2022 (unCLIP, the model behind DALL·E 2):

    prompt → CLIP text embedding → prior (lesson 05) → CLIP image embedding
           → decoder (lesson 06, base resolution) → upsampler (lesson 06, ×2)

`generate` runs the whole cascade. Because the decoder draws pictures from a
CLIP *image* embedding, the embedding can also come from a picture, or be
edited, without any training (§3, lesson 07):

* `variations`: embed an image with CLIP, decode it with fresh noise (§3.1);
* `interpolate`: slerp between two images' embeddings (§3.2);
* `text_diff`: move an image's embedding along the difference of two
  captions' text embeddings, "a red circle" → "a blue circle" (§3.3);
* `inpaint`: regenerate a masked region, the rest kept (GLIDE §3.3 trains a
  model for it; here the decoder is used as it is, by replacement).

`ablation` is §5.1's comparison: the decoder fed the prior's embedding, fed
the caption's text embedding directly, and GLIDE (a decoder trained on text
alone), judged by the oracle. `python -m minidalle generate "PROMPT"` and
`python -m minidalle eval unclip`.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from . import checkpoint
from .decoder import GUIDANCE, Decoder, decode, embedded_scenes, scenes, upsample
from .glide import check_prompt
from .oracle import judge
from .presets import get_preset


@dataclass
class UnCLIP:
    """The cascade's four trained parts (`load`)."""

    clip: torch.nn.Module
    prior: torch.nn.Module
    decoder: torch.nn.Module
    upsampler: torch.nn.Module


def load(preset: str | None = None) -> UnCLIP:
    """CLIP, prior, decoder and upsampler of the preset (CheckpointError naming the missing `train` command)."""
    from .decoder import load_trained
    from .prior import load_trained as load_prior

    prior, clip_model = load_prior(preset)
    return UnCLIP(clip_model, prior, load_trained("decoder", preset), load_trained("upsampler", preset))


# ------------------------------------------------------------------ embeddings
@torch.no_grad()
def text_embeddings(pipe: UnCLIP, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """Validated prompts → (CLIP tokens (B, L), CLIP text embeddings (B, D))."""
    from .clip_eval import embed_texts
    from .tokenizer import tokenizer

    for p in prompts:
        check_prompt(p)
    return tokenizer(pipe.clip.config.context_length)(prompts), embed_texts(pipe.clip, prompts)


@torch.no_grad()
def image_embeddings(pipe: UnCLIP, images: torch.Tensor) -> torch.Tensor:
    """Pictures (B, 3, R, R) in [0, 1] (any course resolution) → CLIP image embeddings (B, D), unit norm."""
    from .clip_eval import embed_images
    from .oracle import as_images

    x = as_images(images)
    size = pipe.clip.config.image_size
    if x.shape[-1] != size:
        x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
    return embed_images(pipe.clip, (x * 255).round().to(torch.uint8))


def pixels_from_embeddings(pipe: UnCLIP, emb: torch.Tensor, captions: list[str] | None = None, seed: int = 0,
                           guidance: float = GUIDANCE, upsampled: bool = True, known: tuple | None = None) -> torch.Tensor:
    """Decoder (+ upsampler): image embeddings (B, D) → pictures (B, 3, R, R) in [0, 1]."""
    low = decode(pipe.decoder, emb, captions, guidance=guidance, seed=seed, known=known)   # (B, 3, base, base)
    return upsample(pipe.upsampler, low, emb, seed=seed + 1) if upsampled else low


def generate(pipe: UnCLIP, prompts: list[str] | str, seed: int = 0, embedding: str = "prior",
             guidance: float = GUIDANCE, upsampled: bool = True, captions: bool = True) -> torch.Tensor:
    """Text → pictures (B, 3, R, R) in [0, 1]: the whole unCLIP cascade, one picture per prompt.

    embedding: "prior" (sample it, keeping the closer of two candidates) or "text"
    (hand the caption's text embedding straight to the decoder; the §5.1 ablation).
    captions: also give the caption to the decoder (it was trained with it half the time).
    """
    from .prior import sample

    prompts = [prompts] if isinstance(prompts, str) else list(prompts)
    tokens, text = text_embeddings(pipe, prompts)
    if embedding == "prior":
        emb = sample(pipe.prior, tokens, text, seed=seed)
    elif embedding == "text":
        emb = text
    else:
        raise ValueError(f"unknown embedding {embedding!r}: use 'prior' or 'text'")
    return pixels_from_embeddings(pipe, emb, prompts if captions else None, seed, guidance, upsampled)


# ------------------------------------------------------------------ capabilities (lesson 07)
def slerp(a: torch.Tensor, b: torch.Tensor, w: float) -> torch.Tensor:
    """Spherical interpolation between unit vectors (…, D): w = 0 gives a, w = 1 gives b (unCLIP §3.2)."""
    a, b = F.normalize(a, dim=-1), F.normalize(b, dim=-1)
    omega = torch.arccos((a * b).sum(-1, keepdim=True).clamp(-1 + 1e-7, 1 - 1e-7))   # (…, 1)
    return (torch.sin((1 - w) * omega) * a + torch.sin(w * omega) * b) / torch.sin(omega)


def _one(image: torch.Tensor) -> torch.Tensor:
    """One picture as a batch of one: (3, R, R) or (B, 3, R, R) → its first (1, 3, R, R)."""
    return image[None] if image.dim() == 3 else image[:1]


def variations(pipe: UnCLIP, image: torch.Tensor, n: int = 8, seed: int = 0) -> torch.Tensor:
    """n pictures decoded from one image's CLIP embedding with fresh noise: (n, 3, R, R)."""
    emb = image_embeddings(pipe, _one(image))
    return pixels_from_embeddings(pipe, emb.expand(n, -1), seed=seed)


def interpolate(pipe: UnCLIP, a: torch.Tensor, b: torch.Tensor, n: int = 6, seed: int = 0) -> torch.Tensor:
    """n pictures along the slerp from image a's embedding to image b's, one noise for all: (n, 3, R, R)."""
    za, zb = image_embeddings(pipe, torch.stack([a, b]))
    emb = torch.stack([slerp(za, zb, w) for w in torch.linspace(0, 1, n).tolist()])
    return _same_noise(pipe, emb, seed)


def _same_noise(pipe: UnCLIP, emb: torch.Tensor, seed: int) -> torch.Tensor:
    """Decode each embedding with the same starting noise (seed), so that only the embedding changes."""
    return torch.cat([pixels_from_embeddings(pipe, e[None], seed=seed) for e in emb])


def text_diff(pipe: UnCLIP, image: torch.Tensor, source: str, target: str,
              amounts=(0.0, 0.25, 0.5, 0.75), seed: int = 0) -> torch.Tensor:
    """unCLIP §3.3: slerp the image embedding towards the text diff z_d = norm(z_t(target) − z_t(source)).

    Returns one picture per amount θ ∈ [0, 1] (θ = 0: the image's own embedding), same noise: (len, 3, R, R).
    """
    _, text = text_embeddings(pipe, [source, target])
    z_d = F.normalize(text[1] - text[0], dim=-1)
    z_i = image_embeddings(pipe, _one(image))[0]
    return _same_noise(pipe, torch.stack([slerp(z_i, z_d, w) for w in amounts]), seed)


def inpaint(pipe: UnCLIP, image: torch.Tensor, keep: torch.Tensor, prompt: str | None = None, n: int = 4,
            seed: int = 0) -> torch.Tensor:
    """Regenerate where keep == 0 (keep: (R, R) at the decoder's resolution), guided by `prompt` or by the image.

    The embedding is the prompt's prior sample when a prompt is given, else the image's own. (n, 3, R', R').
    """
    from .prior import sample

    res = pipe.decoder.config.unet.res
    x = _one(image)
    if keep.shape[-2:] != (res, res):
        raise ValueError(f"the mask must be {res}×{res}, the decoder's resolution; got {tuple(keep.shape[-2:])}")
    if x.shape[-1] != res:
        x = F.interpolate(x, size=res, mode="bilinear", align_corners=False, antialias=True)
    if prompt:
        tokens, text = text_embeddings(pipe, [prompt] * n)
        emb, captions = sample(pipe.prior, tokens, text, seed=seed), [prompt] * n
    else:
        emb, captions = image_embeddings(pipe, _one(image)).expand(n, -1), None
    known = (x.expand(n, -1, -1, -1), keep.float().view(1, 1, res, res).expand(n, 1, res, res))
    return pixels_from_embeddings(pipe, emb, captions, seed, known=known)


# ------------------------------------------------------------------ measurements
def reconstruction(model, clip_model, n: int = 160, seed: int = 4242) -> tuple[float, float, float, int]:
    """Oracle exact match of held-out captions on pictures made from their scenes' true CLIP embeddings.

    Decoder: decoded from the embedding alone. Upsampler: the true low-resolution render upsampled.
    (rate, lo, hi, n), for the manifest after training.
    """
    from .evaluation import rate

    c = model.config
    _, captions, emb = embedded_scenes(n, c.unet.res, c.two_objects, seed, clip_model)
    if isinstance(model, Decoder):
        out = decode(model, emb, seed=seed)
    else:
        low, _ = scenes(n, c.unet.res // 2, c.two_objects, seed)                    # the same scenes at half res
        out = upsample(model, (low + 1) / 2, emb, seed=seed)
    hits = [v["exact"] for v in judge(out, captions)]
    return (*rate(hits), len(hits))


def ablation(pipe: UnCLIP, glide_model=None, per_prompt: int = 4, guidance: float = GUIDANCE) -> dict[str, dict]:
    """unCLIP §5.1 with the oracle: {variant: prompt_suite result} (single- and two-object prompts, 95% intervals).

    Each model samples as it does by default: the decoder variants with DDIM 50 at η = `decoder.ETA` and
    decoder guidance `guidance`, GLIDE with DDIM 50 at η = 0 and its own scale `glide.GUIDANCE` (each scale the
    best of its own sweep).
    """
    from .evaluation import prompt_suite
    from .glide import GUIDANCE as GLIDE_GUIDANCE
    from .glide import generate as glide_generate

    variants = {
        "unCLIP: prior embedding → decoder → upsampler": lambda caps, s: generate(pipe, caps, s, "prior", guidance),
        "decoder fed the prior's embedding (base res)": lambda caps, s: generate(pipe, caps, s, "prior", guidance,
                                                                                  upsampled=False),
        "decoder fed the text embedding (base res)": lambda caps, s: generate(pipe, caps, s, "text", guidance,
                                                                               upsampled=False),
    }
    if glide_model is not None:
        name = f"GLIDE: text only (base res, s = {GLIDE_GUIDANCE:g})"
        variants[name] = lambda caps, s: glide_generate(glide_model, caps, seed=s)
    return {name: prompt_suite(fn, per_prompt) for name, fn in variants.items()}


# ------------------------------------------------------------------ commands
def cli_generate(prompt: str, n: int = 8, seed: int = 0, out: str = "unclip.png", guidance: float = GUIDANCE) -> str:
    """`python -m minidalle generate "PROMPT" --n 8 --seed S --out FILE.png`: n pictures in a grid PNG."""
    import time

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if n < 1 or n > 64:
        raise ValueError(f"--n must be between 1 and 64, got {n}")
    check_prompt(prompt)
    pipe = load()
    t0 = time.perf_counter()
    with torch.no_grad():
        images = generate(pipe, [prompt] * n, seed=seed, guidance=guidance)
    wall = time.perf_counter() - t0
    verdicts = judge(images, [prompt] * n)
    cols = min(n, 8)
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(1.4 * cols, 1.55 * rows + 0.4), squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < n:
            ax.imshow(images[i].permute(1, 2, 0).numpy(), interpolation="nearest")
            ax.set_title("✓" if verdicts[i]["exact"] else "✗", fontsize=8, color="green" if verdicts[i]["exact"] else "red")
    fig.suptitle(f"“{prompt}” — unCLIP, preset {get_preset().name}, seed {seed} (✓: the oracle agrees)", fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)
    ok = sum(v["exact"] for v in verdicts)
    print(f"wrote {out}: {n} pictures of {images.shape[-1]}×{images.shape[-1]} in {wall:.1f} s; "
          f"the oracle finds the prompt exactly in {ok} of {n}")
    return out


def cli_eval(per_prompt: int = 4, guidance: float = GUIDANCE) -> dict:
    """`python -m minidalle eval unclip`: the §5.1 ablation (with GLIDE when trained) and the cascade's own parts."""
    from .evaluation import SINGLE_PROMPTS, guidance_sweep, print_suite
    from .glide import load_trained as load_glide

    pipe = load()
    try:
        glide_model, _ = load_glide("glide")
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
    out["sweep"] = guidance_sweep(lambda s: lambda caps, seed: generate(pipe, caps, seed, guidance=s), (1, 2, 3, 5, 8),
                                  SINGLE_PROMPTS, per_prompt=2, seed=3)
    print("decoder guidance sweep, the whole cascade (40 single-object prompts × 2, prompt seed 3; "
          "decoder.GUIDANCE is its smallest best scale)")
    for r in out["sweep"]:
        print(f"  s = {r['scale']:g}  exact {r['exact']:.3f} [{r['lo']:.3f}, {r['hi']:.3f}]  diversity {r['diversity']:.3f}")
    return out
