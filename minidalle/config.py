"""Presets and configs: the one knob that sets the scale of every lesson, and overrides of any setting.

The design page (book/design.md, "Presets and configs") explains both.

* A **preset** is chosen once, by the environment variable ``MINIDALLE_PRESET`` (``ci``, ``cpu``
  or ``gpu``), else ``gpu`` when CUDA is available, else ``cpu``; every notebook and command reads
  it through `get_preset()`, never through ad-hoc flags. Lesson 00 shows which one is active.
* Every model family has **one frozen dataclass config**, written out in full for each preset
  (`PRESETS` in its module): the model's settings, and its training settings apart under `train`.
  A checkpoint must match its model's settings; the training settings are recorded with it, for
  provenance, and may differ.
* `override(config, ["train.steps=500", "unet.channels=48"])` returns a copy with any setting
  changed (``python -m minidalle train KIND --set key=value``), refusing an unknown key or a
  value of the wrong type with one clear `InputError`.
"""
from __future__ import annotations

import dataclasses
import difflib
import os
import types
import typing
from dataclasses import dataclass
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent      # the repository: data/, runs/, book/


class InputError(ValueError):
    """Bad input from the user — a prompt, a preset, an image, a setting, an argument: the message says
    what to do. `python -m minidalle` prints it as one line; anything else is a bug and keeps its traceback."""


@dataclass(frozen=True)
class Preset:
    """Scale settings shared by every lesson; each model family's config adds its own per preset."""

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
        raise InputError(f"unknown preset {name!r}: MINIDALLE_PRESET must be one of {', '.join(PRESETS)}")
    return PRESETS[key]


# ----------------------------------------------------------------- overrides
def settings(config, prefix: str = "") -> dict[str, type]:
    """Every setting of a (nested) config dataclass: {"train.steps": int, "unet.mults": tuple, …}."""
    hints = typing.get_type_hints(type(config))
    out = {}
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if dataclasses.is_dataclass(value):
            out.update(settings(value, f"{prefix}{f.name}."))
        else:
            out[prefix + f.name] = hints.get(f.name, type(value))
    return out


def _parse(key: str, text: str, kind, current):
    """The value `text` for a setting of type `kind` (its current value breaks ties), or InputError."""
    origin = typing.get_origin(kind)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(kind) if a is not type(None)]
        if text.lower() == "none" and type(None) in typing.get_args(kind):
            return None
        kind = args[0] if len(args) == 1 else type(current)
        origin = typing.get_origin(kind)
    try:
        if kind is bool:
            if text.lower() not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError
            return text.lower() in ("true", "1", "yes")
        if kind is int:
            return int(text.replace("_", ""))
        if kind is float:
            return float(text)
        if kind is str:
            return text
        if kind is tuple or origin is tuple:
            items = [t for t in text.replace("(", "").replace(")", "").split(",") if t.strip()]
            el = type(current[0]) if current else (float if any("." in t for t in items) else int)
            return tuple(el(t.strip()) for t in items)
    except ValueError:
        pass
    else:
        return text
    what = {bool: "true or false", int: "a whole number", float: "a number", tuple: "a comma-separated list"}
    raise InputError(f"{key} must be {what.get(kind if origin is not tuple else tuple, kind)}, got {text!r}")


def override(config, sets) -> tuple[object, dict[str, object]]:
    """A copy of `config` with settings changed, and the changes applied ({key: value}).

    sets: "key=value" strings (as `--set` takes them) or a {key: value} mapping; keys are dotted
    paths into nested configs ("train.steps", "unet.channels"). An unknown key, a malformed item or
    a value of the wrong type raises one InputError that names the valid keys.
    """
    known = settings(config)
    items = sets.items() if isinstance(sets, dict) else [_split(s) for s in sets]
    applied = {}
    for key, text in items:
        if key not in known:
            close = difflib.get_close_matches(key, known, n=3)
            hint = f"; did you mean {' or '.join(close)}?" if close else ""
            raise InputError(f"unknown setting {key!r} for {type(config).__name__}{hint} "
                             f"The settings are: {', '.join(known)}")
        current = config
        for part in key.split("."):
            current = getattr(current, part)
        if isinstance(text, str):
            applied[key] = _parse(key, text, known[key], current)
        else:                                   # a value, e.g. read back from a checkpoint's JSON: lists are tuples
            applied[key] = tuple(text) if isinstance(text, list) else text
    for key, value in applied.items():
        config = _replace(config, key.split("."), value)
    return config, applied


def _split(item: str) -> tuple[str, str]:
    key, eq, value = item.partition("=")
    if not eq or not key.strip():
        raise InputError(f"--set takes key=value, got {item!r} (for example --set train.steps=500)")
    return key.strip(), value.strip()


def _replace(config, path: list[str], value):
    if len(path) == 1:
        return dataclasses.replace(config, **{path[0]: value})
    return dataclasses.replace(config, **{path[0]: _replace(getattr(config, path[0]), path[1:], value)})


def model_part(config) -> dict:
    """A config as a dict without its training settings: what a checkpoint must match."""
    d = dataclasses.asdict(config) if dataclasses.is_dataclass(config) else dict(config or {})
    d.pop("train", None)
    return d
