"""Lesson 08: DALL·E 1's discrete VAE — an image becomes a grid of tokens from a codebook.

Ramesh et al. 2021, "Zero-Shot Text-to-Image Generation", §2.1 and App. A.
The paper's dVAE compresses a 256×256 image into a 32×32 grid of tokens, each
one of 8,192 codes; ours compresses a 32×32 shapes-world scene into an 8×8 grid
of a few hundred codes (`notebooks/08_dvae.ipynb` explains every step).

* The **encoder** (convolutions, two stride-2 steps) gives, at each grid cell,
  logits over the K codes: (B, K, 8, 8). `grid=16` keeps one stride-2 step
  and four times as many tokens, each covering 2×2 pixels instead of 4×4
  (book/dalle1.md measures what that buys).
* Training cannot take an argmax (no gradient), so it uses the **Gumbel-softmax
  relaxation** (Jang et al. 2017; Maddison et al. 2017): add Gumbel noise to the
  logits, divide by a temperature τ, softmax. As τ → 0 the soft one-hot becomes
  a hard one; the temperature is annealed from 1 towards 1/16 (`temperature`).
* The **decoder** maps the (soft) one-hot through the codebook — a K × D
  embedding, the decoder's first 1×1 convolution in the paper — and back up to
  pixels (residual blocks and transposed convolutions; only the last layer
  works at full resolution, which keeps a training step cheap).
* The loss is an ELBO: reconstruction plus β·KL(q(z|x) ‖ uniform prior over the
  K codes), with β ramped up from 0 (`kl_weight`). The KL term pushes the encoder
  to spread its mass over many codes, which keeps the codebook in use.
* The reconstruction term is a negative log-likelihood: by default a squared
  error, a Gaussian's (`recon="l1"`: a Laplace's). The paper's logit-Laplace
  (App. A.3) also treats pixels as continuous values. A clean shapes-world
  render holds only nine colours, so `recon="palette"` offers a **categorical
  over those nine colours** at every pixel (the decoder gives 9 logits a
  pixel, and decoding paints the likeliest colour), as PixelRNN and PixelCNN
  (van den Oord et al. 2016) use a 256-way softmax over pixel values. It
  reconstructs pairs of objects better, but the transformer of lesson 09 drew
  worse from its tokens, so it is not the default (book/results.md).
* The per-token KL alone let our small dVAE settle on 47 of its 512 codes. A
  **diversity term** — the KL from the *batch-averaged* code distribution to
  uniform, wav2vec 2.0's codebook-diversity loss (Baevski et al. 2020, §3.3) —
  penalises only codes that the whole batch ignores, not confident tokens; with
  it 89% of the codes are used at the cpu preset (lesson 08 measures both).
* At inference the tokens are the **hard argmax** of the logits (`encode`).

The paper anneals τ from 1 to 1/16 over the first 150,000 updates and raises
β from 0 to 6.6 over the first 5,000 (App. A.2); we use cosine curves for both,
compressed to our step counts. These schedules, and the two loss weights, only shape
training, so they live in `DVAEConfig.train` (a `DVAETrain`); the model's settings are
the rest. `python -m minidalle train dvae` trains it (`train`); `eval dvae`
(`minidalle.eval.dalle1.evaluate_dvae`) reports reconstruction error, codebook usage
and the oracle check.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from minidalle import checkpoint
from minidalle.config import InputError, get_preset
from minidalle.trainer import TrainConfig, fit
from minidalle.world.data import fresh_images, training_images
from minidalle.world.render import PALETTE
from minidalle.world.scenes import BACKGROUND


WORLD_COLOURS = torch.cat([torch.tensor([BACKGROUND]), PALETTE]) * 2 - 1   # (9, 3) in [−1, 1]: black, then the palette
RECONS = ("palette", "mse", "l1")
POOL = 100                          # with train.fresh, a new pool of POOL × batch scenes every POOL steps


@dataclass(frozen=True)
class DVAETrain(TrainConfig):
    """How `train` trains the dVAE: the trainer's settings (no weight average: `ema` 0), the two schedules of
    App. A.2 and the diversity weight. Defaults: the `cpu` preset (8,000 steps of 32 scenes)."""

    steps: int = 8000
    batch: int = 32
    lr: float = 2e-3
    warmup: int = 100
    ema: float = 0.0
    log_every: int = 160
    tau_start: float = 1.0          # Gumbel-softmax temperature, annealed ...
    tau_end: float = 1 / 16         # ... to this (the paper's values)
    tau_steps: int = 6400           # over these steps (cosine; 0.8 of training), then held
    kl_max: float = 1e-3            # β, reached ...
    kl_steps: int = 1600            # ... after these steps (cosine ramp from 0; 0.2 of training)
    diversity: float = 0.01         # weight of KL(batch-mean q ‖ uniform): keeps the codebook in use
    contact: float = 0.4            # share of training scenes whose first two objects touch (SceneSpec.contact)
    fresh: bool = False             # new scenes every POOL steps instead of one set of n_train (book/results.md)


@dataclass(frozen=True)
class DVAEConfig:
    """Shape of the dVAE, and how it is trained (`train`). Defaults: the `cpu` preset, 32×32 → 8×8 of 512 codes."""

    res: int = 32                   # image side
    grid: int = 8                   # token grid side: res / grid = 4 (two stride-2 steps) or 2 (one)
    codes: int = 512                # K, the codebook size (the paper: 8,192)
    code_dim: int = 64              # D, width of a codebook vector
    channels: int = 64              # width of the convolutions (at res/2 and at the grid)
    recon: str = "mse"              # likelihood: "mse" (Gaussian), "l1" (Laplace), "palette" (the 9 world colours)
    train: DVAETrain = field(default_factory=DVAETrain)

    def __post_init__(self):
        if self.res not in (2 * self.grid, 4 * self.grid):
            raise InputError(f"the dVAE downsamples 2× or 4×: res must be 2·grid or 4·grid, "
                             f"got res {self.res}, grid {self.grid}")
        if self.recon not in RECONS:
            raise InputError(f"recon must be one of {RECONS}, got {self.recon!r}")


PRESETS = {
    "ci": DVAEConfig(codes=64, code_dim=16, channels=16,
                     train=DVAETrain(steps=10, batch=16, warmup=2, n_train=256, log_every=1, tau_steps=8, kl_steps=2)),
    "cpu": DVAEConfig(),
    "gpu": DVAEConfig(codes=1024, channels=96,
                      train=DVAETrain(steps=10_000, batch=256, n_train=100_000, log_every=200, tau_steps=8000,
                                      kl_steps=2000)),
}


def dvae_config(preset: str | None = None) -> DVAEConfig:
    """The active (or named) preset's dVAE (ci: seconds; cpu: 32×32 → 8×8 of 512 codes in minutes; gpu: 1,024 codes)."""
    return PRESETS[get_preset(preset).name]


