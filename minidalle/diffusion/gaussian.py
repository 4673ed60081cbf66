"""Gaussian diffusion: noise schedules, the forward process, the losses, DDPM and DDIM samplers, guidance.

Lesson 03 builds this file piece by piece; lesson 04 adds classifier-free
guidance; lessons 05–06 reuse it unchanged for the unCLIP prior (a transformer
over embedding vectors) and the decoder/upsampler (a U-Net over images).

It is model-agnostic on purpose. A "model" is any callable
``model(x_t, t, **cond) -> tensor shaped like x_t`` and a sample `x` may have
any shape (B, ...): images (B, 3, H, W), embeddings (B, D), anything.

The papers, section by section:

- Ho, Jain & Abbeel 2020, *Denoising Diffusion Probabilistic Models* (DDPM):
  §2 the forward process q(x_t | x_0) = N(√ᾱ_t x_0, (1-ᾱ_t) I) (`q_sample`),
  §3.2 the reverse step with σ_t² = β̃_t (`ddpm_step`), §3.4 / eq. 14 the
  simplified ε-objective (`loss`), §4 the linear schedule β ∈ [1e-4, 0.02].
- Nichol & Dhariwal 2021, *Improved DDPM*, §3.2: the cosine schedule
  ᾱ_t = f(t)/f(0), f(t) = cos²(((t/T + s)/(1 + s)) · π/2), β clipped at 0.999.
- Song, Meng & Ermon 2021, *DDIM*, §4 (eq. 12): a non-Markovian sampler that
  skips steps; η = 0 is deterministic, η = 1 is DDPM-like (`ddim_step`).
- Salimans & Ho 2022, *Progressive Distillation*, §4: the v-parameterisation
  v = √ᾱ ε − √(1−ᾱ) x_0, offered beside ε and x_0.
- Ho & Salimans 2022, *Classifier-Free Diffusion Guidance*, and Nichol et al.
  2022 (GLIDE) §3.2: ε̂ = ε(x|∅) + s·(ε(x|c) − ε(x|∅)) (`classifier_free_guidance`).

Conventions match diffusers' `DDPMScheduler` / `DDIMScheduler` (``fixed_small``
variance, ``leading`` timestep spacing, ``steps_offset=0``,
``set_alpha_to_one=True``; DDIM with ``use_clipped_model_output=True``, as in
OpenAI's guided-diffusion code), and `tests/test_diffusion.py` checks that they agree
to 1e-6. Schedules are kept in float64 and cast to the sample's dtype on use.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from minidalle.runtime import progress


def linear_betas(timesteps: int, beta_start: float = 1e-4, beta_end: float = 0.02) -> torch.Tensor:
    """Ho et al. 2020 §4: β_t rising linearly from 1e-4 to 0.02 over T = 1000 steps. (T,) float64."""
    return torch.linspace(beta_start, beta_end, timesteps, dtype=torch.float64)


def cosine_betas(timesteps: int, s: float = 0.008, max_beta: float = 0.999) -> torch.Tensor:
    """Nichol & Dhariwal 2021 §3.2: β_t = 1 − ᾱ(t+1)/ᾱ(t) with ᾱ a squared cosine, clipped at 0.999.

    Adds noise more slowly at the start than the linear schedule, which at low
    resolution otherwise wastes its last steps on near-pure noise. (T,) float64.
    """
    t = torch.arange(timesteps + 1, dtype=torch.float64) / timesteps          # (T+1,)
    f = torch.cos((t + s) / (1 + s) * math.pi / 2) ** 2
    return (1 - f[1:] / f[:-1]).clamp(max=max_beta)


SCHEDULES = {"linear": linear_betas, "cosine": cosine_betas}
PREDICTIONS = ("eps", "x0", "v")


@dataclass(frozen=True)
class DiffusionConfig:
    """The diffusion process; the model is separate. Defaults: Ho et al. 2020's (T = 1000, linear, ε); every
    model of the course uses the cosine schedule, v-prediction and Min-SNR-5 (its family's `PRESETS`)."""

    timesteps: int = 1000
    schedule: str = "linear"           # "linear" | "cosine"
    prediction: str = "eps"            # what the model predicts: "eps" | "x0" | "v"
    clip_x0: bool = True               # clamp the predicted x_0 to [-1, 1] while sampling (images)
    min_snr: float = 0.0               # γ of Min-SNR-γ loss weighting (Hang et al. 2023); 0: the plain loss

    def __post_init__(self):
        if self.schedule not in SCHEDULES:
            raise ValueError(f"unknown schedule {self.schedule!r}; use one of {', '.join(SCHEDULES)}")
        if self.prediction not in PREDICTIONS:
            raise ValueError(f"unknown prediction {self.prediction!r}; use one of {', '.join(PREDICTIONS)}")
        if self.timesteps < 2:
            raise ValueError(f"timesteps must be at least 2, got {self.timesteps}")


def _at(values: torch.Tensor, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """values[t] (float64 (T,)) reshaped to broadcast over `like` (B, ...) and cast to its dtype."""
    t = torch.as_tensor(t, device=values.device).long().reshape(-1)
    out = values[t].to(device=like.device, dtype=like.dtype)
    return out.reshape(-1, *([1] * (like.dim() - 1)))


class Diffusion:
    """A Gaussian diffusion process: the forward process, the training loss and the samplers."""

    def __init__(self, config: DiffusionConfig | None = None):
        self.config = c = config or DiffusionConfig()
        self.T = c.timesteps
        self.betas = SCHEDULES[c.schedule](c.timesteps)                      # (T,)  β_t
        self.alphas = 1 - self.betas                                         # (T,)  α_t
        self.alphas_cumprod = torch.cumprod(self.alphas, 0)                  # (T,)  ᾱ_t
        prev = torch.cat([torch.ones(1, dtype=torch.float64), self.alphas_cumprod[:-1]])
        # σ_t² = β̃_t = (1 − ᾱ_{t−1}) / (1 − ᾱ_t) · β_t  (Ho et al. §3.2, "fixed small")
        self.posterior_variance = (1 - prev) / (1 - self.alphas_cumprod) * self.betas

    # ---------------------------------------------------------- forward process
    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """x_t = √ᾱ_t x_0 + √(1−ᾱ_t) ε: jump straight to step t (Ho et al. eq. 4). Shapes of x0."""
        a = _at(self.alphas_cumprod, t, x0)
        return a.sqrt() * x0 + (1 - a).sqrt() * noise

    def target(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """What the model is trained to output at (x_t, t): ε, x_0, or v = √ᾱ ε − √(1−ᾱ) x_0."""
        p = self.config.prediction
        if p == "eps":
            return noise
        if p == "x0":
            return x0
        a = _at(self.alphas_cumprod, t, x0)
        return a.sqrt() * noise - (1 - a).sqrt() * x0

    def loss(self, model, x0: torch.Tensor, generator: torch.Generator | None = None, **cond) -> torch.Tensor:
        """The simplified objective (Ho et al. eq. 14): E_{t, ε} ‖target − model(x_t, t)‖², t ~ U{0..T−1}.

        With `min_snr` = γ each sample's error is weighted so that, measured on x_0, step t counts
        min(SNR_t, γ) (Hang et al. 2023, "Efficient Diffusion Training via Min-SNR Weighting"): the
        nearly clean steps, which are easy and dominate the plain loss, stop crowding out the noisy ones.
        The result is a weighted mean over the batch.
        """
        B = x0.shape[0]
        t = torch.randint(0, self.T, (B,), generator=generator).to(x0.device)                   # (B,)
        noise = torch.randn(x0.shape, generator=generator, dtype=x0.dtype).to(x0.device)        # like x0
        out = model(self.q_sample(x0, t, noise), t, **cond)
        if not self.config.min_snr:
            return F.mse_loss(out, self.target(x0, t, noise))
        w = self.min_snr_weight(t)                                                               # (B,)
        err = (out - self.target(x0, t, noise)).pow(2).flatten(1).mean(1)                       # (B,)
        return (w * err).mean() / w.mean()

    def min_snr_weight(self, t: torch.Tensor) -> torch.Tensor:
        """min(SNR, γ) expressed for the prediction target: ε-error = SNR·x0-error, v-error = (SNR + 1)·x0-error."""
        a = self.alphas_cumprod.to(t.device)[t].float()
        snr = a / (1 - a)                                                                        # (B,)
        w = snr.clamp(max=self.config.min_snr)
        return {"x0": w, "eps": w / snr, "v": w / (snr + 1)}[self.config.prediction]

    # ---------------------------------------------------------- reverse process
    def predict_x0_eps(self, out: torch.Tensor, x_t: torch.Tensor, t) -> tuple[torch.Tensor, torch.Tensor]:
        """Turn a model output (ε, x_0 or v) at step t into the pair (x̂_0, ε̂). x̂_0 unclipped."""
        a = _at(self.alphas_cumprod, t, x_t)
        p = self.config.prediction
        if p == "eps":
            return (x_t - (1 - a).sqrt() * out) / a.sqrt(), out
        if p == "x0":
            return out, (x_t - a.sqrt() * out) / (1 - a).sqrt()
        return a.sqrt() * x_t - (1 - a).sqrt() * out, a.sqrt() * out + (1 - a).sqrt() * x_t

    def _clip(self, x0: torch.Tensor) -> torch.Tensor:
        return x0.clamp(-1, 1) if self.config.clip_x0 else x0

    def ddpm_step(self, out: torch.Tensor, x_t: torch.Tensor, t: int, noise: torch.Tensor | None,
                  t_prev: int | None = None) -> torch.Tensor:
        """One ancestral step x_t → x_{t_prev} (Ho et al. §3.2, Alg. 2), σ² = β̃ ("fixed small").

        Uses the posterior q(x_{t'} | x_t, x̂_0) = N(c_0 x̂_0 + c_t x_t, β̃) with x̂_0 from the model
        (clipped); t_prev defaults to t − 1, and may skip (a "respaced" DDPM). No noise at the last step.
        """
        t_prev = t - 1 if t_prev is None else t_prev
        a_t = float(self.alphas_cumprod[t])
        a_prev = float(self.alphas_cumprod[t_prev]) if t_prev >= 0 else 1.0
        alpha, beta = a_t / a_prev, 1 - a_t / a_prev                  # the step's own α and β
        x0, _ = self.predict_x0_eps(out, x_t, t)
        x0 = self._clip(x0)
        mean = (math.sqrt(a_prev) * beta / (1 - a_t)) * x0 + (math.sqrt(alpha) * (1 - a_prev) / (1 - a_t)) * x_t
        if t == 0:
            return mean
        var = max((1 - a_prev) / (1 - a_t) * beta, 1e-20)
        return mean + math.sqrt(var) * noise

    def ddim_step(self, out: torch.Tensor, x_t: torch.Tensor, t: int, t_prev: int, eta: float = 0.0,
                  noise: torch.Tensor | None = None) -> torch.Tensor:
        """One DDIM step x_t → x_{t_prev} (Song et al. §4.1, eq. 12).

        x_{t'} = √ᾱ_{t'} x̂_0 + √(1 − ᾱ_{t'} − σ²) ε̂ + σ z, with
        σ = η √((1−ᾱ_{t'})/(1−ᾱ_t)) √(1 − ᾱ_t/ᾱ_{t'}); ᾱ_{t'} = 1 past the end.

        When x̂_0 is clipped, ε̂ is re-derived from the clipped x̂_0, ε̂ = (x_t − √ᾱ_t x̂_0)/√(1−ᾱ_t), so
        that the two agree, as OpenAI's guided-diffusion code (GLIDE's, unCLIP's) does and diffusers
        does with `use_clipped_model_output=True`. With the model's own ε̂ instead, a guided prediction
        (s > 1) that overshoots [−1, 1] is pulled back in x̂_0 but not in ε̂: the step mixes two different
        pictures and, clipped channel by channel, the colours drift (lesson 04 shows both).
        """
        a_t = float(self.alphas_cumprod[t])
        a_prev = float(self.alphas_cumprod[t_prev]) if t_prev >= 0 else 1.0
        x0, eps = self._clipped_x0_eps(out, x_t, t)
        sigma = eta * math.sqrt((1 - a_prev) / (1 - a_t) * (1 - a_t / a_prev))
        x = math.sqrt(a_prev) * x0 + math.sqrt(max(1 - a_prev - sigma**2, 0.0)) * eps
        if eta > 0:
            x = x + sigma * noise
        return x

    def _clipped_x0_eps(self, out: torch.Tensor, x_t: torch.Tensor, t: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(x̂_0, ε̂) at integer step t, with x̂_0 clipped (if the config clips) and ε̂ re-derived to agree with it."""
        x0, eps = self.predict_x0_eps(out, x_t, t)
        if self.config.clip_x0:
            a_t = float(self.alphas_cumprod[t])
            x0 = x0.clamp(-1, 1)
            eps = (x_t - math.sqrt(a_t) * x0) / math.sqrt(1 - a_t)
        return x0, eps

    def ddim_timesteps(self, steps: int) -> list[int]:
        """`steps` evenly spaced timesteps, counting down: [T−k, …, k, 0] with k = T // steps ("leading")."""
        if not 1 <= steps <= self.T:
            raise ValueError(f"steps must be between 1 and {self.T}, got {steps}")
        k = self.T // steps
        return [i * k for i in reversed(range(steps))]

    # ---------------------------------------------------------- samplers
    @torch.no_grad()
    def sample(self, model, shape, steps: int | None = None, method: str = "ddpm", eta: float = 0.0,
               generator: torch.Generator | None = None, device=None, show_progress: bool = False,
               known: tuple | None = None, x_T: torch.Tensor | None = None, **cond) -> torch.Tensor:
        """Draw samples of `shape` (B, ...) from noise.

        method "ddpm": ancestral sampling over `steps` (default all T) timesteps;
        method "ddim": DDIM over `steps` (default 50) timesteps with noise level η.
        known = (x0, keep): inpainting by replacement (lesson 07; the simplest form of
        Lugmayr et al. 2022's RePaint): after every step the kept region (keep = 1) is
        reset to x0 noised to the new timestep, so only the rest is generated.
        x_T: start from this instead of fresh noise (the latent `invert` found, for variations).
        Returns x̂_0, roughly in [−1, 1] for image models.
        """
        if method not in ("ddpm", "ddim"):
            raise ValueError(f"unknown sampler {method!r}; use 'ddpm' or 'ddim'")
        steps = steps or (self.T if method == "ddpm" else 50)
        ts = self.ddim_timesteps(steps)
        x = torch.randn(shape, generator=generator).to(device)                                   # x_T
        if x_T is not None:
            x = x_T.to(device).expand(shape).clone()
        for i in progress(range(len(ts)), desc=f"{method} sampling", disable=not show_progress, leave=False):
            t, t_prev = ts[i], (ts[i + 1] if i + 1 < len(ts) else -1)
            tt = torch.full((shape[0],), t, dtype=torch.long, device=device)
            out = model(x, tt, **cond)
            z = torch.randn(shape, generator=generator).to(device) if (method == "ddpm" and t > 0) or eta > 0 else None
            if method == "ddpm":
                x = self.ddpm_step(out, x, t, z, t_prev)
            else:
                x = self.ddim_step(out, x, t, t_prev, eta, z)
            if known is not None:
                x0, keep = known
                if t_prev >= 0:
                    x0 = self.q_sample(x0, torch.full_like(tt, t_prev), torch.randn(shape, generator=generator).to(device))
                x = keep * x0 + (1 - keep) * x
        return x

    @torch.no_grad()
    def invert(self, model, x0: torch.Tensor, steps: int = 50, device=None, **cond) -> torch.Tensor:
        """DDIM inversion: the x_T from which DDIM with η = 0 and `steps` steps would draw `x0` (B, ...).

        Song et al. 2021 §4.3: with η = 0, DDIM is an ODE integrator, so it can be run the other way —
        x_{t'} = √ᾱ_{t'} x̂_0 + √(1 − ᾱ_{t'}) ε̂ for the next, *larger* t', with x̂_0, ε̂ the model's at x_t.
        unCLIP §3.1 makes variations this way: invert the decoder from the image and its CLIP embedding,
        then decode that x_T again with η > 0 (lesson 07). The timesteps are the sampler's, reversed, so the
        result is exactly where `sample(method="ddim", steps=steps)` starts.
        """
        ts = list(reversed(self.ddim_timesteps(steps)))                                         # [0, k, …, T − k]
        x = x0.to(device)
        for t, t_next in zip(ts[:-1], ts[1:]):
            tt = torch.full((len(x),), t, dtype=torch.long, device=device)
            a_next = float(self.alphas_cumprod[t_next])
            x0_hat, eps = self._clipped_x0_eps(model(x, tt, **cond), x, t)         # as the sampler's step does
            x = math.sqrt(a_next) * x0_hat + math.sqrt(1 - a_next) * eps
        return x


def classifier_free_guidance(model, scale: float, cond: dict, uncond: dict):
    """Ho & Salimans 2022; GLIDE (Nichol et al. 2022) §3.2: guide one model by its own unconditional self.

    Returns a model ``guided(x_t, t)`` that runs `model` once on a doubled batch
    — the first half with `cond`, the second with `uncond` (e.g. an empty
    caption) — and returns ε(x|∅) + s·(ε(x|c) − ε(x|∅)). s = 1 is the plain
    conditional model, s = 0 the unconditional one, s > 1 trades diversity for
    fidelity (lesson 04). Tensor entries of cond/uncond are concatenated along
    the batch; others must be equal and are passed once.
    """
    if scale == 1:
        return lambda x, t: model(x, t, **cond)

    both = {}
    for k in cond:
        a, b = cond[k], uncond[k]
        both[k] = torch.cat([a, b]) if isinstance(a, torch.Tensor) else a

    def guided(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        out_c, out_u = model(torch.cat([x, x]), torch.cat([t, t]), **both).chunk(2)
        return out_u + scale * (out_c - out_u)

    return guided
