"""minidalle's unCLIP decoder and upsampler against lucidrains' dalle2-pytorch `Unet` (COURSE.md, lesson 06).

    python benchmarks/bench_decoder.py [--preset cpu] [--iters 10] [--batch 64] [--sample-batch 16] [--threads N]

Times, in one process on the same inputs, (1) a decoder training step at the preset's base
resolution (forward + v-prediction Min-SNR loss + backward + AdamW, batch 64), (2) decoder
sampling: 50 DDIM steps on a batch of 16 without gradients, (3) an upsampler training step
(base → upsampled resolution, same batch), and (4) the end-to-end text → image latency of
`unclip.generate` for 8 copies of one prompt, with its split into CLIP's text encoder, the
prior (`prior.sample`), the decoder (`decoder.decode`) and the upsampler (`upsampler.upsample`).
Each measurement alternates the implementations (ours, theirs, ours, …) and reports medians,
so a noisy machine slows both alike. Ratios are peer time / minidalle time: above 1.0×
minidalle is faster. Parameters and GFLOP per training step are printed.

The peer is `dalle2_pytorch.Unet` behind our call signature, and both sides go through the
same `Diffusion.loss` (same t, noise, x_t and target) and the same DDIM loop
(`Diffusion.sample`, guidance 1), so the ratios compare the networks like for like. Its shape
copies ours where it can: `dim_mults` = our level multipliers, `resnet_groups` = our GroupNorm
groups, `self_attn` at the levels where ours attends, our head size and (deepest level's) head
count. The rest is matched on parameters, because every inner ResnetBlock of the peer carries a
cross-attention whose width is fixed at 8 heads × 64 (512, not configurable) and which costs
most of its weights at our widths: among `dim` ∈ {our channels, half}, `num_resnet_blocks` ∈
{ours − 1, ours} (its levels hold 1 + n blocks on both paths, ours n down and n + 1 up) and
`cond_dim` (the width of its conditioning tokens) ∈ {8, 16, 32, …, our text width}, the one kept
is within 15% of our count, preferring our width, then our block count, then the nearest count
(the nearest overall if none is within 15%); the choice and both counts are printed. Decoder
conditioning: ours adds the projected CLIP image embedding (B, D) and the pooled caption to the
time embedding and attends, in its attention layers (low resolutions and middle), to 4 tokens
made from the embedding plus the caption's tokens after GLIDE's own text transformer (counted in
our parameters and FLOPs). The peer (`cond_on_image_embeds`, `cond_on_text_encodings`) adds the
embedding to its time embedding and cross-attends, in every ResnetBlock but the outermost level's,
to 2 time tokens + 4 image tokens, plus the caption's tokens in its two middle blocks; its caption
tokens are a learned embedding of the same GLIDE token ids (no transformer; padding ids embed to
zero, which the peer masks), `max_text_len` = the batch's caption length. Captions are real
shapes-world captions tokenized by `text.words.tokenize`, images real scenes, embeddings random unit
vectors. Upsampler: ours concatenates the bilinearly upsampled low-resolution picture to x_t and
adds the embedding to the time embedding, with no attention; the peer gets the same upsampled
picture as `lowres_cond_img` (`lowres_cond=True`: concatenated at its input and before its last
conv) and the embedding through `cond_on_image_embeds` (time embedding + its cross-attention tokens),
and keeps its middle self-attention (always built). The peer computes attention with einsum, ours
with SDPA. The end-to-end row uses the shipped `-PRESET` checkpoints when all exist
(`unclip.load`); otherwise the trained CLIP (if present) and untrained prior, decoder and
upsampler of the preset's configs, which cost the same. Needs the test-only peer in
requirements-peers.txt.
"""
import argparse
import math
import warnings

import torch
import torch.nn.functional as F
from common import gflop, time_alternately, train_step
from torch import nn


def count(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters() if p.requires_grad)


