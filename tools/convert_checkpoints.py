"""Convert the shipped checkpoints to the package's one-house layout (issue 22), once; run again, it changes nothing.

    python tools/convert_checkpoints.py [--preset cpu] [--check]

The tensors stay the same numbers. What changes:

* the four transformers now share `nn.transformer.Block`, whose parameters have open_clip's names: the prior's
  and DALL·E's blocks (`ln1`, `qkv`, `proj`, `ln2` → `ln_1`, `attn.qkv`, `attn.proj`, `ln_2`) and GLIDE's and the
  decoder's text encoders (PyTorch's `nn.TransformerEncoder` → `blocks.i.…`) are renamed;
* each JSON config is rewritten in the new layout (training settings under `train`), after checking that every
  old setting has the same value in the new config — so the checkpoint is what the new code builds;
* CLIP's training settings and per-step losses, which its old loop kept in the checkpoint's info, move to
  `config.train` and to `trainer.fit`'s (step, loss) pairs;
* the fingerprint a config held (`clip`, `dvae`) moves to the checkpoint's `trained_on`, after checking that it
  is the fingerprint of the checkpoint shipped beside it.

The manifest's sha256 and size are updated, and each entry notes the conversion. `--check` only reports.
"""
import argparse
import dataclasses
import json
import re
import sys
from pathlib import Path

from safetensors.torch import load_file

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from minidalle import checkpoint, registry  # noqa: E402

RENAMES = [  # (pattern, replacement) on tensor names, applied in order
    (r"\.blocks\.(\d+)\.ln1\.", r".blocks.\1.ln_1."),
    (r"\.blocks\.(\d+)\.ln2\.", r".blocks.\1.ln_2."),
    (r"\.blocks\.(\d+)\.qkv\.", r".blocks.\1.attn.qkv."),
    (r"\.blocks\.(\d+)\.proj\.", r".blocks.\1.attn.proj."),
    (r"\.blocks\.layers\.(\d+)\.self_attn\.in_proj_(weight|bias)$", r".blocks.\1.attn.qkv.\2"),
    (r"\.blocks\.layers\.(\d+)\.self_attn\.out_proj\.", r".blocks.\1.attn.proj."),
    (r"\.blocks\.layers\.(\d+)\.linear1\.", r".blocks.\1.mlp.0."),
    (r"\.blocks\.layers\.(\d+)\.linear2\.", r".blocks.\1.mlp.2."),
    (r"\.blocks\.layers\.(\d+)\.norm1\.", r".blocks.\1.ln_1."),
    (r"\.blocks\.layers\.(\d+)\.norm2\.", r".blocks.\1.ln_2."),
]
OLD_TRAIN_NAMES = {"batch_size": "batch", "checkpoint_every": "save_every"}   # CLIP's own loop named them so
FINGERPRINTS = {"clip", "dvae"}          # config fields that named the model a checkpoint was trained on
NOTE = ("converted to the one-house layout by tools/convert_checkpoints.py (issue 22): tensor values unchanged, "
        "config rewritten with training settings under `train`")


def rename(key: str) -> str:
    """A tensor's new name: "model.blocks.0.ln1.weight" → "model.blocks.0.ln_1.weight" (with or without a prefix)."""
    key = "." + key
    for pattern, repl in RENAMES:
        key = re.sub(pattern, repl, key)
    return key[1:]


def flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(flat(v, f"{prefix}{k}."))
        else:
            out[prefix + k] = list(v) if isinstance(v, (list, tuple)) else v
    return out


def compare(old: dict, new: dict) -> tuple[list[str], dict]:
    """Differences between the old config and the new one, allowing settings moved under `train`; and the
    fingerprints the old one held."""
    old_f, new_f = flat(old), flat(json.loads(json.dumps(new)))
    problems, prints = [], {}
    for k, v in old_f.items():
        if k in FINGERPRINTS:
            prints[k] = v
            continue
        target = k if k in new_f else f"train.{k}" if f"train.{k}" in new_f else None
        if target is None:
            problems.append(f"{k} = {v!r} has no place in the new config")
        elif new_f[target] != v:
            problems.append(f"{k}: old {v!r}, new {target} = {new_f[target]!r}")
    return problems, prints


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="cpu")
    ap.add_argument("--check", action="store_true", help="report only; write nothing")
    args = ap.parse_args()
    manifest = json.loads(checkpoint.MANIFEST.read_text())
    failed = False
    for name in registry.TRAINABLE:
        kind = registry.KINDS[name]
        path = kind.checkpoint(args.preset)
        if not checkpoint.exists(path):
            print(f"{name}: no checkpoint at {checkpoint.relative(path)}, skipped")
            continue
        st, js = checkpoint.paths(path)
        meta = json.loads(js.read_text())
        config = kind.config(args.preset)
        new = dataclasses.asdict(config)
        info = dict(meta["info"])
        old = dict(meta["config"])
        if "train" in info and "train" not in old:                 # CLIP kept its training settings in info
            moved = {OLD_TRAIN_NAMES.get(k, k): v for k, v in info.pop("train").items()}
            old["train"] = moved
        if info.get("losses") and not isinstance(info["losses"][0], list):   # CLIP logged a bare loss a step
            info["losses"] = [[i, v] for i, v in enumerate(info["losses"])]
        problems, prints = compare(old, new)
        want = kind.trained_on(args.preset)
        prints = {**meta.get("trained_on", {}), **prints}
        for what, fp in prints.items():
            if want.get(what) != fp:
                problems.append(f"trained on {what} {fp}, but the shipped {what} is {want.get(what)}")
        tensors = load_file(str(st))
        renamed = {rename(k): v for k, v in tensors.items()}
        changed = sum(k != rename(k) for k in tensors)
        if problems:
            failed = True
            print(f"{name}: NOT converted — " + "; ".join(problems))
            continue
        same = (meta["config"] == json.loads(json.dumps(new)) and not changed and meta.get("trained_on", {}) == want
                and info == meta["info"])
        print(f"{name}: {changed} tensor names changed, config {'unchanged' if same else 'rewritten'}, "
              f"trained on {want or 'nothing else'}")
        if args.check or same:
            continue
        state = checkpoint._unflatten(meta["layout"], {k: tensors[k] for k in tensors})
        state = {"model": {rename(k): v for k, v in state["model"].items()}}
        assert set(state["model"]) == {k.removeprefix("model.") for k in renamed}
        checkpoint.save(path, state, config, info, want)
        entry = manifest.get(f"{name}-{args.preset}")
        if entry is not None:
            entry.update(sha256=checkpoint.sha256(st), bytes=st.stat().st_size, trained_on=want,
                         overrides=entry.get("overrides", {}),
                         note=NOTE + (f"; {changed} transformer tensors renamed" if changed else ""))
    if not args.check:
        checkpoint.MANIFEST.write_text(json.dumps(dict(sorted(manifest.items())), indent=1) + "\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
