"""Lesson 05: the unCLIP diffusion prior — from a caption to a CLIP *image* embedding.

Ramesh et al. 2022, "Hierarchical Text-Conditional Image Generation with CLIP Latents" (unCLIP, the
paper behind DALL·E 2), §2.2; `notebooks/05_prior.ipynb` builds it. The decoder of lesson 06 draws a
picture from a CLIP image embedding; at generation time there is no image, only a caption, so a
*prior* p(z_i | y) turns the caption into a plausible image embedding first. CLIP's text and image
embeddings of one scene are close but not equal (lesson 02's contrastive loss only ranks them), so
the text embedding itself is only a stand-in; `eval prior` (`minidalle.eval.dalle2`) measures how
much closer the prior's samples come.

The prior is a diffusion model whose data are embeddings instead of pixels (`diffusion.gaussian`,
unchanged):

* a decoder-only transformer (`nn.transformer.Block`, causal) reads the sequence
  [caption tokens | CLIP text embedding | timestep | noised image embedding | query], and its output
  at the query predicts the clean image embedding directly (x0-prediction, as the paper does — not
  the v of the course's image models), under a cosine schedule;
* the caption (tokens and text embedding) is dropped `train.p_uncond` of the time (10%), so
  classifier-free guidance is available at sampling;
* embeddings are scaled by √D so that their coordinates have unit variance, like the pixels of an
  image model;
* sampling draws **two** candidate embeddings and keeps the one with the higher dot product with the
  text embedding (§2.2, `keep_closest`).

`python -m minidalle train prior` trains it on the embeddings that the preset's CLIP (lesson 02)
gives the shapes-world training scenes; the checkpoint records that CLIP's fingerprint
(`trained_on`), and `load` refuses it once CLIP changes.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from minidalle import checkpoint
from minidalle.clip import train as clip_train
from minidalle.clip.model import embed_images, embed_texts
from minidalle.config import InputError, get_preset
from minidalle.diffusion.gaussian import Diffusion, DiffusionConfig, classifier_free_guidance
from minidalle.nn.transformer import Block
from minidalle.nn.unet import timestep_embedding
from minidalle.runtime import device
from minidalle.text.bpe import PAD, tokenizer
from minidalle.trainer import TrainConfig, fit
from minidalle.world.data import training_data

PROCESS = DiffusionConfig(schedule="cosine", prediction="x0", clip_x0=False)   # T = 1000; embeddings: no clamp


@dataclass(frozen=True)
class PriorTrain(TrainConfig):
    """How the prior is trained (the `cpu` preset's values): AdamW with a little weight decay, captions
    dropped `p_uncond` of the time."""

    steps: int = 2000
    lr: float = 1e-3
    weight_decay: float = 0.01
    log_every: int = 40
    p_uncond: float = 0.1           # caption dropped (tokens and text embedding), for classifier-free guidance
    two_objects: float = 0.5        # share of two-object scenes in the training data (the rest: one object)


@dataclass(frozen=True)
class PriorConfig:
    """Lesson 05's prior, sized to its preset's CLIP (embed_dim, vocab and text_len are CLIP's). The
    defaults are the `cpu` preset: CLIP embeddings of 64 dimensions, a transformer 128 wide, 4 layers."""

    embed_dim: int = 64             # CLIP's embedding size (clip.model.CLIPConfig.embed_dim)
    vocab: int = 61                 # CLIP's compact token vocabulary (CLIPConfig.vocab_size)
    text_len: int = 32              # CLIP's context length (CLIPConfig.context_length)
    width: int = 128
    layers: int = 4
    heads: int = 4
    diffusion: DiffusionConfig = PROCESS
    train: PriorTrain = PriorTrain()


PRESETS = {
    "ci": PriorConfig(embed_dim=16, width=32, layers=1, heads=2,
                      diffusion=DiffusionConfig(timesteps=100, schedule="cosine", prediction="x0", clip_x0=False),
                      train=PriorTrain(steps=10, batch=16, warmup=2, n_train=256, log_every=1)),
    "cpu": PriorConfig(),
    "gpu": PriorConfig(embed_dim=128, width=256, layers=6, heads=8,
                       train=PriorTrain(steps=20_000, batch=512, n_train=100_000, log_every=400)),
}


def prior_config(preset: str | None = None) -> PriorConfig:
    """The preset's prior, sized to the same preset's CLIP. Change it with `config.override`."""
    return PRESETS[get_preset(preset).name]


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
        B, L = tokens.shape
        slots = torch.stack([self.text_in(text_emb), self.time_in(timestep_embedding(t, self.config.width)),
                             self.z_in(z_t), self.query.expand(B, -1)], 1)          # (B, 4, W)
        x = torch.cat([self.token_emb(tokens), slots], 1) + self.pos[:L + 4]      # (B, L + 4, W)
        for block in self.blocks:                                                  # causal: the query sees all
            x = block(x, causal=True)
        return self.out(self.ln(x[:, -1]))                                        # (B, D)


def checkpoint_name(preset: str | None = None):
    """data/checkpoints/prior-PRESET (the -ci ones are git-ignored)."""
    return checkpoint.shipped_name("prior", preset)


def trained_on(preset: str | None = None) -> dict:
    """The CLIP whose embeddings the prior models, by the fingerprint of the preset's CLIP checkpoint: a prior
    trained on another CLIP's embeddings is refused, not silently misused."""
    return {"clip": checkpoint.fingerprint(clip_train.checkpoint_name(preset))}


# ------------------------------------------------------------------ data
@torch.no_grad()
def clip_embeddings(clip_model, images: torch.Tensor, captions: list[str]):
    """CLIP's view of captioned scenes: (tokens (N, L), text embeddings (N, D), image embeddings (N, D)), unit norm.

    images: uint8, or float in [−1, 1] (as `world.data.training_data` gives them), at CLIP's resolution.
    """
    tokens = tokenizer(clip_model.config.context_length)(captions)
    pictures = images if images.dtype == torch.uint8 else ((images.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return tokens, embed_texts(clip_model, captions), embed_images(clip_model, pictures)


def null_caption(config: PriorConfig, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The dropped caption: the empty text's CLIP tokens (<sot> <eot>, then padding) and a zero text embedding."""
    tok = tokenizer(config.text_len)
    tokens = torch.full((n, config.text_len), PAD, dtype=torch.long)
    tokens[:, 0], tokens[:, 1] = tok.sot_id, tok.eot_id
    return tokens, torch.zeros(n, config.embed_dim)


def check_clip(clip_model, config: PriorConfig) -> None:
    """InputError unless `clip_model` gives the embeddings and tokens this prior is sized for."""
    c = clip_model.config
    have, want = (c.embed_dim, c.vocab_size, c.context_length), (config.embed_dim, config.vocab, config.text_len)
    if have != want:
        raise InputError(f"this prior models a CLIP with embeddings of {want[0]}, {want[1]} tokens and a context of "
                         f"{want[2]}, got {have[0]}, {have[1]} and {have[2]}: use the same preset's CLIP "
                         "(clip.train.load()), or size the prior to it")


# ------------------------------------------------------------------ training and loading
def train(model: Prior, clip_model, name=None, resume: bool = False, show_progress: bool = True, on_log=None,
          state=None) -> dict:
    """Train the prior (lesson 05) in place, by its config, on `clip_model`'s embeddings of captioned scenes;
    captions dropped with probability train.p_uncond. `trainer.fit` does the rest and records the active
    preset's CLIP checkpoint as what it was trained on (`trained_on`). Returns fit's info."""
    c, tc = model.config, model.config.train
    check_clip(clip_model, c)
    images, captions = training_data(tc.n_train, clip_model.config.image_size, tc.two_objects, tc.seed)
    tokens, text, image = clip_embeddings(clip_model, images, captions)          # (N, L), (N, D), (N, D)
    null_tokens, _ = null_caption(c, 1)
    scale = math.sqrt(c.embed_dim)
    diffusion = Diffusion(c.diffusion)
    dev = device()

    def batch_loss(step, gen):
        idx = torch.randint(0, len(image), (tc.batch,), generator=gen)            # (B,)
        drop = torch.rand(tc.batch, generator=gen) < tc.p_uncond                  # classifier-free: forget the caption
        tok = torch.where(drop[:, None], null_tokens, tokens[idx])
        txt = text[idx].masked_fill(drop[:, None], 0.0)
        loss = diffusion.loss(model, (image[idx] * scale).to(dev), generator=gen, tokens=tok.to(dev),
                              text_emb=txt.to(dev))
        return loss, {}

    return fit(model, c, tc, batch_loss, name=name, state=state, resume=resume, show_progress=show_progress,
               on_log=on_log, desc="training the prior", trained_on=trained_on())


def load(preset: str | None = None) -> Prior:
    """The preset's trained prior (`python -m minidalle train prior`; built with the overrides it was trained with),
    in eval mode on the device; the CLIP it models is `clip.train.load(preset)`. Refused (CheckpointError) if it was
    trained on another CLIP."""
    return checkpoint.load_model(Prior, prior_config(preset), checkpoint_name(preset), trained_on(preset),
                                 kind="prior")


# ------------------------------------------------------------------ sampling
@torch.no_grad()
def sample(model: Prior, tokens: torch.Tensor, text_emb: torch.Tensor, candidates: int = 2, guidance: float = 1.0,
           steps: int = 64, seed: int = 0) -> torch.Tensor:
    """Image embeddings (B, D), unit norm, for captions given as CLIP tokens (B, L) and text embeddings (B, D).

    Draws `candidates` embeddings a caption (DDIM, `steps` steps, classifier-free guidance scale
    `guidance`; 1: none) and keeps the one with the highest dot product with the text embedding
    (unCLIP §2.2 uses two).
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
