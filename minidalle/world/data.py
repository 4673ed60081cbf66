"""Shapes-world data sets: the fast batched generator, a torch Dataset, a disk cache, a preview.

Lesson 01 uses all of it; every training lesson draws its data from here.
`generate` makes N captioned scenes in batches (thousands a second on one
core, see `benchmarks/bench_data.py`); `ShapesDataset` wraps the result for a
DataLoader and caches it under `data/cache/` (git-ignored) as safetensors +
JSON, so a notebook re-run does not redraw it.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import random
from dataclasses import dataclass
from pathlib import Path

import matplotlib.pyplot as plt
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from minidalle.config import ROOT, get_preset
from minidalle.runtime import progress
from minidalle.world.captions import caption
from minidalle.world.render import render
from minidalle.world.sampler import sample_scenes
from minidalle.world.scenes import Scene, SceneArrays, SceneSpec


CACHE = ROOT / "data" / "cache"
VERSION = 2          # bump when the world, renderer or captions change, to invalidate caches
CHUNK = 4096


@dataclass
class Batch:
    """Scenes with their pictures and captions. images: uint8 (N, 3, R, R)."""

    images: torch.Tensor
    captions: list[str]
    scenes: SceneArrays

    def __len__(self):
        return len(self.captions)


def generate(n: int, res: int = 32, spec: SceneSpec | None = None, seed: int = 0,
             size_prob: float = 0.5, show_progress: bool | None = None) -> Batch:
    """Draw, render and caption n scenes, deterministically for `seed`."""
    if n < 1:
        raise ValueError(f"n must be a positive number of scenes, got {n}")
    spec = spec or SceneSpec()
    chunks = range(0, n, CHUNK)
    if show_progress is None:
        show_progress = n > 4 * CHUNK
    images, captions, parts = [], [], []
    for c in progress(chunks, desc="drawing scenes", disable=not show_progress):
        k = min(CHUNK, n - c)
        sa = sample_scenes(k, spec, seed=seed * 100_003 + c // CHUNK)
        pictures, texts = label(sa, res, random.Random(f"{seed}-{c}"), size_prob)
        images.append(pictures)
        captions += texts
        parts.append(sa)
    cat = {f.name: torch.cat([getattr(p, f.name) for p in parts]) for f in dataclasses.fields(SceneArrays)}
    return Batch(torch.cat(images), captions, SceneArrays(**cat))


def label(sa: SceneArrays, res: int, rng: random.Random, size_prob: float = 0.5) -> tuple[torch.Tensor, list[str]]:
    """Render and caption given scenes: uint8 images (N, 3, res, res) and N captions (paraphrases from `rng`)."""
    images = (render(sa, res) * 255).round().to(torch.uint8)
    return images, [caption(sc, rng, size_prob, h) for sc, h in zip(sa.to_scenes(), sa.relations())]


def _key(n, res, spec, seed, size_prob) -> str:
    text = json.dumps([VERSION, n, res, repr(spec), seed, size_prob])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def cached(n: int, res: int = 32, spec: SceneSpec | None = None, seed: int = 0,
           size_prob: float = 0.5, cache_dir: Path | None = CACHE) -> Batch:
    """`generate`, kept on disk: the second call with the same arguments reads the file."""
    spec = spec or SceneSpec()
    if cache_dir is None:
        return generate(n, res, spec, seed, size_prob)
    stem = Path(cache_dir) / f"shapes-{_key(n, res, spec, seed, size_prob)}"
    try:
        t = load_file(str(stem) + ".safetensors")
        captions = json.loads(Path(str(stem) + ".json").read_text())
        return Batch(t.pop("images"), captions, SceneArrays(**t))
    except (FileNotFoundError, SafetensorError, json.JSONDecodeError, KeyError, TypeError):
        pass  # absent or unreadable: (re)make it
    b = generate(n, res, spec, seed, size_prob)
    stem.parent.mkdir(parents=True, exist_ok=True)
    tensors = {f.name: getattr(b.scenes, f.name).contiguous() for f in dataclasses.fields(SceneArrays)}
    save_file({"images": b.images, **tensors}, str(stem) + ".safetensors")
    Path(str(stem) + ".json").write_text(json.dumps(b.captions))
    return b


class ShapesDataset(torch.utils.data.Dataset):
    """Captioned shapes-world scenes for training.

    Items are (image, caption): image float (3, res, res) in [0, 1]. The scene
    graph of item i is `dataset.scene(i)`. Defaults come from the preset:
    `n = preset.n_train`, `res = preset.base_res`.
    """

    def __init__(self, n: int | None = None, res: int | None = None, spec: SceneSpec | None = None,
                 seed: int = 0, size_prob: float = 0.5, cache_dir: Path | None = CACHE):
        p = get_preset()
        self.batch = cached(n or p.n_train, res or p.base_res, spec, seed, size_prob, cache_dir)

    def __len__(self):
        return len(self.batch)

    def __getitem__(self, i):
        return self.batch.images[i].float() / 255, self.batch.captions[i]

    def scene(self, i: int) -> Scene:
        return self.batch.scenes.scene(i)


def preview(path, n: int = 16, res: int = 32, seed: int = 0, spec: SceneSpec | None = None, cols: int = 4):
    """Save a grid of n scenes with their captions to a PNG; returns the batch shown."""
    b = generate(n, res, spec, seed)
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 2.6, rows * 3.2))
    for ax in getattr(axes, "flat", [axes]):
        ax.axis("off")
    for i, ax in zip(range(n), getattr(axes, "flat", [axes])):
        ax.imshow(b.images[i].permute(1, 2, 0).numpy(), interpolation="nearest")
        ax.set_title(_wrap(b.captions[i]), fontsize=8)
    fig.suptitle(f"shapes world: {n} scenes at {res}×{res}, seed {seed}", fontsize=10)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return b


def _wrap(text: str, width: int = 28) -> str:
    lines, line = [], ""
    for w in text.split():
        if line and len(line) + len(w) + 1 > width:
            lines.append(line)
            line = w
        else:
            line = f"{line} {w}".strip()
    return "\n".join(lines + [line])


def training_data(n: int, res: int, two_objects: float = 0.0, seed: int = 0):
    """Images in [−1, 1] (N, 3, res, res) and captions: single objects, plus a share of two-object scenes."""

    n2 = int(round(n * two_objects))
    parts = [cached(n - n2, res, SceneSpec(n_objects=(1, 0, 0, 0)), seed)]
    if n2:
        parts.append(cached(n2, res, SceneSpec(n_objects=(0, 1, 0, 0)), seed + 1))
    images = torch.cat([p.images for p in parts]).float() / 127.5 - 1
    captions = [c for p in parts for c in p.captions]
    return images, captions


def training_images(n: int, res: int, seed: int = 0, contact: float = 0.4) -> torch.Tensor:
    """The dVAE's data: shapes-world scenes of 1–4 objects, the first two placed in contact `contact` of the time,
    float (N, 3, res, res) in [−1, 1]."""
    return cached(n, res, SceneSpec(contact=contact), seed).images.float() / 127.5 - 1


def fresh_images(n: int, res: int, seed: int, contact: float = 0.4) -> torch.Tensor:
    """n new scenes like `training_images`, drawn and rendered now (never cached), rounded to 8 bits as the
    cached data are: the world is an endless generator. Float (n, 3, res, res) in [−1, 1]."""
    return (render(sample_scenes(n, SceneSpec(contact=contact), seed=seed), res) * 255).round() / 127.5 - 1


def held_out(n: int, res: int, n_objects=(0, 1, 0, 0), seed: int = 777):
    """The held-out scenes `evaluate` checks (seed 777, apart from training's): n scenes of
    res×res whose object count is drawn from `n_objects` (default: two objects each)."""

    return generate(n, res, SceneSpec(n_objects=n_objects), seed=seed)
