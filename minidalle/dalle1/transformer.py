"""Lesson 09: the DALL·E 1 transformer — text and image tokens in one sequence, sampled one token at a time.

Ramesh et al. 2021, "Zero-Shot Text-to-Image Generation", §2.2 and App. B.
A caption becomes text tokens, an image becomes the dVAE's 8×8 grid of codes
(`minidalle.dalle1.dvae`, lesson 08), and one decoder-only transformer learns the joint
distribution of the sequence

    [ t_0 … t_{T−1} | i_0 … i_63 ]        (text padded to T, image tokens row by row)

by predicting every next token. `notebooks/09_dalle.ipynb` explains it; the
details follow the paper at small scale:

* Text positions that the caption does not fill get a **pad token of their own
  position**, learned, as in the paper (§2.2), rather than one shared pad token.
* Image tokens get **separate row and column position embeddings**, added.
* **Causal attention** with `scaled_dot_product_attention`: every token sees the
  caption and the image tokens before it (the paper's sparse row, column and
  convolutional masks save compute over 1,280 tokens; over 16 + 64 tokens dense
  attention is affordable).
* The blocks are the course's one pre-norm transformer block
  (`minidalle.nn.transformer.Block`, run with `causal=True`).
* The loss is the cross-entropy of the next token, weighted **1/8 text, 7/8
  image** (§2.2; `train.text_weight`).
* Sampling (`generate`) uses a **key/value cache**: the text is read once, then
  each new image token costs one position, not the whole sequence.
  Top-k, top-p (nucleus) and temperature shape the choice; optional
  **classifier-free guidance** uses the caption dropout of training (the
  all-pad caption is the unconditional one).
* **CLIP re-ranking** (§2.6; `rerank`) draws N images a prompt and keeps the
  one minidalle's CLIP scores highest (`clip_scores`: the paper's cosine, or
  CLIP's probability of the prompt against other captions); **completion**
  (`complete`) keeps the given top rows of tokens and samples the rest.

The transformer is trained on one dVAE's tokens: its checkpoint records that dVAE's
fingerprint (`trained_on`), and `load` refuses it once the dVAE changes. `load` returns
the transformer alone; the dVAE is `dvae.load()`. `python -m minidalle train dalle` trains
it, `eval dalle` (`minidalle.eval.dalle1`) measures it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from minidalle import checkpoint
from minidalle.clip.model import embed_images, embed_texts
from minidalle.clip.train import load as load_clip
from minidalle.config import InputError, get_preset
from minidalle.dalle1 import dvae
from minidalle.nn.transformer import Block
from minidalle.runtime import progress
from minidalle.text.words import PAD, WORDS, tokenize
from minidalle.trainer import TrainConfig, fit
from minidalle.world.data import training_data


@dataclass(frozen=True)
class DALLETrain(TrainConfig):
    """How `train` trains the transformer: the trainer's settings (AdamW with weight decay 0.01, no weight
    average), the loss weights, caption dropout and the data mix. Defaults: the `cpu` preset."""

    steps: int = 12_000
    batch: int = 32
    lr: float = 1e-3
    warmup: int = 200
    weight_decay: float = 0.01
    ema: float = 0.0
    log_every: int = 240
    text_weight: float = 1 / 8      # loss weights: text 1/8, image 7/8 (§2.2)
    p_uncond: float = 0.1           # captions replaced by all-pad in training, for classifier-free guidance
    two_objects: float = 0.5        # share of two-object scenes in the training data (the rest: one object)


@dataclass(frozen=True)
class DALLEConfig:
    """Shape of the transformer, and how it is trained (`train`). Defaults: the `cpu` preset.

    `codes` and `grid` must be those of the dVAE whose tokens it reads (each preset's are its dVAE's).
    """

    text_len: int = 16              # T: caption tokens incl. <eot> (the paper: 256 BPE tokens)
    text_vocab: int = len(WORDS)    # the course's word tokenizer (the paper: 16,384 BPE codes)
    codes: int = 512                # the dVAE's codebook size (the paper: 8,192)
    grid: int = 8                   # image tokens per side (the paper: 32)
    width: int = 128
    layers: int = 4                 # the paper: 64 layers, width 3,968, 62 heads — 12B parameters
    heads: int = 4
    train: DALLETrain = field(default_factory=DALLETrain)


PRESETS = {                         # codes and grid: the same preset's dVAE's (dvae.PRESETS)
    "ci": DALLEConfig(codes=64, grid=8, width=32, layers=1, heads=2,
                      train=DALLETrain(steps=10, batch=8, warmup=2, n_train=256, log_every=1)),
    "cpu": DALLEConfig(),
    "gpu": DALLEConfig(codes=1024, grid=8, width=256, layers=8, heads=8,
                       train=DALLETrain(steps=20_000, batch=256, n_train=100_000, log_every=400)),
}


def dalle_config(preset: str | None = None) -> DALLEConfig:
    """The active (or named) preset's transformer, over the same preset's dVAE tokens."""
    return PRESETS[get_preset(preset).name]


def checkpoint_name(preset: str | None = None) -> Path:
    """Where a preset's trained transformer lives: data/checkpoints/dalle-PRESET (.safetensors + .json)."""
    return checkpoint.shipped_name("dalle", preset)