def checkpoint_name(preset: str | None = None) -> Path:
    """Where a preset's trained dVAE lives: data/checkpoints/dvae-PRESET (.safetensors + .json)."""
    return checkpoint.shipped_name("dvae", preset)


def trained_on(preset: str | None = None) -> dict:
    """The checkpoints the dVAE learns from: none, it reads only pictures."""
    return {}


# ---------------------------------------------------------------- schedules
def _cosine(step: int, start: float, end: float, steps: int) -> float:
    t = min(1.0, step / max(1, steps))
    return end + (start - end) * 0.5 * (1 + math.cos(math.pi * t))


def temperature(step: int, config: DVAEConfig) -> float:
    """τ at `step`: cosine from train.tau_start to train.tau_end over train.tau_steps, then held (App. A.2)."""
    tc = config.train
    return _cosine(step, tc.tau_start, tc.tau_end, tc.tau_steps)


def kl_weight(step: int, config: DVAEConfig) -> float:
    """β at `step`: cosine ramp from 0 to train.kl_max over train.kl_steps, then held (App. A.2)."""
    return _cosine(step, 0.0, config.train.kl_max, config.train.kl_steps)


# ---------------------------------------------------------------- model
class ResBlock(nn.Module):
    """x + conv(relu(conv(relu(x)))): the paper's blocks, without their gain scaling."""

    def __init__(self, ch: int):
        super().__init__()
        self.net = nn.Sequential(nn.ReLU(), nn.Conv2d(ch, ch, 3, padding=1), nn.ReLU(), nn.Conv2d(ch, ch, 1))

    def forward(self, x):
        return x + self.net(x)


