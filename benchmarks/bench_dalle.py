"""minidalle's DALL·E 1 (dVAE + transformer) against lucidrains' dalle-pytorch (COURSE.md, lessons 08–09).

    python benchmarks/bench_dalle.py [--preset cpu] [--iters 10] [--threads N]

Times, in one process on the same inputs, (1) a dVAE and (2) a transformer
training step (forward + backward + AdamW, batch 32) and (3) sampling 64 image
tokens for 16 prompts (top-k 32), decoded to pixels on both sides. Each
measurement alternates the implementations (ours, theirs, ours, …) and reports
medians, so a noisy machine slows both alike. Ratios are peer time / minidalle
time: above 1.0× minidalle is faster. Parameters and GFLOP per step are printed.

The peer dVAE (our width and codebook, one resblock) lands near our parameter
count (both are printed); its convolutions run at 8×8 only, ours also at 16×16.
The peer transformer gets our width, depth, heads, text length and vocabulary,
full causal attention, learned positions and no token shift, but keeps its GEGLU
feed-forward and joint text + image logits head: ~30% more parameters (its frozen
dVAE not counted). dalle-pytorch 1.6.6's `generate_images` drops its cache at
cond_scale = 1 (`forward_with_cond_scale` does not pass it on), so `use_cache=True`
runs uncached; the "working cache" row runs the same loop with the cache reaching
the peer's forward: the fair match for minidalle's cached sampler.
Needs the test-only peer in requirements-peers.txt.
"""
import argparse
import warnings

import torch
from common import gflop, time_alternately, train_step


def _versus(title, ours, ours_loss, peer, peer_loss, iters, batch):
    """Print parameters (trainable), GFLOP per step, and alternately timed training steps of the two models."""
    n = [sum(p.numel() for p in m.parameters() if p.requires_grad) for m in (ours, peer)]
    f = [gflop(ours_loss), gflop(peer_loss)]
    t = time_alternately({"ours": train_step(ours, ours_loss), "peer": train_step(peer, peer_loss)}, iters)
    print(f"{title}\n  parameters: minidalle {n[0]:,}   dalle-pytorch {n[1]:,}   "
          f"GFLOP per step: {f[0]:.1f} vs {f[1]:.1f}")
    print(f"  training step, batch {batch}:  minidalle {t['ours'] * 1e3:7.1f} ms   dalle-pytorch "
          f"{t['peer'] * 1e3:7.1f} ms   ratio {t['peer'] / t['ours']:.2f}×  (target ≥ 1.0×)")


