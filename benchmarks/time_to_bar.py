"""Time to the bar: train each model from scratch at the active preset and report the training wall time at which
it first reaches its bar (`registry.Kind.bar`, judged by the strict oracle), on 2 CPU threads by default.

    MINIDALLE_PRESET=cpu python benchmarks/time_to_bar.py [KIND …] [--every N] [--threads 2] [--full]
    python benchmarks/time_to_bar.py --manifest          # the table of the shipped checkpoints' own runs

Each run measures the kind's manifest metrics every N steps (the time spent measuring is not counted) and stops at
the first check at the bar (`--full`: trains on to the end). Runs write under runs/time-to-bar/, never over a shipped
checkpoint. The shipped checkpoints were trained with `python -m minidalle train KIND --bar-every N`, which records
the same measurement in data/checkpoints/manifest.json; `--manifest` prints it. Lesson 00 and the README quote it.
"""
import argparse
import json
import sys
import time

import torch

from minidalle import checkpoint, registry
from minidalle.config import get_preset


def from_manifest() -> list[tuple]:
    """(kind, bar, reached step or None, training s to the bar or None, steps, whole run s) of each shipped run."""
    rows = []
    entries = json.loads(checkpoint.MANIFEST.read_text()) if checkpoint.MANIFEST.exists() else {}
    for name, k in registry.KINDS.items():
        entry = entries.get(f"{name}-cpu")
        if k.train is None or entry is None:
            continue
        ttb = entry.get("metrics", {}).get("time_to_bar")
        if ttb is None:
            rows.append((name, "not measured (trained without --bar-every)", None, None, None, entry["wall_time_s"]))
            continue
        hit = ttb["reached"]
        rows.append((name, ttb["bar"], hit and hit["step"], hit and hit["train_wall_s"], ttb["checks"][-1][0],
                     entry["wall_time_s"]))
    return rows


def run(name: str, every: int, full: bool) -> tuple:
    """Train `name` from scratch with a BarWatch; the same row as `from_manifest`."""
    k = registry.kind(name)
    dependency = registry.load(k.needs) if k.needs else None
    watch = registry.BarWatch(name, dependency, every, stop=not full)
    target = checkpoint.RUNS / "time-to-bar" / f"{name}-{get_preset().name}"
    target.parent.mkdir(parents=True, exist_ok=True)
    print(f"{name}: training from scratch to '{watch.bar.metric} ≥ {watch.bar.at_least:g}', "
          f"measured every {every} steps", flush=True)
    t = time.perf_counter()
    try:
        k.train(registry.build(name), dependency, name=target, on_log=watch)
    except registry.BarReached:
        pass
    hit = watch.reached
    return (name, f"{watch.bar.metric} ≥ {watch.bar.at_least:g} ({watch.bar.about})", hit and hit[0],
            hit and hit[1], watch.checks[-1][0] if watch.checks else 0, round(time.perf_counter() - t - watch.aside, 1))


def table(rows: list[tuple], title: str) -> None:
    print(title)
    print(f"  {'kind':10s} {'to the bar':>22s}  bar")
    for name, bar, step, secs, last, whole in rows:
        if step is not None:
            when = f"{secs / 60:5.1f} min (step {step})"
        elif last:
            when = f"not in {last} steps"
        else:
            when = "—"
        print(f"  {name:10s} {when:>22s}  {bar}; whole run {whole / 60:.1f} min")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    with_bar = [n for n, k in registry.KINDS.items() if k.bar is not None]
    ap.add_argument("kinds", nargs="*", default=with_bar, help=f"kinds to train (default: {' '.join(with_bar)})")
    ap.add_argument("--every", type=int, default=500, help="steps between measurements (default 500)")
    ap.add_argument("--threads", type=int, default=2, help="CPU threads (default 2, a student's laptop)")
    ap.add_argument("--full", action="store_true", help="train to the end instead of stopping at the bar")
    ap.add_argument("--manifest", action="store_true", help="print the shipped checkpoints' recorded runs instead")
    args = ap.parse_args(argv)
    if args.manifest:
        table(from_manifest(), "time to the bar of the shipped cpu checkpoints (from data/checkpoints/manifest.json)")
        return 0
    unknown = [n for n in args.kinds if n not in with_bar]
    if unknown:
        ap.error(f"no bar to time for {', '.join(unknown)}; the kinds with one are {', '.join(with_bar)}")
    torch.set_num_threads(args.threads)
    rows = [run(n, args.every, args.full) for n in args.kinds]
    table(rows, f"time to the bar at preset {get_preset().name}, {args.threads} threads, training time only")
    return 0


if __name__ == "__main__":
    sys.exit(main())
