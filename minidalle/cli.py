"""`python -m minidalle`: the course's command line, a thin layer over `registry` and the oracle.

    info                                   the setup: preset, device, versions
    data preview                           a captioned grid of the shapes world (lesson 01)
    oracle validate | read IMG | check IMG CAPTION     audit the oracle, or ask it about a PNG (lesson 01)
    train KIND [--set key=value …] [--out NAME] [--resume] [--bar-every N]   train a model at the active preset
    eval KIND [options]                    measure a trained model, as it was trained (the book's figures)
    generate PROMPT [--model unclip|glide|dalle] [--n 8] [--seed 0] [--out FILE.png]

The kinds, and the lessons they belong to, are in `registry.KINDS` (and `train --help`). Bad input — an unknown
kind or setting, a prompt the world cannot say, a missing checkpoint — gets one line saying what to do and exit
status 2; anything else is a bug, and keeps its traceback.
"""
from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import matplotlib
import numpy as np
import torch
from PIL import Image

from minidalle import checkpoint, registry
from minidalle.config import InputError, get_preset
from minidalle.runtime import device
from minidalle.text.words import check_prompt
from minidalle.world import artefacts, eyes
from minidalle.world.data import preview
from minidalle.world.oracle import judge, read, validation_suite

matplotlib.use("Agg")                       # the command line only writes files
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the file-only backend)


SHOWN = {"unclip": "unCLIP", "glide": "GLIDE", "dalle": "DALL·E"}      # `generate --model` as the book names it


def _info(args):
    p = get_preset()
    print(f"minidalle preset: {p.name} — {p.about}")
    print(f"device: {device()}   torch {torch.__version__}   python {platform.python_version()}")
    r = {k: registry.config(k)[0].unet.res for k in ("ddpm", "glide", "decoder", "upsampler")}
    print(f"pictures: DDPM {r['ddpm']}×{r['ddpm']}, GLIDE {r['glide']}×{r['glide']}, unCLIP {r['decoder']}×{r['decoder']} "
          f"upsampled to {r['upsampler']}×{r['upsampler']}")
    print(f"shipped checkpoints: {checkpoint.MANIFEST if checkpoint.MANIFEST.exists() else 'none yet'}")
    print("model kinds: " + ", ".join(f"{k} ({v.lesson})" for k, v in registry.KINDS.items()))


def _preview(args):
    _check_out(args.out)
    t = time.perf_counter()
    preview(args.out, n=args.n, res=args.res, seed=args.seed)
    print(f"wrote {args.out}: {args.n} captioned scenes at {args.res}×{args.res} (seed {args.seed}) "
          f"in {time.perf_counter() - t:.1f} s")


def _validate(args):
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


def _load_png(path) -> torch.Tensor:
    """A PNG as uint8 (3, H, W), or InputError."""
    try:
        img = Image.open(path).convert("RGB")
    except (FileNotFoundError, OSError) as e:
        raise InputError(f"cannot read image {path}: {e}") from e
    return torch.from_numpy(np.asarray(img).copy()).permute(2, 0, 1)


def _read(args):
    r = read(_load_png(args.image))[0]
    if not r.objects:
        print("no objects found")
    for o, f, why in zip(r.objects, r.fit, r.why):
        print(f"{o.describe():28s} at ({o.x:.2f}, {o.y:.2f}) depth {o.z}  fit {f:.2f}" + (f"  (? {why})" if why else ""))
    for i, rel, j in r.scene.relations():
        print(f"  {r.objects[i].describe()} {rel} {r.objects[j].describe()}")


def _check(args):
    out = judge(_load_png(args.image), [args.caption])[0]
    for k, v in out.items():
        print(f"{k:24s} {'yes' if v else 'no'}")


def _check_out(out) -> None:
    """Refuse an output path whose folder does not exist, before any long work."""
    folder = Path(out).expanduser().resolve().parent
    if not folder.is_dir():
        raise InputError(f"cannot write {out}: there is no folder {folder}; create it or choose another --out")


def _train(args):
    if args.out is not None:
        _check_out(checkpoint.paths(args.out)[0])
    registry.train(args.kind, sets=args.set, resume=args.resume, out=args.out, bar_every=getattr(args, "bar_every", 0))


def _eval(args):
    k = registry.kind(args.kind)
    options = {o.flag.lstrip("-").replace("-", "_"): getattr(args, o.flag.lstrip("-").replace("-", "_"))
               for o in k.options}
    t = time.perf_counter()
    k.evaluate(**options)
    print(f"(evaluated in {time.perf_counter() - t:.0f} s)")