class PeerDecoder(nn.Module):
    """dalle2-pytorch's Unet behind minidalle's decoder interface (see the docstring).

    forward(x_t (B, 3, R, R), t (B,), emb (B, D), tokens (B, L), mask (B, L)) → (B, 3, R, R).
    """

    def __init__(self, c, Unet, vocab: int, text_len: int, dim: int, blocks: int, cond_dim: int):
        super().__init__()
        from minidalle.text.words import PAD

        u = c.unet
        self.token_emb = nn.Embedding(vocab, c.text_width, padding_idx=PAD)          # its text_encodings
        self.net = Unet(dim, image_embed_dim=c.embed_dim, cond_dim=cond_dim, text_embed_dim=c.text_width,
                        cond_on_image_embeds=True, cond_on_text_encodings=True, max_text_len=text_len,
                        dim_mults=u.mults, num_resnet_blocks=blocks, resnet_groups=u.groups,
                        self_attn=tuple(u.res >> i in u.attn_res for i in range(len(u.mults))),
                        attn_heads=max(1, dim * u.mults[-1] // u.head_dim), attn_dim_head=u.head_dim)

    def forward(self, x, t, emb, tokens, mask):       # mask unused: the peer masks all-zero (padding) encodings
        return self.net(x, t, image_embed=emb, text_encodings=self.token_emb(tokens))


class PeerUpsampler(nn.Module):
    """dalle2-pytorch's Unet(lowres_cond=True) behind minidalle's upsampler interface.

    forward(x_t (B, 3, 2R, 2R), t (B,), low (B, 3, R, R), emb (B, D)) → (B, 3, 2R, 2R).
    """

    def __init__(self, c, Unet, dim: int, blocks: int, cond_dim: int):
        super().__init__()
        u = c.unet
        self.net = Unet(dim, image_embed_dim=c.embed_dim, cond_dim=cond_dim, cond_on_image_embeds=True,
                        lowres_cond=True, dim_mults=u.mults, num_resnet_blocks=blocks, resnet_groups=u.groups,
                        self_attn=tuple(u.res >> i in u.attn_res for i in range(len(u.mults))),
                        attn_heads=max(1, dim * u.mults[-1] // u.head_dim), attn_dim_head=u.head_dim)

    def forward(self, x, t, low, emb):
        up = F.interpolate(low, size=x.shape[-2:], mode="bilinear", align_corners=False)   # as ours
        return self.net(x, t, image_embed=emb, lowres_cond_img=up)


def matched(build, target: int, channels: int, blocks: int, max_cond: int):
    """The peer built with the (dim, num_resnet_blocks, cond_dim) chosen as the docstring says, and that choice."""
    conds = [8 * 2**i for i in range(int(math.log2(max(8, max_cond) // 8)) + 1)]
    dims = [d for d in (channels, channels // 2) if d >= 8]
    options = [(d, b, k) for d in dims for b in (max(0, blocks - 1), blocks) for k in conds]
    sized = [(abs(math.log(count(build(*o)) / target)), o) for o in options]
    near = [(o[0] != channels, o[1] != max(0, blocks - 1), e, o) for e, o in sized if e < math.log(1.15)]
    choice = min(near)[-1] if near else min(sized)[1]
    return build(*choice), choice


def main():
    with warnings.catch_warnings(record=True):          # swallow the warnings of dalle2-pytorch's import
        warnings.simplefilter("ignore")                  # (its dependencies re-add filters, so record them)
        from importlib.metadata import version

        from dalle2_pytorch import Unet

    from minidalle.dalle2.decoder import Decoder, decoder_config
    from minidalle.dalle2.upsampler import Upsampler, blur, upsampler_config
    from minidalle.diffusion.gaussian import Diffusion
    from minidalle.runtime import device
    from minidalle.text.words import WORDS, tokenize
    from minidalle.world.data import generate as scenes

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="cpu", choices=("ci", "cpu", "gpu"))
    ap.add_argument("--iters", type=int, default=10, help="timed calls per implementation and measurement")
    ap.add_argument("--batch", type=int, default=64, help="training batch (decoder and upsampler)")
    ap.add_argument("--sample-batch", type=int, default=16, help="pictures per DDIM sampling call")
    ap.add_argument("--steps", type=int, default=50, help="DDIM steps when sampling")
    ap.add_argument("--prompts", type=int, default=8, help="pictures in the end-to-end text → image row")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: leave torch's choice)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads or torch.get_num_threads())
    torch.manual_seed(0)
    dev, B, S = device(), args.batch, args.sample_batch
    c, cu = decoder_config(args.preset), upsampler_config(args.preset)
    R, R2 = c.unet.res, cu.unet.res
    print(f"unCLIP decoder and upsampler, preset {args.preset}, {torch.get_num_threads()} torch thread(s), "
          f"device {dev}, torch {torch.__version__}, dalle2-pytorch {version('dalle2-pytorch')}")

    # the same inputs on both sides: real scenes and captions, random unit embeddings
    batch = scenes(max(B, S), R2, seed=0)
    hi = batch.images.float() / 127.5 - 1                                             # (N, 3, 2R, 2R) in [−1, 1]
    lo = scenes(max(B, S), R, seed=0).images.float() / 127.5 - 1                     # the same scenes at R
    tok_all, mask_all = tokenize(batch.captions, validate=False)                      # (N, L), (N, L)
    emb_all = F.normalize(torch.randn(max(B, S), c.embed_dim), dim=-1)                # (N, D)
    x0, emb = lo[:B].to(dev), emb_all[:B].to(dev)
    tokens, mask = tok_all[:B].to(dev), mask_all[:B].to(dev)
    cond_low = blur(lo[:B], torch.full((B,), cu.sample_blur)).to(dev)                # the upsampler's condition

    # ------------------------------------------------------------ (1) decoder training step
    model = Decoder(c).to(dev)
    build = lambda d, b, k: PeerDecoder(c, Unet, len(WORDS), tok_all.shape[1], d, b, k)
    peer, (pd, pb, pk) = matched(build, count(model), c.unet.channels, c.unet.blocks, c.text_width)
    peer = peer.to(dev)
    diffusion = Diffusion(c.diffusion)

    def loss_of(net, seed):                              # same t and noise on both sides: one generator each
        gen = torch.Generator().manual_seed(seed)
        return lambda: diffusion.loss(net, x0, generator=gen, emb=emb, tokens=tokens, mask=mask)

    n = [count(model), count(peer)]
    f = [gflop(loss_of(model, 0)), gflop(loss_of(peer, 0))]
    t = time_alternately({"ours": train_step(model, loss_of(model, 1)), "peer": train_step(peer, loss_of(peer, 1))},
                         args.iters)
    u = c.unet
    print(f"decoder {R}×{R} (channels {u.channels}, mults {u.mults}, {u.blocks} block(s) a level, attention at "
          f"{u.attn_res}, text transformer {c.text_width} wide × {c.text_layers}, embeddings of {c.embed_dim}, "
          f"{tok_all.shape[1]} caption tokens)\n  peer: Unet(dim={pd}, dim_mults={u.mults}, num_resnet_blocks={pb}, "
          f"cond_dim={pk}) + token embedding\n  parameters: minidalle {n[0]:,} (text transformer "
          f"{count(model.text):,})   dalle2-pytorch {n[1]:,} ({n[1] / n[0] - 1:+.0%})   "
          f"GFLOP per step: {f[0]:.2f} vs {f[1]:.2f}")
    print(f"  training step, batch {B}:  minidalle {t['ours'] * 1e3:7.1f} ms   dalle2-pytorch "
          f"{t['peer'] * 1e3:7.1f} ms   ratio {t['peer'] / t['ours']:.2f}×  (target ≥ 1.0×)")

    # ------------------------------------------------------------ (2) decoder sampling: the same DDIM loop
    model.eval(); peer.eval()
    se, st, sm = emb_all[:S].to(dev), tok_all[:S].to(dev), mask_all[:S].to(dev)

    def ddim(net):
        return lambda: diffusion.sample(lambda x, tt: net(x, tt, se, st, sm), (S, 3, R, R), steps=args.steps,
                                        method="ddim", generator=torch.Generator().manual_seed(0), device=dev)

    with torch.no_grad():
        t = time_alternately({"minidalle": ddim(model), "dalle2-pytorch": ddim(peer)}, args.iters)
    print(f"  sampling, {args.steps} DDIM steps × {S} pictures ({args.steps} forwards on batch {S}):")
    for k, v in t.items():
        print(f"    {k:15s} {v * 1e3:8.1f} ms   {S / v:8.1f} images/s")
    print(f"    ratio, same DDIM loop: {t['dalle2-pytorch'] / t['minidalle']:.2f}×  (target ≥ 1.0×)")
    del model, peer

    # ------------------------------------------------------------ (3) upsampler training step
    up = Upsampler(cu).to(dev)
    build = lambda d, b, k: PeerUpsampler(cu, Unet, d, b, k)
    peer_up, (pd, pb, pk) = matched(build, count(up), cu.unet.channels, cu.unet.blocks, cu.embed_dim)
    peer_up = peer_up.to(dev)
    diffusion_up = Diffusion(cu.diffusion)
    x0_up = hi[:B].to(dev)

    def up_loss_of(net, seed):
        gen = torch.Generator().manual_seed(seed)
        return lambda: diffusion_up.loss(net, x0_up, generator=gen, low=cond_low, emb=emb)

    n = [count(up), count(peer_up)]
    f = [gflop(up_loss_of(up, 0)), gflop(up_loss_of(peer_up, 0))]
    t = time_alternately({"ours": train_step(up, up_loss_of(up, 1)),
                          "peer": train_step(peer_up, up_loss_of(peer_up, 1))}, args.iters)
    u = cu.unet
    print(f"upsampler {R}→{R2} (channels {u.channels}, mults {u.mults}, {u.blocks} block(s) a level, attention at "
          f"{u.attn_res or 'none'})\n  peer: Unet(dim={pd}, dim_mults={u.mults}, num_resnet_blocks={pb}, "
          f"cond_dim={pk}, lowres_cond=True)\n  parameters: minidalle {n[0]:,}   dalle2-pytorch {n[1]:,} "
          f"({n[1] / n[0] - 1:+.0%})   GFLOP per step: {f[0]:.2f} vs {f[1]:.2f}")
    print(f"  training step, batch {B}:  minidalle {t['ours'] * 1e3:7.1f} ms   dalle2-pytorch "
          f"{t['peer'] * 1e3:7.1f} ms   ratio {t['peer'] / t['ours']:.2f}×  (target ≥ 1.0×)")
    del up, peer_up

    # ------------------------------------------------------------ (4) end to end, text → image
    end_to_end(args.preset, args.prompts, max(1, min(args.iters, 3)), dev)


def pipeline(preset: str):
    """(the preset's unCLIP pipeline, what it is): shipped checkpoints if all exist, else untrained parts."""
    from minidalle import checkpoint
    from minidalle.clip import train as clip_train
    from minidalle.clip.model import CLIP, clip_config
    from minidalle.dalle2 import unclip
    from minidalle.dalle2.decoder import Decoder, decoder_config
    from minidalle.dalle2.prior import Prior, prior_config
    from minidalle.dalle2.upsampler import Upsampler, upsampler_config
    from minidalle.runtime import device

    try:
        return unclip.load(preset), "shipped checkpoints"
    except checkpoint.CheckpointError:
        pass
    try:
        clip_model, what = clip_train.load(preset), "trained CLIP"
    except checkpoint.CheckpointError:
        clip_model, what = CLIP(clip_config(preset)), "untrained CLIP"
    torch.manual_seed(0)
    parts = (clip_model, Prior(prior_config(preset)), Decoder(decoder_config(preset)),
             Upsampler(upsampler_config(preset)))
    return unclip.UnCLIP(*(m.to(device()).eval() for m in parts)), f"{what}, untrained prior, decoder and upsampler"


def end_to_end(preset: str, n: int, iters: int, dev):
    """Median latency of `unclip.generate` for n copies of a prompt, and of its stages called one by one."""
    from minidalle.dalle2 import unclip
    from minidalle.dalle2.decoder import decode
    from minidalle.dalle2.prior import sample
    from minidalle.dalle2.upsampler import upsample

    pipe, what = pipeline(preset)
    prompts = ["a red circle above a blue square"] * n
    with torch.no_grad():
        tokens, text = unclip.text_embeddings(pipe, prompts)
        emb = sample(pipe.prior, tokens, text, seed=0)
        low = decode(pipe.decoder, emb, prompts, seed=0)
        stages = {"CLIP text encoder": lambda: unclip.text_embeddings(pipe, prompts),
                  "prior (prior.sample, 64 DDIM steps × 2 candidates)":
                      lambda: sample(pipe.prior, tokens, text, seed=0),
                  "decoder (decoder.decode, 50 DDIM steps)": lambda: decode(pipe.decoder, emb, prompts, seed=0),
                  "upsampler (upsampler.upsample, 25 DDIM steps)": lambda: upsample(pipe.upsampler, low, emb, seed=1),
                  "total (unclip.generate)": lambda: unclip.generate(pipe, prompts, seed=0)}
        t = time_alternately(stages, iters)
    total = t.pop("total (unclip.generate)")
    res = pipe.upsampler.config.unet.res
    print(f"end to end, text → {n} pictures of {res}×{res} on {dev} ({what}; median of {iters}):")
    for k, v in t.items():
        print(f"  {k:50s} {v * 1e3:8.1f} ms  {v / total:4.0%}")
    print(f"  {'total (unclip.generate)':50s} {total * 1e3:8.1f} ms   {n / total:.1f} images/s "
          f"(stages add up to {sum(t.values()) * 1e3:.1f} ms)")


if __name__ == "__main__":
    main()
