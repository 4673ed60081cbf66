"""Presets: the one knob that sets the scale of every lesson and command.

COURSE.md §5. Chosen once by the environment variable ``MINIDALLE_PRESET``
(``ci``, ``cpu`` or ``gpu``), else ``gpu`` when CUDA is available, else
``cpu``. Every notebook and command reads it through `get_preset()`, never
through ad-hoc flags. Lesson 00 shows which one is active.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Preset:
    """Scale settings shared by every lesson; model configs add their own per preset."""

    name: str
    base_res: int        # resolution the base models generate at
    up_res: int          # resolution after the upsampler
    n_train: int         # scenes in a training set
    n_eval: int          # held-out scenes (or samples) an evaluation uses
    minutes: float       # budget for one training run
    about: str


PRESETS = {
    "ci": Preset("ci", 16, 32, 256, 64, 0.05,
                 "nbval in CI: every code path runs in seconds; numbers are meaningless"),
    "cpu": Preset("cpu", 16, 32, 20_000, 2_000, 10,
                  "a laptop CPU with 2 cores: each training cell ≤ 10 min; 16×16 base images, upsampled to 32×32"),
    "gpu": Preset("gpu", 32, 64, 100_000, 2_000, 10,
                  "one CUDA GPU: the whole course trains in well under an hour; 32×32 base, upsampled to 64×64"),
}


def get_preset(name: str | None = None) -> Preset:
    """The active preset: `name`, else $MINIDALLE_PRESET, else gpu with CUDA, else cpu."""
    name = name or os.environ.get("MINIDALLE_PRESET") or ("gpu" if torch.cuda.is_available() else "cpu")
    key = name.strip().lower()
    if key not in PRESETS:
        raise ValueError(f"unknown preset {name!r}: MINIDALLE_PRESET must be one of {', '.join(PRESETS)}")
    return PRESETS[key]
