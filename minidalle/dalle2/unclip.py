"""Lessons 06–07: the unCLIP cascade, and what it can do with an image embedding.

Ramesh et al. 2022 (unCLIP, the model behind DALL·E 2):

    prompt → CLIP text embedding → prior (lesson 05) → CLIP image embedding
           → decoder (lesson 06, base resolution) → upsampler (lesson 06, ×2)

`generate` runs the whole cascade (the end of `notebooks/06_decoder.ipynb`). Because the decoder draws
pictures from a CLIP *image* embedding, the embedding can also come from a picture, or be edited,
without any training (§3; `notebooks/07_unclip_capabilities.ipynb`):

* `variations`: embed an image with CLIP, decode it with fresh noise, or from its own DDIM-inverted latent (§3.1);
* `interpolate`: slerp between two images' embeddings (§3.2);
* `text_diff`: move an image's embedding along the difference of two captions' text embeddings,
  "a red circle" → "a blue circle" (§3.3);
* `inpaint`: regenerate a masked region, the rest kept (GLIDE §3.3 trains a model for it; here the
  decoder is used as it is, by replacement).

`load` assembles the preset's four trained parts. §5.1's ablation and `eval unclip` are in
`minidalle.eval.dalle2`; `python -m minidalle generate "PROMPT"` draws with `generate`.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from minidalle.clip import train as clip_train
from minidalle.clip.model import embed_images, embed_texts
from minidalle.config import InputError
from minidalle.dalle2 import decoder, prior, upsampler
from minidalle.text.bpe import tokenizer
from minidalle.text.words import check_prompt
from minidalle.world.oracle import as_images


@dataclass
class UnCLIP:
    """The cascade's four trained parts (`load`): CLIP (lesson 02), the prior (05), the decoder and the
    upsampler (06)."""

    clip: torch.nn.Module
    prior: torch.nn.Module
    decoder: torch.nn.Module
    upsampler: torch.nn.Module


def load(preset: str | None = None) -> UnCLIP:
    """CLIP, prior, decoder and upsampler of the preset, in eval mode on the device (CheckpointError naming the
    `train` command of the first one missing)."""
    return UnCLIP(clip_train.load(preset), prior.load(preset), decoder.load(preset), upsampler.load(preset))


# ------------------------------------------------------------------ embeddings
@torch.no_grad()
def text_embeddings(pipe: UnCLIP, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """Validated prompts → (CLIP tokens (B, L), CLIP text embeddings (B, D)); InputError for a bad prompt."""
    for p in prompts:
        check_prompt(p)
    return tokenizer(pipe.clip.config.context_length)(prompts), embed_texts(pipe.clip, prompts)


@torch.no_grad()
def image_embeddings(pipe: UnCLIP, images: torch.Tensor) -> torch.Tensor:
    """Pictures (B, 3, R, R) in [0, 1] (any course resolution) → CLIP image embeddings (B, D), unit norm."""
    x = as_images(images)                                                    # InputError for a bad picture
    size = pipe.clip.config.image_size
    if x.shape[-1] != size:
        x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
    return embed_images(pipe.clip, (x * 255).round().to(torch.uint8))


# ------------------------------------------------------------------ the cascade
def pixels_from_embeddings(pipe: UnCLIP, emb: torch.Tensor, captions: list[str] | None = None, seed: int = 0,
                           guidance: float = decoder.GUIDANCE, upsampled: bool = True,
                           known: tuple | None = None, x_T: torch.Tensor | None = None,
                           eta: float = decoder.ETA) -> torch.Tensor:
    """Decoder (+ upsampler): image embeddings (B, D) → pictures (B, 3, R, R) in [0, 1].

    guidance: the decoder's classifier-free guidance scale (`decoder.GUIDANCE`); known: inpainting's
    (pixels, keep mask) at the decoder's resolution; x_T, eta: the decoder's starting latent and DDIM noise
    level (`decoder.decode`).
    """
    low = decoder.decode(pipe.decoder, emb, captions, guidance=guidance, seed=seed, known=known, eta=eta,
                         x_T=x_T)                                                   # (B, 3, base, base)
    return upsampler.upsample(pipe.upsampler, low, emb, seed=seed + 1) if upsampled else low


def generate(pipe: UnCLIP, prompts: list[str] | str, seed: int = 0, embedding: str = "prior",
             guidance: float = decoder.GUIDANCE, upsampled: bool = True, captions: bool = True) -> torch.Tensor:
    """Text → pictures (B, 3, R, R) in [0, 1]: the whole unCLIP cascade, one picture per prompt.

    embedding: "prior" (sample it, keeping the closer of two candidates) or "text"
    (hand the caption's text embedding straight to the decoder; the §5.1 ablation).
    guidance: the decoder's scale (the prior samples unguided). captions: also give the caption
    to the decoder (it was trained with it half the time).
    """
    prompts = [prompts] if isinstance(prompts, str) else list(prompts)
    if embedding not in ("prior", "text"):
        raise InputError(f"unknown embedding {embedding!r}: use 'prior' or 'text'")
    tokens, text = text_embeddings(pipe, prompts)
    emb = prior.sample(pipe.prior, tokens, text, seed=seed) if embedding == "prior" else text
    return pixels_from_embeddings(pipe, emb, prompts if captions else None, seed, guidance, upsampled)


# ------------------------------------------------------------------ capabilities (lesson 07)
def slerp(a: torch.Tensor, b: torch.Tensor, w: float) -> torch.Tensor:
    """Spherical interpolation between unit vectors (…, D): w = 0 gives a, w = 1 gives b (unCLIP §3.2)."""
    a, b = F.normalize(a, dim=-1), F.normalize(b, dim=-1)
    omega = torch.arccos((a * b).sum(-1, keepdim=True).clamp(-1 + 1e-7, 1 - 1e-7))   # (…, 1)
    return (torch.sin((1 - w) * omega) * a + torch.sin(w * omega) * b) / torch.sin(omega)


def _one(image: torch.Tensor) -> torch.Tensor:
    """One picture as a batch of one: (3, R, R) or (B, 3, R, R) → its first (1, 3, R, R)."""
    return image[None] if image.dim() == 3 else image[:1]


def _at_decoder_res(pipe: UnCLIP, x: torch.Tensor) -> torch.Tensor:
    """Pictures (B, 3, R, R) resized (antialiased bilinear) to the decoder's resolution, if they are not at it."""
    res = pipe.decoder.config.unet.res
    return x if x.shape[-1] == res else F.interpolate(x, size=res, mode="bilinear", align_corners=False, antialias=True)


def _same_noise(pipe: UnCLIP, emb: torch.Tensor, seed: int) -> torch.Tensor:
    """Decode each embedding with the same starting noise (seed), so that only the embedding changes."""
    return torch.cat([pixels_from_embeddings(pipe, e[None], seed=seed) for e in emb])


VARIATION_ETA = 0.5     # DDIM's noise level for variations from an image's own latent: between η = 0, which draws the
                        # image back, and the decoder's η = 1; not tuned yet (to be measured with the 32×32 decoder)


def variations(pipe: UnCLIP, image: torch.Tensor, n: int = 8, seed: int = 0, keep_latent: bool = False,
               eta: float = VARIATION_ETA) -> torch.Tensor:
    """n pictures decoded from one image's CLIP embedding (§3.1): (n, 3, R, R).

    keep_latent=False: from fresh noise each. keep_latent=True, as the paper does: the decoder is inverted
    (`decoder.invert`, DDIM with η = 0) from the image and its embedding to its own latent x_T, and every
    variation starts there, DDIM with noise level `eta` > 0 deciding how far it strays (η = 0 draws the image back).
    """
    x = _one(image)
    emb = image_embeddings(pipe, x)
    if not keep_latent:
        return pixels_from_embeddings(pipe, emb.expand(n, -1), seed=seed)
    x_T = decoder.invert(pipe.decoder, _at_decoder_res(pipe, x), emb)                  # (1, 3, base, base)
    return pixels_from_embeddings(pipe, emb.expand(n, -1), seed=seed, x_T=x_T, eta=eta)


def interpolate(pipe: UnCLIP, a: torch.Tensor, b: torch.Tensor, n: int = 6, seed: int = 0) -> torch.Tensor:
    """n pictures along the slerp from image a's embedding to image b's, one noise for all (§3.2): (n, 3, R, R)."""
    za, zb = image_embeddings(pipe, torch.stack([a, b]))
    emb = torch.stack([slerp(za, zb, w) for w in torch.linspace(0, 1, n).tolist()])
    return _same_noise(pipe, emb, seed)


def text_diff(pipe: UnCLIP, image: torch.Tensor, source: str, target: str,
              amounts=(0.0, 0.25, 0.5, 0.75), seed: int = 0) -> torch.Tensor:
    """unCLIP §3.3: slerp the image embedding towards the text diff z_d = norm(z_t(target) − z_t(source)).

    Returns one picture per amount θ ∈ [0, 1] (θ = 0: the image's own embedding), same noise: (len, 3, R, R).
    """
    _, text = text_embeddings(pipe, [source, target])
    z_d = F.normalize(text[1] - text[0], dim=-1)
    z_i = image_embeddings(pipe, _one(image))[0]
    return _same_noise(pipe, torch.stack([slerp(z_i, z_d, w) for w in amounts]), seed)


def inpaint(pipe: UnCLIP, image: torch.Tensor, keep: torch.Tensor, prompt: str | None = None, n: int = 4,
            seed: int = 0) -> torch.Tensor:
    """Regenerate where keep == 0 (keep: (R, R) at the decoder's resolution), guided by `prompt` or by the image.

    The embedding is the prompt's prior sample when a prompt is given, else the image's own. (n, 3, R', R').
    """
    res = pipe.decoder.config.unet.res
    if keep.shape[-2:] != (res, res):
        raise InputError(f"the mask must be {res}×{res}, the decoder's resolution; got {tuple(keep.shape[-2:])}")
    x = _at_decoder_res(pipe, _one(image))
    if prompt:
        tokens, text = text_embeddings(pipe, [prompt] * n)
        emb, captions = prior.sample(pipe.prior, tokens, text, seed=seed), [prompt] * n
    else:
        emb, captions = image_embeddings(pipe, _one(image)).expand(n, -1), None
    known = (x.expand(n, -1, -1, -1), keep.float().view(1, 1, res, res).expand(n, 1, res, res))
    return pixels_from_embeddings(pipe, emb, captions, seed, known=known)
