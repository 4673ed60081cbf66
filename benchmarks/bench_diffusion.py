"""minidalle's U-Net and DDIM sampler against diffusers' UNet2DModel and DDIMScheduler (book/design.md).

    python benchmarks/bench_diffusion.py [--preset cpu] [--iters 10]

Both U-Nets get the same input (16×16 at the cpu preset), batch and optimizer, at
matched parameter counts (diffusers' block widths are chosen to land near
minidalle's count; both counts are printed). Reported as ratios
(diffusers time / minidalle time): above 1.0× minidalle is faster.
Needs the test-only peer in requirements-peers.txt.
"""
import argparse
import time

import torch


def _time(fn, iters: int, warmup: int = 2) -> float:
    for _ in range(warmup):
        fn()
    t = time.perf_counter()
    for _ in range(iters):
        fn()
    return (time.perf_counter() - t) / iters


def main():
    from diffusers import DDIMScheduler, UNet2DModel

    from minidalle.diffusion.ddpm import ddpm_config
    from minidalle.diffusion.gaussian import Diffusion
    from minidalle.nn.unet import UNet, count_parameters

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default=None)
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--ddim-steps", type=int, default=25)
    args = ap.parse_args()
    torch.manual_seed(0)
    cfg = ddpm_config(args.preset)
    res, B = cfg.unet.res, args.batch
    ours = UNet(cfg.unet)
    c = cfg.unet.channels
    theirs = UNet2DModel(sample_size=res, in_channels=3, out_channels=3, layers_per_block=1,
                         block_out_channels=tuple(c * m for m in cfg.unet.mults), norm_num_groups=cfg.unet.groups,
                         down_block_types=("DownBlock2D",) * (len(cfg.unet.mults) - 1) + ("AttnDownBlock2D",),
                         up_block_types=("AttnUpBlock2D",) + ("UpBlock2D",) * (len(cfg.unet.mults) - 1),
                         attention_head_dim=cfg.unet.head_dim)
    print(f"parameters: minidalle {count_parameters(ours):,}   diffusers {count_parameters(theirs):,}   "
          f"({res}×{res}, batch {B}, {torch.get_num_threads()} threads)")
    d = Diffusion(cfg.diffusion)
    x = torch.rand(B, 3, res, res) * 2 - 1

    def step(model, call):
        opt = torch.optim.AdamW(model.parameters(), 1e-4)

        def run():
            t = torch.randint(0, 1000, (B,))
            noise = torch.randn_like(x)
            loss = ((call(model, d.q_sample(x, t, noise), t) - noise) ** 2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        return run

    t_ours = _time(step(ours, lambda m, xt, t: m(xt, t)), args.iters)
    t_theirs = _time(step(theirs, lambda m, xt, t: m(xt, t).sample), args.iters)
    print(f"training step:  minidalle {t_ours * 1e3:7.1f} ms   diffusers {t_theirs * 1e3:7.1f} ms   "
          f"ratio {t_theirs / t_ours:.2f}×")

    n = args.ddim_steps
    sched = DDIMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2", clip_sample=True,
                          set_alpha_to_one=True, steps_offset=0)

    @torch.no_grad()
    def ddim_theirs():
        sched.set_timesteps(n)
        xt = torch.randn(B, 3, res, res)
        for t in sched.timesteps:
            xt = sched.step(theirs(xt, t).sample, t, xt).prev_sample

    ours.eval(); theirs.eval()
    s_ours = _time(lambda: d.sample(ours, (B, 3, res, res), steps=n, method="ddim"), max(1, args.iters // 5), 1)
    s_theirs = _time(ddim_theirs, max(1, args.iters // 5), 1)
    print(f"DDIM {n} steps:  minidalle {B / s_ours:7.1f} img/s   diffusers {B / s_theirs:7.1f} img/s   "
          f"ratio {s_theirs / s_ours:.2f}×")


if __name__ == "__main__":
    main()
