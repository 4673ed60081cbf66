"""minidalle's unCLIP diffusion prior against lucidrains' dalle2-pytorch `DiffusionPriorNetwork` (COURSE.md, lesson 05).

    python benchmarks/bench_prior.py [--preset cpu] [--iters 10] [--batch 64] [--threads N]

Times, in one process on the same inputs, (1) a training step (forward + x0-prediction
MSE + backward + AdamW, batch 64) and (2) sampling: 64 DDIM steps for 64 captions × 2
candidates, i.e. 64 forward passes on a batch of 128 without gradients. Each measurement
alternates the implementations (ours, theirs, ours, …) and reports medians, so a noisy
machine slows both alike. Ratios are peer time / minidalle time: above 1.0× minidalle is
faster. Parameters and GFLOP per step are printed.

The peer network's transformer width is tied to its input size (`dim` = the embedding
size, 64 at the cpu preset, where ours runs 128 wide), so it is wrapped like ours: a
learned embedding of the same caption token ids (its `text_encodings`, width W) and
linear maps from the D-dim noised image and text embeddings into W, and from its output
back to D. Inside, `DiffusionPriorNetwork(dim=W)` gets our depth, heads and head size,
a learned timestep table of our T steps, `max_text_len` = our text length (its default
256 would pad every sequence to 256 + 4) and no rotary embedding (ours has none; its
relative position bias stays). It keeps its multi-query attention, SwiGLU feed-forward
(ff_mult 8/3, so its two-matrix gate holds the 8W² weights of our GELU MLP), final
projection and a learned (T, W) timestep table where ours has a sinusoid + MLP: parameter
counts land within a few % (both are printed). Both sides train
through the same `Diffusion.loss` (same t, noise, x_t and x0 target), and are sampled by
the same DDIM loop (`Diffusion.sample`, guidance 1), so the sampling ratio compares the
networks like for like; `minidalle.dalle2.prior.sample` (also duplicating captions, building the
null caption and keeping the candidate closer to the text) is timed as an extra row.
The peer computes attention with einsum, ours with SDPA. Caption tokens are random ids
in 1..V−1 (no padding: the peer would swap all-zero encodings for its null ones).
Needs the test-only peer in requirements-peers.txt.
"""
import argparse
import warnings

import torch
from common import gflop, time_alternately, train_step
from torch import nn


class PeerPrior(nn.Module):
    """dalle2-pytorch's DiffusionPriorNetwork behind minidalle's interface and width (see the docstring).

    forward(z_t (B, D), t (B,), tokens (B, L), text_emb (B, D)) → predicted clean embedding (B, D).
    """

    def __init__(self, c, DiffusionPriorNetwork):
        super().__init__()
        W = c.width
        self.token_emb = nn.Embedding(c.vocab, W)                                   # its text_encodings
        self.text_in, self.z_in = nn.Linear(c.embed_dim, W), nn.Linear(c.embed_dim, W)   # D → W, as ours
        self.out = nn.Linear(W, c.embed_dim)                                                 # W → D, as ours
        self.net = DiffusionPriorNetwork(dim=W, depth=c.layers, heads=c.heads, dim_head=W // c.heads,
                                         num_timesteps=c.diffusion.timesteps, max_text_len=c.text_len,
                                         rotary_emb=False, ff_mult=8 / 3)         # SwiGLU of our MLP's size

    def forward(self, z_t, t, tokens, text_emb):
        y = self.net(self.z_in(z_t), t, text_embed=self.text_in(text_emb), text_encodings=self.token_emb(tokens))
        return self.out(y)                                                          # (B, D)


