"""One transformer block for every transformer of the course: CLIP's two towers (lesson 02), GLIDE's and the
unCLIP decoder's text encoders (lessons 04, 06), the unCLIP prior (lesson 05) and DALL·E (lesson 09).

Pre-LayerNorm (Radford et al. 2019, GPT-2; as in CLIP and GLIDE): x + attn(ln(x)), then
x + mlp(ln(x)), attention through `F.scaled_dot_product_attention`. The parameter names follow
open_clip's (`ln_1`, `attn.qkv`, `attn.proj`, `ln_2`, `mlp`), so that `clip.model.from_open_clip`
can copy real weights in. Three options cover the four users:

* `causal=True`: every position attends only to itself and earlier ones (CLIP's text tower,
  the prior, DALL·E);
* `key_mask` (B, L), True = a real token: padding is never attended to (GLIDE's text encoder);
* `cache` (a dict, one per block): keeps this block's keys and values while sampling, so each
  new position costs one step, not the whole sequence (DALL·E's key/value cache).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class QuickGELU(nn.Module):
    """x·σ(1.702x), the GELU approximation OpenAI's CLIP weights were trained with."""

    def forward(self, x):
        return x * torch.sigmoid(1.702 * x)


class Attention(nn.Module):
    """Multi-head self-attention: x (B, L, W) → (B, L, W)."""

    def __init__(self, width: int, heads: int):
        super().__init__()
        if width % heads:
            raise ValueError(f"width {width} is not divisible by {heads} heads")
        self.heads = heads
        self.qkv = nn.Linear(width, 3 * width)     # q, k, v in this order (as open_clip's in_proj)
        self.proj = nn.Linear(width, width)

    def forward(self, x: torch.Tensor, causal: bool = False, key_mask: torch.Tensor | None = None,
                cache: dict | None = None) -> torch.Tensor:
        B, L, W = x.shape
        q, k, v = self.qkv(x).view(B, L, 3, self.heads, W // self.heads).permute(2, 0, 3, 1, 4)  # 3 × (B, h, L, d)
        if cache is not None:
            if "k" in cache:                            # new positions attend to everything before them
                k, v = torch.cat([cache["k"], k], 2), torch.cat([cache["v"], v], 2)
                causal = causal and L > 1
            cache["k"], cache["v"] = k, v
        mask = None
        if causal and k.shape[2] != L:                  # several new positions after a cache: offset causal mask
            mask = torch.ones(L, k.shape[2], dtype=torch.bool, device=x.device).tril(k.shape[2] - L)
            causal = False
        if key_mask is not None:
            mask = key_mask[:, None, None, :]           # (B, 1, 1, L): never attend to padding
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal)   # (B, h, L, d)
        return self.proj(y.transpose(1, 2).reshape(B, L, W))


class Block(nn.Module):
    """Pre-LayerNorm transformer block: x + attn(ln_1(x)), then x + mlp(ln_2(x)). (B, L, W) → (B, L, W)."""

    def __init__(self, width: int, heads: int, mlp_ratio: float = 4.0, quick_gelu: bool = False):
        super().__init__()
        hidden = int(width * mlp_ratio)
        self.ln_1 = nn.LayerNorm(width)
        self.attn = Attention(width, heads)
        self.ln_2 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(nn.Linear(width, hidden), QuickGELU() if quick_gelu else nn.GELU(),
                                 nn.Linear(hidden, width))

    def forward(self, x: torch.Tensor, causal: bool = False, key_mask: torch.Tensor | None = None,
                cache: dict | None = None) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x), causal, key_mask, cache)
        return x + self.mlp(self.ln_2(x))