def main():
    with warnings.catch_warnings(record=True):          # swallow the deprecation warnings of dalle-pytorch's
        warnings.simplefilter("ignore")                  # import (lightning re-adds filters, so record them)
        import dalle_pytorch
        from dalle_pytorch import DiscreteVAE
        from dalle_pytorch.dalle_pytorch import gumbel_sample, top_k

    from minidalle.dalle1.dvae import DVAE, dvae_config
    from minidalle.dalle1.transformer import DALLE, dalle_config, sample_tokens
    from minidalle.runtime import device

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="cpu", choices=("ci", "cpu", "gpu"))
    ap.add_argument("--iters", type=int, default=10, help="timed calls per implementation and measurement")
    ap.add_argument("--batch", type=int, default=32, help="training batch")
    ap.add_argument("--prompts", type=int, default=16, help="sampling batch")
    ap.add_argument("--top-k", type=int, default=32)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: leave torch's choice)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads or torch.get_num_threads())
    torch.manual_seed(0)
    dev, B = device(), args.batch
    vc, dc = dvae_config(args.preset), dalle_config(args.preset)
    peer_vae_kw = {"image_size": vc.res, "num_tokens": vc.codes, "num_layers": 2, "hidden_dim": vc.channels,
                   "codebook_dim": vc.code_dim, "num_resnet_blocks": 1, "kl_div_loss_weight": vc.train.kl_max}
    print(f"DALL·E 1, preset {args.preset}, {torch.get_num_threads()} torch thread(s), device {dev}, "
          f"torch {torch.__version__}, dalle-pytorch {dalle_pytorch.__version__}")

    # (1) dVAE training step on the same images; ours reads [−1, 1], the peer [0, 1] (it normalises inside)
    vae, peer_vae = DVAE(vc).to(dev), DiscreteVAE(**peer_vae_kw).to(dev)
    x = torch.rand(B, 3, vc.res, vc.res, device=dev)                            # (B, 3, 32, 32) in [0, 1]
    _versus(f"dVAE ({vc.res}×{vc.res} → {vc.grid}×{vc.grid} of {vc.codes} codes)",     # τ = 0.5 on both sides
            vae, lambda: vae.loss(x * 2 - 1, 0.5, vc.train.kl_max)[0],
            peer_vae, lambda: peer_vae(x, return_loss=True, temp=0.5), args.iters, B)

    # (2) transformer training step; both treat text id 0 as padding (one pad token per position)
    model = DALLE(dc).to(dev)
    peer = dalle_pytorch.DALLE(dim=dc.width, vae=DiscreteVAE(**peer_vae_kw), num_text_tokens=dc.text_vocab,
                     text_seq_len=dc.text_len, depth=dc.layers, heads=dc.heads, dim_head=dc.width // dc.heads,
                     rotary_emb=False, attn_types=("full",), shift_tokens=False).to(dev)   # its own dVAE is frozen

    def captions(b):                                     # (b, T) ids in 2..V−1, then 0 (pad) after a random length
        ids = torch.randint(2, dc.text_vocab, (b, dc.text_len))
        ids[torch.arange(dc.text_len)[None] >= torch.randint(3, dc.text_len, (b, 1))] = 0
        return ids.to(dev)

    text, image = captions(B), torch.randint(0, dc.codes, (B, dc.grid ** 2), device=dev)   # (B, T), (B, 64)
    _versus(f"transformer (width {dc.width}, {dc.layers} layers, {dc.heads} heads, {dc.text_len} + {dc.grid ** 2} "
            "tokens; the peer's frozen dVAE not counted)",
            model, lambda: model.loss(text, image)[0], peer, lambda: peer(text, image, return_loss=True), args.iters, B)

    # (3) sampling 64 tokens for P prompts, top-k 32 on both sides, then decoding to pixels
    model.eval(); peer.eval(); vae.eval()
    P, T = args.prompts, dc.text_len
    prompt = captions(P)                                                        # (P, T)
    # the peer keeps the top (1 − thres) share of all its logits (text ones are masked to −max): k = top_k
    thres = 1 - (args.top_k + 0.5) / peer.total_tokens

    def ours(cache):
        def run():
            tok = sample_tokens(model, prompt, top_k=args.top_k, use_cache=cache,
                                generator=torch.Generator().manual_seed(0))     # (P, 64)
            return vae.decode(tok.view(P, dc.grid, dc.grid))                     # (P, 3, 32, 32)
        return run

    def theirs(cache):                                                          # → (P, 3, 32, 32)
        return lambda: peer.generate_images(prompt.clone(), filter_thres=thres, use_cache=cache)

    @torch.no_grad()
    def theirs_cached():             # generate_images' loop, but with the cache reaching forward (see the docstring)
        out, cache = prompt.clone(), {}                                         # (P, T), then + one token a step
        for _ in range(dc.grid ** 2):
            logits = peer(out[:, :T], out[:, T:], cache=cache)[:, -1]           # (P, text + image vocabulary)
            nxt = gumbel_sample(top_k(logits, thres=thres), dim=-1) - peer.num_text_tokens
            out = torch.cat((out, nxt[:, None]), -1)
        return peer.vae.decode(out[:, T:])                                      # (P, 3, 32, 32)

    t = time_alternately({"minidalle, cache": ours(True), "dalle-pytorch, use_cache=True": theirs(True),
               "minidalle, no cache": ours(False), "dalle-pytorch, use_cache=False": theirs(False),
               "dalle-pytorch, working cache": theirs_cached}, args.iters)
    print(f"sampling {dc.grid ** 2} image tokens × {P} prompts (top-k {args.top_k}, decoded to pixels):")
    for k, v in t.items():
        print(f"  {k:31s} {v * 1e3:8.1f} ms   {P * dc.grid ** 2 / v:8.0f} tokens/s")
    for k in (k for k in t if k.startswith("dalle")):
        print(f"  ratio minidalle (cache) vs {k}: {t[k] / t['minidalle, cache']:.2f}×  (target ≥ 3×)")


if __name__ == "__main__":
    main()
