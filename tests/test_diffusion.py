"""minidalle.diffusion.gaussian and minidalle.nn.unet: equivalence with diffusers, losses that fall, samplers, shapes.

The reference checks compare in float64 against diffusers' DDPMScheduler and
DDIMScheduler (a test-only peer, requirements-peers.txt) with the settings
minidalle follows: variance "fixed_small", "leading" timestep spacing,
steps_offset 0, set_alpha_to_one, clip_sample at 1, and for DDIM
use_clipped_model_output (ε̂ re-derived from the clipped x̂_0, as OpenAI's
guided-diffusion code does). The same model output and the same seeded noise
go into both.
"""
import math

import pytest
import torch

from minidalle.diffusion.gaussian import (Diffusion, DiffusionConfig, classifier_free_guidance, cosine_betas,
                                          linear_betas)
from minidalle.nn.unet import UNet, UNetConfig

TOL = 1e-6
DIFFUSERS_SCHEDULE = {"linear": "linear", "cosine": "squaredcos_cap_v2"}
DIFFUSERS_PREDICTION = {"eps": "epsilon", "x0": "sample", "v": "v_prediction"}


def _float64(ref, d: Diffusion):
    """Give a diffusers scheduler float64 tables, so that a step test compares the step formulas.

    diffusers rounds β to float32. For squaredcos_cap_v2 that moves 1 − β_999 = 0.001 by ~6e-5
    relative, and ᾱ_t, x̂_0 = x_t/√ᾱ_t with it, far beyond 1e-6. The schedules themselves are
    compared with diffusers' own float32 tables in `test_schedules_match_diffusers`; here both
    sides run on the same float64 β, and every other line of diffusers' step is its own.
    """
    assert _close(ref.betas, d.betas)                       # the same schedule, to float32 precision
    ref.betas = d.betas.clone()
    ref.alphas = 1.0 - ref.betas
    ref.alphas_cumprod = torch.cumprod(ref.alphas, 0)
    ref.one = torch.tensor(1.0, dtype=torch.float64)
    if hasattr(ref, "final_alpha_cumprod"):
        ref.final_alpha_cumprod = torch.tensor(1.0, dtype=torch.float64)
    return ref


def _ddpm(schedule, prediction="eps", clip=True):
    import diffusers
    return diffusers.DDPMScheduler(num_train_timesteps=1000, beta_schedule=DIFFUSERS_SCHEDULE[schedule],
                                   variance_type="fixed_small", clip_sample=clip, clip_sample_range=1.0,
                                   prediction_type=DIFFUSERS_PREDICTION[prediction],
                                   timestep_spacing="leading", steps_offset=0)


def _ddim(schedule, prediction="eps", clip=True):
    import diffusers
    return diffusers.DDIMScheduler(num_train_timesteps=1000, beta_schedule=DIFFUSERS_SCHEDULE[schedule],
                                   clip_sample=clip, clip_sample_range=1.0, set_alpha_to_one=True,
                                   prediction_type=DIFFUSERS_PREDICTION[prediction],
                                   timestep_spacing="leading", steps_offset=0)


def _close(a, b, tol=TOL) -> bool:
    """|a − b| ≤ tol·max(1, |b|) everywhere: absolute for values of order 1, relative for the huge
    unclipped x̂_0 = x_t/√ᾱ_t that the cosine schedule gives at t = 999 (ᾱ ≈ 1e-9)."""
    a, b = torch.as_tensor(a, dtype=torch.float64), torch.as_tensor(b, dtype=torch.float64)
    return bool(((a - b).abs() <= tol * b.abs().clamp(min=1)).all())


def _inputs(seed=0, shape=(4, 3, 8, 8)):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=g, dtype=torch.float64)
    out = torch.randn(shape, generator=g, dtype=torch.float64)
    return x, out


# ------------------------------------------------------------------ schedules
@pytest.mark.parametrize("schedule", ["linear", "cosine"])
def test_schedules_match_diffusers(schedule):
    ref = _ddpm(schedule)
    d = Diffusion(DiffusionConfig(schedule=schedule))
    assert _close(d.betas, ref.betas)
    assert _close(d.alphas_cumprod, ref.alphas_cumprod)


def test_wrong_schedule_is_caught():
    """The tolerance is tight enough to tell the schedules (and a slightly wrong β range) apart."""
    ref = _ddpm("linear")
    assert not _close(Diffusion(DiffusionConfig(schedule="cosine")).alphas_cumprod, ref.alphas_cumprod)
    assert not _close(linear_betas(1000, 1e-4, 0.0201), ref.betas)
    assert not _close(cosine_betas(1000, s=0.0), _ddpm("cosine").betas)


