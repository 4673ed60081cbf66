"""The model kinds of the course, one entry each: how to configure, build, train, load, measure and sample it.

`python -m minidalle train KIND`, `eval KIND` and `generate` dispatch through `KINDS` (and so can a
notebook: `registry.train("glide", sets=["train.steps=500"])`). The design page (book/design.md, "The
model kinds") lists them with their lessons:

    clip (02) · ddpm (03) · glide (04) · prior (05) · decoder, upsampler (06) · unclip (05–07, the cascade)
    · dvae (08) · dalle (09)

A kind trained on another model's outputs names it in `needs` (the prior, decoder and upsampler read CLIP's
embeddings, DALL·E reads the dVAE's tokens); training loads that model first and records its fingerprint,
and loading refuses a checkpoint trained on another one.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

import torch

from minidalle import checkpoint
from minidalle.clip import model as clip_model, train as clip_train
from minidalle.config import InputError, get_preset, override
from minidalle.dalle1 import dvae, transformer as dalle
from minidalle.dalle2 import decoder, prior, unclip, upsampler
from minidalle.diffusion import ddpm, glide
from minidalle.eval import clip as eval_clip, dalle1 as eval_dalle1, dalle2 as eval_dalle2, diffusion as eval_diffusion
from minidalle.runtime import seed_everything
from minidalle.trainer import ship


@dataclass(frozen=True)
class Option:
    """One option of `eval KIND` (argparse's add_argument, in short)."""

    flag: str
    type: type
    default: object
    help: str


@dataclass(frozen=True)
class Bar:
    """What a kind must reach to count as trained: `metric` of its manifest metrics (`Kind.metrics`) ≥ `at_least`."""

    metric: str
    at_least: float
    about: str


class BarReached(Exception):
    """Raised by a `BarWatch` made with stop=True once the bar is reached (the time-to-bar benchmark stops there)."""


class BarWatch:
    """An `on_log` hook for `trainer.fit` that measures a kind's metrics every `every` steps and notes when they
    first reach its bar: time to the bar is training wall time since the watch was made, less the time spent
    measuring. `checks`: [(step, seconds, value, lo, hi)]; `reached`: the first of them at the bar, or None;
    `last_metrics`: the metrics of the last check."""

    def __init__(self, name: str, dependency=None, every: int = 500, stop: bool = False):
        k = kind(name)
        if k.bar is None or k.metrics is None:
            raise InputError(f"{name} has no bar to train to yet; the kinds with one are "
                             f"{', '.join(n for n, v in KINDS.items() if v.bar)}")
        if every < 1:
            raise InputError(f"--bar-every must be a positive number of steps, got {every}")
        self.kind, self.bar, self.dependency, self.every, self.stop = k, k.bar, dependency, every, stop
        self.start, self.aside, self.next = time.perf_counter(), 0.0, every
        self.checks, self.reached, self.last_metrics = [], None, {}

    def __call__(self, step: int, model) -> None:
        if step + 1 < self.next:
            return
        self.next = (step + 1) // self.every * self.every + self.every
        trained_s = time.perf_counter() - self.start - self.aside
        t = time.perf_counter()
        metrics = self.last_metrics = self.kind.metrics(model, self.dependency)
        self.aside += time.perf_counter() - t
        value = metrics[self.bar.metric]
        lo, hi = metrics.get("ci95", (value, value))
        self.checks.append((step + 1, round(trained_s, 1), value, lo, hi))
        at_bar = value >= self.bar.at_least
        print(f"  step {step + 1:6d}  {trained_s:7.0f} s of training  {self.bar.metric} {value:.3f} "
              f"[{lo:.3f}, {hi:.3f}]" + ("  ← at the bar" if at_bar and self.reached is None else ""), flush=True)
        if at_bar and self.reached is None:
            self.reached = self.checks[-1]
            if self.stop:
                raise BarReached(self.kind.name)

    def summary(self) -> dict:
        """For the manifest: the bar, where it was first reached, and every check."""
        return {"bar": f"{self.bar.metric} ≥ {self.bar.at_least:g} ({self.bar.about})", "every": self.every,
                "reached": None if self.reached is None else {"step": self.reached[0], "train_wall_s": self.reached[1]},
                "checks": [list(c) for c in self.checks]}


@dataclass(frozen=True)
class Kind:
    """A model kind: its functions, by preset. `train(model, dependency, **fit_args)`; `metrics(model, dependency)`
    is what `train KIND` records in the manifest; `evaluate(**options)` prints what `eval KIND` measures."""

    name: str
    lesson: str
    about: str
    config: Callable | None = None          # preset -> the kind's frozen config
    model: type | None = None               # config -> a fresh model
    train: Callable | None = None
    load: Callable | None = None             # preset -> the trained model
    checkpoint: Callable | None = None       # preset -> data/checkpoints/KIND-PRESET
    trained_on: Callable = lambda preset=None: {}
    needs: str | None = None                 # the kind whose outputs it learns from
    metrics: Callable | None = None
    evaluate: Callable | None = None
    options: tuple = field(default=())
    bar: Bar | None = None                   # what `metrics` must reach (`train KIND --bar-every N` watches it)


def _clip_metrics(model, _=None) -> dict:
    results = eval_clip.evaluate(model, n_zero_shot=get_preset().n_eval, n_retrieval=min(get_preset().n_eval, 1000),
                                 n_probes=get_preset().n_eval)
    print(eval_clip.report(results))
    return {k: r.as_dict() for k, r in results.items()}


def _clip_evaluate(n: int | None = None) -> dict:
    n = n or get_preset().n_eval
    if n < 2:
        raise InputError(f"--n must be at least 2 held-out scenes, got {n}")
    results = eval_clip.evaluate(clip_train.load(), n_zero_shot=n, n_retrieval=min(n, 1000), n_probes=n)
    print(eval_clip.report(results))
    return results


PER_PROMPT = Option("--per-prompt", int, 4, "samples per prompt (default 4)")
GUIDANCE = Option("--guidance", float, None, "classifier-free guidance scale (default: the model's own, "
                  "the smallest best of its sweep)")

KINDS = {k.name: k for k in (
    Kind("clip", "02", "CLIP: contrastive text and image towers", clip_model.clip_config, clip_model.CLIP,
         lambda m, _, **kw: clip_train.train(m, **kw), clip_train.load, clip_train.checkpoint_name,
         metrics=_clip_metrics, evaluate=_clip_evaluate,
         options=(Option("--n", int, None, "held-out scenes per measurement (default: the preset's n_eval)"),)),
    Kind("ddpm", "03", "an unconditional DDPM of single objects", ddpm.ddpm_config, ddpm.DDPM,
         lambda m, _, **kw: ddpm.train(m, **kw), ddpm.load, ddpm.checkpoint_name, ddpm.trained_on,
         metrics=lambda m, _: eval_diffusion.train_metrics("ddpm", m),
         evaluate=lambda **kw: eval_diffusion.evaluate("ddpm", **kw), options=(PER_PROMPT,),
         bar=Bar("one_clean_object_ddim50", 0.85, "128 unconditional samples, DDIM 50, strict oracle")),
    Kind("glide", "04", "GLIDE: text-conditional diffusion with classifier-free guidance", glide.glide_config,
         glide.GLIDE, lambda m, _, **kw: glide.train(m, **kw), glide.load, glide.checkpoint_name, glide.trained_on,
         metrics=lambda m, _: eval_diffusion.train_metrics("glide", m),
         evaluate=lambda **kw: eval_diffusion.evaluate("glide", **kw),
         options=(PER_PROMPT, GUIDANCE, Option("--plot", str, None, "PNG for the guidance sweep")),
         bar=Bar(f"single_object_exact_ddim50_s{glide.GUIDANCE:g}", 0.90,
                 "40 single-object prompts × 4, DDIM 50, strict oracle")),
    Kind("prior", "05", "the unCLIP diffusion prior: caption → CLIP image embedding", prior.prior_config,
         prior.Prior, prior.train, prior.load, prior.checkpoint_name, prior.trained_on, needs="clip",
         metrics=lambda m, c: eval_dalle2.train_metrics("prior", m, c),
         evaluate=lambda **kw: eval_dalle2.evaluate("prior", **kw),
         options=(Option("--n", int, 500, "held-out captioned scenes (default 500)"),
                  Option("--guidance", float, 1.0, "classifier-free guidance scale (default 1)"))),
    Kind("decoder", "06", "the unCLIP decoder: CLIP image embedding → base-resolution picture",
         decoder.decoder_config, decoder.Decoder, decoder.train, decoder.load, decoder.checkpoint_name,
         decoder.trained_on, needs="clip", metrics=lambda m, c: eval_dalle2.train_metrics("decoder", m, c)),
    Kind("upsampler", "06", "the unCLIP upsampler: base → twice the resolution", upsampler.upsampler_config,
         upsampler.Upsampler, upsampler.train, upsampler.load, upsampler.checkpoint_name, upsampler.trained_on,
         needs="clip", metrics=lambda m, c: eval_dalle2.train_metrics("upsampler", m, c)),
    Kind("unclip", "05–07", "the unCLIP cascade: prior, decoder, upsampler (train those three)", load=unclip.load,
         evaluate=lambda **kw: eval_dalle2.evaluate("unclip", **kw), options=(PER_PROMPT, GUIDANCE)),
    Kind("dvae", "08", "DALL·E's discrete VAE: a picture as a grid of tokens", dvae.dvae_config, dvae.DVAE,
         lambda m, _, **kw: dvae.train(m, **kw), dvae.load, dvae.checkpoint_name, dvae.trained_on,
         metrics=lambda m, _: eval_dalle1.train_metrics("dvae", m),
         evaluate=lambda **kw: eval_dalle1.evaluate("dvae", **kw),
         options=(Option("--n", int, 500, "held-out scenes of each kind (default 500)"),)),
    Kind("dalle", "09", "the DALL·E transformer over text and dVAE tokens", dalle.dalle_config, dalle.DALLE,
         dalle.train, dalle.load, dalle.checkpoint_name, dalle.trained_on, needs="dvae",
         metrics=lambda m, v: eval_dalle1.train_metrics("dalle", m, v),
         evaluate=lambda **kw: eval_dalle1.evaluate("dalle", **kw), options=(PER_PROMPT,),
         bar=Bar("single_object_exact_top_k32", 0.80, "40 single-object prompts × 4, top-k 32, strict oracle")),
)}
TRAINABLE = tuple(k for k, v in KINDS.items() if v.train is not None)
MEASURED = tuple(k for k, v in KINDS.items() if v.evaluate is not None)
GENERATORS = ("unclip", "glide", "dalle")        # the kinds that draw pictures for a prompt (`generate --model`)


def kind(name: str) -> Kind:
    """The kind called `name`, or an InputError listing them."""
    if name not in KINDS:
        raise InputError(f"unknown model kind {name!r}; the kinds are {', '.join(KINDS)}")
    return KINDS[name]


def config(name: str, preset: str | None = None, sets=()) -> tuple[object, dict]:
    """The kind's config at the preset with `sets` ("key=value" strings or a dict) applied: (config, applied)."""
    k = kind(name)
    if k.config is None:
        raise InputError(f"{name} is not trained itself: {k.about}")
    return override(k.config(preset), sets)


def build(name: str, preset: str | None = None, sets=()) -> torch.nn.Module:
    """A fresh model of the kind, its weights drawn from the config's seed (the initial weights are part of the
    recipe, so a run is reproducible)."""
    cfg, _ = config(name, preset, sets)
    seed_everything(cfg.train.seed)
    return kind(name).model(cfg)


def load(name: str, preset: str | None = None):
    """The kind's trained model at the preset (for `unclip`, the cascade), built with the overrides it was trained
    with; a CheckpointError saying what to train if there is none."""
    k = kind(name)
    try:
        return k.load(preset)
    except checkpoint.CheckpointError as e:
        if k.needs and not checkpoint.exists(KINDS[k.needs].checkpoint(preset)):
            raise checkpoint.CheckpointError(f"{e} (it learns from {k.needs}: `python -m minidalle train "
                                             f"{k.needs}` first)") from e
        raise


def train(name: str, preset: str | None = None, sets=(), resume: bool = False, out=None,
          show_progress: bool = True, bar_every: int = 0) -> tuple[torch.nn.Module, dict]:
    """`python -m minidalle train KIND [--set key=value …] [--out NAME] [--resume] [--bar-every N]`: train, measure,
    record.

    Everything that can be wrong is checked before training starts: the kind, the settings, and the model
    it learns from (CLIP, the dVAE; as they were trained). The checkpoint goes to `out`, else the preset's own
    data/checkpoints/KIND-PRESET, which at the cpu and gpu presets is recorded in the manifest with its
    command, overrides, seed, wall time, metrics and sha256. The overrides are written into the checkpoint
    too, so that `load` (and `eval KIND`, and a model trained on it) rebuilds it as it was. With `bar_every`, the
    kind's metrics are measured every that many steps and the time to its bar is recorded too (`BarWatch`).
    Returns (model, info).
    """
    k = kind(name)
    if k.train is None:
        raise InputError(f"{name} is not trained itself: {k.about}")
    cfg, applied = config(name, preset, sets)
    dependency = load(k.needs, preset) if k.needs else None
    watch = BarWatch(name, dependency, bar_every) if bar_every else None
    if watch is not None and resume:
        raise InputError("--bar-every measures a run from its start: it cannot be combined with --resume")
    target = out if out is not None else k.checkpoint(preset)
    model = build(name, preset, applied)
    trained_on = k.trained_on(preset)
    info = k.train(model, dependency, name=target, resume=resume, show_progress=show_progress, on_log=watch)
    checkpoint.record_overrides(target, applied)                 # `load` rebuilds the model with them
    if watch is not None and watch.checks and watch.checks[-1][0] == info["steps"]:
        metrics = dict(watch.last_metrics)                      # the last check measured these very weights
    else:
        metrics = k.metrics(model, dependency) if k.metrics else {}
    if watch is not None:
        metrics["time_to_bar"] = watch.summary()
    if out is None:
        ship(name, target, cfg, info, metrics, overrides=applied, trained_on=trained_on,
             flags=f" --bar-every {bar_every}" if bar_every else "")
    else:
        print(f"{name}: saved {checkpoint.relative(target)} (not recorded in the manifest: only the preset's own "
              f"checkpoint is); {metrics}")
    return model, info


def generate(name: str, prompts: list[str], seed: int = 0, guidance: float | None = None,
             preset: str | None = None, model=None) -> torch.Tensor:
    """Pictures (B, 3, R, R) in [0, 1] for `prompts` from a generating kind (unclip, glide or dalle), each at its
    own default guidance unless `guidance` is given; `model` (from `load`) saves loading it again."""
    if name not in GENERATORS:
        raise InputError(f"{name!r} does not draw pictures for a prompt; use one of {', '.join(GENERATORS)}")
    model = model if model is not None else load(name, preset)
    scale = {} if guidance is None else {"guidance": guidance}
    if name == "unclip":
        return unclip.generate(model, prompts, seed=seed, **scale)
    if name == "glide":
        return glide.generate(model, prompts, seed=seed, **scale)
    return dalle.generate(model, dvae.load(preset), prompts, seed=seed, **scale)[0]
