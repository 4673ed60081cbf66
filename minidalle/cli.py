"""`python -m minidalle`: the course's command line.

Subcommands: `info` (setup check), `data preview` (a captioned grid of the
shapes world), `oracle validate|read|check`, `train clip|ddpm|glide` and
`eval clip|ddpm|glide` (lessons 02–04). Later lessons add their targets and `generate`.
"""
from __future__ import annotations

import argparse
import sys
import time


def _info(args):
    import platform

    import torch

    from .checkpoint import MANIFEST
    from .presets import get_preset
    from .runtime import device

    p = get_preset()
    print(f"minidalle preset: {p.name} — {p.about}")
    print(f"device: {device()}   torch {torch.__version__}   python {platform.python_version()}")
    print(f"base images {p.base_res}×{p.base_res}, upsampled to {p.up_res}×{p.up_res}")
    print(f"shipped checkpoints: {MANIFEST if MANIFEST.exists() else 'none yet'}")


def _preview(args):
    from .data import preview

    t = time.perf_counter()
    preview(args.out, n=args.n, res=args.res, seed=args.seed)
    print(f"wrote {args.out}: {args.n} captioned scenes at {args.res}×{args.res} (seed {args.seed}) "
          f"in {time.perf_counter() - t:.1f} s")


def _validate(args):
    from . import artefacts, eyes
    from .oracle import read, validation_suite

    t = time.perf_counter()
    res = validation_suite(args.n, args.seed, show_progress=True)
    keys = ["shape", "colour", "size", "count", "relations", "stated"]
    print(f"oracle on held-out renders ({args.n} scenes a condition at 32 px, {args.n // 4} at 64 px; seed {args.seed})")
    print(f"  {'condition':30s}" + "".join(f"{k:>10s}" for k in keys))
    for cond, acc in res.items():
        print(f"  {cond:30s}" + "".join(f"{acc[k]:10.4f}" if k in acc else f"{'—':>10s}" for k in keys))
    images, labels = artefacts.suite(n=args.suite_n, seed=args.seed)
    readings = [r for s in images for r in read(images[s])]
    print(f"artefact suite ({args.suite_n} pictures of each family × condition × resolution; seed {args.seed}): "
          "clearly shaped named right / ambiguous not named as a lure")
    for r, row in artefacts.score(readings, labels).items():
        (c, nc), (a, na) = row["clear"], row["ambiguous"]
        print(f"  {r:2d}×{r:<2d}  clear {c:.3f} (n={nc})  ambiguous {a:.3f} (n={na})")
    print("eye-labelled model samples: of those the eye rejects, the oracle rejects / of those the eye accepts "
          "and is sure of, the oracle accepts")
    for name in eyes.SETS:
        for group, g in eyes.agreement(name).items():
            (n1, k1), (n2, k2) = g["rejects"], g["accepts"]
            print(f"  {name:9s} {group:7s} rejects {k1:3d}/{n1:<3d} = {k1 / max(n1, 1):.3f}   "
                  f"accepts {k2:3d}/{n2:<3d} = {k2 / max(n2, 1):.3f}")
    print(f"({time.perf_counter() - t:.0f} s)")


def _load_png(path):
    import numpy as np
    from PIL import Image

    try:
        img = Image.open(path).convert("RGB")
    except (FileNotFoundError, OSError) as e:
        raise SystemExit(f"cannot read image {path}: {e}")
    import torch

    return torch.from_numpy(np.asarray(img).copy()).permute(2, 0, 1)


def _read(args):
    from .oracle import read

    r = read(_load_png(args.image))[0]
    if not r.objects:
        print("no objects found")
    for o, f, why in zip(r.objects, r.fit, r.why):
        print(f"{o.describe():28s} at ({o.x:.2f}, {o.y:.2f}) depth {o.z}  fit {f:.2f}" + (f"  (? {why})" if why else ""))
    for i, rel, j in r.scene.relations():
        print(f"  {r.objects[i].describe()} {rel} {r.objects[j].describe()}")