def test_schedule_properties():
    for betas in (linear_betas(1000), cosine_betas(1000)):
        assert betas.dtype == torch.float64 and betas.shape == (1000,)
        assert (betas > 0).all() and (betas <= 0.999).all()
        ac = torch.cumprod(1 - betas, 0)
        assert (ac[1:] < ac[:-1]).all() and ac[-1] < 1e-3     # ends (almost) at pure noise
    with pytest.raises(ValueError, match="schedule"):
        DiffusionConfig(schedule="quadratic")
    with pytest.raises(ValueError, match="prediction"):
        DiffusionConfig(prediction="score")


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
def test_add_noise_matches_diffusers(schedule):
    d = Diffusion(DiffusionConfig(schedule=schedule))
    ref = _float64(_ddpm(schedule), d)
    x0, noise = _inputs(1)
    t = torch.tensor([0, 10, 500, 999])
    assert _close(d.q_sample(x0, t, noise), ref.add_noise(x0, noise, t))


@pytest.mark.parametrize("prediction", ["eps", "v"])
def test_training_target_matches_diffusers(prediction):
    d = Diffusion(DiffusionConfig(schedule="cosine", prediction=prediction))
    ref = _float64(_ddpm("cosine", prediction), d)
    x0, noise = _inputs(2)
    t = torch.tensor([3, 100, 600, 998])
    want = noise if prediction == "eps" else ref.get_velocity(x0, noise, t)
    assert _close(d.target(x0, t, noise), want)


# ------------------------------------------------------------------ single steps
@pytest.mark.parametrize("schedule", ["linear", "cosine"])
@pytest.mark.parametrize("prediction", ["eps", "x0", "v"])
@pytest.mark.parametrize("clip", [True, False])
def test_ddpm_step_matches_diffusers(schedule, prediction, clip):
    d = Diffusion(DiffusionConfig(schedule=schedule, prediction=prediction, clip_x0=clip))
    ref = _float64(_ddpm(schedule, prediction, clip), d)
    ref.set_timesteps(1000)
    for t in (999, 500, 37, 1, 0):
        x, out = _inputs(t)
        noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(100 + t), dtype=torch.float64)
        want = ref.step(out, t, x, generator=torch.Generator().manual_seed(100 + t)).prev_sample
        assert _close(d.ddpm_step(out, x, t, noise), want), (t, schedule, prediction, clip)


def test_respaced_ddpm_step_matches_diffusers():
    d = Diffusion(DiffusionConfig())
    ref = _float64(_ddpm("linear"), d)
    ref.set_timesteps(50)
    assert d.ddim_timesteps(50) == ref.timesteps.tolist()
    for t in ref.timesteps[[0, 25, 49]].tolist():
        x, out = _inputs(t)
        noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(t), dtype=torch.float64)
        want = ref.step(out, t, x, generator=torch.Generator().manual_seed(t)).prev_sample
        assert _close(d.ddpm_step(out, x, t, noise, t_prev=t - 20), want)


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
@pytest.mark.parametrize("prediction", ["eps", "x0", "v"])
@pytest.mark.parametrize("eta", [0.0, 0.5, 1.0])
def test_ddim_step_matches_diffusers(schedule, prediction, eta):
    d = Diffusion(DiffusionConfig(schedule=schedule, prediction=prediction))
    ref = _float64(_ddim(schedule, prediction), d)
    ref.set_timesteps(25)
    ts = d.ddim_timesteps(25)
    assert ts == ref.timesteps.tolist()
    for i in (0, 12, 24):
        t, t_prev = ts[i], (ts[i + 1] if i + 1 < len(ts) else -1)
        x, out = _inputs(t)
        noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(7 + t), dtype=torch.float64)
        want = ref.step(out, t, x, eta=eta, use_clipped_model_output=True,
                        generator=torch.Generator().manual_seed(7 + t)).prev_sample
        assert _close(d.ddim_step(out, x, t, t_prev, eta, noise), want), (t, schedule, prediction, eta)


def test_wrong_sampler_is_caught():
    """A DDIM step is not a DDPM step, η matters, and a wrong previous timestep is noticed."""
    d = Diffusion(DiffusionConfig())
    ref = _float64(_ddim("linear"), d)
    ref.set_timesteps(25)
    x, out = _inputs(3)
    noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    want = ref.step(out, 480, x, eta=0.0, use_clipped_model_output=True).prev_sample
    assert _close(d.ddim_step(out, x, 480, 440), want)
    # ε̂ must come from the clipped x̂_0 (guided-diffusion's convention), not the model's own output
    assert not _close(d.ddim_step(out, x, 480, 440), ref.step(out, 480, x, eta=0.0).prev_sample)
    assert not _close(d.ddim_step(out, x, 480, 439), want)
    assert not _close(d.ddim_step(out, x, 480, 440, eta=0.5, noise=noise), want)
    assert not _close(d.ddpm_step(out, x, 480, noise, t_prev=440), want)