def trained_on(preset: str | None = None) -> dict:
    """The dVAE whose tokens the transformer reads, by the fingerprint of the preset's dVAE checkpoint: a
    transformer trained on the tokens of another dVAE is refused, not silently misread."""
    return {"dvae": checkpoint.fingerprint(dvae.checkpoint_name(preset))}


class DALLE(nn.Module):
    """Next-token model over [text | image] sequences.

    forward(text (B, T), image (B, n) with n ≤ grid²) → (text logits (B, T−1, T_vocab+T),
    image logits (B, n, codes)): position i predicts token i + 1 (the last text
    position predicts the first image token).
    """

    def __init__(self, config: DALLEConfig):
        super().__init__()
        self.config = c = config
        self.text_emb = nn.Embedding(c.text_vocab + c.text_len, c.width)      # words, then one pad per position
        self.text_pos = nn.Parameter(torch.randn(c.text_len, c.width) * 0.02)
        self.image_emb = nn.Embedding(c.codes, c.width)
        self.row = nn.Parameter(torch.randn(c.grid, c.width) * 0.02)
        self.col = nn.Parameter(torch.randn(c.grid, c.width) * 0.02)
        self.blocks = nn.ModuleList(Block(c.width, c.heads) for _ in range(c.layers))   # GELU MLP, 4× wide
        self.ln = nn.LayerNorm(c.width)
        self.text_head = nn.Linear(c.width, c.text_vocab + c.text_len)
        self.image_head = nn.Linear(c.width, c.codes)
        self.apply(self._init)

    @staticmethod
    def _init(m):
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, std=0.02)
        if isinstance(m, nn.Linear) and m.bias is not None:
            nn.init.zeros_(m.bias)

    def text_ids(self, tokens: torch.Tensor) -> torch.Tensor:
        """Word ids (B, T) with PAD → the pad id of each position (text_vocab + position)."""
        T = self.config.text_len
        if tokens.shape[1] != T:
            raise ValueError(f"text must be padded to {T} tokens, got {tokens.shape[1]} (use encode_text)")
        pos = torch.arange(T, device=tokens.device).expand_as(tokens)
        return torch.where(tokens == PAD, self.config.text_vocab + pos, tokens)

    def _image_pos(self, start: int, n: int, dev) -> torch.Tensor:
        idx = torch.arange(start, start + n, device=dev)
        return self.row[idx // self.config.grid] + self.col[idx % self.config.grid]   # (n, W)

    def embed(self, text: torch.Tensor | None, image: torch.Tensor, start: int = 0) -> torch.Tensor:
        """Embeddings of the text (if given) followed by image tokens start, start+1, … : (B, L, W)."""
        parts = [] if text is None else [self.text_emb(self.text_ids(text)) + self.text_pos]
        if image.shape[1]:
            parts.append(self.image_emb(image) + self._image_pos(start, image.shape[1], image.device))
        return torch.cat(parts, 1)

    def run(self, x: torch.Tensor, caches: list | None = None) -> torch.Tensor:
        for i, block in enumerate(self.blocks):
            x = block(x, causal=True, cache=None if caches is None else caches[i])
        return self.ln(x)

    def forward(self, text: torch.Tensor, image: torch.Tensor):
        T = self.config.text_len
        h = self.run(self.embed(text, image[:, :-1]))                         # (B, T + n − 1, W)
        return self.text_head(h[:, :T - 1]), self.image_head(h[:, T - 1:])

    def loss(self, text: torch.Tensor, image: torch.Tensor) -> tuple[torch.Tensor, dict]:
        """Cross-entropy of every next token, 1/8 text + 7/8 image (§2.2; `config.train.text_weight`).
        image: (B, grid²) codes."""
        t_logits, i_logits = self(text, image)
        t_loss = F.cross_entropy(t_logits.flatten(0, 1), self.text_ids(text)[:, 1:].flatten())
        i_loss = F.cross_entropy(i_logits.flatten(0, 1), image.flatten())
        w = self.config.train.text_weight
        return w * t_loss + (1 - w) * i_loss, {"text": t_loss.item(), "image": i_loss.item()}


# ------------------------------------------------------------------ text and training
def encode_text(prompts: list[str] | str, text_len: int, validate: bool = True) -> torch.Tensor:
    """Prompts → (B, text_len) word ids, PAD after <eot>. The empty prompt "" is all PAD (unconditional).

    Unknown words, empty or malformed prompts raise the tokenizer's ValueError; a prompt
    longer than text_len tokens raises an InputError that says how long it may be.
    """
    if isinstance(prompts, str):
        prompts = [prompts]
    tokens, _ = tokenize(prompts, validate=validate)
    tokens[torch.tensor([not p.strip() for p in prompts])] = PAD               # "" → all pad
    n = (tokens != PAD).sum(1)
    if int(n.max()) > text_len:
        bad = prompts[int(n.argmax())]
        raise InputError(f"prompt {bad!r} is {int(n.max())} tokens (with <eot>); this DALL·E model reads at most "
                         f"{text_len}: shorten it (one or two objects, e.g. 'a red circle left of a blue square')")
    out = torch.full((len(prompts), text_len), PAD, dtype=torch.long)
    out[:, :min(text_len, tokens.shape[1])] = tokens[:, :text_len]
    return out


def training_tokens(vae, n: int, two_objects: float, seed: int = 0) -> tuple[torch.Tensor, list[str]]:
    """The dVAE's tokens (N, grid²) of single- and two-object scenes, with their captions."""
    images, captions = training_data(n, vae.config.res, two_objects, seed)
    dev = vae.codebook.device
    tokens = torch.cat([vae.encode(b.to(dev)).flatten(1).cpu()
                        for b in progress(images.split(512), desc="tokenizing images", disable=n < 5000)])
    return tokens, captions


def train(model: DALLE, vae: dvae.DVAE, name=None, resume: bool = False, show_progress: bool = True,
          on_log=None, state=None) -> dict:
    """Train the transformer (lesson 09) in place, by its config, on `vae`'s tokens of captioned scenes;
    captions dropped to all-pad with probability train.p_uncond. `trainer.fit` does the rest and records the
    active preset's dVAE checkpoint as what it was trained on (`trained_on`). Returns fit's info."""
    c, tc = model.config, model.config.train
    if vae.config.codes != c.codes or vae.config.grid != c.grid:
        raise InputError(f"this transformer expects a dVAE with {c.codes} codes on a {c.grid}×{c.grid} grid, "
                         f"got {vae.config.codes} on {vae.config.grid}×{vae.config.grid}: use the same preset's "
                         "dVAE (dvae.load()), or set the transformer's codes and grid to the dVAE's")
    image_tokens, captions = training_tokens(vae, tc.n_train, tc.two_objects, tc.seed)   # (N, grid²), N captions
    text = encode_text(captions, c.text_len, validate=False)                  # (N, T)

    def batch_loss(step, gen):
        idx = torch.randint(0, len(text), (tc.batch,), generator=gen)
        t = text[idx].masked_fill((torch.rand(tc.batch, generator=gen) < tc.p_uncond)[:, None], PAD)
        dev = next(model.parameters()).device
        return model.loss(t.to(dev), image_tokens[idx].to(dev))

    return fit(model, c, tc, batch_loss, name=name, state=state, resume=resume, show_progress=show_progress,
               on_log=on_log, desc="training DALL·E", trained_on=trained_on())


def load(preset: str | None = None) -> DALLE:
    """The preset's trained transformer (data/checkpoints/dalle-PRESET), in eval mode on the device; the dVAE
    it reads is `dvae.load(preset)`. A CheckpointError names `python -m minidalle train dalle` if there is
    none, and refuses a transformer trained on another dVAE's tokens."""
    return checkpoint.load_model(DALLE, dalle_config(preset), checkpoint_name(preset), trained_on(preset), kind="dalle")


# ------------------------------------------------------------------ sampling
def filter_logits(logits: torch.Tensor, top_k: int | None = None, top_p: float | None = None) -> torch.Tensor:
    """Keep the top_k largest logits and/or the smallest set whose probability reaches top_p; others → −inf."""
    if top_k is not None and top_k < logits.shape[-1]:
        kth = logits.topk(top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and top_p < 1.0:
        sorted_logits, order = logits.sort(-1, descending=True)
        cum = sorted_logits.softmax(-1).cumsum(-1)
        drop = cum - sorted_logits.softmax(-1) >= top_p                           # mass before this one already ≥ p
        logits = logits.masked_fill(drop.scatter(-1, order, drop), float("-inf"))
    return logits


@torch.no_grad()
def sample_tokens(model: DALLE, text: torch.Tensor, prefix: torch.Tensor | None = None, temperature: float = 1.0,
                  top_k: int | None = None, top_p: float | None = None, guidance: float = 1.0,
                  generator: torch.Generator | None = None, use_cache: bool = True) -> torch.Tensor:
    """Image tokens (B, grid²) for text (B, T), continuing `prefix` (B, m) if given (completion).

    With guidance s ≠ 1 the logits are uncond + s·(cond − uncond), the unconditional
    pass reading the all-pad caption. use_cache=False recomputes the whole sequence at
    every step (the slow way, kept for lesson 09's comparison and the tests).
    """
    c = model.config
    n_img = c.grid * c.grid
    B = text.shape[0]
    dev = next(model.parameters()).device
    text = text.to(dev)
    image = (prefix if prefix is not None else torch.zeros(B, 0, dtype=torch.long)).to(dev)
    if guidance != 1.0:
        text = torch.cat([text, torch.full_like(text, PAD)])                   # (2B, T): cond, then uncond
    caches = [dict() for _ in model.blocks] if use_cache else None
    fresh = model.embed(text, image.repeat(text.shape[0] // B, 1))              # text + prefix, read once
    for _ in range(image.shape[1], n_img):
        if use_cache:
            h = model.run(fresh, caches)[:, -1]                                   # (B or 2B, W)
        else:
            h = model.run(model.embed(text, image.repeat(text.shape[0] // B, 1)))[:, -1]
        logits = model.image_head(h).float()
        if guidance != 1.0:
            cond, uncond = logits.chunk(2)
            logits = uncond + guidance * (cond - uncond)
        logits = filter_logits(logits / max(temperature, 1e-5), top_k, top_p)
        nxt = torch.multinomial(logits.softmax(-1).cpu(), 1, generator=generator).to(dev)   # (B, 1)
        image = torch.cat([image, nxt], 1)
        fresh = model.embed(None, nxt.repeat(text.shape[0] // B, 1), start=image.shape[1] - 1)
    return image


@torch.no_grad()
def generate(model: DALLE, vae, prompts: list[str] | str, per_prompt: int = 1, seed: int = 0,
             batch: int = 64, show_progress: bool = False, **sampling) -> tuple[torch.Tensor, torch.Tensor]:
    """Images (N, 3, res, res) in [0, 1] and their tokens (N, grid, grid): per_prompt samples of each prompt."""
    prompts = [prompts] if isinstance(prompts, str) else list(prompts)
    for p in prompts:
        if not p.strip():
            raise InputError("empty prompt: describe one or two shapes, e.g. 'a red circle above a blue square'")
    text = encode_text(prompts, model.config.text_len).repeat_interleave(per_prompt, 0)
    g = torch.Generator().manual_seed(seed)
    tokens = torch.cat([sample_tokens(model, t, generator=g, **sampling)
                        for t in progress(text.split(batch), desc="sampling", disable=not show_progress)])
    tokens = tokens.view(-1, model.config.grid, model.config.grid).to(vae.codebook.device)
    return (vae.decode(tokens).cpu() + 1) / 2, tokens.cpu()


@torch.no_grad()
def complete(model: DALLE, vae, images: torch.Tensor, prompts: list[str], rows: int | None = None, seed: int = 0,
             **sampling) -> torch.Tensor:
    """Keep the top `rows` of token rows of `images` ([0, 1], (B, 3, res, res)) and sample the rest for each prompt."""
    rows = model.config.grid // 2 if rows is None else rows
    tokens = vae.encode((images.to(vae.codebook.device) * 2 - 1)).flatten(1)[:, :rows * model.config.grid]
    text = encode_text(prompts, model.config.text_len)
    out = sample_tokens(model, text, prefix=tokens, generator=torch.Generator().manual_seed(seed), **sampling)
    return (vae.decode(out.view(-1, model.config.grid, model.config.grid)).cpu() + 1) / 2


@torch.no_grad()
def clip_scores(images: torch.Tensor, prompts: list[str], per_prompt: int, clip_model=None,
                against: list[str] | None = None) -> torch.Tensor:
    """CLIP's score of each image for its prompt (§2.6): (P·per_prompt,), images grouped per_prompt a prompt.

    images: (P·per_prompt, 3, res, res) in [0, 1]; CLIP reads 32×32 images, as the dVAE draws them. The score is
    the paper's: the cosine of image and prompt. With `against` (other captions), it is instead CLIP's
    log-probability of the prompt among all the captions in play (`against` and `prompts`) at CLIP's own
    temperature: the scaled cosine minus a log-sum-exp over those captions, so an image that CLIP finds close
    to *every* caption no longer wins for that alone (lesson 09 compares the two). clip_model: default, the
    preset's shipped CLIP (`clip.train.load()`).
    """
    clip_model = clip_model or load_clip()
    pictures = (images.clamp(0, 1) * 255).round().to(torch.uint8)              # embed_images reads uint8
    img = embed_images(clip_model, pictures)                                     # (P·per_prompt, D), unit length
    column = {c: i for i, c in enumerate(dict.fromkeys([*prompts, *(against or [])]))}   # captions in play
    table = img @ embed_texts(clip_model, list(column)).T                        # (P·per_prompt, C) cosines
    if against is not None:
        table = (clip_model.scale().item() * table).log_softmax(1)               # log p(caption | image), CLIP's τ
    own = torch.tensor([column[p] for p in prompts]).repeat_interleave(per_prompt)      # each image's prompt
    return table[torch.arange(len(img)), own]


def best_of(scores: torch.Tensor, per_group: int, keep: int = 1) -> torch.Tensor:
    """Indices of the `keep` highest scores in each consecutive group of per_group: (G·keep,), best first."""
    best = scores.view(-1, per_group).topk(keep, dim=1).indices                 # (G, keep)
    return (best + torch.arange(len(best))[:, None] * per_group).flatten()


def rerank(images: torch.Tensor, prompts: list[str], per_prompt: int, keep: int = 1, clip_model=None,
           against: list[str] | None = None) -> torch.Tensor:
    """CLIP re-ranking (§2.6): of each prompt's per_prompt images (grouped), keep the `keep` CLIP likes best.

    images: (P·per_prompt, 3, res, res) in [0, 1]; returns (P·keep, 3, res, res). Scores: `clip_scores`.
    """
    return images[best_of(clip_scores(images, prompts, per_prompt, clip_model, against), per_prompt, keep)]


SAMPLING = {"top_k": 32}            # the course's default; lesson 09 shows temperature, top-k and top-p


def sampler(model: DALLE, vae: dvae.DVAE, **sampling):
    """The DALL·E model as `sample(captions, seed) -> images` in [0, 1], for `eval.prompts.judge_samples`
    (SAMPLING's top-k 32 unless `sampling` says otherwise)."""
    kw = {**SAMPLING, **sampling}
    return lambda caps, seed: generate(model, vae, caps, seed=seed, **kw)[0]
