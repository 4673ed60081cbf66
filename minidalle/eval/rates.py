"""Rates with their 95% bootstrap intervals: the one way every probe of the course reports a number.

The evaluation chapter (book/evaluation.md, "Intervals: the bootstrap") and the design page explain it:
a rate of 0/1 outcomes — is this sample right? — over at least four samples a prompt, with a percentile
bootstrap interval (Efron 1979). Every evaluation of lessons 02–11 returns its rates as `Rate`.
"""
from __future__ import annotations

from typing import NamedTuple

import torch


class Rate(NamedTuple):
    """A rate of 0/1 outcomes with its 95% interval: `value, lo, hi, n = r`, or `r.value`; printed "0.525 [0.450, 0.600]"."""

    value: float
    lo: float
    hi: float
    n: int

    def __str__(self) -> str:
        return f"{self.value:.3f} [{self.lo:.3f}, {self.hi:.3f}]"

    def as_dict(self, digits: int = 4) -> dict:
        """For JSON (the manifest's metrics): {value, lo, hi, n}, rounded."""
        return {"value": round(self.value, digits), "lo": round(self.lo, digits), "hi": round(self.hi, digits),
                "n": self.n}


def rate(hits, n_boot: int = 1000, seed: int = 0) -> Rate:
    """The rate of 0/1 outcomes `hits` (n,) with a 95% percentile bootstrap interval over `n_boot` resamples."""
    hits = torch.as_tensor(hits).float().flatten()                                   # (n,)
    if len(hits) == 0:
        raise ValueError("a rate needs at least one outcome")
    g = torch.Generator().manual_seed(seed)
    means = hits[torch.randint(0, len(hits), (n_boot, len(hits)), generator=g)].mean(1)   # (n_boot,)
    lo, hi = torch.quantile(means, torch.tensor([0.025, 0.975])).tolist()
    return Rate(hits.mean().item(), lo, hi, len(hits))
