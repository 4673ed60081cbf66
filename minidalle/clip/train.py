"""Lesson 02: training CLIP on the shapes world, with shape twins as hard negatives.

A batch of random scenes is told apart by colour alone, so a small CLIP learns colour and
barely shape. Half of each batch is therefore *shape twins*: copies of the batch's other
scenes with one object's shape changed, captioned afresh — hard negatives that only shape
separates, as NegCLIP's (Yuksekgonul et al. 2023). Training runs through `trainer.fit`.
"""
from __future__ import annotations

import dataclasses
import random
from pathlib import Path

import torch

from minidalle.checkpoint import load_model, shipped_name
from minidalle.clip.model import CLIP, CLIPConfig, CLIPTrain, clip_config
from minidalle.runtime import device
from minidalle.text.bpe import Tokenizer
from minidalle.trainer import fit
from minidalle.world.data import cached, label
from minidalle.world.scenes import SHAPES, SceneArrays


def checkpoint_name(preset: str | None = None) -> Path:
    """Where a preset's trained CLIP lives: data/checkpoints/clip-PRESET (.safetensors + .json)."""
    return shipped_name("clip", preset)


def shape_twins(scenes: SceneArrays, seed: int = 0) -> SceneArrays:
    """The same scenes with one object each (picked at random) given another shape.

    Positions, sizes and colours are kept, so every relation still holds;
    only the changed shape tells a twin from its original.
    """
    g = torch.Generator().manual_seed(seed)
    rows = torch.arange(len(scenes))
    k = (torch.rand(len(scenes), generator=g) * scenes.n).long()                # the object to change (N,)
    shift = torch.randint(1, len(SHAPES), (len(scenes),), generator=g)            # never the same shape
    shape = scenes.shape.clone()
    shape[rows, k] = (shape[rows, k] + shift) % len(SHAPES)
    return dataclasses.replace(scenes, shape=shape)


def training_pairs(config: CLIPConfig):
    """Training scenes (data seed config.train.seed) followed by their shape twins:
    images uint8 (2N, 3, S, S) and tokens long (2N, T); row i + N is the twin of row i."""
    tc = config.train
    batch = cached(tc.n_train, config.image_size, None, tc.seed)
    twin_images, twin_captions = label(shape_twins(batch.scenes, tc.seed), config.image_size, random.Random(tc.seed))
    tokens = Tokenizer(config.context_length)(batch.captions + twin_captions)
    return torch.cat([batch.images, twin_images]), tokens


def batch_rows(n: int, tc: CLIPTrain, generator: torch.Generator) -> torch.Tensor:
    """Rows of `training_pairs` in one batch: random scenes, then the twins of the first `twins × batch` of them."""
    k = round(tc.batch * tc.twins)
    idx = torch.randint(0, n, (tc.batch - k,), generator=generator)              # (B - k,)
    return torch.cat([idx, idx[:k] + n])                                          # (B,)


def train(model: CLIP, name=None, resume: bool = False, show_progress: bool = True, on_log=None, state=None) -> dict:
    """Train `model` (by its config) in place on shapes-world scenes with `trainer.fit`; returns fit's info."""
    config, dev = model.config, device()
    images, tokens = training_pairs(config)

    def batch_loss(step, gen):
        idx = batch_rows(len(images) // 2, config.train, gen)                    # (B,)
        tok = tokens[idx]                                                        # (B, T)
        tok = tok[:, :int((tok == config.eot_id).int().argmax(1).max()) + 1]    # cut the padding after every <eot>
        loss = model.loss(images[idx].to(dev).float() / 255, tok.to(dev))        # images (B, 3, S, S) in [0, 1]
        return loss, {"scale": model.scale().item()}

    return fit(model, config, config.train, batch_loss, name=name, state=state, resume=resume,
               show_progress=show_progress, on_log=on_log, desc="training CLIP")


def load(preset: str | None = None) -> CLIP:
    """The preset's trained CLIP (data/checkpoints/clip-PRESET), in eval mode on the device; CheckpointError
    naming `python -m minidalle train clip` if there is none."""
    return load_model(CLIP, clip_config(preset), checkpoint_name(preset), kind="clip")
