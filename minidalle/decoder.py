"""Lesson 06: the unCLIP decoder and upsampler — from a CLIP image embedding back to pixels.

Ramesh et al. 2022 (unCLIP) §2.1. The decoder inverts CLIP's image encoder: a
diffusion model that draws a picture *given its CLIP image embedding*. It is
lesson 04's GLIDE with one more input:

* the embedding z_i (B, D) is projected and added to the time embedding, and
  projected into `emb_tokens` extra context tokens that every attention layer
  sees next to the caption's tokens (§2.1: "four extra tokens of context");
* the caption is kept as an optional, weaker signal through GLIDE's own text
  transformer;
* for classifier-free guidance the embedding is zeroed 10% of the time and the
  caption dropped 50% of the time (§2.1).

The `Upsampler` is the cascade's next stage: a diffusion model at twice the
resolution that reads the low-resolution picture (bilinearly upsampled,
concatenated to x_t as extra channels). Its conditioning image is corrupted
during training — Gaussian blur of random width and a little noise — so that it
learns to fix the decoder's imperfect samples rather than copy clean renders
(§2.1, "we corrupt the conditioning images with Gaussian blur"). One deviation:
ours also gets the CLIP embedding added to its time embedding (the paper's
upsamplers see the image only). At 16×16 a small shape is 4 pixels across,
so the embedding is the only place its shape is still written down.

Both are `unet.UNet`s trained by `trainer.fit` with `diffusion.Diffusion`
(v-prediction, cosine schedule, Min-SNR-5, as in lessons 03–04). Training data:
the same shapes-world scenes rendered at the base and the upsampled resolution,
and CLIP's embedding of the 32×32 render. `python -m minidalle train decoder|upsampler`.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from . import checkpoint
from .diffusion import Diffusion, DiffusionConfig, classifier_free_guidance
from .glide import TextEncoder, _preset_parts, drop_captions, null_caption, text_parts, to_images, tokenize
from .glide import training_data as scenes
from .presets import get_preset
from .runtime import device
from .trainer import TrainConfig, fit
from .unet import UNet, UNetConfig


@dataclass
class DecoderConfig:
    """The decoder: GLIDE's U-Net and text transformer, plus the CLIP image embedding. Defaults: `cpu`."""

    unet: UNetConfig = field(default_factory=UNetConfig)
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    embed_dim: int = 64             # CLIP's embedding size
    emb_tokens: int = 4             # extra context tokens made from the embedding
    text_width: int = 48
    text_layers: int = 2
    text_heads: int = 4
    p_drop_emb: float = 0.1         # embedding zeroed (classifier-free guidance)
    p_drop_caption: float = 0.5     # caption dropped
    two_objects: float = 0.5        # share of two-object scenes in the training data
    clip: str = ""                  # fingerprint of the CLIP checkpoint whose embeddings it reads


@dataclass
class UpsamplerConfig:
    """The upsampler: a U-Net at the upsampled resolution reading [x_t | upsampled low-res]. Defaults: `cpu`."""

    unet: UNetConfig = field(default_factory=UNetConfig)
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    embed_dim: int = 64
    blur: tuple = (0.4, 1.0)        # σ of the Gaussian blur on the conditioning image, in low-res pixels (train)
    noise: float = 0.1              # largest std of the Gaussian noise added to it (train)
    sample_blur: float = 0.5        # σ used at sampling (a mid value: the decoder's samples are soft already)
    two_objects: float = 0.5
    clip: str = ""


def _clip_facts(preset: str):
    from .clip import checkpoint_name as clip_name
    from .clip import preset_configs

    return preset_configs(preset)[0].embed_dim, checkpoint.fingerprint(clip_name(preset))


def decoder_config(preset: str | None = None) -> DecoderConfig:
    """The named preset's decoder: the base resolution (16×16 at `cpu`, 32×32 at `gpu`)."""
    p = get_preset(preset)
    width, _, unet, diffusion, train = text_parts(p.name)
    embed_dim, clip = _clip_facts(p.name)
    return DecoderConfig(unet=unet, diffusion=diffusion, train=train, embed_dim=embed_dim, text_width=width,
                         text_layers=1 if p.name == "ci" else 2, clip=clip)


def upsampler_config(preset: str | None = None) -> UpsamplerConfig:
    """The named preset's upsampler: base → upsampled resolution (16→32 at `cpu`, 32→64 at `gpu`)."""
    p = get_preset(preset)
    _, unet, diffusion, train = _preset_parts(p.name, cpu_steps=2000)
    embed_dim, clip = _clip_facts(p.name)
    shape = {"ci": dict(channels=16, mults=(1, 2), attn_res=()),
             "cpu": dict(channels=16, mults=(1, 2, 2), attn_res=()),
             "gpu": dict(channels=32, mults=(1, 2, 2, 2), attn_res=(8,))}[p.name]
    unet = dataclasses.replace(unet, res=p.up_res, in_ch=6, cond_dim=embed_dim, context_dim=0, **shape)
    train = dataclasses.replace(train, batch={"ci": 8, "cpu": 32, "gpu": 128}[p.name])
    return UpsamplerConfig(unet=unet, diffusion=diffusion, train=train, embed_dim=embed_dim, clip=clip)


