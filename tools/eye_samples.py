"""Make a new eye-labelled set of model samples for auditing the oracle (lesson 01, data/oracle-eye/).

    python tools/eye_samples.py draw DIR [--per-model 65] [--seed 2026]   # samples + tiles, prompts apart
    python tools/eye_samples.py pixmap DIR N                              # picture N as a pixel map
    python tools/eye_samples.py collect DIR data/oracle-eye/NAME          # labels_*.tsv + prompts → a set

`draw` samples the shipped cpu checkpoints of GLIDE, the unCLIP cascade and DALL·E for single- and
two-object prompts, adds true renders (half of them blurred and noised) as controls, shuffles them, and
writes DIR/tiles/NNN.png (true size), DIR/big/NNN.png (enlarged), DIR/reference.png (the clean shapes)
and DIR/prompts.tsv (what each was drawn for — keep it away from whoever labels). Labellers follow
data/oracle-eye/BRIEF.md and write DIR/labels_*.tsv; `collect` joins them with the prompts into
NAME/labels.tsv and stores the pictures as uint8 NAME/images.safetensors.
"""
import argparse
import csv
import os
import random
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from safetensors.torch import save_file

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("MINIDALLE_PRESET", "cpu")             # the shipped checkpoints

from minidalle.dalle1 import dvae, transformer as dalle  # noqa: E402
from minidalle.dalle2 import unclip  # noqa: E402
from minidalle.diffusion import glide  # noqa: E402
from minidalle.eval.prompts import SINGLE_PROMPTS, pair_prompts  # noqa: E402
from minidalle.world.oracle import coverage, pixel_labels  # noqa: E402
from minidalle.world.render import degrade, render, render_scenes  # noqa: E402
from minidalle.world.sampler import sample_scenes  # noqa: E402
from minidalle.world.scenes import COLOUR_NAMES, SHAPES, Obj, Scene, SceneSpec  # noqa: E402

COLUMNS = ["n", "model", "kind", "res", "prompt", "true_scene", "eye_count", "eye_objects", "eye_layout",
           "eye_confidence", "eye_note"]


def _png(x: torch.Tensor, path: Path, scale: int = 1):
    a = (x.permute(1, 2, 0).clamp(0, 1).numpy() * 255).round().astype(np.uint8)
    Image.fromarray(np.kron(a, np.ones((scale, scale, 1), dtype=np.uint8))).save(path)


def draw(out: Path, per_model: int, seed: int):
    rng = random.Random(seed)
    singles = lambda k: [rng.choice(SINGLE_PROMPTS) for _ in range(k)]   # noqa: E731
    pairs = pair_prompts(2 * per_model, seed=seed)
    n1 = per_model * 2 // 3
    items = []
    g = glide.load()
    pipe = unclip.load()
    m, vae = dalle.load(), dvae.load()
    samplers = {"glide": lambda ps, s: glide.generate(g, ps, seed=s),
                "unclip": lambda ps, s: unclip.generate(pipe, ps, seed=s),
                "dalle": lambda ps, s: dalle.sampler(m, vae)(ps, s)}
    for k, (model, sample) in enumerate(samplers.items()):
        for kind, ps in (("single", singles(n1)), ("pair", rng.sample(pairs, per_model - n1))):
            with torch.no_grad():
                x = sample(ps, seed + 1 + k)
            items += [(model, kind, x.shape[-1], p, "", im) for p, im in zip(ps, x)]
    sa = sample_scenes(per_model // 3, SceneSpec(n_objects=(0.5, 0.5, 0, 0)), seed=seed + 9)
    img = render(sa, 32)
    img[len(img) // 2:] = degrade(img[len(img) // 2:], seed=seed)
    items += [("render", "control", 32, "", "; ".join(o.describe() for o in s.objects), im)
              for s, im in zip(sa.to_scenes(), img)]
    rng.shuffle(items)
    for d in ("tiles", "big"):
        (out / d).mkdir(parents=True, exist_ok=True)
    with open(out / "prompts.tsv", "w") as f:
        f.write("n\tmodel\tkind\tres\tprompt\ttrue_scene\n")
        for n, (model, kind, res, p, true, im) in enumerate(items):
            f.write(f"{n}\t{model}\t{kind}\t{res}\t{p}\t{true}\n")
            _png(im, out / "tiles" / f"{n:03d}.png")
            _png(im, out / "big" / f"{n:03d}.png", 256 // res)
    ref = [render_scenes([Scene((Obj(s, "white", z, 0.5, 0.5),))], r)[0] for r in (32, 64)
           for z in ("small", "large") for s in SHAPES]
    rows = [torch.cat([torch.nn.functional.interpolate(t[None], 128, mode="nearest")[0] for t in ref[i:i + 10]], -1)
            for i in (0, 10)]
    _png(torch.cat(rows, -2), out / "reference.png")
    print(f"wrote {len(items)} pictures to {out}/tiles and {out}/big; labellers read data/oracle-eye/BRIEF.md")


def pixmap(out: Path, n: int):
    x = torch.from_numpy(np.asarray(Image.open(out / "tiles" / f"{n:03d}.png").convert("RGB")).copy()).permute(2, 0, 1)
    x = x.float()[None] / 255
    lab = pixel_labels(x)[0]
    alpha = coverage(x)[0].amax(0)
    letters = [c[0] for c in COLOUR_NAMES]
    print("    " + "".join(str(i % 10) for i in range(x.shape[-1])))
    for r in range(x.shape[-2]):
        row = "".join("." if lab[r, c] < 0 else (letters[lab[r, c]].upper() if alpha[r, c] >= 0.7 else letters[lab[r, c]])
                      for c in range(x.shape[-1]))
        print(f"{r:3d} {row}")


def collect(out: Path, dst: Path):
    meta = {r["n"]: r for r in csv.DictReader(open(out / "prompts.tsv"), delimiter="\t")}
    rows = [r for p in sorted(out.glob("labels_*.tsv")) for r in csv.DictReader(open(p), delimiter="\t")]
    missing = sorted(set(meta) - {r["n"] for r in rows}, key=int)
    if missing:
        raise SystemExit(f"no label yet for pictures {', '.join(missing[:20])}{' …' if len(missing) > 20 else ''}")
    dst.mkdir(parents=True, exist_ok=True)
    with open(dst / "labels.tsv", "w") as f:
        f.write("\t".join(COLUMNS) + "\n")
        for r in sorted(rows, key=lambda r: int(r["n"])):
            r = {**r, **meta[r["n"]]}
            f.write("\t".join(r[c].replace("\t", " ") for c in COLUMNS) + "\n")
    tiles = {f"t{n}": torch.from_numpy(np.asarray(Image.open(out / "tiles" / f"{int(n):03d}.png").convert("RGB")).copy())
             .permute(2, 0, 1).contiguous() for n in meta}
    save_file(tiles, dst / "images.safetensors")
    print(f"wrote {dst}/labels.tsv ({len(rows)} rows) and {dst}/images.safetensors")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("draw")
    d.add_argument("dir", type=Path)
    d.add_argument("--per-model", type=int, default=65)
    d.add_argument("--seed", type=int, default=2026)
    p = sub.add_parser("pixmap")
    p.add_argument("dir", type=Path)
    p.add_argument("n", type=int)
    c = sub.add_parser("collect")
    c.add_argument("dir", type=Path)
    c.add_argument("dst", type=Path)
    a = ap.parse_args()
    if a.cmd == "draw":
        draw(a.dir, a.per_model, a.seed)
    elif a.cmd == "pixmap":
        pixmap(a.dir, a.n)
    else:
        collect(a.dir, a.dst)
