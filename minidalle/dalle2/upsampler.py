"""Lesson 06: the unCLIP upsampler — twice the resolution, conditioned on the low-resolution picture.

Ramesh et al. 2022 (unCLIP) §2.1 use two diffusion upsamplers (64→256→1024); `notebooks/06_decoder.ipynb`
builds ours after the decoder (`dalle2.decoder`): one U-Net at the upsampled resolution that reads
[x_t | the bilinearly upsampled low-resolution picture], concatenated as extra input channels. Its
conditioning picture is corrupted in training — Gaussian blur of random width (`train.blur`) and a
little noise (`train.noise`), the paper's "gaussian blur" and "BSR degradation" — so that it learns to
fix the decoder's soft samples rather than copy clean renders; at sampling the picture gets one
mid-width blur (`sample_blur`). One deviation: ours also gets the CLIP embedding added to its time
embedding (the paper's upsamplers see the image only). At 16×16 a small shape is 4 pixels across, so
the embedding is the only place its shape is still written down.

Like the decoder it predicts v (v-prediction, Salimans & Ho 2022) under a cosine schedule with
Min-SNR-5 weighting, and trains through `diffusion.ddpm.fit_images`. `python -m minidalle train upsampler`.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import nn

from minidalle import checkpoint
from minidalle.clip import train as clip_train
from minidalle.config import InputError, get_preset
from minidalle.dalle2.decoder import ETA, check_clip, embedded_scenes
from minidalle.diffusion.ddpm import PROCESS, fit_images, to_images
from minidalle.diffusion.gaussian import Diffusion, DiffusionConfig
from minidalle.nn.unet import UNet, UNetConfig
from minidalle.runtime import device
from minidalle.trainer import TrainConfig
from minidalle.world.data import training_data


@dataclass(frozen=True)
class UpsamplerTrain(TrainConfig):
    """How the upsampler is trained (the `cpu` preset's values): the conditioning picture blurred and noised."""

    steps: int = 2000
    batch: int = 32
    log_every: int = 40
    blur: tuple = (0.4, 1.0)        # range of σ of the Gaussian blur on the conditioning picture, in low-res pixels
    noise: float = 0.1              # largest std of the Gaussian noise added to it
    two_objects: float = 0.5        # share of two-object scenes in the training data (the rest: one object)


@dataclass(frozen=True)
class UpsamplerConfig:
    """Lesson 06's upsampler: a U-Net at the upsampled resolution reading [x_t | upsampled low-res] (in_ch 6),
    with the CLIP embedding as its conditioning vector (cond_dim = embed_dim, CLIP's). The defaults are the
    `cpu` preset: 16×16 → 32×32, 16 channels, no attention."""

    unet: UNetConfig = UNetConfig(res=32, in_ch=6, channels=16, mults=(1, 2, 2), attn_res=(), cond_dim=64)
    diffusion: DiffusionConfig = PROCESS
    embed_dim: int = 64             # CLIP's embedding size
    sample_blur: float = 0.5        # σ of the blur on the picture to upsample (a mid value: the decoder's are soft)
    train: UpsamplerTrain = UpsamplerTrain()


PRESETS = {
    "ci": UpsamplerConfig(unet=UNetConfig(res=32, in_ch=6, channels=16, mults=(1, 2), attn_res=(), head_dim=32,
                                          groups=4, cond_dim=16),
                          diffusion=replace(PROCESS, timesteps=100), embed_dim=16,
                          train=UpsamplerTrain(steps=10, batch=8, warmup=2, n_train=256, log_every=1)),
    "cpu": UpsamplerConfig(),
    "gpu": UpsamplerConfig(unet=UNetConfig(res=64, in_ch=6, channels=32, mults=(1, 2, 2, 2), blocks=2, attn_res=(8,),
                                           head_dim=32, cond_dim=128),
                           embed_dim=128,
                           train=UpsamplerTrain(steps=20_000, batch=128, n_train=100_000, log_every=400)),
}


def upsampler_config(preset: str | None = None) -> UpsamplerConfig:
    """The preset's upsampler: base → upsampled resolution (16→32 at `cpu`, 32→64 at `gpu`). Change it with
    `config.override`."""
    return PRESETS[get_preset(preset).name]


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
    """v_θ(x_t, t | low, z_i): x_t (B, 3, 2R, 2R), low (B, 3, R, R) in [−1, 1], z_i (B, D) → v (B, 3, 2R, 2R)."""

    def __init__(self, config: UpsamplerConfig):
        super().__init__()
        self.config = config
        self.unet = UNet(config.unet)

    def forward(self, x, t, low, emb):
        up = F.interpolate(low, size=x.shape[-2:], mode="bilinear", align_corners=False)   # (B, 3, 2R, 2R)
        return self.unet(torch.cat([x, up], 1), t, cond=emb)


def checkpoint_name(preset: str | None = None):
    """data/checkpoints/upsampler-PRESET (the -ci ones are git-ignored)."""
    return checkpoint.shipped_name("upsampler", preset)


def trained_on(preset: str | None = None) -> dict:
    """The CLIP whose image embeddings the upsampler reads, by the fingerprint of the preset's CLIP checkpoint."""
    return {"clip": checkpoint.fingerprint(clip_train.checkpoint_name(preset))}


# ------------------------------------------------------------------ training and loading
def train(model: Upsampler, clip_model, name=None, resume: bool = False, show_progress: bool = True, on_log=None,
          state=None) -> dict:
    """Train the upsampler (lesson 06) in place with `ddpm.fit_images`: scenes at its resolution, the same scenes
    at half of it as the condition (blurred with σ uniform in train.blur, plus noise of std uniform in
    [0, train.noise]), and `clip_model`'s embeddings. Records the active preset's CLIP checkpoint (`trained_on`)."""
    c, tc = model.config, model.config.train
    check_clip(clip_model, c.embed_dim, "upsampler")
    dev = device()
    images, _, embs = embedded_scenes(tc.n_train, c.unet.res, tc.two_objects, tc.seed, clip_model)
    low, _ = training_data(tc.n_train, c.unet.res // 2, tc.two_objects, tc.seed)  # the same scenes at half res

    def condition(idx, gen):
        sigma = tc.blur[0] + (tc.blur[1] - tc.blur[0]) * torch.rand(tc.batch, generator=gen)         # (B,)
        noise = tc.noise * torch.rand(tc.batch, 1, 1, 1, generator=gen) * torch.randn(low[idx].shape, generator=gen)
        return {"low": (blur(low[idx], sigma) + noise).to(dev), "emb": embs[idx].to(dev)}

    return fit_images(model, images, condition, desc="training the upsampler", name=name, state=state,
                      resume=resume, show_progress=show_progress, on_log=on_log, trained_on=trained_on())


def load(preset: str | None = None) -> Upsampler:
    """The preset's trained upsampler (`python -m minidalle train upsampler`; built with the overrides it was
    trained with), in eval mode on the device; refused (CheckpointError) if it was trained on another CLIP's
    embeddings."""
    return checkpoint.load_model(Upsampler, upsampler_config(preset), checkpoint_name(preset), trained_on(preset),
                                 kind="upsampler")


# ------------------------------------------------------------------ sampling
@torch.no_grad()
def upsample(model: Upsampler, low: torch.Tensor, emb: torch.Tensor, steps: int = 25, seed: int = 0,
             eta: float = ETA) -> torch.Tensor:
    """Low-resolution pictures (B, 3, R, R) in [0, 1] → (B, 3, 2R, 2R) in [0, 1], given their CLIP embeddings (B, D).

    DDIM with `steps` steps at noise level η = `eta`; the pictures get the blur σ = `sample_blur` first."""
    c = model.config
    dev = next(model.parameters()).device
    B, res = len(low), c.unet.res
    if low.dim() != 4 or tuple(low.shape[1:]) != (3, res // 2, res // 2):
        raise InputError(f"the upsampler takes pictures (B, 3, {res // 2}, {res // 2}) in [0, 1], got "
                         f"{tuple(low.shape)}: resize them with torch.nn.functional.interpolate first")
    if len(emb) != B:
        raise InputError(f"got {B} pictures but {len(emb)} embeddings: give each picture its CLIP embedding")
    cond_low = blur(low.to(dev) * 2 - 1, torch.full((B,), c.sample_blur))
    x = Diffusion(c.diffusion).sample(model, (B, 3, res, res), steps=steps, method="ddim", eta=eta,
                                      generator=torch.Generator().manual_seed(seed), device=dev,
                                      low=cond_low, emb=emb.to(dev))
    return to_images(x).cpu()
