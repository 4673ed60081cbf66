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

import torch

from .captions import caption
from .presets import get_preset
from .render import render
from .runtime import progress
from .world import Scene, SceneArrays, SceneSpec, sample_scenes

CACHE = Path(__file__).resolve().parent.parent / "data" / "cache"
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
    from safetensors import SafetensorError
    from safetensors.torch import load_file, save_file

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
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

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
