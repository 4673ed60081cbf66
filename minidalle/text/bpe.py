"""The CLIP tokenizer: real byte-pair encoding with a compact vocabulary.

Lesson 02 (`notebooks/02_clip.ipynb`) uses it; Radford et al. 2021 §2.4
describe CLIP's text side: lower-cased byte-pair encoding (Sennrich et al.
2016) with a 49,152-entry vocabulary, the sequence bracketed by [SOS] and
[EOS] tokens, the features at [EOS] taken as the text's representation.

minidalle runs the very same BPE — `open_clip.tokenizer.SimpleTokenizer`,
whose merge table ships inside the open_clip package, so nothing is
downloaded — and then maps its token ids onto a *compact* vocabulary: only
the BPE tokens that the shapes-world caption grammar produces
(`minidalle.captions.VOCABULARY` plus "," and "."). That keeps the
embedding table at ~60 rows instead of 49,408.

Compact ids::

    0        <pad>   fills the context after <eot>
    1        <unk>   any BPE token outside the corpus ("dog", "zebra", ...)
    2..V-3   the corpus' BPE tokens, in the order of open_clip's ids
    V-2      <sot>   start of text
    V-1      <eot>   end of text; the highest id, as in open_clip, where the
                     text encoder pools at ``tokens.argmax(-1)``

Any string tokenizes: a word the corpus never used still goes through BPE,
and each of its pieces becomes <unk> (so "a red dog" ↦ a, red, <unk>).
`Tokenizer(compact=False)` keeps open_clip's full 49,408-token vocabulary,
for weights converted from a real open_clip model (`clip.from_open_clip`).

Prompts longer than the context are **rejected** with a ValueError by
default: silently cutting "a red circle left of a blue square" after
"left of" would change what the caption says. Pass ``truncate=True`` to cut
instead (with a warning), keeping <eot> as the last token.
"""
from __future__ import annotations

import functools
import warnings

import torch

from minidalle.config import InputError
from open_clip.tokenizer import SimpleTokenizer

from minidalle.world.captions import VOCABULARY


CORPUS_WORDS = tuple(VOCABULARY) + (",", ".")
PAD, UNK = 0, 1


class Tokenizer:
    """Text → (N, context_length) token ids for `minidalle.clip.CLIP`.

    context_length: tokens per text including <sot> and <eot> (captions of the
        shapes world need at most 28; 32 is the course default).
    compact: map open_clip's BPE ids onto the small corpus vocabulary (True)
        or keep open_clip's full vocabulary (False, for converted weights).
    """

    def __init__(self, context_length: int = 32, compact: bool = True, words=CORPUS_WORDS):
        if context_length < 3:
            raise ValueError(f"context_length must leave room for <sot>, a token and <eot>; got {context_length}")
        self.bpe = SimpleTokenizer(context_length=context_length)
        self.context_length = context_length
        self.compact = compact
        if compact:
            pieces = sorted({i for w in words for i in self.bpe.encode(w)})   # open_clip ids of corpus tokens
            self.to_compact = {full: 2 + k for k, full in enumerate(pieces)}
            self.vocab_size = len(pieces) + 4
            self.sot_id, self.eot_id = self.vocab_size - 2, self.vocab_size - 1
            self.from_compact = {v: k for k, v in self.to_compact.items()}
            self.from_compact.update({self.sot_id: self.bpe.sot_token_id, self.eot_id: self.bpe.eot_token_id})
        else:
            self.vocab_size = self.bpe.vocab_size                               # 49,408
            self.sot_id, self.eot_id = self.bpe.sot_token_id, self.bpe.eot_token_id

    def encode(self, text: str) -> list[int]:
        """The BPE ids of one text, without <sot>/<eot> or padding."""
        if not isinstance(text, str):
            raise TypeError(f"a prompt is a string, got {type(text).__name__}")
        if not text.strip():
            raise InputError("empty prompt: write a caption, e.g. 'a red circle above a blue square'")
        ids = self.bpe.encode(text)
        if not ids:   # e.g. only control characters, which open_clip's cleaner removes
            raise InputError(f"prompt {text!r} has no tokens once cleaned; write a caption")
        return [self.to_compact.get(i, UNK) for i in ids] if self.compact else ids

    def __call__(self, texts, truncate: bool = False) -> torch.Tensor:
        """Tokenize a string or a list of strings: LongTensor (N, context_length)."""
        if isinstance(texts, str):
            texts = [texts]
        if len(texts) == 0:
            raise InputError("no prompts given: pass a string or a non-empty list of strings")
        out = torch.full((len(texts), self.context_length), PAD, dtype=torch.long)
        room = self.context_length - 2                                         # tokens between <sot> and <eot>
        for row, text in enumerate(texts):
            ids = self.encode(text)
            if len(ids) > room:
                if not truncate:
                    raise InputError(f"prompt too long: {len(ids)} tokens, the context holds {room} "
                                     f"(+ <sot>, <eot>): {text[:60]!r}...; shorten it, or pass truncate=True")
                warnings.warn(f"prompt cut from {len(ids)} to {room} tokens: {text[:60]!r}...", stacklevel=2)
                ids = ids[:room]
            seq = [self.sot_id, *ids, self.eot_id]
            out[row, :len(seq)] = torch.tensor(seq)
        return out

    def decode(self, ids) -> str:
        """Token ids (a list or 1-D tensor) back to text; <pad> dropped, <unk> shown as such."""
        ids = [int(i) for i in ids]
        if self.compact:
            words, run = [], []
            for i in ids:
                if i == PAD:
                    continue
                if i == UNK:
                    words += [self.bpe.decode(run), "<unk> "] if run else ["<unk> "]
                    run = []
                else:
                    run.append(self.from_compact[i])
            words.append(self.bpe.decode(run))
            return "".join(words).strip()
        return self.bpe.decode([i for i in ids if i != PAD]).strip()


@functools.lru_cache(maxsize=None)
def tokenizer(context_length: int = 32) -> Tokenizer:
    """The compact `Tokenizer` of a context length, built once (building one reads the BPE merge table, ≈ 0.15 s)."""
    return Tokenizer(context_length)