def _check(args):
    from .oracle import judge

    out = judge(_load_png(args.image), [args.caption])[0]
    for k, v in out.items():
        print(f"{k:24s} {'yes' if v else 'no'}")


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m minidalle",
                                     description="minidalle: DALL·E 1 and 2 in miniature, built to learn from.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.add_parser("info", help="check the setup: preset, device, versions").set_defaults(func=_info)

    data = sub.add_parser("data", help="the shapes world").add_subparsers(dest="what", metavar="WHAT")
    pv = data.add_parser("preview", help="render a captioned grid of scenes to a PNG")
    pv.add_argument("--out", default="preview.png", help="PNG to write (default: preview.png)")
    pv.add_argument("--n", type=int, default=16, help="number of scenes (default 16)")
    pv.add_argument("--res", type=int, default=32, choices=(16, 32, 64), help="resolution (default 32)")
    pv.add_argument("--seed", type=int, default=0)
    pv.set_defaults(func=_preview)

    orc = sub.add_parser("oracle", help="read scene graphs off images").add_subparsers(dest="what", metavar="WHAT")
    va = orc.add_parser("validate", help="audit the oracle: held-out renders, the artefact suite, eye-labelled samples")
    va.add_argument("--n", type=int, default=2000, help="renders per condition (default 2000)")
    va.add_argument("--suite-n", type=int, default=20,
                    help="artefact-suite pictures per family, condition and resolution (default 20)")
    va.add_argument("--seed", type=int, default=12345)
    va.set_defaults(func=_validate)
    rd = orc.add_parser("read", help="print the scene graph of a PNG (16, 32 or 64 px square)")
    rd.add_argument("image")
    rd.set_defaults(func=_read)
    ck = orc.add_parser("check", help="check a caption against a PNG")
    ck.add_argument("image")
    ck.add_argument("caption")
    ck.set_defaults(func=_check)
    _clip_commands(sub)
    _diffusion_commands(sub)
    _dalle_commands(sub)
    _prior_commands(sub)
    _unclip_commands(sub)

    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0 if args.command is None else 2
    from .checkpoint import CheckpointError
    from .presets import get_preset

    try:
        args.func(args)
    except ValueError as e:           # bad input: one clear line, no traceback
        print(f"error: {e}", file=sys.stderr)
        return 2
    except CheckpointError as e:      # missing, corrupt or mismatched checkpoint: what to run instead
        hint = "" if get_preset().name == "cpu" else \
            " (the shipped checkpoints are the cpu preset's: set MINIDALLE_PRESET=cpu to use them)"
        print(f"error: {e}{hint}", file=sys.stderr)
        return 2
    return 0


def _targets(sub, name: str, help: str):
    """The TARGET subparsers of `train` / `eval`: created on first use; each lesson adds its target."""
    if name not in sub.choices:
        sub.add_parser(name, help=help).add_subparsers(dest="target", metavar="TARGET")
    return next(a for a in sub.choices[name]._actions if isinstance(a, argparse._SubParsersAction))


def _train_parser(sub):
    """`train TARGET`: train a model at the active preset, with periodic checkpoints and --resume."""
    return _targets(sub, "train", "train a model at the active preset ($MINIDALLE_PRESET)")


def _eval_parser(sub):
    """`eval TARGET`: measure a trained model on held-out scenes."""
    return _targets(sub, "eval", "measure a trained model on held-out scenes")


def _clip_commands(sub):
    t = _train_parser(sub).add_parser("clip", help="train CLIP (lesson 02) into data/checkpoints/clip-PRESET")
    t.add_argument("--resume", action="store_true", help="continue from the last periodic checkpoint (runs/)")
    t.set_defaults(func=_train_clip)
    e = _eval_parser(sub).add_parser("clip", help="zero-shot accuracy, retrieval and compositional probes of CLIP")
    e.add_argument("--n", type=int, default=None, help="held-out scenes per measurement (default: the preset's n_eval)")
    e.set_defaults(func=_eval_clip)


