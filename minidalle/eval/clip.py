"""Lesson 02 measured: a trained CLIP's zero-shot labels, retrieval, and what it does not encode.

Lesson 02 runs every function here; `python -m minidalle eval clip` prints
them all. All scenes are held out: drawn with data seeds that training
(data seed `TrainConfig.seed`, 0 by default) never uses.

- Zero-shot classification (Radford et al. 2021 §3.1.2): a single-object
  scene is classified by the most similar of the 40 prompts "a {colour}
  {shape}" (8 colours × 5 shapes); colour accuracy counts the colour of the
  winning prompt, shape accuracy its shape.
- Text→image retrieval (§3.1.1's zero-shot retrieval, in miniature): each of
  n held-out captions ranks the n held-out images; R@k is the rate at which
  its own image is among the top k. Captions are the data set's own, so some
  are ambiguous ("a red circle" fits every scene with one red circle).
- Compositional probes, in the style of ARO (Yuksekgonul et al. 2023): for a
  two-object scene whose caption states an asymmetric relation, CLIP must
  prefer the true caption "a red circle above a blue square" to
  (i) the attributes swapped, "a blue circle above a red square", and
  (ii) the relation reversed, "a blue square above a red circle".
  Chance is 0.5; ARO measured ≈0.6 for real CLIP models.

Every rate is an `eval.rates.Rate`: the value with its 95% percentile bootstrap interval over
the evaluated items.
"""
from __future__ import annotations

import torch

from minidalle.clip.model import embed_images, embed_texts
from minidalle.eval.rates import rate
from minidalle.world.captions import Desc, PHRASES, PREFERENCE
from minidalle.world.data import cached
from minidalle.world.scenes import COLOUR_NAMES, INVERSE, SHAPES, SceneSpec


SEEDS = {"zero_shot": 1001, "retrieval": 1002, "probes": 1003}     # data seeds never used for training
PROMPTS = [(c, s, Desc(s, c).phrase()) for c in COLOUR_NAMES for s in SHAPES]   # 40 × (colour, shape, "a red circle")
ASYMMETRIC = [r for r in PREFERENCE if INVERSE[r] != r]             # relations whose reversal is false, most specific first
ARO_ANCHOR = 0.6                                                     # ARO's CLIP on VG-Relation/Attribution


def _scenes(n: int, res: int, objects: int, seed: int):

    spec = None if objects == 0 else SceneSpec(n_objects=tuple(float(k == objects) for k in range(1, 5)))
    return cached(n, res, spec, seed)


def zero_shot(model, n: int = 1000, seed: int = SEEDS["zero_shot"]) -> dict:
    """Colour and shape accuracy on n single-object scenes, from the 40 "a {colour} {shape}" prompts."""
    b = _scenes(n, model.config.image_size, 1, seed)
    sims = embed_images(model, b.images) @ embed_texts(model, [p for _, _, p in PROMPTS]).T   # (n, 40)
    best = sims.argmax(1)
    colour = torch.tensor([COLOUR_NAMES.index(c) for c, _, _ in PROMPTS])[best]
    shape = torch.tensor([SHAPES.index(s) for _, s, _ in PROMPTS])[best]
    return {"colour": rate(colour == b.scenes.colour[:, 0]), "shape": rate(shape == b.scenes.shape[:, 0])}


def retrieval(model, n: int = 1000, seed: int = SEEDS["retrieval"], ks=(1, 5)) -> dict:
    """Text→image recall@k over n held-out (image, caption) pairs of the full shapes world."""
    b = _scenes(n, model.config.image_size, 0, seed)
    sims = embed_texts(model, b.captions) @ embed_images(model, b.images).T     # (n texts, n images)
    rank = (sims > sims.diagonal()[:, None]).sum(1)                             # images scored above the true one
    return {f"R@{k}": rate(rank < k) for k in ks}


def probe_captions(scenes) -> list[tuple[int, str, str, str]]:
    """(row, true, attributes swapped, relation reversed) for each usable two-object scene.

    Usable: the two objects differ in colour and in shape, and an asymmetric
    relation holds between them (the first of `ASYMMETRIC` that holds is stated).
    """
    out = []
    for row, (scene, held) in enumerate(zip(scenes.to_scenes(), scenes.relations())):
        a, b = scene.objects
        stated = [(i, r, j) for r in ASYMMETRIC for (i, rr, j) in held if rr == r]
        if a.colour == b.colour or a.shape == b.shape or not stated:
            continue
        i, rel, j = stated[0]
        x, y = scene.objects[i], scene.objects[j]
        phrase = PHRASES[rel][0]
        true = f"{Desc(x.shape, x.colour).phrase()} {phrase} {Desc(y.shape, y.colour).phrase()}"
        swapped = f"{Desc(x.shape, y.colour).phrase()} {phrase} {Desc(y.shape, x.colour).phrase()}"
        reversed_ = f"{Desc(y.shape, y.colour).phrase()} {phrase} {Desc(x.shape, x.colour).phrase()}"
        out.append((row, true, swapped, reversed_))
    return out


def probes(model, n: int = 1000, seed: int = SEEDS["probes"]) -> dict:
    """Two-way forced choice on two-object scenes: true caption vs attributes swapped / relation reversed."""
    b = _scenes(n, model.config.image_size, 2, seed)
    rows, true, swapped, reversed_ = zip(*probe_captions(b.scenes))
    img = embed_images(model, b.images[list(rows)])                             # (m, E)
    t, s, r = (embed_texts(model, list(c)) for c in (true, swapped, reversed_))  # (m, E) each
    s_true = (img * t).sum(1)                                                    # cosine similarities (m,)
    return {"attribute swap": rate(s_true > (img * s).sum(1)),
            "relation reversal": rate(s_true > (img * r).sum(1))}


def evaluate(model, n_zero_shot: int = 1000, n_retrieval: int = 1000, n_probes: int = 1000) -> dict:
    """Every measurement above: {name: Rate}."""
    model.eval()
    zs, rt, pr = zero_shot(model, n_zero_shot), retrieval(model, n_retrieval), probes(model, n_probes)
    return {"zero-shot colour": zs["colour"], "zero-shot shape": zs["shape"], **{f"text→image {k}": v for k, v in rt.items()},
            **{f"probe: {k}": v for k, v in pr.items()}}


def report(results: dict) -> str:
    """The results as a table, the ARO anchor next to the probes."""
    lines = [f"{'measure':30s} {'value':>7s}   95% interval      n"]
    for name, r in results.items():
        note = f"   (ARO: CLIP ≈{ARO_ANCHOR}, chance 0.5)" if name.startswith("probe") else ""
        lines.append(f"{name:30s} {r.value:7.3f}   [{r.lo:.3f}, {r.hi:.3f}] {r.n:6d}{note}")
    return "\n".join(lines)