def _generate(args):
    if not 1 <= args.n <= 64:
        raise InputError(f"--n must be between 1 and 64, got {args.n}")
    check_prompt(args.prompt)
    _check_out(args.out)
    model = registry.load(args.model)
    t0 = time.perf_counter()
    with torch.no_grad():
        images = registry.generate(args.model, [args.prompt] * args.n, seed=args.seed, guidance=args.guidance,
                                   model=model)
    wall = time.perf_counter() - t0
    verdicts = judge(images, [args.prompt] * args.n)
    cols = min(args.n, 8)
    rows = (args.n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(1.4 * cols, 1.55 * rows + 0.4), squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < args.n:
            ok = verdicts[i]["exact"]
            ax.imshow(images[i].permute(1, 2, 0).numpy(), interpolation="nearest")
            ax.set_title("✓" if ok else "✗", fontsize=8, color="green" if ok else "red")
    fig.suptitle(f"“{args.prompt}” — {SHOWN[args.model]}, preset {get_preset().name}, seed {args.seed} "
                 "(✓: the oracle agrees)", fontsize=8)
    fig.tight_layout()
    fig.savefig(args.out, dpi=120)
    plt.close(fig)
    print(f"wrote {args.out}: {args.n} pictures of {images.shape[-1]}×{images.shape[-1]} in {wall:.1f} s; "
          f"the oracle finds the prompt exactly in {sum(v['exact'] for v in verdicts)} of {args.n}")


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m minidalle",
                                 description="minidalle: DALL·E 1 and 2 in miniature, built to learn from.")
    sub = ap.add_subparsers(dest="command", metavar="COMMAND")
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

    sets = dict(action="append", default=[], metavar="KEY=VALUE",
                help="change a setting of the kind's config, e.g. --set train.steps=500 (repeatable; "
                     "a wrong key lists the settings)")
    tr = sub.add_parser("train", help="train a model at the active preset ($MINIDALLE_PRESET)")
    trk = tr.add_subparsers(dest="kind", metavar="KIND", required=True)
    for name in registry.TRAINABLE:
        k = registry.KINDS[name]
        t = trk.add_parser(name, help=f"lesson {k.lesson}: {k.about}")
        t.add_argument("--set", **sets)
        t.add_argument("--out", default=None, metavar="NAME",
                       help=f"checkpoint to write (default data/checkpoints/{name}-PRESET, recorded in the manifest)")
        t.add_argument("--resume", action="store_true", help="continue from the last periodic state")
        if k.bar is not None:
            t.add_argument("--bar-every", type=int, default=0, metavar="N",
                           help=f"measure the bar ({k.bar.metric} ≥ {k.bar.at_least:g}) every N steps and record "
                                "the training time at which it is first reached")
        t.set_defaults(func=_train)
    ev = sub.add_parser("eval", help="measure a trained model (the figures of book/results.md)")
    evk = ev.add_subparsers(dest="kind", metavar="KIND", required=True)
    for name in registry.MEASURED:
        k = registry.KINDS[name]
        e = evk.add_parser(name, help=f"lesson {k.lesson}: {k.about}")
        for o in k.options:
            e.add_argument(o.flag, type=o.type, default=o.default, help=o.help)
        e.set_defaults(func=_eval)
    g = sub.add_parser("generate", help="text → pictures, by default with the unCLIP cascade")
    g.add_argument("prompt", help="a shapes-world caption, e.g. 'a red circle' or 'a blue square above a green cross'")
    g.add_argument("--model", default="unclip", choices=registry.GENERATORS, help="which model draws (default unclip)")
    g.add_argument("--n", type=int, default=8, help="pictures to draw (default 8)")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--out", default="unclip.png", help="PNG to write (default: unclip.png)")
    g.add_argument("--guidance", type=float, default=None,
                   help="classifier-free guidance scale (default: the model's own, the smallest best of its sweep)")
    g.set_defaults(func=_generate)
    return ap


def main(argv=None) -> int:
    ap = parser()
    args = ap.parse_args(argv)
    if not getattr(args, "func", None):
        ap.print_help()
        return 0 if args.command is None else 2
    try:
        args.func(args)
    except InputError as e:                       # bad input: one clear line, no traceback
        print(f"error: {e}", file=sys.stderr)
        return 2
    except checkpoint.CheckpointError as e:       # missing, corrupt or mismatched checkpoint: what to run instead
        hint = "" if get_preset().name == "cpu" else \
            " (the shipped checkpoints are the cpu preset's: set MINIDALLE_PRESET=cpu to use them)"
        print(f"error: {e}{hint}", file=sys.stderr)
        return 2
    return 0
