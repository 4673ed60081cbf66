"""The course's one training loop: AdamW, warm-up + cosine learning rate, EMA, gradient clipping, resume.

Every model trains through `fit` (lessons 02–09): a lesson supplies only
`batch_loss(step, generator) -> (loss, logs)` — which batch to draw and what to
minimise — and `fit` does the rest the same way for all of them:

* batch `step` is drawn from `runtime.step_generator(seed, step)`, so a run
  stopped (Ctrl-C, or a crash) and resumed sees the very same batches and ends
  with the very same weights as a run that was never stopped;
* every `save_every` steps, and when interrupted, the full state (raw and EMA
  weights, AdamW state, step, logged losses) goes to the state file beside the
  checkpoint — for the shipped checkpoints the git-ignored `runs/NAME-state`
  (`checkpoint.state_path`); `resume=True` continues from it;
* the weights that are kept — and saved to `NAME` — are the exponential moving
  average when `ema > 0` (what diffusion models sample from), else the raw ones.
"""
from __future__ import annotations

import copy
import time
from dataclasses import dataclass

import torch
from torch import nn

from minidalle import checkpoint
from minidalle.config import get_preset
from minidalle.runtime import device, progress, seed_everything, step_generator, warmup_cosine


@dataclass(frozen=True)
class TrainConfig:
    """How a model is trained (each family extends it with its own data settings). Recorded with the
    checkpoint for provenance; a checkpoint loads whatever training settings made it."""

    steps: int = 3000
    batch: int = 64
    lr: float = 2e-3
    warmup: int = 100
    weight_decay: float = 0.0
    decay: str = "all"              # which parameters weight decay applies to: "all", or "matrices" (not
                                    # biases, norms or embeddings, as CLIP and GPT-2 train)
    betas: tuple = (0.9, 0.999)     # AdamW's
    eps: float = 1e-8
    clip_grad: float = 1.0          # gradient norm clipped to this; 0: not clipped
    ema: float = 0.999              # decay of the weights' moving average, which is what gets kept; 0: none
    n_train: int = 20_000           # scenes of each kind
    seed: int = 0
    log_every: int = 50
    save_every: int = 500           # periodic state (weights, EMA, optimizer, step) for resuming


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


