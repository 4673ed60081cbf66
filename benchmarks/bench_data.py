"""How fast does the shapes world make data, and the oracle read it? (≥ 2,000 scenes/s and ≥ 300 images/s at 32×32, one core)

Run:  python benchmarks/bench_data.py [--n 20000] [--threads 1]

Times `minidalle.world.data.generate` (draw + render + caption) and its parts, and
`minidalle.world.oracle.read` on held-out renders, on one thread by default. The
shapes world has no peer library to race, so this benchmark compares the parts
with the whole, and the oracle with its target.
"""
import argparse
import time

import torch

from minidalle.world.data import generate
from minidalle.world.oracle import read
from minidalle.world.render import render
from minidalle.world.sampler import sample_scenes


def rate(fn, n, repeat=3):
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return n / best


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=20000)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    n = args.n
    sa = sample_scenes(n, seed=1)
    print(f"{n} scenes, {args.threads} thread(s), torch {torch.__version__}")
    print(f"  draw scene graphs      {rate(lambda: sample_scenes(n, seed=1), n):10.0f} scenes/s")
    for res in (16, 32, 64):
        print(f"  render {res:2d}×{res:<2d}           {rate(lambda: render(sa, res), n):10.0f} scenes/s")
    whole = rate(lambda: generate(n, 32, seed=1, show_progress=False), n)
    print(f"  generate 32×32 (all)   {whole:10.0f} scenes/s  (target ≥ 2000: {'met' if whole >= 2000 else 'NOT met'})")
    m = min(n, 2000)
    for res in (16, 32, 64):
        img = render(sample_scenes(m, seed=2), res)
        read(img[:8])                                          # builds the template banks once
        r = rate(lambda: read(img), m, repeat=2)
        target = f"  (target ≥ 300: {'met' if r >= 300 else 'NOT met'})" if res == 32 else ""
        print(f"  oracle read {res:2d}×{res:<2d}      {r:10.0f} images/s{target}")


if __name__ == "__main__":
    main()
