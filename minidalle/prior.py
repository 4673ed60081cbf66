"""Lesson 05: the unCLIP diffusion prior — from a caption to a CLIP *image* embedding.

Ramesh et al. 2022, "Hierarchical Text-Conditional Image Generation with CLIP
Latents" (unCLIP, the paper behind DALL·E 2), §2.2. The decoder of
lesson 06 draws a picture from a CLIP image embedding; at generation time
there is no image, only a caption, so a *prior* p(z_i | y) turns the caption
into a plausible image embedding first. CLIP's text and image embeddings of
one scene are close but not equal (lesson 02's contrastive loss only ranks
them), so the text embedding itself is only a stand-in; `evaluate` measures
how much closer the prior's samples come.

The prior is a diffusion model whose data are embeddings instead of pixels
(`minidalle.diffusion`, unchanged):

* a decoder-only transformer reads the sequence
  [caption tokens | CLIP text embedding | timestep | noised image embedding | query]
  with a causal mask, and its output at the query predicts the clean image
  embedding directly (x0-prediction, as the paper does), under a cosine schedule;
* the caption (tokens and text embedding) is dropped 10% of the time, so
  classifier-free guidance is available at sampling;
* embeddings are scaled by √D so that their coordinates have unit variance,
  like the pixels of an image model;
* sampling draws **two** candidate embeddings and keeps the one with the
  higher dot product with the text embedding (§2.2).

`python -m minidalle train prior` trains it on the embeddings that the preset's
CLIP (lesson 02) gives the shapes-world training scenes; `eval prior` reports
the cosine similarity of its predictions to the true image embeddings of
held-out scenes, against two baselines: the text embedding itself, and the
training image embedding nearest to the text embedding.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from . import checkpoint
from .dalle import Block
from .diffusion import Diffusion, DiffusionConfig, classifier_free_guidance
from .presets import get_preset
from .runtime import device, progress
from .tokenizer import tokenizer
from .trainer import TrainConfig, fit


@dataclass
class PriorConfig:
    """Shape of the prior. Defaults: the `cpu` preset (CLIP embeddings of 64 dimensions)."""

    embed_dim: int = 64             # CLIP's embedding size
    vocab: int = 64                 # CLIP's (compact) token vocabulary
    text_len: int = 32              # CLIP's context length
    width: int = 128
    layers: int = 4
    heads: int = 4
    p_uncond: float = 0.1           # caption dropped (tokens and text embedding), for classifier-free guidance
    two_objects: float = 0.5        # share of two-object scenes in the training data (the rest: one object)
    clip: str = ""                  # fingerprint of the CLIP checkpoint whose embeddings it models
    diffusion: DiffusionConfig = field(default_factory=lambda: DiffusionConfig(
        schedule="cosine", prediction="x0", clip_x0=False))
    train: TrainConfig = field(default_factory=TrainConfig)


def prior_config(preset: str | None = None) -> PriorConfig:
    """The named preset's prior, sized to the same preset's CLIP."""
    from .clip import checkpoint_name as clip_name
    from .clip import preset_configs

    p = get_preset(preset)
    clip_config = preset_configs(p.name)[0]
    steps = {"ci": 10, "cpu": 2000, "gpu": 20_000}[p.name]
    train = TrainConfig(steps=steps, batch={"ci": 16, "cpu": 64, "gpu": 512}[p.name], lr=1e-3,
                        warmup=min(100, steps // 5), weight_decay=0.01, n_train=p.n_train,
                        log_every=max(1, steps // 50), ema=0.999)
    shape = {"ci": dict(width=32, layers=1, heads=2), "cpu": {}, "gpu": dict(width=256, layers=6, heads=8)}[p.name]
    diffusion = DiffusionConfig(schedule="cosine", prediction="x0", clip_x0=False,
                                timesteps=100 if p.name == "ci" else 1000)
    return PriorConfig(embed_dim=clip_config.embed_dim, vocab=clip_config.vocab_size,
                       text_len=clip_config.context_length, clip=checkpoint.fingerprint(clip_name(p.name)),
                       diffusion=diffusion, train=train, **shape)


class Prior(nn.Module):
    """forward(z_t (B, D), t (B,), tokens (B, L), text_emb (B, D)) → predicted clean embedding (B, D)."""

    def __init__(self, config: PriorConfig):
        super().__init__()
        self.config = c = config
        W = c.width
        self.token_emb = nn.Embedding(c.vocab, W)
        self.pos = nn.Parameter(torch.randn(c.text_len + 4, W) * 0.02)              # L tokens + 4 slots
        self.text_in, self.z_in = nn.Linear(c.embed_dim, W), nn.Linear(c.embed_dim, W)
        self.time_in = nn.Sequential(nn.Linear(W, W), nn.SiLU(), nn.Linear(W, W))
        self.query = nn.Parameter(torch.randn(W) * 0.02)
        self.blocks = nn.ModuleList(Block(W, c.heads) for _ in range(c.layers))
        self.ln = nn.LayerNorm(W)
        self.out = nn.Linear(W, c.embed_dim)

    def forward(self, z_t: torch.Tensor, t: torch.Tensor, tokens: torch.Tensor, text_emb: torch.Tensor):
        from .unet import timestep_embedding

        B, L = tokens.shape
        slots = torch.stack([self.text_in(text_emb), self.time_in(timestep_embedding(t, self.config.width)),
                             self.z_in(z_t), self.query.expand(B, -1)], 1)          # (B, 4, W)
        x = torch.cat([self.token_emb(tokens), slots], 1) + self.pos[:L + 4]      # (B, L + 4, W)
        for block in self.blocks:                                                  # causal: the query sees all
            x = block(x)
        return self.out(self.ln(x[:, -1]))                                        # (B, D)


# ------------------------------------------------------------------ data
@torch.no_grad()
def clip_embeddings(clip_model, images: torch.Tensor, captions: list[str]):
    """CLIP's view of captioned scenes: (tokens (N, L), text embeddings (N, D), image embeddings (N, D)), unit norm."""
    from .clip_eval import embed_images, embed_texts

    tokens = tokenizer(clip_model.config.context_length)(captions)
    pictures = images if images.dtype == torch.uint8 else ((images.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return tokens, embed_texts(clip_model, captions), embed_images(clip_model, pictures)


def null_caption(config: PriorConfig, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The dropped caption: the empty text's tokens (<sot> <eot>, then padding) and a zero text embedding."""
    from .tokenizer import PAD

    tok = tokenizer(config.text_len)
    tokens = torch.full((n, config.text_len), PAD, dtype=torch.long)
    tokens[:, 0], tokens[:, 1] = tok.sot_id, tok.eot_id
    return tokens, torch.zeros(n, config.embed_dim)


def train(model: Prior, clip_model, name=None, resume: bool = False, show_progress: bool = True,
          on_log=None) -> dict:
    """Train the prior (lesson 05) on CLIP embeddings of captioned scenes; captions dropped p_uncond."""
    from .glide import training_data

    c, tc = model.config, model.config.train
    images, captions = training_data(tc.n_train, 32, c.two_objects, tc.seed)
    tokens, text, image = clip_embeddings(clip_model, images, captions)
    null_tokens, _ = null_caption(c, 1)
    scale = math.sqrt(c.embed_dim)
    diffusion = Diffusion(c.diffusion)
    dev = device()

    def batch_loss(step, gen):
        idx = torch.randint(0, len(image), (tc.batch,), generator=gen)
        drop = torch.rand(tc.batch, generator=gen) < c.p_uncond
        tok = torch.where(drop[:, None], null_tokens, tokens[idx])
        txt = text[idx].masked_fill(drop[:, None], 0.0)
        loss = diffusion.loss(model, (image[idx] * scale).to(dev), generator=gen, tokens=tok.to(dev),
                              text_emb=txt.to(dev))
        return loss, {}

    return fit(model, c, tc, batch_loss, name=name, resume=resume, show_progress=show_progress, on_log=on_log,
               desc="training the prior")


# ------------------------------------------------------------------ sampling
@torch.no_grad()
def sample(model: Prior, tokens: torch.Tensor, text_emb: torch.Tensor, candidates: int = 2, guidance: float = 1.0,
           steps: int = 64, seed: int = 0) -> torch.Tensor:
    """Image embeddings (B, D), unit norm, for captions given as CLIP tokens (B, L) and text embeddings (B, D).

    Draws `candidates` embeddings a caption (DDIM, `steps` steps) and keeps the one with the
    highest dot product with the text embedding (unCLIP §2.2 uses two).
    """
    c = model.config
    dev = next(model.parameters()).device
    B, k = len(tokens), candidates
    tok, txt = tokens.repeat_interleave(k, 0).to(dev), text_emb.repeat_interleave(k, 0).to(dev)   # (B·k, …)
    null_tok, null_txt = (x.to(dev) for x in null_caption(c, B * k))
    guided = classifier_free_guidance(model, guidance, {"tokens": tok, "text_emb": txt},
                                      {"tokens": null_tok, "text_emb": null_txt})
    z = Diffusion(c.diffusion).sample(guided, (B * k, c.embed_dim), steps=steps, method="ddim",
                                      generator=torch.Generator().manual_seed(seed), device=dev)
    return keep_closest(F.normalize(z, dim=-1).view(B, k, -1).cpu(), text_emb)


def keep_closest(candidates: torch.Tensor, text_emb: torch.Tensor) -> torch.Tensor:
    """Of each caption's candidate embeddings (B, k, D), the one with the highest dot product with its text (B, D)."""
    best = (candidates * text_emb[:, None]).sum(-1).argmax(1)                    # (B,)
    return candidates[torch.arange(len(candidates)), best]


# ------------------------------------------------------------------ evaluation
@torch.no_grad()
def evaluate(model: Prior, clip_model, n: int = 500, seed: int = 909, batch: int = 250, nearest: bool = True,
             **sampling) -> dict:
    """Cosine similarity to the true CLIP image embedding of n held-out captioned scenes.

    Compared: the prior's sample; the caption's text embedding itself; and the training-set
    image embedding nearest to the text embedding (a retrieval "prior"; skipped with nearest=False,
    as it embeds the whole training set). {name: (mean, lo, hi, n)}.
    """
    from .glide import training_data
    from .oracle import bootstrap

    c = model.config
    images, captions = training_data(n, 32, c.two_objects, seed)
    tokens, text, image = clip_embeddings(clip_model, images, captions)
    pred = torch.cat([sample(model, tk, tx, seed=seed + i, **sampling)
                      for i, (tk, tx) in enumerate(progress(list(zip(tokens.split(batch), text.split(batch))),
                                                            desc="prior sampling", leave=False))])
    rivals = [("prior", pred), ("text embedding", text)]
    if nearest:
        train_images, train_captions = training_data(c.train.n_train, 32, c.two_objects, c.train.seed)
        _, _, train_image = clip_embeddings(clip_model, train_images, train_captions)   # (N, D)
        rivals.append(("nearest training image", train_image[(text @ train_image.T).argmax(1)]))
    out = {}
    for name, z in rivals:
        b = bootstrap(F.cosine_similarity(z, image, dim=-1))
        out[name] = (b["value"], b["lo"], b["hi"], b["n"])
    return out


def checkpoint_name(preset: str | None = None):
    return checkpoint.shipped_name("prior", preset)


def load_trained(preset: str | None = None):
    """(prior, CLIP): the prior trained by `python -m minidalle train prior` and the CLIP it models."""
    from .clip import load_trained as load_clip

    clip_model, _ = load_clip(preset, train_if_missing=False)
    config = prior_config(preset)
    model = Prior(config)
    checkpoint.load_into(model, checkpoint_name(preset), config)
    return model.to(device()).eval(), clip_model.to(device()).eval()



# ------------------------------------------------------------------ commands
def cli_train(resume: bool = False) -> dict:
    """`python -m minidalle train prior`: train on the preset's CLIP embeddings, evaluate, record the checkpoint."""
    from .clip import load_trained as load_clip
    from .trainer import ship

    try:
        clip_model, _ = load_clip(train_if_missing=False)
    except checkpoint.CheckpointError as e:
        raise checkpoint.CheckpointError(f"{e} (the prior models CLIP's embeddings: "
                                         "`python -m minidalle train clip` first)") from e
    config = prior_config()
    model, name = Prior(config), checkpoint_name()
    info = train(model, clip_model.to(device()).eval(), name, resume=resume)
    r = evaluate(model, clip_model, n=200)
    ship("prior", name, config, info, {f"cosine to true image embedding, {k}": round(v[0], 4) for k, v in r.items()})
    return info


def cli_eval(n: int = 500, guidance: float = 1.0) -> dict:
    """`python -m minidalle eval prior`: cosine similarity to the true image embedding, prior vs baselines."""
    model, clip_model = load_trained()
    print(f"prior at preset {get_preset().name}: cosine similarity to the true CLIP image embedding of {n} "
          f"held-out captioned scenes (mean, 95% interval); two candidates, DDIM 64, s = {guidance:g}")
    out = evaluate(model, clip_model, n=n, guidance=guidance)
    for k, (v, lo, hi, _) in out.items():
        print(f"  {k:24s} {v:.3f}  [{lo:.3f}, {hi:.3f}]")
    return out