# ------------------------------------------------------------------ models
class Decoder(nn.Module):
    """ε_θ(x_t, t | z_i, caption): (B, 3, R, R), (B,), (B, D), tokens (B, L), mask (B, L) → (B, 3, R, R)."""

    def __init__(self, config: DecoderConfig):
        super().__init__()
        self.config = c = config
        W = c.text_width
        self.text = TextEncoder(W, c.text_layers, c.text_heads)
        self.emb_vec = nn.Linear(c.embed_dim, W)                       # z_i → added to the time embedding
        self.emb_seq = nn.Linear(c.embed_dim, c.emb_tokens * W)         # z_i → emb_tokens context tokens
        self.unet = UNet(c.unet)

    def forward(self, x, t, emb, tokens, mask):
        B, W = len(x), self.config.text_width
        feats, pooled = self.text(tokens, mask)                                     # (B, L, W), (B, W)
        context = torch.cat([self.emb_seq(emb).view(B, -1, W), feats], 1)           # (B, k + L, W)
        context_mask = torch.cat([torch.ones(B, self.config.emb_tokens, dtype=torch.bool, device=x.device), mask], 1)
        return self.unet(x, t, cond=self.emb_vec(emb) + pooled, context=context, context_mask=context_mask)


def blur(x: torch.Tensor, sigma: torch.Tensor, background: float = -1.0) -> torch.Tensor:
    """A 3×3 Gaussian blur with one σ per image (B,): (B, C, H, W) → (B, C, H, W).

    Outside the picture is `background`: black, which is −1 in the models' [−1, 1] pixel space.
    """
    B, C, H, W = x.shape
    x = F.pad(x, (1, 1, 1, 1), value=background)                                   # (B, C, H + 2, W + 2)
    r = torch.arange(-1.0, 2.0, device=x.device)                                   # taps −1, 0, 1
    k = torch.exp(-r**2 / (2 * sigma.to(x.device)[:, None].clamp_min(1e-3) ** 2))  # (B, 3)
    k = k / k.sum(1, keepdim=True)
    kernel = (k[:, :, None] * k[:, None, :]).repeat_interleave(C, 0)[:, None]      # (B·C, 1, 3, 3)
    return F.conv2d(x.reshape(1, B * C, H + 2, W + 2), kernel, groups=B * C).view(B, C, H, W)


class Upsampler(nn.Module):
    """ε_θ(x_t, t | low, z_i): x_t (B, 3, 2R, 2R), low (B, 3, R, R) in [−1, 1], z_i (B, D) → (B, 3, 2R, 2R)."""

    def __init__(self, config: UpsamplerConfig):
        super().__init__()
        self.config = config
        self.unet = UNet(config.unet)

    def forward(self, x, t, low, emb):
        up = F.interpolate(low, size=x.shape[-2:], mode="bilinear", align_corners=False)   # (B, 3, 2R, 2R)
        return self.unet(torch.cat([x, up], 1), t, cond=emb)


# ------------------------------------------------------------------ data
def embedded_scenes(n: int, res: int, two_objects: float, seed: int, clip_model):
    """Scenes at `res` in [−1, 1] (N, 3, res, res), their captions, and CLIP's embedding of their 32×32 render."""
    from .clip_eval import embed_images

    images, captions = scenes(n, res, two_objects, seed)
    if res == 32:
        at32 = images
    else:
        at32, same = scenes(n, 32, two_objects, seed)                               # the same scenes at 32×32
        assert same == captions
    pictures = ((at32 + 1) * 127.5).round().to(torch.uint8)
    return images, captions, embed_images(clip_model, pictures)                    # …, (N, D) unit norm


