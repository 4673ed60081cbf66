"""Lesson 02: CLIP, a text transformer and a small ViT trained to agree (Radford et al. 2021).

`notebooks/02_clip.ipynb` builds this file step by step. The towers follow the paper and
open_clip at small scale: a ViT image encoder (§2.4: patches, a class token, pre-norm
blocks, a projection of the class token) and a causal text transformer pooled at the
end-of-text token; both project into one embedding space, and a learned temperature scales
the cosine similarities (§2.5). `clip_loss` is the symmetric InfoNCE of Figure 3.
`from_open_clip` copies the weights of an open_clip ViT CLIP into this model, from a local
file only (nothing is ever downloaded).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import load_file

from minidalle.config import get_preset
from minidalle.nn.transformer import Block
from minidalle.text.bpe import Tokenizer, tokenizer
from minidalle.trainer import TrainConfig


_TOKENIZER = Tokenizer()                                   # sets the default vocabulary and context
OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)      # open_clip's image normalisation for OpenAI weights
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclass(frozen=True)
class CLIPConfig:
    """Sizes of both towers. Images are float (B, 3, image_size, image_size) in [0, 1].

    The course's own models read 32×32 renders even at the `cpu` preset
    (whose base resolution is 16×16): at 16 px a small shape is 4 px across
    and circle, diamond and cross become hard to tell apart. The ViT reads
    4-px patches (64 + the class token): with 8-px patches, or 16-px
    renders, a trial CLIP learned colour perfectly but shape barely above
    chance (0.24 zero-shot shape accuracy after 800 steps). The vision tower
    is kept narrow (64) so the 65 tokens cost about what 17 wider ones did.
    A 16×16 picture (a lesson-06 sample, say) is resized to 32×32 first.

    The `cpu` preset trains for 3,000 steps: ≈ 15 min on 2 cores (0.31 s
    a step), over the course's 10-minute budget for a cpu training cell,
    because zero-shot shape accuracy only passes 0.90 late in training
    (0.73 after a 1,900-step run that fits the budget). Measured figures
    are in data/checkpoints/manifest.json; `gpu` uses 4-px
    patches and wider, deeper towers.
    """

    image_size: int = 32
    patch_size: int = 4
    vision_width: int = 64
    vision_layers: int = 3
    vision_heads: int = 2
    vocab_size: int = _TOKENIZER.vocab_size   # the compact shapes-world vocabulary (~60 tokens)
    context_length: int = _TOKENIZER.context_length
    eot_id: int = _TOKENIZER.eot_id          # the text is pooled at the first <eot>
    text_width: int = 96
    text_layers: int = 3
    text_heads: int = 3
    embed_dim: int = 64
    mlp_ratio: float = 4.0
    quick_gelu: bool = False        # OpenAI's weights use x·σ(1.702x); open_clip's own default is GELU
    image_mean: tuple = (0.5, 0.5, 0.5)   # images are normalised inside the model: (x - mean) / std
    image_std: tuple = (0.5, 0.5, 0.5)
    train: "CLIPTrain" = field(default_factory=lambda: CLIPTrain())


@dataclass(frozen=True)
class CLIPTrain(TrainConfig):
    """How `clip.train` trains it: AdamW as in the paper (β₂ 0.98, ε 10⁻⁶, weight decay on matrices
    only), warm-up then cosine, no gradient clipping and no weight average.

    `twins`: the share of each batch that is "shape twins", copies of the batch's other scenes with
    one object's shape changed (`clip.train.shape_twins`), captioned afresh. In a batch of random
    scenes the colours alone tell most captions apart, so a CLIP learns colour and barely shape
    (0.31 zero-shot shape accuracy at the cpu preset; drawing more single-object scenes only reached
    0.35). A twin is a hard negative that only shape separates from its original, as NegCLIP's
    (Yuksekgonul et al. 2023). Training scenes use data seed `seed`; evaluation never does.
    """

    steps: int = 3000
    batch: int = 128
    lr: float = 1e-3
    weight_decay: float = 0.1
    decay: str = "matrices"
    betas: tuple = (0.9, 0.98)
    eps: float = 1e-6
    clip_grad: float = 0.0
    ema: float = 0.0
    warmup: int = 30
    log_every: int = 10
    save_every: int = 100
    twins: float = 0.5


PRESETS = {
    "ci": CLIPConfig(patch_size=8, vision_width=32, vision_layers=1, vision_heads=2, text_width=32, text_layers=1,
                     text_heads=2, embed_dim=16,
                     train=CLIPTrain(n_train=256, steps=6, batch=64, warmup=2, log_every=1, save_every=3)),
    "cpu": CLIPConfig(),
    "gpu": CLIPConfig(patch_size=4, vision_width=256, vision_layers=6, vision_heads=8, text_width=256, text_layers=6,
                      text_heads=8, embed_dim=128,
                      train=CLIPTrain(n_train=100_000, steps=5000, batch=512, lr=5e-4, warmup=250, save_every=1000)),
}


def clip_config(preset: str | None = None) -> CLIPConfig:
    """The active preset's (or `preset`'s) CLIP: its two towers and how it is trained."""
    return PRESETS[get_preset(preset).name]


class ImageEncoder(nn.Module):
    """ViT (§2.4): patches → tokens, a class token, ln_pre, blocks, ln_post on the class token, projection."""

    def __init__(self, c: CLIPConfig):
        super().__init__()
        if c.image_size % c.patch_size:
            raise ValueError(f"image_size {c.image_size} is not a multiple of patch_size {c.patch_size}")
        self.c = c
        grid = c.image_size // c.patch_size
        self.register_buffer("mean", torch.tensor(c.image_mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(c.image_std).view(1, 3, 1, 1), persistent=False)
        self.patch_embed = nn.Conv2d(3, c.vision_width, c.patch_size, stride=c.patch_size, bias=False)
        self.class_embedding = nn.Parameter(c.vision_width ** -0.5 * torch.randn(c.vision_width))
        self.positional_embedding = nn.Parameter(sincos_2d(grid, c.vision_width))      # (1+g*g, W), learned
        self.ln_pre = nn.LayerNorm(c.vision_width)
        self.blocks = nn.ModuleList(Block(c.vision_width, c.vision_heads, c.mlp_ratio, c.quick_gelu)
                                    for _ in range(c.vision_layers))
        self.ln_post = nn.LayerNorm(c.vision_width)
        self.projection = nn.Linear(c.vision_width, c.embed_dim, bias=False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """images: float (B, 3, S, S) in [0, 1] → (B, embed_dim), not normalised."""
        S = self.c.image_size
        if not torch.is_tensor(images) or not images.is_floating_point():
            kind = images.dtype if torch.is_tensor(images) else type(images).__name__
            raise TypeError(f"images must be a float tensor in [0, 1], got {kind}; for uint8 use images.float() / 255")
        if images.ndim != 4 or tuple(images.shape[1:]) != (3, S, S):
            raise ValueError(f"images must have shape (B, 3, {S}, {S}), got {tuple(images.shape)}; "
                             f"render at {S} px or resize with F.interpolate(images, size={S})")
        x = (images - self.mean) / self.std
        x = self.patch_embed(x.to(self.patch_embed.weight.dtype))               # (B, W, g, g)
        x = x.flatten(2).transpose(1, 2)                                         # (B, g*g, W)
        cls = self.class_embedding.expand(x.shape[0], 1, -1)                    # (B, 1, W)
        x = torch.cat([cls, x], dim=1) + self.positional_embedding               # (B, 1+g*g, W)
        x = self.ln_pre(x)
        for block in self.blocks:
            x = block(x)
        return self.projection(self.ln_post(x[:, 0]))                            # (B, E)


def sincos_2d(grid: int, width: int) -> torch.Tensor:
    """Initial ViT positions: sines and cosines of each patch's row (first half) and column (second half).

    The fixed 2-D embedding of MAE (He et al. 2022), here only the starting point of a
    learned table: at small scale a ViT whose positions start random takes hundreds of
    steps to learn where its patches are, and cannot tell a square from a circle until
    it does. Row 0 (the class token) starts at zero. Returns (1 + grid², width).
    """
    quarter = width // 4
    omega = 1.0 / 10000 ** (torch.arange(quarter, dtype=torch.float64) / quarter)   # (W/4,)
    rows, cols = torch.meshgrid(torch.arange(grid), torch.arange(grid), indexing="ij")
    parts = [f(pos.flatten()[:, None] * omega) for pos in (rows, cols) for f in (torch.sin, torch.cos)]
    table = torch.zeros(1 + grid * grid, width, dtype=torch.float64)
    table[1:, :4 * quarter] = torch.cat(parts, 1)                                      # (g*g, W)
    return table.float()


class TextEncoder(nn.Module):
    """Causal transformer (§2.4): tokens + positions, blocks, ln_final, features at <eot>, projection."""

    def __init__(self, c: CLIPConfig):
        super().__init__()
        self.c = c
        self.token_embedding = nn.Embedding(c.vocab_size, c.text_width)
        self.positional_embedding = nn.Parameter(0.01 * torch.randn(c.context_length, c.text_width))
        self.blocks = nn.ModuleList(Block(c.text_width, c.text_heads, c.mlp_ratio, c.quick_gelu)
                                    for _ in range(c.text_layers))
        self.ln_final = nn.LayerNorm(c.text_width)
        self.projection = nn.Linear(c.text_width, c.embed_dim, bias=False)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens: long (B, T ≤ context_length) from `minidalle.tokenizer.Tokenizer` → (B, embed_dim).

        Padding after <eot> may be cut off (training does, to save time): under
        the causal mask <eot> never attends to what follows it.
        """
        B, T = tokens.shape
        if tokens.dtype != torch.long or T > self.c.context_length:
            raise ValueError(f"tokens must be long (B, ≤{self.c.context_length}), got {tokens.dtype} "
                             f"{tuple(tokens.shape)}; build them with the matching Tokenizer")
        is_eot = tokens == self.c.eot_id                                         # (B, T)
        if not bool(is_eot.any(1).all()):
            raise ValueError("every row of tokens needs an <eot> token; build them with the Tokenizer")
        x = self.token_embedding(tokens) + self.positional_embedding[:T]         # (B, T, W)
        for block in self.blocks:
            x = block(x, causal=True)
        x = self.ln_final(x)
        x = x[torch.arange(B, device=x.device), is_eot.int().argmax(1)]          # (B, W) at the first <eot>
        return self.projection(x)                                                # (B, E)