def _optimizer(model: nn.Module, tc: TrainConfig) -> torch.optim.AdamW:
    if tc.decay not in ("all", "matrices"):
        raise ValueError(f"train.decay must be 'all' or 'matrices', got {tc.decay!r}")
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [{"params": params, "weight_decay": tc.weight_decay}]
    if tc.decay == "matrices":
        named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        matrix = [p for n, p in named if p.ndim >= 2 and "embedding" not in n]
        other = [p for n, p in named if not (p.ndim >= 2 and "embedding" not in n)]
        groups = [{"params": matrix, "weight_decay": tc.weight_decay}, {"params": other, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=tc.lr, betas=tuple(tc.betas), eps=tc.eps)


def fit(model: nn.Module, config, tc: TrainConfig, batch_loss, name=None, state=None, resume: bool = False,
        show_progress: bool = True, on_log=None, desc: str | None = None, trained_on: dict | None = None) -> dict:
    """Train `model` in place by minimising `batch_loss(step, generator)`; returns info.

    batch_loss returns (loss tensor, dict of floats to log). `config` is stored with the
    checkpoints; a state is resumed only if its model settings match. `state`: where the
    resumable state goes (default `checkpoint.state_path(name)`; None with no name: nowhere).
    `on_log(step, kept_model)` is called at every log step (the notebooks collect samples over
    training with it, `registry.BarWatch` measures time to the bar); the time it takes is not
    training time. info: losses [(step, loss[, {logs}]) …], wall_time_s, steps. The model
    ends holding the kept weights (EMA or raw), in eval mode, saved to `name` if given, with
    `trained_on` (fingerprints of the models it learned from, {"clip": …}) recorded beside them.
    """
    seed_everything(tc.seed)
    dev = device()
    model.to(dev).train()
    ema = copy.deepcopy(model).eval().requires_grad_(False) if tc.ema else None
    opt = _optimizer(model, tc)
    state = state or (checkpoint.state_path(name) if name is not None else None)
    step, losses, wall = 0, [], 0.0
    if resume and (state is None or not checkpoint.exists(state)):
        print(f"nothing to resume at {state}: starting from step 0")
    elif resume:
        saved, _, info = checkpoint.load(state, config)
        model.load_state_dict(saved["model"])
        if ema is not None:
            ema.load_state_dict(saved["ema"])
        opt.load_state_dict(saved["optimizer"])
        step, wall = int(saved["step"]), info.get("wall_time_s", 0.0)
        losses = [tuple(x) for x in info.get("losses", [])]
        print(f"resuming {checkpoint.relative(state)} at step {step} of {tc.steps}")
    start = time.perf_counter()
    aside = 0.0                                       # seconds spent in on_log: not training

    def snapshot(done: int) -> dict:
        so_far = {"losses": losses, "wall_time_s": round(wall + time.perf_counter() - start - aside, 1),
                  "steps": done}
        if state is not None:
            tensors = {"model": model.state_dict(), "optimizer": opt.state_dict(), "step": torch.tensor(done)}
            if ema is not None:
                tensors["ema"] = ema.state_dict()
            checkpoint.save(state, tensors, config, so_far)
        return so_far

    bar = progress(range(step, tc.steps), desc=desc or f"training {type(model).__name__}", initial=step,
                   total=tc.steps, disable=not show_progress)
    done = step
    try:
        for step in bar:
            for g in opt.param_groups:
                g["lr"] = warmup_cosine(step, tc.lr, tc.warmup, tc.steps)
            loss, logs = batch_loss(step, step_generator(tc.seed, step))   # batch `step` is the same after resuming
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if tc.clip_grad:
                torch.nn.utils.clip_grad_norm_(model.parameters(), tc.clip_grad)
            opt.step()
            if ema is not None:
                ema_update(ema, model, step, tc.ema)
            done = step + 1
            if step % tc.log_every == 0 or step == tc.steps - 1:
                logs = {k: round(float(v), 5) for k, v in logs.items()}
                losses.append((step, round(loss.item(), 5)) + ((logs,) if logs else ()))
                bar.set_postfix(loss=f"{loss.item():.4f}")
                if on_log is not None:
                    t_log = time.perf_counter()
                    on_log(step, ema if ema is not None else model)
                    aside += time.perf_counter() - t_log
            if done % tc.save_every == 0 and done < tc.steps:
                snapshot(done)
    except KeyboardInterrupt:
        if state is not None and done > 0:
            snapshot(done)
            print(f"\ninterrupted after step {done}: the state is in {checkpoint.relative(state)}; "
                  "resume with --resume (or resume=True)")
        raise
    info = snapshot(tc.steps)
    if ema is not None:
        model.load_state_dict(ema.state_dict())                                   # the model to sample from
    model.eval()
    if name is not None:
        checkpoint.save(name, {"model": model.state_dict()}, config, info, trained_on)
    return info


def ship(kind: str, name, config, info: dict, metrics: dict, overrides: dict | None = None,
         trained_on: dict | None = None, flags: str = "") -> None:
    """After `python -m minidalle train KIND`: print a summary and, at the cpu and gpu presets, record the
    checkpoint (command, seed, wall time, metrics, overrides, sha256) in the manifest."""
    p = get_preset()
    size = checkpoint.paths(name)[0].stat().st_size
    print(f"{kind} at preset {p.name}: {info['steps']} steps, final loss {info['losses'][-1][1]:.4f}, "
          f"training wall time {info['wall_time_s']:.0f} s; saved {checkpoint.relative(name)}.safetensors "
          f"({size / 1e6:.1f} MB)")
    print(metrics)
    if p.name != "ci":                                                          # ci checkpoints are never shipped
        sets = "".join(f" --set {k}={_shown(v)}" for k, v in (overrides or {}).items())
        checkpoint.record(f"{kind}-{p.name}", name, checkpoint.command_line(p.name, f"train {kind}{sets}{flags}"), p.name,
                          config.train.seed, info["wall_time_s"], {"final_loss": info["losses"][-1][1], **metrics},
                          overrides=overrides, trained_on=trained_on)


def _shown(v) -> str:
    return ",".join(map(str, v)) if isinstance(v, tuple) else str(v)