def train(model: nn.Module, clip_model, name=None, resume: bool = False, show_progress: bool = True,
          on_log=None) -> dict:
    """Train a `Decoder` or an `Upsampler` with `trainer.fit` on CLIP-embedded scenes (lesson 06)."""
    c, tc = model.config, model.config.train
    dev = device()
    diffusion = Diffusion(c.diffusion)
    images, captions, embs = embedded_scenes(tc.n_train, c.unet.res, c.two_objects, tc.seed, clip_model)
    if isinstance(model, Decoder):
        tokens, mask = tokenize(captions, validate=False)
    else:
        low, _ = scenes(tc.n_train, c.unet.res // 2, c.two_objects, tc.seed)       # the same scenes at half res

    def batch_loss(step, gen):
        idx = torch.randint(0, len(images), (tc.batch,), generator=gen)
        x0, emb = images[idx].to(dev), embs[idx]
        if isinstance(model, Decoder):
            emb = emb.masked_fill((torch.rand(tc.batch, generator=gen) < c.p_drop_emb)[:, None], 0.0)
            drop = torch.rand(tc.batch, generator=gen) < c.p_drop_caption
            tok, msk = drop_captions(tokens[idx], mask[idx], drop)
            cond = {"emb": emb.to(dev), "tokens": tok.to(dev), "mask": msk.to(dev)}
        else:
            sigma = c.blur[0] + (c.blur[1] - c.blur[0]) * torch.rand(tc.batch, generator=gen)
            noise = c.noise * torch.rand(tc.batch, 1, 1, 1, generator=gen) * torch.randn(low[idx].shape, generator=gen)
            cond = {"low": (blur(low[idx], sigma) + noise).to(dev), "emb": emb.to(dev)}
        return diffusion.loss(model, x0, generator=gen, **cond), {}

    return fit(model, c, tc, batch_loss, name=name, resume=resume, show_progress=show_progress, on_log=on_log,
               desc=f"training the {type(model).__name__.lower()}")


# ------------------------------------------------------------------ sampling
ETA = 1.0       # DDIM's noise level η (0: deterministic; 1: as random as DDPM). Chosen by the cascade's
                # single-object exact match on a prompt seed no measurement uses; lesson 06 and the book's
                # results page compare η = 0 and 1
GUIDANCE = 5.0  # the decoder's classifier-free guidance scale: the smallest best scale of `eval unclip`'s sweep of
                # the cascade (prompt seed 3), not of the headline measurement (seed 1)


@torch.no_grad()
def decode(model: Decoder, emb: torch.Tensor, captions: list[str] | None = None, guidance: float = GUIDANCE,
           steps: int = 50, seed: int = 0, known: tuple | None = None, eta: float = ETA) -> torch.Tensor:
    """Pictures (B, 3, R, R) in [0, 1] drawn from CLIP image embeddings (B, D), DDIM with `steps` steps.

    captions: optional, validated like every prompt (None: the empty caption). guidance s
    scales the difference between the model with and without the embedding and caption.
    known: (pixels (B, 3, R, R) in [0, 1], keep mask (B, 1, R, R)) for inpainting (lesson 07).
    """
    dev = next(model.parameters()).device
    B = len(emb)
    tokens, mask = tokenize(captions) if captions else null_caption(B)
    null_tokens, null_mask = null_caption(*tokens.shape)                # as long as the captions: one batch
    cond = {"emb": emb.to(dev), "tokens": tokens.to(dev), "mask": mask.to(dev)}
    uncond = {"emb": torch.zeros_like(emb).to(dev), "tokens": null_tokens.to(dev), "mask": null_mask.to(dev)}
    guided = classifier_free_guidance(model, guidance, cond, uncond)
    res = model.config.unet.res
    known = None if known is None else (known[0].to(dev) * 2 - 1, known[1].to(dev))
    x = Diffusion(model.config.diffusion).sample(guided, (B, 3, res, res), steps=steps, method="ddim", eta=eta,
                                                 generator=torch.Generator().manual_seed(seed), device=dev,
                                                 known=known)
    return to_images(x).cpu()


@torch.no_grad()
def upsample(model: Upsampler, low: torch.Tensor, emb: torch.Tensor, steps: int = 25, seed: int = 0,
             eta: float = ETA) -> torch.Tensor:
    """Low-resolution pictures (B, 3, R, R) in [0, 1] → (B, 3, 2R, 2R) in [0, 1], given their embeddings (B, D)."""
    c = model.config
    dev = next(model.parameters()).device
    B, res = len(low), c.unet.res
    cond_low = blur(low.to(dev) * 2 - 1, torch.full((B,), c.sample_blur))
    x = Diffusion(c.diffusion).sample(model, (B, 3, res, res), steps=steps, method="ddim", eta=eta,
                                      generator=torch.Generator().manual_seed(seed), device=dev,
                                      low=cond_low, emb=emb.to(dev))
    return to_images(x).cpu()


# ------------------------------------------------------------------ checkpoints
KINDS = {"decoder": (decoder_config, Decoder), "upsampler": (upsampler_config, Upsampler)}


def load_trained(kind: str, preset: str | None = None):
    """The decoder or upsampler trained by `python -m minidalle train KIND` (CheckpointError if none)."""
    make_config, Model = KINDS[kind]
    config = make_config(preset)
    model = Model(config)
    checkpoint.load_into(model, checkpoint.shipped_name(kind, preset), config)
    return model.to(device()).eval()


def cli_train(kind: str, resume: bool = False) -> dict:
    """`python -m minidalle train decoder|upsampler`: train on the preset's CLIP embeddings, judge, record."""
    from .clip import load_trained as load_clip
    from .trainer import ship

    try:
        clip_model, _ = load_clip(train_if_missing=False)
    except checkpoint.CheckpointError as e:
        raise checkpoint.CheckpointError(f"{e} (the {kind} reads CLIP's embeddings: "
                                         "`python -m minidalle train clip` first)") from e
    make_config, Model = KINDS[kind]
    config = make_config()
    model, name = Model(config), checkpoint.shipped_name(kind)
    info = train(model, clip_model.to(device()).eval(), name, resume=resume)
    from .unclip import reconstruction
    r, lo, hi, n = reconstruction(model, clip_model, n=160)
    ship(kind, name, config, info, {"held-out caption exact, from true embedding": round(r, 4),
                                    "ci95": [round(lo, 4), round(hi, 4)], "n": n})
    return info
