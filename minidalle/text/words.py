"""The word tokenizer of GLIDE, the unCLIP decoder and DALL·E 1 (lessons 04, 06, 09).

Word-level over the shapes-world grammar (`world.captions.VOCABULARY`, captions of at most 32
words), with commas kept as tokens; prompts are validated by `world.captions.parse`, which
refuses empty, over-long and unknown-word prompts with a clear message. Lesson 02's CLIP has
its own byte-pair tokenizer (`text.bpe`); GLIDE's is deliberately separate, as in the paper
(Nichol et al. 2022 §2.3 trains its own text encoder on its own tokens).

For classifier-free guidance (Ho & Salimans 2022) a caption can be replaced by the empty
caption: `null_caption` and `drop_captions`.
"""
from __future__ import annotations

import re

import torch

from minidalle.config import InputError
from minidalle.world.captions import MAX_CAPTION_WORDS, VOCABULARY, parse


PAD, EOT = 0, 1
WORDS = ["<pad>", "<eot>", ","] + list(VOCABULARY)
INDEX = {w: i for i, w in enumerate(WORDS)}
MAX_TOKENS = 2 * MAX_CAPTION_WORDS + 1          # words, commas, and the end-of-text token


def words(text: str) -> list[str]:
    """Lower-case words, with commas kept as tokens: "A red circle, and ..." → ["a", "red", "circle", ",", ...]."""
    return re.sub(r"[.!]", " ", text.lower()).replace(",", " , ").split()


def tokenize(captions: list[str] | str, validate: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Captions → (tokens (B, L) long, mask (B, L) bool, True = a real token). "" is the empty caption.

    Every non-empty caption is first checked by `captions.parse`, which raises InputError
    for an empty, over-long or unknown-word prompt; the empty caption is kept for
    classifier-free guidance's unconditional half.
    """
    if isinstance(captions, str):
        captions = [captions]
    rows = []
    for text in captions:
        if text.strip() and validate:
            parse(text)                                   # clear InputError on anything the world cannot say
        ids = [INDEX[w] for w in words(text) if w in INDEX] + [EOT]
        rows.append(ids[:MAX_TOKENS])
    L = max(len(r) for r in rows)
    tokens = torch.full((len(rows), L), PAD, dtype=torch.long)
    for i, r in enumerate(rows):
        tokens[i, :len(r)] = torch.tensor(r)
    return tokens, tokens != PAD


def null_caption(n: int, length: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """The empty caption for n rows, padded to `length`: tokens [<eot>, <pad>, …], mask True at <eot> only."""
    tokens = torch.full((n, length), PAD, dtype=torch.long)
    tokens[:, 0] = EOT
    return tokens, tokens != PAD


def drop_captions(tokens: torch.Tensor, mask: torch.Tensor, drop: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows where drop (B,) is True become the empty caption: classifier-free guidance's unconditional half."""
    tokens, mask = tokens.masked_fill(drop[:, None], PAD), mask & ~drop[:, None]
    tokens[drop, 0], mask[drop, 0] = EOT, True
    return tokens, mask


def check_prompt(text: str) -> str:
    """Validate one user prompt (InputError with the reason); the empty prompt is refused too."""
    if not isinstance(text, str) or not text.strip():
        raise InputError("empty prompt: describe one to four shapes, e.g. 'a red circle above a blue square'")
    parse(text)
    return text