def main():
    with warnings.catch_warnings(record=True):          # swallow the warnings of dalle2-pytorch's import
        warnings.simplefilter("ignore")                  # (its dependencies re-add filters, so record them)
        from importlib.metadata import version
        from dalle2_pytorch import DiffusionPriorNetwork

    from minidalle.dalle2.prior import Prior, prior_config, sample
    from minidalle.diffusion.gaussian import Diffusion
    from minidalle.runtime import device

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="cpu", choices=("ci", "cpu", "gpu"))
    ap.add_argument("--iters", type=int, default=10, help="timed calls per implementation and measurement")
    ap.add_argument("--batch", type=int, default=64, help="training batch and sampling captions (× 2 candidates)")
    ap.add_argument("--steps", type=int, default=64, help="DDIM steps when sampling")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: leave torch's choice)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads or torch.get_num_threads())
    torch.manual_seed(0)
    dev, B = device(), args.batch
    c = prior_config(args.preset)
    print(f"unCLIP prior, preset {args.preset}, {torch.get_num_threads()} torch thread(s), device {dev}, "
          f"torch {torch.__version__}, dalle2-pytorch {version('dalle2-pytorch')}")

    model, peer = Prior(c).to(dev), PeerPrior(c, DiffusionPriorNetwork).to(dev)
    diffusion = Diffusion(c.diffusion)
    tokens = torch.randint(1, c.vocab, (B, c.text_len), device=dev)                   # (B, L), no padding
    text = torch.randn(B, c.embed_dim, device=dev)                                    # (B, D)
    x0 = torch.randn(B, c.embed_dim, device=dev)                                      # (B, D), unit variance (×√D)

    def loss_of(net, seed):                              # same t and noise on both sides: one generator each
        gen = torch.Generator().manual_seed(seed)
        return lambda: diffusion.loss(net, x0, generator=gen, tokens=tokens, text_emb=text)

    # (1) training step
    n = [sum(p.numel() for p in m.parameters() if p.requires_grad) for m in (model, peer)]
    f = [gflop(loss_of(model, 0)), gflop(loss_of(peer, 0))]
    t = time_alternately({"ours": train_step(model, loss_of(model, 1)), "peer": train_step(peer, loss_of(peer, 1))},
              args.iters)
    print(f"prior (width {c.width}, {c.layers} layers, {c.heads} heads, embeddings of {c.embed_dim}, "
          f"{c.text_len} tokens + 4 slots)\n  parameters: minidalle {n[0]:,}   dalle2-pytorch {n[1]:,}   "
          f"GFLOP per step: {f[0]:.2f} vs {f[1]:.2f}")
    print(f"  training step, batch {B}:  minidalle {t['ours'] * 1e3:7.1f} ms   dalle2-pytorch "
          f"{t['peer'] * 1e3:7.1f} ms   ratio {t['peer'] / t['ours']:.2f}×  (target ≥ 1.0×)")

    # (2) sampling: the same DDIM loop drives both networks on B captions × 2 candidates
    model.eval(); peer.eval()
    tok2, txt2 = tokens.repeat_interleave(2, 0), text.repeat_interleave(2, 0)       # (2B, L), (2B, D)

    def ddim(net):
        return lambda: diffusion.sample(lambda x, tt: net(x, tt, tok2, txt2), (2 * B, c.embed_dim),
                                        steps=args.steps, method="ddim",
                                        generator=torch.Generator().manual_seed(0), device=dev)

    def ours_full():                                     # dalle2.prior.sample: 2 candidates, keeps the closer
        return sample(model, tokens, text, candidates=2, steps=args.steps)

    with torch.no_grad():
        t = time_alternately({"minidalle, DDIM loop": ddim(model), "dalle2-pytorch, DDIM loop": ddim(peer),
                   "minidalle, prior.sample": ours_full}, args.iters)
    print(f"sampling, {args.steps} DDIM steps × {B} captions × 2 candidates "
          f"({args.steps} forwards on batch {2 * B}):")
    for k, v in t.items():
        print(f"  {k:27s} {v * 1e3:8.1f} ms   {2 * B / v:8.0f} embeddings/s")
    print(f"  ratio, same DDIM loop: {t['dalle2-pytorch, DDIM loop'] / t['minidalle, DDIM loop']:.2f}×  "
          f"(target ≥ 1.0×)")


if __name__ == "__main__":
    main()
