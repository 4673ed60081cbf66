"""Lesson 03: an unconditional DDPM of single-object scenes (Ho et al. 2020).

`notebooks/03_ddpm.ipynb` builds it. `DDPM` is the U-Net of `nn.unet` alone, learning scenes from
noise with the Gaussian diffusion of `diffusion.gaussian`. Every preset trains v-prediction
(Salimans & Ho 2022, §4) with Min-SNR-5 loss weighting (Hang et al. 2023) and samples from the
weights' moving average. `fit_images` is the training loop of every image diffusion model of the
course — this one, GLIDE (lesson 04), the unCLIP decoder and upsampler (lesson 06) — which differ
only in what conditions the U-Net.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import torch
import torch.nn as nn

from minidalle import checkpoint
from minidalle.config import get_preset
from minidalle.diffusion.gaussian import Diffusion, DiffusionConfig
from minidalle.nn.unet import UNet, UNetConfig
from minidalle.runtime import device
from minidalle.trainer import TrainConfig, fit
from minidalle.world.data import training_data

PROCESS = DiffusionConfig(schedule="cosine", prediction="v", min_snr=5.0)   # T = 1000: every model of the course


@dataclass(frozen=True)
class DDPMConfig:
    """Lesson 03's unconditional model: a U-Net and a diffusion process. The defaults are the `cpu` preset
    (16×16, 454k parameters, 8,000 steps of batch 64)."""

    unet: UNetConfig = UNetConfig()
    diffusion: DiffusionConfig = PROCESS
    train: TrainConfig = TrainConfig(steps=8000, log_every=160)


PRESETS = {
    "ci": DDPMConfig(unet=UNetConfig(channels=16, mults=(1, 2), attn_res=(8,), head_dim=32, groups=4),
                     diffusion=replace(PROCESS, timesteps=100),
                     train=TrainConfig(steps=10, batch=16, warmup=2, n_train=256, log_every=1)),
    "cpu": DDPMConfig(),
    "gpu": DDPMConfig(unet=UNetConfig(res=32, channels=64, mults=(1, 2, 2, 2), blocks=2, attn_res=(16, 8),
                                      head_dim=32),
                      train=TrainConfig(steps=20_000, batch=128, n_train=100_000, log_every=400)),
}


def ddpm_config(preset: str | None = None) -> DDPMConfig:
    """The preset's DDPM (ci: seconds; cpu: 16×16 in minutes; gpu: 32×32). Change it with `config.override`."""
    return PRESETS[get_preset(preset).name]


class DDPM(nn.Module):
    """The denoiser of lesson 03: x_t (B, 3, R, R), t (B,) → the v-prediction (B, 3, R, R)."""

    def __init__(self, config: DDPMConfig):
        super().__init__()
        self.config = config
        self.unet = UNet(config.unet)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.unet(x, t)


def checkpoint_name(preset: str | None = None):
    """data/checkpoints/ddpm-PRESET (the -ci ones are git-ignored)."""
    return checkpoint.shipped_name("ddpm", preset)


def trained_on(preset: str | None = None) -> dict:
    """The DDPM learns from renders only: no other model's checkpoint."""
    return {}


def fit_images(model: nn.Module, images: torch.Tensor, condition=None, desc: str | None = None, **fit_args) -> dict:
    """Train an image diffusion model with `trainer.fit`: each step draws a batch of `images` (N, 3, R, R)
    in [−1, 1] and minimises the diffusion loss of `model.config.diffusion`.

    condition(idx, generator) -> the model's keyword arguments for the rows `idx` (B,) of the batch
    (a caption, an embedding, a low-resolution picture; dropped at random for guidance): None for none.
    fit_args go to `trainer.fit` (name, state, resume, show_progress, on_log, trained_on).
    """
    c = model.config
    diffusion, dev = Diffusion(c.diffusion), device()

    def batch_loss(step, gen):
        idx = torch.randint(0, len(images), (c.train.batch,), generator=gen)     # (B,)
        cond = condition(idx, gen) if condition is not None else {}
        return diffusion.loss(model, images[idx].to(dev), generator=gen, **cond), {}

    return fit(model, c, c.train, batch_loss, desc=desc or f"training {type(model).__name__}", **fit_args)


def train(model: DDPM, name=None, resume: bool = False, show_progress: bool = True, on_log=None,
          state=None) -> dict:
    """Train the DDPM on single-object scenes; it ends holding the EMA weights, saved to `name`.

    The full state goes to `state` (default `checkpoint.state_path(name)`) every `save_every` steps, and
    on Ctrl-C; `resume` continues from it. info: losses [(step, loss)], wall_time_s, steps.
    `on_log(step, ema_model)` is called at every log step (lesson 03 collects samples with it).
    """
    tc = model.config.train
    images, _ = training_data(tc.n_train, model.config.unet.res, 0.0, tc.seed)      # (N, 3, R, R) in [−1, 1]
    return fit_images(model, images, name=name, state=state, resume=resume, show_progress=show_progress,
                      on_log=on_log)


def load(preset: str | None = None) -> DDPM:
    """The preset's trained DDPM (`python -m minidalle train ddpm`), in eval mode on the device."""
    return checkpoint.load_model(DDPM, ddpm_config(preset), checkpoint_name(preset), trained_on(preset), kind="ddpm")


def to_images(x: torch.Tensor) -> torch.Tensor:
    """Model space [−1, 1] → pixels [0, 1]."""
    return ((x + 1) / 2).clamp(0, 1)


@torch.no_grad()
def sample(model: DDPM, n: int, steps: int | None = None, method: str = "ddim", seed: int = 0,
           show_progress: bool = False) -> torch.Tensor:
    """n unconditional samples (DDIM with `steps` steps, or the full DDPM chain), pixels (n, 3, R, R) in [0, 1]."""
    c = model.config.unet
    d = Diffusion(model.config.diffusion)
    dev = next(model.parameters()).device
    x = d.sample(model, (n, c.in_ch, c.res, c.res), steps=steps, method=method,
                 generator=torch.Generator().manual_seed(seed), device=dev, show_progress=show_progress)
    return to_images(x).cpu()
