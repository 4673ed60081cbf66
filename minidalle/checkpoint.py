"""Checkpoints: safetensors for tensors, JSON for everything else, never pickle.

The course's one checkpoint helper (book/design.md). A checkpoint `NAME` is two
files, `NAME.safetensors` (the tensors) and `NAME.json` (the config, the
layout of nested state such as an optimizer's, free-form info, and the
sha256 of the tensor file). Shipped checkpoints are listed, with the command
that made them, in `data/checkpoints/manifest.json`.

Loading fails with a `CheckpointError` that says what to do when the file is
missing, corrupted, or was made with another config. Notebooks use
`load_or_train`: load the checkpoint if it is there and fits, else train.
Lesson 00 shows one being loaded.
"""
from __future__ import annotations

import dataclasses
import datetime
import hashlib
import json
import os
import platform
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from minidalle.config import ROOT, get_preset, model_part, override
from minidalle.runtime import device


FORMAT = "minidalle-checkpoint/1"
SHIPPED = ROOT / "data" / "checkpoints"
MANIFEST = SHIPPED / "manifest.json"
RUNS = ROOT / "runs"                                  # resumable training state, git-ignored


class CheckpointError(RuntimeError):
    """A checkpoint is missing, corrupted or does not fit; the message says what to do."""


def _as_dict(config) -> dict:
    if dataclasses.is_dataclass(config):
        config = dataclasses.asdict(config)
    return json.loads(json.dumps(config or {}))          # normalise tuples to lists


def _flatten(obj, prefix: str, out: dict):
    """Replace tensors in a nested dict/list by {"__tensor__": key}, collecting them in out."""
    if isinstance(obj, torch.Tensor):
        out[prefix] = obj.detach().cpu().contiguous()
        return {"__tensor__": prefix}
    if isinstance(obj, dict):
        return {"__dict__": [[k, _flatten(v, f"{prefix}.{k}" if prefix else str(k), out)] for k, v in obj.items()]}
    if isinstance(obj, (list, tuple)):
        return [_flatten(v, f"{prefix}.{i}", out) for i, v in enumerate(obj)]
    return obj


def _unflatten(obj, tensors: dict):
    if isinstance(obj, dict) and "__tensor__" in obj:
        return tensors[obj["__tensor__"]]
    if isinstance(obj, dict) and "__dict__" in obj:
        return {k: _unflatten(v, tensors) for k, v in obj["__dict__"]}
    if isinstance(obj, list):
        return [_unflatten(v, tensors) for v in obj]
    return obj


def paths(name) -> tuple[Path, Path]:
    """The two files of checkpoint `name`: (NAME.safetensors, NAME.json)."""
    p = Path(name)
    if p.suffix in (".safetensors", ".json"):
        p = p.with_suffix("")
    return p.with_suffix(".safetensors"), p.with_suffix(".json")


def shipped_name(kind: str, preset: str | None = None) -> Path:
    """data/checkpoints/{kind}-{preset}: where a model trained at a preset lives (the -ci ones are git-ignored)."""

    return SHIPPED / f"{kind}-{get_preset(preset).name}"


def exists(name) -> bool:
    return paths(name)[0].exists()


def relative(name) -> str:
    """`name` as shown to a person: relative to the repository when inside it."""
    p = Path(name)
    try:
        return str(p.resolve().relative_to(ROOT))
    except ValueError:
        return str(p)


def state_path(name) -> Path:
    """Where training keeps the resumable state behind checkpoint `name`: runs/NAME-state for a shipped
    checkpoint (data/checkpoints/ holds only finished ones), NAME-state beside any other."""
    p = paths(name)[0].with_suffix("")
    if p.parent.resolve() == SHIPPED.resolve():
        return RUNS / f"{p.name}-state"
    return p.with_name(p.name + "-state")