# ------------------------------------------------------------------ samplers
def _exact_eps(d: Diffusion, sigma: float):
    """The exact ε-predictor for data x_0 ~ N(0, σ² I): ε*(x_t) = √(1−ᾱ) x_t / (ᾱσ² + 1 − ᾱ)."""
    def model(x, t):
        a = d.alphas_cumprod[t].to(x.dtype).view(-1, *([1] * (x.dim() - 1)))
        return (1 - a).sqrt() * x / (a * sigma**2 + 1 - a)
    return model


@pytest.mark.parametrize("method,steps", [("ddpm", None), ("ddim", 50), ("ddim", 100)])
def test_samplers_recover_a_gaussian(method, steps):
    """With the exact denoiser, samples have the data's spread (any shape: here (B, 2) vectors)."""
    d = Diffusion(DiffusionConfig(schedule="cosine", clip_x0=False))
    sigma = 0.5
    x = d.sample(_exact_eps(d, sigma), (4000, 2), steps=steps, method=method, eta=1.0 if method == "ddpm" else 0.0,
                 generator=torch.Generator().manual_seed(0))
    assert x.shape == (4000, 2)
    assert abs(float(x.std()) - sigma) < 0.03 and abs(float(x.mean())) < 0.03


def test_ddim_inversion_finds_the_latent_that_draws_the_data_back():
    """unCLIP §3.1's variations: with the exact denoiser, inverting data gives x_T ~ N(0, I) (the noise the sampler
    starts from), and DDIM with η = 0 from that x_T draws the data back, up to an error of the first order in the
    step size (each of the two runs reads the model at the other end of every step): halved by twice the steps."""
    d = Diffusion(DiffusionConfig(schedule="cosine", clip_x0=False))
    sigma, model = 0.5, _exact_eps(d, 0.5)
    x0 = torch.randn(4000, 2, generator=torch.Generator().manual_seed(1)) * sigma
    err = {}
    for steps in (50, 100):
        x_T = d.invert(model, x0, steps=steps)
        assert abs(float(x_T.std()) - 1) < 0.05
        back = d.sample(model, x0.shape, steps=steps, method="ddim", x_T=x_T)
        err[steps] = float((back - x0).abs().mean())
    assert err[50] < 0.07 * sigma and 0.4 < err[100] / err[50] < 0.6, err        # 0.048 σ, then half of it
    fresh = d.sample(model, x0.shape, steps=50, method="ddim", generator=torch.Generator().manual_seed(2))
    assert float((fresh - x0).abs().mean()) > 10 * err[50]                        # without the latent: other data


def test_samplers_return_the_right_shapes_and_range():
    d = Diffusion(DiffusionConfig(timesteps=100))
    model = lambda x, t: torch.randn_like(x) * 3                            # a terrible model
    for method in ("ddpm", "ddim"):
        x = d.sample(model, (3, 3, 8, 8), steps=10, method=method, generator=torch.Generator().manual_seed(0))
        assert x.shape == (3, 3, 8, 8) and torch.isfinite(x).all()
        assert x.abs().max() <= 1 + 1e-6                                    # x̂_0 is clipped at the last step
    with pytest.raises(ValueError, match="sampler"):
        d.sample(model, (1, 2), method="euler")
    with pytest.raises(ValueError, match="steps"):
        d.ddim_timesteps(0)


@pytest.mark.parametrize("prediction", ["eps", "x0", "v"])
def test_loss_falls_on_a_tiny_problem(prediction):
    """A small MLP learns to denoise 2-D points from two clusters: the loss falls by a clear margin."""
    torch.manual_seed(0)
    d = Diffusion(DiffusionConfig(timesteps=100, schedule="cosine", prediction=prediction))
    net = torch.nn.Sequential(torch.nn.Linear(3, 64), torch.nn.SiLU(), torch.nn.Linear(64, 64), torch.nn.SiLU(),
                              torch.nn.Linear(64, 2))
    model = lambda x, t: net(torch.cat([x, (t.float() / 100).unsqueeze(1)], 1))
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(0)
    centres = torch.tensor([[0.6, 0.6], [-0.6, -0.4]])
    losses = []
    for step in range(300):
        x0 = centres[torch.randint(0, 2, (256,), generator=g)] + 0.05 * torch.randn(256, 2, generator=g)
        loss = d.loss(model, x0, generator=g)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    first, last = sum(losses[:20]) / 20, sum(losses[-20:]) / 20
    assert last < 0.8 * first, (first, last)


