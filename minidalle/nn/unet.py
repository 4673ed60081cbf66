"""The U-Net that denoises images: one class for lesson 03's DDPM, lesson 04's GLIDE and lesson 06's decoder.

Ho et al. 2020 §4 / Appendix B: a PixelCNN++-style U-Net — residual blocks
with GroupNorm, the timestep as a sinusoidal embedding added inside every
block, self-attention at the low resolutions. Dhariwal & Nichol 2021 §3
(ADM) and Nichol et al. 2022 (GLIDE) §2.3 add the two ways of conditioning
kept here:

(a) a vector added to the time embedding (`cond`, shape (B, cond_dim)):
    GLIDE's pooled text feature, and later unCLIP's CLIP image embedding
    (Ramesh et al. 2022 §2.1);
(b) attention to a sequence of tokens (`context`, shape (B, L, context_dim)):
    GLIDE projects the text encoder's last layer into every attention layer
    and lets the image positions attend to the concatenation of image and
    text keys/values. That is what `Attention` does when given a context.

Attention is `torch.nn.functional.scaled_dot_product_attention`. The model is
a plain callable ``unet(x_t, t, cond=..., context=..., context_mask=...)``
that `minidalle.diffusion` can train and sample without knowing it is a U-Net.
The config (`UNetConfig`) is part of each family's config (`diffusion.ddpm`, `diffusion.glide`,
`dalle2.decoder`, `dalle2.upsampler`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F



@dataclass(frozen=True)
class UNetConfig:
    """Shape of the U-Net. The defaults are lesson 03's DDPM at the `cpu` preset (16×16, 454k parameters);
    each family's `PRESETS` writes out its own (GLIDE's and the decoder's are twice as wide)."""

    res: int = 16                        # input height = width
    in_ch: int = 3
    out_ch: int = 3
    channels: int = 16                   # width at full resolution
    mults: tuple = (1, 2, 3)             # width multiplier per level; each level after the first halves res
    blocks: int = 1                      # residual blocks per level on the way down (one more on the way up)
    attn_res: tuple = (4,)               # resolutions with self-attention
    head_dim: int = 16
    groups: int = 8                      # GroupNorm groups
    dropout: float = 0.0
    cond_dim: int = 0                    # (a) size of a conditioning vector added to the time embedding; 0: none
    context_dim: int = 0                 # (b) size of context tokens attended to; 0: none

    def __post_init__(self):
        if self.res % 2 ** (len(self.mults) - 1):
            raise ValueError(f"res {self.res} cannot be halved {len(self.mults) - 1} times")


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10_000.0) -> torch.Tensor:
    """Transformer sinusoids of the integer timestep (Vaswani et al. 2017 §3.5; Ho et al. App. B). (B,) → (B, dim)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = t.float()[:, None] * freqs[None]                                        # (B, half)
    return torch.cat([torch.cos(args), torch.sin(args)], dim=1)


def _zero(module: nn.Module) -> nn.Module:
    """Zero-initialise a layer, so that a residual branch starts as the identity."""
    for p in module.parameters():
        nn.init.zeros_(p)
    return module


class ResBlock(nn.Module):
    """GroupNorm → SiLU → conv, + time(+cond) embedding, GroupNorm → SiLU → dropout → conv, + skip."""

    def __init__(self, c_in: int, c_out: int, emb_dim: int, groups: int, dropout: float):
        super().__init__()
        self.norm1, self.conv1 = nn.GroupNorm(groups, c_in), nn.Conv2d(c_in, c_out, 3, padding=1)
        self.emb = nn.Linear(emb_dim, c_out)
        self.norm2, self.drop = nn.GroupNorm(groups, c_out), nn.Dropout(dropout)
        self.conv2 = _zero(nn.Conv2d(c_out, c_out, 3, padding=1))
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))                                       # (B, c_out, H, W)
        h = h + self.emb(F.silu(emb))[:, :, None, None]                             # + (B, c_out, 1, 1)
        h = self.conv2(self.drop(F.silu(self.norm2(h))))
        return self.skip(x) + h


class Attention(nn.Module):
    """Multi-head self-attention over the H·W positions; with a context, GLIDE-style attention to text too.

    GLIDE §2.3: the text tokens are projected to keys and values of every attention
    layer and concatenated to the image's, so each position attends to image and text at once.
    """

    def __init__(self, c: int, head_dim: int, groups: int, context_dim: int = 0):
        super().__init__()
        self.heads = max(1, c // head_dim)
        self.norm = nn.GroupNorm(groups, c)
        self.qkv = nn.Linear(c, 3 * c)
        self.context_kv = nn.Linear(context_dim, 2 * c) if context_dim else None
        self.proj = _zero(nn.Linear(c, c))

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None,
                context_mask: torch.Tensor | None = None) -> torch.Tensor:
        B, C, H, W = x.shape
        nh = self.heads
        h = self.norm(x).view(B, C, H * W).transpose(1, 2)                          # (B, HW, C)
        q, k, v = self.qkv(h).chunk(3, dim=2)                                       # each (B, HW, C)
        split = lambda z: z.reshape(B, -1, nh, C // nh).transpose(1, 2)             # → (B, nh, N, C/nh)
        q, k, v = split(q), split(k), split(v)
        mask = None
        if self.context_kv is not None and context is not None:
            ck, cv = self.context_kv(context).chunk(2, dim=2)                       # each (B, L, C)
            k, v = torch.cat([k, split(ck)], 2), torch.cat([v, split(cv)], 2)       # (B, nh, HW + L, C/nh)
            if context_mask is not None:                                            # True = attend
                img = torch.ones(B, H * W, dtype=torch.bool, device=x.device)
                mask = torch.cat([img, context_mask.bool()], 1)[:, None, None, :]   # (B, 1, 1, HW + L)
        h = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)                 # (B, nh, HW, C/nh)
        h = self.proj(h.transpose(1, 2).reshape(B, H * W, C))                       # (B, HW, C)
        return x + h.transpose(1, 2).reshape(B, C, H, W)


class UNet(nn.Module):
    """ε_θ(x_t, t [, cond, context]): (B, in_ch, res, res) → (B, out_ch, res, res)."""

    def __init__(self, config: UNetConfig):
        super().__init__()
        self.config = c = config
        emb = 4 * c.channels
        self.time = nn.Sequential(nn.Linear(c.channels, emb), nn.SiLU(), nn.Linear(emb, emb))
        self.cond = nn.Linear(c.cond_dim, emb) if c.cond_dim else None
        block = lambda a, b: ResBlock(a, b, emb, c.groups, c.dropout)
        attn = lambda ch: Attention(ch, c.head_dim, c.groups, c.context_dim)

        self.conv_in = nn.Conv2d(c.in_ch, c.channels, 3, padding=1)
        self.down, skips, ch, res = nn.ModuleList(), [c.channels], c.channels, c.res
        for level, m in enumerate(c.mults):
            for _ in range(c.blocks):
                self.down.append(nn.ModuleList([block(ch, c.channels * m)]
                                               + ([attn(c.channels * m)] if res in c.attn_res else [])))
                ch = c.channels * m
                skips.append(ch)
            if level < len(c.mults) - 1:
                self.down.append(nn.ModuleList([nn.Conv2d(ch, ch, 3, stride=2, padding=1)]))   # res → res/2
                skips.append(ch)
                res //= 2
        self.mid = nn.ModuleList([block(ch, ch), attn(ch), block(ch, ch)])
        self.up = nn.ModuleList()
        for level, m in reversed(list(enumerate(c.mults))):
            for i in range(c.blocks + 1):
                layers = [block(ch + skips.pop(), c.channels * m)]
                ch = c.channels * m
                if res in c.attn_res:
                    layers.append(attn(ch))
                if level > 0 and i == c.blocks:
                    layers.append(nn.Upsample(scale_factor=2, mode="nearest"))
                    layers.append(nn.Conv2d(ch, ch, 3, padding=1))                  # res → 2·res
                    res *= 2
                self.up.append(nn.ModuleList(layers))
        self.out = nn.Sequential(nn.GroupNorm(c.groups, ch), nn.SiLU(), _zero(nn.Conv2d(ch, c.out_ch, 3, padding=1)))
        self.to(memory_format=torch.channels_last)       # NHWC convolution weights: a training step of a 32×32
                                                         # GLIDE (16 channels, mults 1,2,4,4; batch 64) took 335 ms
                                                         # on 2 CPU threads, 400 ms in NCHW

    def _run(self, layers, h, emb, context, context_mask):
        for layer in layers:
            if isinstance(layer, ResBlock):
                h = layer(h, emb)
            elif isinstance(layer, Attention):
                h = layer(h, context, context_mask)
            else:
                h = layer(h)
        return h

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None = None,
                context: torch.Tensor | None = None, context_mask: torch.Tensor | None = None) -> torch.Tensor:
        emb = self.time(timestep_embedding(t, self.config.channels))                 # (B, 4C)
        if self.cond is not None and cond is not None:
            emb = emb + self.cond(cond)                                              # (a) vector conditioning
        h = self.conv_in(x)                                                          # (B, C, res, res)
        hs = [h]
        for layers in self.down:
            h = self._run(layers, h, emb, context, context_mask)
            hs.append(h)
        h = self._run(self.mid, h, emb, context, context_mask)
        for layers in self.up:
            h = self._run(layers, torch.cat([h, hs.pop()], 1), emb, context, context_mask)
        return self.out(h)                                                           # (B, out_ch, res, res)


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