def _clip_eval_print(model, n):
    from .clip_eval import evaluate, report
    from .presets import get_preset

    n = n or get_preset().n_eval
    t = time.perf_counter()
    results = evaluate(model, n_zero_shot=n, n_retrieval=min(n, 1000), n_probes=n)
    print(report(results))
    print(f"(evaluated in {time.perf_counter() - t:.0f} s)")
    return results


def _train_clip(args):
    from .checkpoint import ROOT, command_line, record, save
    from .clip import CLIP, checkpoint_name, preset_configs, train
    from .presets import get_preset
    from .runtime import seed_everything

    p = get_preset()
    config, tc = preset_configs()
    seed_everything(tc.seed)                                  # the initial weights are part of the recipe
    model = CLIP(config)
    info = train(model, tc, resume=args.resume)
    path = save(checkpoint_name(), {"model": model.state_dict()}, config, info)
    print(f"CLIP at preset {p.name}: {tc.steps} steps, final loss {info['losses'][-1]:.3f}, "
          f"training wall time {info['wall_time_s']:.0f} s; saved {path.relative_to(ROOT)} "
          f"({path.stat().st_size / 1e6:.1f} MB)")
    results = _clip_eval_print(model, None)
    if p.name != "ci":            # ci checkpoints are git-ignored and never shipped
        record(f"clip-{p.name}", path, command_line(p.name, "train clip"), p.name,
               tc.seed, info["wall_time_s"], {k: {m: round(v, 4) if isinstance(v, float) else v for m, v in r.items()}
                                              for k, r in results.items()})


def _eval_clip(args):
    from .clip import load_trained

    if args.n is not None and args.n < 2:
        raise ValueError(f"--n must be at least 2 held-out scenes, got {args.n}")
    model, _ = load_trained(train_if_missing=False)
    _clip_eval_print(model, args.n)


def _diffusion_commands(sub):
    """`train ddpm|glide` and `eval ddpm|glide` (lessons 03 and 04; minidalle.glide does the work)."""
    for kind, lesson in (("ddpm", "03"), ("glide", "04")):
        t = _train_parser(sub).add_parser(kind, help=f"train lesson {lesson}'s {kind} into data/checkpoints/{kind}-PRESET")
        t.add_argument("--resume", action="store_true", help="continue from the last periodic state (runs/)")
        t.set_defaults(func=lambda a, k=kind: __import__("minidalle.glide").glide.cli_train(k, a.resume))
        e = _eval_parser(sub).add_parser(kind, help=f"oracle accuracy of {kind} samples, DDIM vs DDPM"
                                         + (", guidance sweep" if kind == "glide" else ""))
        e.add_argument("--per-prompt", type=int, default=4, help="samples per prompt (default 4)")
        e.add_argument("--plot", default=None, help="PNG for the guidance sweep (glide)")
        e.add_argument("--guidance", type=float, default=None,
                       help="classifier-free guidance scale (glide; default glide.GUIDANCE, the sweep's best)")
        e.set_defaults(func=lambda a, k=kind: __import__("minidalle.glide").glide.cli_eval(k, a.per_prompt, a.plot,
                                                                                          **_guidance(a)))


def _guidance(a) -> dict:
    """--guidance when given; otherwise nothing, so the model's own default scale (its sweep's best) applies."""
    return {} if a.guidance is None else {"guidance": a.guidance}


