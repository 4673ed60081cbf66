"""Lesson 06: the unCLIP decoder — from a CLIP image embedding back to pixels.

Ramesh et al. 2022 (unCLIP) §2.1; `notebooks/06_decoder.ipynb` builds it, with the upsampler
(`dalle2.upsampler`). The decoder inverts CLIP's image encoder: a diffusion model that draws a
picture at the base resolution *given its CLIP image embedding*. It is lesson 04's GLIDE — its U-Net
and its text transformer (`diffusion.glide.TextEncoder`) — with one more input:

* the embedding z_i (B, D) is projected and added to the time embedding, and projected into
  `emb_tokens` extra context tokens that every attention layer sees next to the caption's tokens
  (§2.1: "four extra tokens of context");
* the caption is kept as an optional, weaker signal through GLIDE's own text transformer;
* for classifier-free guidance the embedding is zeroed `train.p_drop_emb` of the time (10%) and the
  caption dropped `train.p_drop_caption` of the time (50%) (§2.1); `decode` guides with `GUIDANCE`.

Like every image diffusion model of the course it predicts v (v-prediction, Salimans & Ho 2022) under
a cosine schedule with Min-SNR-5 weighting, and trains through `diffusion.ddpm.fit_images`. Training
data: shapes-world scenes at the base resolution and CLIP's embedding of their render at CLIP's
resolution (`embedded_scenes`). `python -m minidalle train decoder`.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import nn

from minidalle import checkpoint
from minidalle.clip import train as clip_train
from minidalle.clip.model import embed_images
from minidalle.config import InputError, get_preset
from minidalle.diffusion.ddpm import PROCESS, fit_images, to_images
from minidalle.diffusion.gaussian import Diffusion, DiffusionConfig, classifier_free_guidance
from minidalle.diffusion.glide import TextEncoder
from minidalle.nn.unet import UNet, UNetConfig
from minidalle.runtime import device
from minidalle.text.words import drop_captions, null_caption, tokenize
from minidalle.trainer import TrainConfig
from minidalle.world.data import training_data

ETA = 1.0       # DDIM's noise level η (0: deterministic; 1: as random as DDPM). Chosen by the cascade's
                # single-object exact match on a prompt seed no measurement uses; lesson 06 and the book's
                # results page compare η = 0 and 1
GUIDANCE = 5.0  # the decoder's classifier-free guidance scale: the smallest best scale of `eval unclip`'s sweep of
                # the cascade (prompt seed 3), not of the headline measurement (seed 1)


@dataclass(frozen=True)
class DecoderTrain(TrainConfig):
    """How the decoder is trained (the `cpu` preset's values): GLIDE's loop, with the embedding and the caption
    dropped for classifier-free guidance (§2.1)."""

    steps: int = 8000
    log_every: int = 160
    p_drop_emb: float = 0.1         # embedding zeroed (classifier-free guidance)
    p_drop_caption: float = 0.5     # caption dropped
    two_objects: float = 0.5        # share of two-object scenes in the training data (the rest: one object)


@dataclass(frozen=True)
class DecoderConfig:
    """Lesson 06's decoder: GLIDE's U-Net and text transformer, plus the CLIP image embedding (embed_dim is
    CLIP's). The defaults are the `cpu` preset: GLIDE's U-Net at 16×16 (32 channels, attention at 8×8 and
    4×4) and its text transformer 48 wide, whose width is the U-Net's conditioning size."""

    unet: UNetConfig = UNetConfig(channels=32, mults=(1, 2, 2), attn_res=(8, 4), head_dim=32, cond_dim=48,
                                  context_dim=48)
    diffusion: DiffusionConfig = PROCESS
    embed_dim: int = 64             # CLIP's embedding size
    emb_tokens: int = 4             # extra context tokens made from the embedding
    text_width: int = 48
    text_layers: int = 2
    text_heads: int = 4
    train: DecoderTrain = DecoderTrain()


PRESETS = {
    "ci": DecoderConfig(unet=UNetConfig(channels=16, mults=(1, 2), attn_res=(8,), head_dim=32, groups=4, cond_dim=32,
                                        context_dim=32),
                        diffusion=replace(PROCESS, timesteps=100), embed_dim=16, text_width=32, text_layers=1,
                        train=DecoderTrain(steps=10, batch=16, warmup=2, n_train=256, log_every=1)),
    "cpu": DecoderConfig(),
    "gpu": DecoderConfig(unet=UNetConfig(res=32, channels=64, mults=(1, 2, 2, 2), blocks=2, attn_res=(16, 8),
                                         head_dim=32, cond_dim=128, context_dim=128),
                         embed_dim=128, text_width=128,
                         train=DecoderTrain(steps=20_000, batch=128, n_train=100_000, log_every=400)),
}


def decoder_config(preset: str | None = None) -> DecoderConfig:
    """The preset's decoder, at the base resolution (16×16 at `cpu`, 32×32 at `gpu`). Change it with
    `config.override`."""
    return PRESETS[get_preset(preset).name]


class Decoder(nn.Module):
    """v_θ(x_t, t | z_i, caption): x_t (B, 3, R, R), t (B,), z_i (B, D), tokens (B, L), mask (B, L) → v (B, 3, R, R).

    A GLIDE (lesson 04) whose U-Net also reads the CLIP image embedding z_i, as a vector and as context tokens."""

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


def checkpoint_name(preset: str | None = None):
    """data/checkpoints/decoder-PRESET (the -ci ones are git-ignored)."""
    return checkpoint.shipped_name("decoder", preset)


def trained_on(preset: str | None = None) -> dict:
    """The CLIP whose image embeddings the decoder reads, by the fingerprint of the preset's CLIP checkpoint."""
    return {"clip": checkpoint.fingerprint(clip_train.checkpoint_name(preset))}


# ------------------------------------------------------------------ data
def embedded_scenes(n: int, res: int, two_objects: float, seed: int, clip_model):
    """Scenes at `res` in [−1, 1] (N, 3, res, res), their captions, and CLIP's embeddings of the same scenes
    rendered at CLIP's resolution (N, D), unit norm: the data of the decoder and the upsampler."""
    images, captions = training_data(n, res, two_objects, seed)
    size = clip_model.config.image_size
    if res == size:
        at_clip = images
    else:
        at_clip, same = training_data(n, size, two_objects, seed)                 # the same scenes at CLIP's size
        assert same == captions
    pictures = ((at_clip + 1) * 127.5).round().to(torch.uint8)
    return images, captions, embed_images(clip_model, pictures)


def check_clip(clip_model, embed_dim: int, kind: str) -> None:
    """InputError unless `clip_model`'s embeddings have the size the decoder (or upsampler) reads."""
    if clip_model.config.embed_dim != embed_dim:
        raise InputError(f"this {kind} reads CLIP embeddings of {embed_dim}, got a CLIP with embeddings of "
                         f"{clip_model.config.embed_dim}: use the same preset's CLIP (clip.train.load())")


# ------------------------------------------------------------------ training and loading
def train(model: Decoder, clip_model, name=None, resume: bool = False, show_progress: bool = True, on_log=None,
          state=None) -> dict:
    """Train the decoder (lesson 06) in place with `ddpm.fit_images` on `clip_model`'s embeddings of captioned
    scenes; each step zeroes the embedding with probability train.p_drop_emb and drops the caption with
    probability train.p_drop_caption. Records the active preset's CLIP checkpoint (`trained_on`)."""
    c, tc = model.config, model.config.train
    check_clip(clip_model, c.embed_dim, "decoder")
    dev = device()
    images, captions, embs = embedded_scenes(tc.n_train, c.unet.res, tc.two_objects, tc.seed, clip_model)
    tokens, mask = tokenize(captions, validate=False)                             # (N, L): drawn from the grammar

    def condition(idx, gen):
        emb = embs[idx].masked_fill((torch.rand(tc.batch, generator=gen) < tc.p_drop_emb)[:, None], 0.0)
        drop = torch.rand(tc.batch, generator=gen) < tc.p_drop_caption
        tok, msk = drop_captions(tokens[idx], mask[idx], drop)
        return {"emb": emb.to(dev), "tokens": tok.to(dev), "mask": msk.to(dev)}

    return fit_images(model, images, condition, desc="training the decoder", name=name, state=state, resume=resume,
                      show_progress=show_progress, on_log=on_log, trained_on=trained_on())


def load(preset: str | None = None) -> Decoder:
    """The preset's trained decoder (`python -m minidalle train decoder`; built with the overrides it was trained
    with), in eval mode on the device; refused (CheckpointError) if it was trained on another CLIP's embeddings."""
    return checkpoint.load_model(Decoder, decoder_config(preset), checkpoint_name(preset), trained_on(preset),
                                 kind="decoder")


# ------------------------------------------------------------------ sampling
def _conditions(model: Decoder, emb: torch.Tensor, captions) -> tuple[dict, dict]:
    """The decoder's keyword arguments with the embedding and caption (cond) and without (uncond), one batch each."""
    dev = next(model.parameters()).device
    B = len(emb)
    captions = [captions] if isinstance(captions, str) else captions
    if captions and len(captions) != B:
        raise InputError(f"got {B} embeddings but {len(captions)} captions: give one caption an embedding, or none")
    tokens, mask = tokenize(captions) if captions else null_caption(B)
    null_tokens, null_mask = null_caption(*tokens.shape)                # as long as the captions: one batch
    cond = {"emb": emb.to(dev), "tokens": tokens.to(dev), "mask": mask.to(dev)}
    uncond = {"emb": torch.zeros_like(emb).to(dev), "tokens": null_tokens.to(dev), "mask": null_mask.to(dev)}
    return cond, uncond


@torch.no_grad()
def decode(model: Decoder, emb: torch.Tensor, captions: list[str] | None = None, guidance: float = GUIDANCE,
           steps: int = 50, seed: int = 0, known: tuple | None = None, eta: float = ETA,
           x_T: torch.Tensor | None = None) -> torch.Tensor:
    """Pictures (B, 3, R, R) in [0, 1] drawn from CLIP image embeddings (B, D), DDIM with `steps` steps.

    captions: optional, validated like every prompt (None: the empty caption). guidance s
    scales the difference between the model with and without the embedding and caption.
    known: (pixels (B, 3, R, R) in [0, 1], keep mask (B, 1, R, R)) for inpainting (lesson 07).
    x_T: the starting latent (B or 1, 3, R, R) instead of fresh noise: `invert`'s, for variations.
    """
    dev = next(model.parameters()).device
    guided = classifier_free_guidance(model, guidance, *_conditions(model, emb, captions))
    res = model.config.unet.res
    known = None if known is None else (known[0].to(dev) * 2 - 1, known[1].to(dev))
    x = Diffusion(model.config.diffusion).sample(guided, (len(emb), 3, res, res), steps=steps, method="ddim", eta=eta,
                                                 generator=torch.Generator().manual_seed(seed), device=dev,
                                                 known=known, x_T=x_T)
    return to_images(x).cpu()


@torch.no_grad()
def invert(model: Decoder, images: torch.Tensor, emb: torch.Tensor, captions: list[str] | None = None,
           guidance: float = GUIDANCE, steps: int = 50) -> torch.Tensor:
    """The decoder's latent x_T of pictures (B, 3, R, R) in [0, 1] at its resolution, given their CLIP embeddings
    (B, D): DDIM inversion (`Diffusion.invert`) of the same guided model `decode` samples, so `decode(…, eta=0,
    x_T=invert(…))` draws the pictures back (unCLIP §3.1; lesson 07). Returns (B, 3, R, R) in model space."""
    dev = next(model.parameters()).device
    res = model.config.unet.res
    if images.shape[-2:] != (res, res):
        raise InputError(f"invert takes pictures at the decoder's {res}×{res}; got {tuple(images.shape[-2:])}")
    guided = classifier_free_guidance(model, guidance, *_conditions(model, emb, captions))
    return Diffusion(model.config.diffusion).invert(guided, images.to(dev) * 2 - 1, steps=steps, device=dev).cpu()