class CLIP(nn.Module):
    """Both towers and the learned temperature. forward → (N, N) logits, image rows × text columns."""

    def __init__(self, config: CLIPConfig | None = None):
        super().__init__()
        self.config = config = config or clip_config()
        self.visual = ImageEncoder(config)
        self.text = TextEncoder(config)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))      # §2.5: τ initialised to 0.07
        init_weights(self)

    def encode_image(self, images: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        x = self.visual(images)
        return F.normalize(x, dim=-1) if normalize else x

    def encode_text(self, tokens: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        x = self.text(tokens)
        return F.normalize(x, dim=-1) if normalize else x

    def scale(self) -> torch.Tensor:
        """exp(logit_scale), clipped at 100 (§2.5)."""
        return self.logit_scale.clamp(max=math.log(100)).exp()

    def forward(self, images: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        img, txt = self.encode_image(images), self.encode_text(tokens)           # (N, E) each, unit length
        return self.scale() * img @ txt.T                                         # (N, N)

    def loss(self, images: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        return clip_loss(self.encode_image(images), self.encode_text(tokens), self.scale())


def init_weights(model: "CLIP") -> None:
    """open_clip's initialisation of the text tower (`CLIP.init_parameters`), used for both towers.

    Standard deviations scale with the width: attn_std = W^-½ for q, k, v; proj_std =
    W^-½ (2L)^-½ for the two projections back into the residual stream; fc_std = (2W)^-½
    for the MLP's first layer; W^-½ for the output projection. A fixed 0.02 (GPT-2's
    choice at W = 768) is far too small at W = 64: the class token then reads almost
    nothing from the patches, every image starts with the same embedding (cosine
    1.000), and contrastive training escapes that saddle for colour but not shape
    (zero-shot shape 0.30 after 1,000 steps at the cpu preset).
    """
    nn.init.normal_(model.text.token_embedding.weight, std=0.02)
    for tower in (model.visual, model.text):
        width, layers = tower.projection.in_features, len(tower.blocks)
        for b in tower.blocks:
            for layer, std in ((b.attn.qkv, width ** -0.5), (b.attn.proj, (2 * width * layers) ** -0.5),
                               (b.mlp[0], (2 * width) ** -0.5), (b.mlp[2], (2 * width * layers) ** -0.5)):
                nn.init.normal_(layer.weight, std=std)
                nn.init.zeros_(layer.bias)
        nn.init.normal_(tower.projection.weight, std=width ** -0.5)


def clip_loss(image_emb: torch.Tensor, text_emb: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """Symmetric InfoNCE (§2.3, Figure 3): image i's caption is text i among the N in the batch.

    image_emb, text_emb: (N, E), L2-normalised; scale: exp(logit_scale), a scalar.
    """
    logits = scale * image_emb @ text_emb.T                                      # (N, N): rows images, cols texts
    target = torch.arange(len(logits), device=logits.device)
    return (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2


def from_open_clip(source, vision_heads: int | None = None, text_heads: int | None = None,
                   quick_gelu: bool | None = None, image_mean=OPENAI_MEAN, image_std=OPENAI_STD) -> CLIP:
    """A minidalle CLIP holding the weights of an open_clip ViT CLIP.

    source: an `open_clip.CLIP` module, its state dict, or the path of a LOCAL
        file — ``.safetensors``, or an open_clip checkpoint read with
        ``torch.load(weights_only=True)`` (a state dict, or a dict with
        "state_dict"). Nothing is ever downloaded.
    vision_heads, text_heads, quick_gelu: not stored in a state dict; read from
        the module when one is given, else heads default to width // 64 (the
        OpenAI models' head width) and quick_gelu to False. OpenAI's own
        weights (``pretrained="openai"``) need quick_gelu=True.
    image_mean/std: the normalisation open_clip's preprocessing applies; the
        minidalle model applies it itself to images in [0, 1].
    Use `Tokenizer(context_length=77, compact=False)` for its text side.
    """
    if isinstance(source, nn.Module):
        if not hasattr(source, "visual") or not hasattr(source.visual, "transformer"):
            raise ValueError("from_open_clip needs an open_clip.CLIP with a ViT image tower")
        vision_heads = vision_heads or source.visual.transformer.resblocks[0].attn.num_heads
        text_heads = text_heads or source.transformer.resblocks[0].attn.num_heads
        if quick_gelu is None:
            quick_gelu = type(source.transformer.resblocks[0].mlp.gelu).__name__ == "QuickGELU"
        sd = source.state_dict()
    elif isinstance(source, (str, Path)):
        sd = _read_weights(Path(source))
    elif isinstance(source, dict):
        sd = source
    else:
        raise TypeError(f"from_open_clip takes an open_clip.CLIP, a state dict or a file path, got {type(source).__name__}")
    sd = {k.removeprefix("module."): v for k, v in sd.items()}
    need = ("visual.conv1.weight", "visual.positional_embedding", "visual.proj", "token_embedding.weight",
            "positional_embedding", "text_projection", "ln_final.weight", "logit_scale")
    missing = [k for k in need if k not in sd]
    if missing:
        raise ValueError(f"not the weights of an open_clip ViT CLIP with the standard text tower: missing "
                         f"{', '.join(missing)} (timm/HF towers, ResNets and CoCa are not supported)")

    def layers(prefix):
        return len({k.split(".")[len(prefix.split("."))] for k in sd if k.startswith(prefix + ".")})

    vw, P = sd["visual.conv1.weight"].shape[0], sd["visual.conv1.weight"].shape[-1]
    grid = math.isqrt(sd["visual.positional_embedding"].shape[0] - 1)
    T, tw = sd["positional_embedding"].shape
    vocab = sd["token_embedding.weight"].shape[0]
    config = CLIPConfig(
        image_size=grid * P, patch_size=P, vision_width=vw, vision_layers=layers("visual.transformer.resblocks"),
        vision_heads=vision_heads or max(1, vw // 64), vocab_size=vocab, context_length=T,
        eot_id=vocab - 1, text_width=tw, text_layers=layers("transformer.resblocks"),
        text_heads=text_heads or max(1, tw // 64), embed_dim=sd["text_projection"].shape[1],
        mlp_ratio=sd["transformer.resblocks.0.mlp.c_fc.weight"].shape[0] / tw, quick_gelu=bool(quick_gelu),
        image_mean=tuple(image_mean), image_std=tuple(image_std))
    ours = {"logit_scale": sd["logit_scale"].reshape(()),
            "visual.patch_embed.weight": sd["visual.conv1.weight"],
            "visual.class_embedding": sd["visual.class_embedding"],
            "visual.positional_embedding": sd["visual.positional_embedding"],
            "visual.projection.weight": sd["visual.proj"].T,                   # open_clip: x @ proj
            "text.token_embedding.weight": sd["token_embedding.weight"],
            "text.positional_embedding": sd["positional_embedding"],
            "text.projection.weight": sd["text_projection"].T}
    for theirs, mine in (("visual.ln_pre", "visual.ln_pre"), ("visual.ln_post", "visual.ln_post"),
                         ("ln_final", "text.ln_final")):
        for p in ("weight", "bias"):
            ours[f"{mine}.{p}"] = sd[f"{theirs}.{p}"]
    for theirs, mine, n in (("visual.transformer.resblocks", "visual.blocks", config.vision_layers),
                            ("transformer.resblocks", "text.blocks", config.text_layers)):
        for i in range(n):
            a, b = f"{theirs}.{i}.", f"{mine}.{i}."
            for p in ("weight", "bias"):
                ours[b + f"ln_1.{p}"] = sd[a + f"ln_1.{p}"]
                ours[b + f"ln_2.{p}"] = sd[a + f"ln_2.{p}"]
                ours[b + f"attn.proj.{p}"] = sd[a + f"attn.out_proj.{p}"]
                ours[b + f"mlp.0.{p}"] = sd[a + f"mlp.c_fc.{p}"]
                ours[b + f"mlp.2.{p}"] = sd[a + f"mlp.c_proj.{p}"]
            ours[b + "attn.qkv.weight"] = sd[a + "attn.in_proj_weight"]
            ours[b + "attn.qkv.bias"] = sd[a + "attn.in_proj_bias"]
    model = CLIP(config)
    model.load_state_dict({k: v.float() for k, v in ours.items()}, strict=True)
    return model


def _read_weights(path: Path) -> dict:
    if not path.exists():
        raise FileNotFoundError(f"no weights at {path}; from_open_clip reads local files only, nothing is downloaded")
    if path.suffix == ".safetensors":
        return load_file(str(path))
    sd = torch.load(path, map_location="cpu", weights_only=True)
    return sd.get("state_dict", sd) if isinstance(sd, dict) else sd


# ------------------------------------------------------------ using a trained CLIP
@torch.no_grad()
def embed_images(model, images: torch.Tensor, batch: int = 500) -> torch.Tensor:
    """uint8 (N, 3, S, S) → unit vectors (N, E)."""
    dev = next(model.parameters()).device
    return torch.cat([model.encode_image(images[i:i + batch].to(dev).float() / 255).cpu()
                      for i in range(0, len(images), batch)])


@torch.no_grad()
def embed_texts(model, texts: list[str], batch: int = 500) -> torch.Tensor:
    """Strings → unit vectors (N, E), tokenized with the model's context length."""

    tok = tokenizer(model.config.context_length)
    dev = next(model.parameters()).device
    return torch.cat([model.encode_text(tok(texts[i:i + batch]).to(dev)).cpu() for i in range(0, len(texts), batch)])