def test_min_snr_weights_the_same_x0_error_alike_for_every_target():
    """A model off by δ in x_0 is off by √SNR·δ in ε and √(SNR+1)·δ in v; Min-SNR-γ must weigh
    all three as min(SNR, γ)·δ², and leave γ = 0 as the plain loss."""
    t = torch.tensor([0, 100, 400, 700, 990])
    weighted = {}
    for p in ("x0", "eps", "v"):
        d = Diffusion(DiffusionConfig(schedule="cosine", prediction=p, min_snr=5.0))
        a = d.alphas_cumprod[t].float()
        snr = a / (1 - a)
        err = {"x0": torch.ones(5), "eps": snr, "v": snr + 1}[p]                # squared error for δ = 1
        weighted[p] = d.min_snr_weight(t) * err
    expected = torch.minimum(snr, torch.tensor(5.0))                           # the same schedule for all three
    for p in ("x0", "eps", "v"):
        assert torch.allclose(weighted[p], expected, rtol=1e-5), (p, weighted[p], expected)
    assert expected[0] == 5.0 and expected[-1] < 0.01                          # clean steps capped, noisy ones small

    x0 = torch.rand(4, 3, 8, 8) * 2 - 1
    model = lambda x, t: torch.zeros_like(x)                                    # noqa: E731
    plain = Diffusion(DiffusionConfig(prediction="v"))
    weighted_loss = Diffusion(DiffusionConfig(prediction="v", min_snr=5.0))
    g = lambda: torch.Generator().manual_seed(0)                                # noqa: E731
    assert plain.loss(model, x0, g()) != weighted_loss.loss(model, x0, g())


def test_classifier_free_guidance_combines_outputs():
    model = lambda x, t, c: x + c                                        # output shifts with the condition
    x, t = torch.zeros(2, 3), torch.zeros(2, dtype=torch.long)
    c, u = torch.full((2, 3), 2.0), torch.zeros(2, 3)
    for s in (0.0, 1.0, 3.0):
        g = classifier_free_guidance(model, s, {"c": c}, {"c": u})
        assert torch.allclose(g(x, t), u + s * (c - u))


# ------------------------------------------------------------------ the U-Net
def test_unet_config_is_frozen_and_checked():
    with pytest.raises(AttributeError):
        UNetConfig().channels = 8
    with pytest.raises(ValueError, match="cannot be halved"):
        UNetConfig(res=18, mults=(1, 2, 2))


def test_unet_shapes_unconditional():
    net = UNet(UNetConfig(channels=16, mults=(1, 2), attn_res=(8,), res=16))
    x = torch.randn(2, 3, 16, 16)
    out = net(x, torch.tensor([0, 999]))
    assert out.shape == x.shape


def test_unet_shapes_conditional():
    cfg = UNetConfig(channels=16, mults=(1, 2, 2), attn_res=(8, 4), res=16, cond_dim=24, context_dim=20, out_ch=6)
    net = UNet(cfg)
    with torch.no_grad():                     # the zero-initialised output layers would hide every path
        for p in net.parameters():
            if not p.any():
                p.normal_(0, 0.05)
    x = torch.randn(3, 3, 16, 16)
    t = torch.tensor([5, 50, 500])
    vec, ctx = torch.randn(3, 24), torch.randn(3, 7, 20)
    mask = torch.ones(3, 7, dtype=torch.bool)
    mask[0, 3:] = False
    out = net(x, t, cond=vec, context=ctx, context_mask=mask)
    assert out.shape == (3, 6, 16, 16)
    # the conditioning reaches the output through both paths
    assert not torch.allclose(out, net(x, t, cond=torch.zeros_like(vec), context=ctx, context_mask=mask))
    assert not torch.allclose(out, net(x, t, cond=vec, context=torch.zeros_like(ctx), context_mask=mask))
    # masked-out context tokens are ignored
    ctx2 = ctx.clone()
    ctx2[0, 5] += 10
    assert torch.allclose(out[0], net(x, t, cond=vec, context=ctx2, context_mask=mask)[0], atol=1e-5)


def test_unet_with_diffusion_loss_backward():
    net = UNet(UNetConfig(channels=8, mults=(1, 2), attn_res=(4,), res=8, groups=4))
    d = Diffusion(DiffusionConfig(timesteps=50))
    loss = d.loss(net, torch.rand(2, 3, 8, 8) * 2 - 1)
    loss.backward()
    assert math.isfinite(loss.item())
    assert all(p.grad is not None for p in net.parameters())
