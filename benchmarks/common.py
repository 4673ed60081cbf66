"""What the benchmarks share: alternating timing, a FLOP count, a training step (book/design.md, "How numbers get into the book").

Imported by the `bench_*.py` scripts next to it (run as `python benchmarks/bench_X.py`,
which puts this folder on the import path).
"""
import statistics
import time

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode


def time_alternately(fns: dict, iters: int, warmup: int = 1) -> dict:
    """Median seconds per call of each fn, calling them in turn (a, b, a, b, …) so noise hits all alike."""
    sync = torch.cuda.synchronize if torch.cuda.is_available() else (lambda: None)
    for fn in list(fns.values()) * warmup:
        fn()
    times = {k: [] for k in fns}
    for _ in range(iters):
        for k, fn in fns.items():
            sync()
            t = time.perf_counter()
            fn()
            sync()
            times[k].append(time.perf_counter() - t)
    return {k: statistics.median(v) for k, v in times.items()}


def gflop(loss_fn) -> float:
    """GFLOP of one forward + backward (matmuls and convolutions; SDPA's math path, so attention counts)."""
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as m:
        loss_fn().backward()
    return m.get_total_flops() / 1e9


def train_step(model, loss_fn):
    """A closure running one AdamW step of `loss_fn()` on the model's trainable parameters."""
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)

    def run():
        loss = loss_fn()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return run