def colour_index(images: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) in [−1, 1] → long (B, H, W): the nearest of the 9 world colours at each pixel."""
    d = ((images[:, None] - WORLD_COLOURS.to(images.device)[None, :, :, None, None]) ** 2).sum(2)   # (B, 9, H, W)
    return d.argmin(1)


def gumbel_softmax(logits: torch.Tensor, tau: float, dim: int = 1, generator=None) -> torch.Tensor:
    """softmax((logits + g) / τ) with g ~ Gumbel(0, 1): a differentiable, nearly one-hot sample."""
    u = torch.rand(logits.shape, generator=generator, dtype=logits.dtype).to(logits.device)
    g = -torch.log((-torch.log(u.clamp_min(1e-20))).clamp_min(1e-20))                # Gumbel(0, 1) noise
    return F.softmax((logits + g) / tau, dim=dim)


class DVAE(nn.Module):
    """32×32 image ↔ 8×8 grid of codes (or 16×16: `grid`). images in [−1, 1], (B, 3, res, res)."""

    def __init__(self, config: DVAEConfig):
        super().__init__()
        self.config = c = config
        C = c.channels
        four = c.res == 4 * c.grid                     # two stride-2 steps; else the second keeps the size
        self.encoder = nn.Sequential(
            nn.Conv2d(3, C, 4, stride=2, padding=1), ResBlock(C),                  # (B, C, res/2, res/2)
            nn.Conv2d(C, C, 4, stride=2, padding=1) if four else nn.Conv2d(C, C, 3, padding=1),
            ResBlock(C), ResBlock(C),                                              # (B, C, grid, grid)
            nn.ReLU(), nn.Conv2d(C, c.codes, 1))                                   # logits (B, K, grid, grid)
        self.codebook = nn.Parameter(torch.randn(c.codes, c.code_dim) / math.sqrt(c.code_dim))   # (K, D)
        self.decoder = nn.Sequential(
            nn.Conv2d(c.code_dim, C, 1), ResBlock(C), ResBlock(C),                 # (B, C, grid, grid)
            nn.ConvTranspose2d(C, C, 4, stride=2, padding=1) if four else nn.Conv2d(C, C, 3, padding=1),
            ResBlock(C),                                                           # (B, C, res/2, res/2)
            nn.ReLU(), nn.ConvTranspose2d(C, self.outputs, 4, stride=2, padding=1))  # (B, 9 or 3, res, res)

    @property
    def outputs(self) -> int:
        """Decoder channels: 9 colour logits a pixel ("palette"), or 3 pixel values."""
        return len(WORLD_COLOURS) if self.config.recon == "palette" else 3

    def _check(self, images: torch.Tensor) -> None:
        r = self.config.res
        if images.ndim != 4 or images.shape[1:] != (3, r, r) or not images.is_floating_point():
            raise InputError(f"the dVAE takes float images (B, 3, {r}, {r}) in [−1, 1]; got "
                             f"{tuple(images.shape)} {images.dtype} (uint8 pictures: x.float() / 127.5 − 1)")

    def logits(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, res, res) → (B, K, grid, grid)."""
        self._check(images)
        return self.encoder(images)

    def decode_soft(self, z: torch.Tensor) -> torch.Tensor:
        """(Soft) one-hots (B, K, grid, grid) → the decoder's output (B, 9 or 3, res, res), see `outputs`."""
        emb = torch.einsum("bkhw,kd->bdhw", z, self.codebook)                     # (B, D, grid, grid)
        return self.decoder(emb)

    def pixels(self, out: torch.Tensor) -> torch.Tensor:
        """The decoder's output → images (B, 3, res, res) in [−1, 1]: the likeliest colour, or clamped values."""
        if self.config.recon == "palette":
            return WORLD_COLOURS.to(out.device)[out.argmax(1)].permute(0, 3, 1, 2)
        return out.clamp(-1, 1)

    @torch.no_grad()
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """Hard tokens: (B, 3, res, res) → long (B, grid, grid), the argmax of the logits."""
        return self.logits(images).argmax(1)

    @torch.no_grad()
    def decode(self, tokens: torch.Tensor) -> torch.Tensor:
        """Tokens (B, grid, grid) → images (B, 3, res, res) in [−1, 1] (clamped)."""
        if tokens.ndim != 3 or int(tokens.max()) >= self.config.codes or int(tokens.min()) < 0:
            raise InputError(f"tokens must be (B, {self.config.grid}, {self.config.grid}) ints in "
                             f"0..{self.config.codes - 1}; got {tuple(tokens.shape)}")
        z = F.one_hot(tokens, self.config.codes).permute(0, 3, 1, 2).float()      # (B, K, grid, grid)
        return self.pixels(self.decode_soft(z))

    def recon_loss(self, out: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
        """−log p(images | the decoder's output), per pixel: the cross-entropy against each pixel's
        world colour ("palette"), or the squared ("mse") or absolute ("l1") error."""
        if self.config.recon == "palette":
            return F.cross_entropy(out, colour_index(images))
        return (F.l1_loss if self.config.recon == "l1" else F.mse_loss)(out, images)

    def loss(self, images: torch.Tensor, tau: float, beta: float, generator=None) -> tuple[torch.Tensor, dict]:
        """The relaxed ELBO plus the diversity term, per pixel and per token:

        −log p(x | dec(gumbel_softmax(enc(x), τ))) + β·KL(q ‖ uniform) + diversity·KL(q̄ ‖ uniform),
        q̄ being q averaged over the batch and the grid; −log p is `recon_loss`; the diversity weight is
        `config.train.diversity` (τ and β come from the schedules, `temperature` and `kl_weight`).
        """
        logits = self.logits(images)                                               # (B, K, g, g)
        out = self.decode_soft(gumbel_softmax(logits, tau, generator=generator))   # (B, 9 or 3, res, res)
        recon = self.recon_loss(out, images)
        logq = F.log_softmax(logits, 1)
        q = logq.exp()                                                             # (B, K, g, g)
        kl = (q * (logq + math.log(self.config.codes))).sum(1).mean()              # per token, nats
        q_bar = q.mean((0, 2, 3))                                                  # (K,) the batch's code use
        kl_bar = (q_bar * (q_bar.clamp_min(1e-12).log() + math.log(self.config.codes))).sum()
        loss = recon + beta * kl + self.config.train.diversity * kl_bar
        return loss, {"recon": recon.item(), "kl": kl.item(), "kl_batch": kl_bar.item()}


def usage(tokens: torch.Tensor, codes: int) -> dict:
    """Codebook usage of a batch of tokens: perplexity exp(H) of the code histogram, and the share of codes used."""
    counts = torch.bincount(tokens.flatten(), minlength=codes).float()
    p = counts / counts.sum()
    entropy = -(p[p > 0] * p[p > 0].log()).sum()
    return {"perplexity": entropy.exp().item(), "used": (counts > 0).float().mean().item()}


# ---------------------------------------------------------------- training and the shipped model
def train(model: DVAE, name=None, resume: bool = False, show_progress: bool = True, on_log=None,
          state=None) -> dict:
    """Train the dVAE (lesson 08) in place, by its config, with the annealed τ and ramped β; `trainer.fit`
    does the rest (and saves to `name` if given). Returns fit's info."""
    c, tc = model.config, model.config.train
    pool = {}

    def images(step: int) -> torch.Tensor:                                    # (N, 3, res, res) in [−1, 1]
        k = step // POOL if tc.fresh else -1            # fresh pools depend only on the seed and the step: resumable
        if k not in pool:
            pool.clear()
            pool[k] = (fresh_images(POOL * tc.batch, c.res, 1_000_000 * (tc.seed + 1) + k, tc.contact) if tc.fresh
                       else training_images(tc.n_train, c.res, tc.seed, tc.contact))
        return pool[k]

    def batch_loss(step, gen):
        x = images(step)
        x = x[torch.randint(0, len(x), (tc.batch,), generator=gen)].to(model.codebook.device)
        loss, logs = model.loss(x, temperature(step, c), kl_weight(step, c), generator=gen)
        return loss, {**logs, "tau": temperature(step, c)}

    return fit(model, c, tc, batch_loss, name=name, state=state, resume=resume, show_progress=show_progress,
               on_log=on_log, desc="training dVAE", trained_on=trained_on())


def load(preset: str | None = None) -> DVAE:
    """The preset's trained dVAE (data/checkpoints/dvae-PRESET, built with the overrides it was trained with), in
    eval mode on the device; a CheckpointError naming `python -m minidalle train dvae` if there is none."""
    return checkpoint.load_model(DVAE, dvae_config(preset), checkpoint_name(preset), trained_on(preset), kind="dvae")