def _dalle_commands(sub):
    """`train dvae|dalle` and `eval dvae|dalle` (lessons 08 and 09; minidalle.dalle_eval does the work)."""
    helps = {"dvae": ("08", "the discrete VAE", "reconstruction error, codebook usage, oracle check of reconstructions"),
             "dalle": ("09", "the DALL·E transformer (needs the dVAE)",
                       "oracle accuracy of samples, CLIP re-ranking curve, image completion")}
    for kind, (lesson, what, measures) in helps.items():
        t = _train_parser(sub).add_parser(kind, help=f"train lesson {lesson}'s {what} into data/checkpoints/{kind}-PRESET")
        t.add_argument("--resume", action="store_true", help="continue from the last periodic state (runs/)")
        t.set_defaults(func=lambda a, k=kind: __import__("minidalle.dalle_eval").dalle_eval.cli_train(k, a.resume))
        e = _eval_parser(sub).add_parser(kind, help=measures)
        if kind == "dvae":
            e.add_argument("--n", type=int, default=500, help="held-out scenes of each kind (default 500)")
        else:
            e.add_argument("--per-prompt", type=int, default=4, help="samples per prompt (default 4)")
        e.set_defaults(func=lambda a, k=kind: __import__("minidalle.dalle_eval").dalle_eval.cli_eval(
            k, n=getattr(a, "n", 500), per_prompt=getattr(a, "per_prompt", 4)))


def _prior_commands(sub):
    """`train prior` and `eval prior` (lesson 05; minidalle.prior does the work)."""
    t = _train_parser(sub).add_parser("prior", help="train lesson 05's diffusion prior (needs CLIP) into "
                                                    "data/checkpoints/prior-PRESET")
    t.add_argument("--resume", action="store_true", help="continue from the last periodic state (runs/)")
    t.set_defaults(func=lambda a: __import__("minidalle.prior").prior.cli_train(a.resume))
    e = _eval_parser(sub).add_parser("prior", help="cosine similarity of predicted to true CLIP image embeddings")
    e.add_argument("--n", type=int, default=500, help="held-out captioned scenes (default 500)")
    e.add_argument("--guidance", type=float, default=1.0, help="classifier-free guidance scale (default 1)")
    e.set_defaults(func=lambda a: __import__("minidalle.prior").prior.cli_eval(a.n, a.guidance))


def _unclip_commands(sub):
    """`generate`, `train decoder|upsampler` and `eval unclip` (lessons 06-07; minidalle.decoder and .unclip)."""
    g = sub.add_parser("generate", help="text → pictures with the unCLIP cascade (prior, decoder, upsampler)")
    g.add_argument("prompt", help="a shapes-world caption, e.g. 'a red circle' or 'a blue square above a green star'")
    g.add_argument("--n", type=int, default=8, help="pictures to draw (default 8)")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--out", default="unclip.png", help="PNG to write (default: unclip.png)")
    g.add_argument("--guidance", type=float, default=None,
                   help="decoder classifier-free guidance scale (default decoder.GUIDANCE, the sweep's best)")
    g.set_defaults(func=lambda a: __import__("minidalle.unclip").unclip.cli_generate(a.prompt, a.n, a.seed, a.out,
                                                                                    **_guidance(a)))
    for kind, what in (("decoder", "lesson 06's decoder (CLIP image embedding → base-resolution picture)"),
                       ("upsampler", "lesson 06's upsampler (base → twice the resolution)")):
        t = _train_parser(sub).add_parser(kind, help=f"train {what} (needs CLIP) into data/checkpoints/{kind}-PRESET")
        t.add_argument("--resume", action="store_true", help="continue from the last periodic state (runs/)")
        t.set_defaults(func=lambda a, k=kind: __import__("minidalle.decoder").decoder.cli_train(k, a.resume))
    e = _eval_parser(sub).add_parser("unclip", help="the unCLIP ablation (prior vs text embedding vs GLIDE), oracle-judged")
    e.add_argument("--per-prompt", type=int, default=4, help="samples per prompt (default 4)")
    e.add_argument("--guidance", type=float, default=None,
                   help="decoder classifier-free guidance scale (default decoder.GUIDANCE, the sweep's best)")
    e.set_defaults(func=lambda a: __import__("minidalle.unclip").unclip.cli_eval(a.per_prompt, **_guidance(a)))