def sha256(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def fingerprint(name) -> str:
    """The first 16 hex digits of checkpoint `name`'s sha256, or "" if there is none.

    A model trained on another model's outputs (DALL·E on the dVAE's tokens, the prior on
    CLIP's embeddings) stores this in its config, so it is refused once that model changes.
    """
    st = paths(name)[0]
    return sha256(st)[:16] if st.exists() else ""


def save(name, state, config=None, info: dict | None = None, trained_on: dict | None = None,
         overrides: dict | None = None) -> Path:
    """Write `state` (tensors, possibly nested in dicts/lists) and `config` under `name`, with the fingerprints
    of the checkpoints it was trained on and the `--set` overrides that made its config.

    Writes atomically (temporary files, then rename), so an interrupted run
    never leaves half a checkpoint. Returns the path of the .safetensors file.
    """
    st, js = paths(name)
    st.parent.mkdir(parents=True, exist_ok=True)
    tensors: dict = {}
    layout = _flatten(state, "", tensors)
    # safetensors refuses tensors that share memory; give each its own copy
    tensors = {k: v.clone() for k, v in tensors.items()}
    save_file(tensors, str(st) + ".tmp")
    meta = {"format": FORMAT, "config": _as_dict(config), "layout": layout, "info": info or {},
            "trained_on": trained_on or {}, "overrides": _as_dict(overrides), "sha256": sha256(str(st) + ".tmp")}
    with open(str(js) + ".tmp", "w") as f:
        json.dump(meta, f, indent=1)
    os.replace(str(st) + ".tmp", st)
    os.replace(str(js) + ".tmp", js)
    return st


def load(name, config=None, map_location: str = "cpu", trained_on: dict | None = None):
    """Read a checkpoint: returns (state, config dict, info dict).

    If `config` is given, the checkpoint's model settings must equal its model settings (its
    training settings are provenance and may differ); if `trained_on` is given ({"clip":
    fingerprint}), the models it was trained on must be those. Else CheckpointError says what differs.
    """
    st, js = paths(name)
    if not st.exists() or not js.exists():
        if _making(st):                                         # data/checkpoints/KIND-PRESET: say how to make it
            raise CheckpointError(f"no checkpoint at {relative(st)}: train it with {_making(st)}")
        raise CheckpointError(f"no checkpoint at {relative(st)} (+ .json): check the path, or train one first")
    try:
        meta = json.loads(js.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{js} is not valid JSON ({e}): the checkpoint is corrupted; delete it and retrain") from e
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{js} is not a minidalle checkpoint (format {meta.get('format')!r}, expected {FORMAT!r})")
    digest = sha256(st)
    if digest != meta.get("sha256"):
        raise CheckpointError(f"{st} does not match the sha256 recorded in {js.name}: the file is corrupted "
                              "or was replaced; delete both files and retrain (or restore them from git)")
    try:
        tensors = load_file(str(st), device=map_location)
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{st} cannot be read ({e}): delete it and retrain") from e
    if config is not None:
        diff = _differences(model_part(_as_dict(config)), model_part(meta["config"]))
        if diff:
            what = f"make the current one with {_making(st)}" if _making(st) else \
                "use the matching preset and settings, or retrain"      # a shipped one from an older recipe
            raise CheckpointError(f"{st.name} was made with other model settings ({'; '.join(diff)}); {what}")
    for what, want in (trained_on or {}).items():
        have = meta.get("trained_on", {}).get(what)
        if have != want:
            raise CheckpointError(f"{st.name} was trained on another {what} checkpoint ({have or 'none recorded'}; "
                                  f"this one is {want or 'missing'}): retrain it, `python -m minidalle train "
                                  f"{st.stem.rsplit('-', 1)[0]}`, after the {what}")
    return _unflatten(meta["layout"], tensors), meta["config"], meta["info"]


def _making(st: Path) -> str | None:
    """For a shipped checkpoint, data/checkpoints/KIND-PRESET, the command that makes it; else None."""
    if st.parent.resolve() != SHIPPED.resolve():
        return None
    kind, _, preset = st.stem.rpartition("-")
    return f"`MINIDALLE_PRESET={preset} python -m minidalle train {kind}`"


def _differences(want, have, prefix: str = "") -> list[str]:
    out = []
    for k in sorted(set(want) | set(have)):
        a, b = want.get(k), have.get(k)
        if isinstance(a, dict) and isinstance(b, dict):
            out += _differences(a, b, f"{prefix}{k}.")
        elif a != b:
            out.append(f"{prefix}{k}: checkpoint {b!r}, wanted {a!r}")
    return out


def load_into(module: torch.nn.Module, name, config=None, map_location="cpu", trained_on: dict | None = None) -> dict:
    """Load a checkpoint's weights into `module` (strictly). Returns the stored info."""
    state, _, info = load(name, config, map_location, trained_on)
    weights = state.get("model", state) if isinstance(state, dict) else state
    try:
        module.load_state_dict(weights, strict=True)
    except RuntimeError as e:
        first = str(e).strip().splitlines()[:3]
        raise CheckpointError(f"{name}: weights do not fit this {type(module).__name__} — "
                              f"{' '.join(first)} — retrain, or build the model with the checkpoint's config") from e
    return info


def recorded_overrides(name) -> dict:
    """The `--set` overrides checkpoint `name` was trained with ({} if none, or if there is no checkpoint)."""
    js = paths(name)[1]
    try:
        return json.loads(js.read_text()).get("overrides") or {}
    except (FileNotFoundError, json.JSONDecodeError, UnicodeDecodeError):
        return {}


def record_overrides(name, overrides: dict) -> None:
    """Write the overrides a finished checkpoint was trained with into its JSON (the tensors are untouched)."""
    js = paths(name)[1]
    meta = json.loads(js.read_text())
    meta["overrides"] = _as_dict(overrides)
    js.write_text(json.dumps(meta, indent=1))


def load_model(build, config, name, trained_on: dict | None = None, kind: str | None = None):
    """The trained model of checkpoint `name`: `build(config)` with the overrides the checkpoint was trained with
    applied to `config` (so `train KIND --set …` is loaded as it was trained), its weights checked against those
    model settings and `trained_on`, then loaded; in eval mode on the device. Every family's `load` is this;
    `kind` names the command that trains a missing one."""
    if kind and not exists(name) and paths(name)[0].parent.resolve() != SHIPPED.resolve():
        raise CheckpointError(f"no {kind} checkpoint at {relative(name)}: train it with "
                              f"`python -m minidalle train {kind}`, or check the path")
    config, _ = override(config, recorded_overrides(name))
    model = build(config)
    load_into(model, name, config, trained_on=trained_on)
    return model.to(device()).eval()


def command_line(preset: str, args: str) -> str:
    """The shell command that made a checkpoint, as the manifest records it (with $OMP_NUM_THREADS if set)."""
    threads = os.environ.get("OMP_NUM_THREADS")
    return (f"OMP_NUM_THREADS={threads} " if threads else "") + f"MINIDALLE_PRESET={preset} python -m minidalle {args}"


def record(name: str, path, command: str, preset: str, seed: int, wall_time_s: float,
           metrics: dict | None = None, manifest: Path = MANIFEST, overrides: dict | None = None,
           trained_on: dict | None = None) -> dict:
    """Add or replace the manifest entry of a shipped checkpoint."""
    st, _ = paths(path)
    entry = {
        "file": os.path.relpath(st, manifest.parent), "sha256": sha256(st), "bytes": st.stat().st_size,
        "command": command, "preset": preset, "seed": seed, "wall_time_s": round(wall_time_s, 1),
        "metrics": metrics or {}, "overrides": _as_dict(overrides), "trained_on": trained_on or {},
        "date": datetime.date.today().isoformat(),
        "hardware": f"{platform.machine()} {os.cpu_count()} CPU" + (
            f", {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ""),
        "torch": torch.__version__,
    }
    data = json.loads(manifest.read_text()) if manifest.exists() else {}
    data[name] = entry
    manifest.parent.mkdir(parents=True, exist_ok=True)
    manifest.write_text(json.dumps(dict(sorted(data.items())), indent=1) + "\n")
    return entry


def load_or_train(module: torch.nn.Module, name, config, train, trained_on: dict | None = None):
    """Notebook helper: load `name` into `module` if it exists with this config (and, given `trained_on`, was
    trained on those checkpoints), else `train()` it.

    `train(module)` must train in place and return an info dict; the result is saved under `name`, with
    `trained_on` recorded so that the family's `load` accepts it later. Returns (info, loaded: bool).
    """
    try:
        return load_into(module, name, config, trained_on=trained_on), True
    except CheckpointError as e:
        if paths(name)[0].exists():
            print(f"not loading {paths(name)[0].name}: {e}")
        info = train(module) or {}
        save(name, {"model": module.state_dict()}, config, info, trained_on)
        return info, False
