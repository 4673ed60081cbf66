"""The course's one device helper, one seed helper, one progress bar, and the training loops' shared schedule.

the design page, book/design.md: every module and notebook uses these, so that "which device?",
"is it reproducible?" and "how long will it take?" have one answer each.
"""
from __future__ import annotations

import math
import os
import random

import numpy as np
import torch
from tqdm.auto import tqdm


def device() -> torch.device:
    """cuda > mps > cpu; $MINIDALLE_DEVICE overrides (e.g. ``cpu`` on a GPU machine)."""
    want = os.environ.get("MINIDALLE_DEVICE")
    if want:
        return torch.device(want)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch; return a CPU generator seeded alike."""
    random.seed(seed)
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    return torch.Generator().manual_seed(seed)


def step_generator(seed: int, step: int) -> torch.Generator:
    """The generator for training step `step`: batch `step` is drawn alike in one run and after --resume."""
    return torch.Generator().manual_seed(seed * 1_000_003 + step)


def warmup_cosine(step: int, lr: float, warmup: int, steps: int) -> float:
    """Learning rate at `step`: linear warm-up over `warmup` steps, then cosine decay to zero at `steps`."""
    if step < warmup:
        return lr * (step + 1) / warmup
    t = (step - warmup) / max(1, steps - warmup)
    return lr * 0.5 * (1 + math.cos(math.pi * min(1.0, t)))


def progress(iterable=None, **kwargs):
    """A tqdm.auto progress bar (a widget in Jupyter, text elsewhere). Silenced by $MINIDALLE_QUIET."""
    kwargs["disable"] = kwargs.get("disable", False) or bool(os.environ.get("MINIDALLE_QUIET"))
    kwargs.setdefault("dynamic_ncols", True)
    return tqdm(iterable, **kwargs)
