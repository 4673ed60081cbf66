"""Training-step throughput: minidalle CLIP vs open_clip.CLIP at the same config and batch (target ≥ 1.0×)

Run:  python benchmarks/bench_clip.py [--preset cpu] [--batch 128] [--steps 20] [--threads 1]

Builds `minidalle.clip.model.CLIP` from the preset's config and an `open_clip.CLIP`
of identical size (same widths, depths, heads, patch, context, vocabulary,
GELU; each with its own random initialisation, which does not change the
cost), and times full training steps — forward of both towers, the symmetric
loss, backward, AdamW — on the same images and tokens, alternating the two
models so that a noisy machine slows both alike. Prints pairs per second and
the ratio minidalle / open_clip (> 1: minidalle is faster). No weights are
downloaded. Both models see the full context (no padding cut), so the ratio
compares the implementations, not minidalle's training-time trimming.
"""
import argparse
import statistics
import time

import torch


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="cpu", choices=("ci", "cpu", "gpu"))
    ap.add_argument("--batch", type=int, default=None, help="pairs per step (default: the preset's batch size)")
    ap.add_argument("--steps", type=int, default=20, help="timed steps per model")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    import open_clip
    from open_clip.model import CLIPTextCfg, CLIPVisionCfg

    from minidalle.clip.model import CLIP, clip_config
    from minidalle.runtime import device

    c = clip_config(args.preset)
    B = args.batch or c.train.batch
    dev = device()
    torch.manual_seed(0)
    ours = CLIP(c).to(dev)
    theirs = open_clip.CLIP(
        c.embed_dim,
        vision_cfg=CLIPVisionCfg(layers=c.vision_layers, width=c.vision_width,
                                 head_width=c.vision_width // c.vision_heads, mlp_ratio=c.mlp_ratio,
                                 patch_size=c.patch_size, image_size=c.image_size),
        text_cfg=CLIPTextCfg(context_length=c.context_length, vocab_size=c.vocab_size, width=c.text_width,
                             heads=c.text_heads, layers=c.text_layers, mlp_ratio=c.mlp_ratio),
        quick_gelu=c.quick_gelu).to(dev)
    n_ours, n_theirs = (sum(p.numel() for p in m.parameters()) for m in (ours, theirs))
    loss_ref = open_clip.loss.ClipLoss()

    g = torch.Generator().manual_seed(1)
    images = torch.rand(B, 3, c.image_size, c.image_size, generator=g).to(dev)
    tokens = torch.randint(2, c.vocab_size - 2, (B, c.context_length), generator=g)
    ends = torch.randint(4, c.context_length, (B,), generator=g)
    tokens[torch.arange(B), ends] = c.eot_id                   # one <eot> per row (the highest id), then padding
    tokens[torch.arange(c.context_length)[None] > ends[:, None]] = 0
    tokens = tokens.to(dev)

    def step_ours(opt):
        loss = ours.loss(images, tokens)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    def step_theirs(opt):
        # open_clip expects normalised images; normalising costs the same on both sides
        img, txt, scale = theirs((images - 0.5) / 0.5, tokens)
        loss = loss_ref(img, txt, scale)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    opts = [torch.optim.AdamW(m.parameters(), lr=1e-4) for m in (ours, theirs)]
    for _ in range(3):                                        # warm-up
        step_ours(opts[0])
        step_theirs(opts[1])
    times = {"minidalle": [], "open_clip": []}
    for _ in range(args.steps):
        for name, fn, opt in (("minidalle", step_ours, opts[0]), ("open_clip", step_theirs, opts[1])):
            if dev.type == "cuda":
                torch.cuda.synchronize()
            t = time.perf_counter()
            fn(opt)
            if dev.type == "cuda":
                torch.cuda.synchronize()
            times[name].append(time.perf_counter() - t)
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"CLIP training step, preset {args.preset} config, batch {B}, context {c.context_length}, "
          f"{c.image_size}×{c.image_size} images, {args.threads} thread(s), device {dev}, torch {torch.__version__}, "
          f"open_clip {open_clip.__version__}")
    print(f"  parameters: minidalle {n_ours:,}   open_clip {n_theirs:,}")
    for k, v in med.items():
        print(f"  {k:10s} {v * 1000:8.1f} ms/step (median of {args.steps})  {B / v:8.0f} pairs/s")
    print(f"  ratio minidalle / open_clip throughput: {med['open_clip'] / med['minidalle']:.2f}×  (target ≥ 1.0×)")


if __name__ == "__main__":
    main()
