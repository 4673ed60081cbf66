"""Checkpoints: safetensors for tensors, JSON for everything else, never pickle.

The course's one checkpoint helper (COURSE.md §7). A checkpoint `NAME` is two
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

FORMAT = "minidalle-checkpoint/1"
ROOT = Path(__file__).resolve().parent.parent
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


def _paths(name) -> tuple[Path, Path]:
    p = Path(name)
    if p.suffix in (".safetensors", ".json"):
        p = p.with_suffix("")
    return p.with_suffix(".safetensors"), p.with_suffix(".json")


def shipped_name(kind: str, preset: str | None = None) -> Path:
    """data/checkpoints/{kind}-{preset}: where a model trained at a preset lives (the -ci ones are git-ignored)."""
    from .presets import get_preset

    return SHIPPED / f"{kind}-{get_preset(preset).name}"


def state_path(name) -> Path:
    """Where training keeps the resumable state behind checkpoint `name`: runs/{name}-state."""
    return RUNS / f"{Path(name).name}-state"


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
    st = _paths(name)[0]
    return sha256(st)[:16] if st.exists() else ""


def save(name, state, config=None, info: dict | None = None) -> Path:
    """Write `state` (tensors, possibly nested in dicts/lists) and `config` under `name`.

    Writes atomically (temporary files, then rename), so an interrupted run
    never leaves half a checkpoint. Returns the path of the .safetensors file.
    """
    st, js = _paths(name)
    st.parent.mkdir(parents=True, exist_ok=True)
    tensors: dict = {}
    layout = _flatten(state, "", tensors)
    # safetensors refuses tensors that share memory; give each its own copy
    tensors = {k: v.clone() for k, v in tensors.items()}
    save_file(tensors, str(st) + ".tmp")
    meta = {"format": FORMAT, "config": _as_dict(config), "layout": layout, "info": info or {},
            "sha256": sha256(str(st) + ".tmp")}
    with open(str(js) + ".tmp", "w") as f:
        json.dump(meta, f, indent=1)
    os.replace(str(st) + ".tmp", st)
    os.replace(str(js) + ".tmp", js)
    return st


def load(name, config=None, map_location: str = "cpu"):
    """Read a checkpoint: returns (state, config dict, info dict).

    If `config` is given, the stored config must equal it, else CheckpointError
    lists the differences.
    """
    st, js = _paths(name)
    if not st.exists() or not js.exists():
        raise CheckpointError(f"no checkpoint at {st} (+ .json): train one first, e.g. "
                              f"`python -m minidalle train ...`, or check the path")
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
        want, have = _as_dict(config), meta["config"]
        diff = sorted(k for k in set(want) | set(have) if want.get(k) != have.get(k))
        if diff:
            lines = ", ".join(f"{k}: checkpoint {have.get(k)!r} vs wanted {want.get(k)!r}" for k in diff)
            raise CheckpointError(f"{st.name} was made with another config ({lines}); "
                                  "use the matching preset/config or retrain")
    return _unflatten(meta["layout"], tensors), meta["config"], meta["info"]


def load_into(module: torch.nn.Module, name, config=None, map_location="cpu") -> dict:
    """Load a checkpoint's weights into `module` (strictly). Returns the stored info."""
    state, _, info = load(name, config, map_location)
    weights = state.get("model", state) if isinstance(state, dict) else state
    try:
        module.load_state_dict(weights, strict=True)
    except RuntimeError as e:
        first = str(e).strip().splitlines()[:3]
        raise CheckpointError(f"{name}: weights do not fit this {type(module).__name__} — "
                              f"{' '.join(first)} — retrain, or build the model with the checkpoint's config") from e
    return info


def command_line(preset: str, args: str) -> str:
    """The shell command that made a checkpoint, as the manifest records it (with $OMP_NUM_THREADS if set)."""
    threads = os.environ.get("OMP_NUM_THREADS")
    return (f"OMP_NUM_THREADS={threads} " if threads else "") + f"MINIDALLE_PRESET={preset} python -m minidalle {args}"


def record(name: str, path, command: str, preset: str, seed: int, wall_time_s: float,
           metrics: dict | None = None, manifest: Path = MANIFEST) -> dict:
    """Add or replace the manifest entry of a shipped checkpoint."""
    st, _ = _paths(path)
    entry = {
        "file": os.path.relpath(st, manifest.parent), "sha256": sha256(st), "bytes": st.stat().st_size,
        "command": command, "preset": preset, "seed": seed, "wall_time_s": round(wall_time_s, 1),
        "metrics": metrics or {}, "date": datetime.date.today().isoformat(),
        "hardware": f"{platform.machine()} {os.cpu_count()} CPU" + (
            f", {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ""),
        "torch": torch.__version__,
    }
    data = json.loads(manifest.read_text()) if manifest.exists() else {}
    data[name] = entry
    manifest.parent.mkdir(parents=True, exist_ok=True)
    manifest.write_text(json.dumps(dict(sorted(data.items())), indent=1) + "\n")
    return entry


def load_or_train(module: torch.nn.Module, name, config, train):
    """Notebook helper: load `name` into `module` if it exists with this config, else `train()` it.

    `train(module)` must train in place and return an info dict; the result is
    saved under `name`. Returns (info, loaded: bool).
    """
    try:
        return load_into(module, name, config), True
    except CheckpointError as e:
        if _paths(name)[0].exists():
            print(f"not loading {_paths(name)[0].name}: {e}")
        info = train(module) or {}
        save(name, {"model": module.state_dict()}, config, info)
        return info, False
