"""The course's one training loop: AdamW, warm-up + cosine learning rate, EMA, periodic state, --resume.

Every model after CLIP trains through `fit` (lessons 03–09): a lesson supplies
only `batch_loss(step, generator) -> (loss, logs)` — which batch to draw and
what to minimise — and `fit` does the rest the same way for all of them:

* batch `step` is drawn from `runtime.step_generator(seed, step)`, so a run
  stopped with Ctrl-C and resumed with `--resume` sees the very same batches;
* every `save_every` steps the full state (raw and EMA weights, AdamW state,
  step, logged losses) goes to git-ignored `runs/NAME-state`;
* the weights that are kept — and saved to `NAME` — are the exponential moving
  average when `ema > 0` (what diffusion models sample from), else the raw ones.
"""
from __future__ import annotations

import copy
import time
from dataclasses import dataclass

import torch
from torch import nn

from . import checkpoint
from .runtime import device, progress, seed_everything, step_generator, warmup_cosine


@dataclass
class TrainConfig:
    steps: int = 3000
    batch: int = 64
    lr: float = 2e-3
    warmup: int = 100
    weight_decay: float = 0.0
    n_train: int = 20_000           # scenes of each kind
    seed: int = 0
    log_every: int = 50
    save_every: int = 500           # periodic state (weights, EMA, optimizer, step) in runs/ for --resume
    ema: float = 0.999              # decay of the weights' moving average, which is what gets kept; 0: none


@torch.no_grad()
def ema_update(ema: nn.Module, model: nn.Module, step: int, decay: float) -> None:
    """ema ← d·ema + (1 − d)·model, with d = min(decay, (1 + step) / (10 + step)) so early steps count.

    Diffusion models are sampled from an exponential moving average of their weights
    (Ho et al. 2020 App. B, decay 0.9999): the average smooths out the noise of single
    optimiser steps.
    """
    d = min(decay, (1 + step) / (10 + step))
    for e, p in zip(ema.parameters(), model.parameters()):
        e.lerp_(p, 1 - d)


def fit(model: nn.Module, config, tc: TrainConfig, batch_loss, name=None, state=None, resume: bool = False,
        show_progress: bool = True, on_log=None, desc: str | None = None) -> dict:
    """Train `model` in place by minimising `batch_loss(step, generator)`; returns info.

    batch_loss returns (loss tensor, dict of floats to log). `config` is stored with the
    checkpoints (a resumed run must have the same). `on_log(step, kept_model)` is called
    at every log step (the notebooks collect samples over training with it). info: losses [(step, loss, {logs})...], wall_time_s, steps.
    The model ends holding the kept weights (EMA or raw), in eval mode.
    """
    seed_everything(tc.seed)
    dev = device()
    model.to(dev).train()
    ema = copy.deepcopy(model).eval().requires_grad_(False) if tc.ema else None
    opt = torch.optim.AdamW(model.parameters(), lr=tc.lr, weight_decay=tc.weight_decay)
    state = state or (checkpoint.state_path(name) if name is not None else None)
    step, losses, wall = 0, [], 0.0
    if resume and (state is None or not checkpoint._paths(state)[0].exists()):
        print(f"nothing to resume at {state}: starting from step 0")
    elif resume:
        saved, _, info = checkpoint.load(state, config)
        model.load_state_dict(saved["model"])
        if ema is not None:
            ema.load_state_dict(saved["ema"])
        opt.load_state_dict(saved["optimizer"])
        step, wall = int(saved["step"]), info.get("wall_time_s", 0.0)
        losses = [tuple(x) for x in info.get("losses", [])]
    start = time.perf_counter()

    def snapshot(done: int) -> dict:
        so_far = {"losses": losses, "wall_time_s": round(wall + time.perf_counter() - start, 1), "steps": done}
        if state is not None:
            tensors = {"model": model.state_dict(), "optimizer": opt.state_dict(), "step": torch.tensor(done)}
            if ema is not None:
                tensors["ema"] = ema.state_dict()
            checkpoint.save(state, tensors, config, so_far)
        return so_far

    bar = progress(range(step, tc.steps), desc=desc or f"training {type(model).__name__}", initial=step,
                   total=tc.steps, disable=not show_progress)
    for step in bar:
        for g in opt.param_groups:
            g["lr"] = warmup_cosine(step, tc.lr, tc.warmup, tc.steps)
        loss, logs = batch_loss(step, step_generator(tc.seed, step))   # batch `step` is the same after --resume
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if ema is not None:
            ema_update(ema, model, step, tc.ema)
        if step % tc.log_every == 0 or step == tc.steps - 1:
            logs = {k: round(float(v), 5) for k, v in logs.items()}
            losses.append((step, round(loss.item(), 5)) + ((logs,) if logs else ()))
            bar.set_postfix(loss=f"{loss.item():.4f}")
            if on_log is not None:
                on_log(step, ema if ema is not None else model)
        if (step + 1) % tc.save_every == 0 and step + 1 < tc.steps:
            snapshot(step + 1)
    info = snapshot(tc.steps)
    if ema is not None:
        model.load_state_dict(ema.state_dict())                                   # the model to sample from
    model.eval()
    if name is not None:
        checkpoint.save(name, {"model": model.state_dict()}, config, info)
    return info


def ship(kind: str, name, config, info: dict, metrics: dict) -> None:
    """After `python -m minidalle train KIND`: print a summary and, at the cpu and gpu presets,
    record the checkpoint (command, seed, wall time, metrics, sha256) in the manifest."""
    from .presets import get_preset

    p = get_preset()
    size = checkpoint._paths(name)[0].stat().st_size
    print(f"{kind} at preset {p.name}: {info['steps']} steps, final loss {info['losses'][-1][1]:.4f}, "
          f"training wall time {info['wall_time_s']:.0f} s; saved {name.relative_to(checkpoint.ROOT)}.safetensors "
          f"({size / 1e6:.1f} MB)")
    print(metrics)
    if p.name != "ci":                                                          # ci checkpoints are never shipped
        checkpoint.record(f"{kind}-{p.name}", name, checkpoint.command_line(p.name, f"train {kind}"), p.name,
                          config.train.seed, info["wall_time_s"], {"final_loss": info["losses"][-1][1], **metrics})
