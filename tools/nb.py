"""Execute a lesson notebook at a preset and clean it for committing.

    python tools/nb.py run notebooks/01_shapes_world.ipynb --preset cpu
    python tools/nb.py clean notebooks/*.ipynb

`run` executes in place (kernel in this Python environment, working directory
notebooks/), then cleans. `clean` removes what must not be committed: widget
state, widget views (their text fallback stays), execution timing and other
per-run metadata, and absolute paths of this machine in outputs.
"""
import argparse
import os
import re
import sys
import time
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent
WIDGET = "application/vnd.jupyter.widget-view+json"


def clean(nb):
    nb.metadata.pop("widgets", None)
    nb.metadata.get("kernelspec", {}).update(name="python3", display_name="Python 3")
    for cell in nb.cells:
        cell.metadata.pop("execution", None)
        cell.metadata.pop("collapsed", None)
        cell.metadata.pop("scrolled", None)
        for out in cell.get("outputs", []):
            data = out.get("data", {})
            if WIDGET in data:
                data.pop(WIDGET)
                if "text/plain" in data and data["text/plain"].startswith(("HBox", "VBox", "interactive", "FloatProgress")):
                    data.pop("text/plain")
            for key in ("text", ):
                if key in out:
                    out[key] = _scrub(out[key])
            if "text/plain" in data:
                data["text/plain"] = _scrub(data["text/plain"])
        if "outputs" in cell:
            cell.outputs = [o for o in cell.outputs if not _noise(o)]
    nb.nbformat_minor = max(nb.nbformat_minor, 5)
    return nb


def _noise(out):
    """Empty displays (a stripped widget), a progress bar's text fallback, and progress-bar text on stderr."""
    if out.get("output_type") == "display_data" and not out.get("data"):
        return True
    data = out.get("data", {})
    if out.get("output_type") == "display_data" and set(data) == {"text/plain"} and re.search(r"\d+%\|", data["text/plain"]):
        return True
    return out.get("output_type") == "stream" and out.get("name") == "stderr" and re.search(r"\d+%\|", out.get("text", ""))


def _scrub(text):
    text = "".join(text) if isinstance(text, list) else text
    text = text.replace(str(ROOT) + "/", "").replace(str(ROOT), ".")
    return re.sub(r"/(?:work|tmp|root|home)/[A-Za-z0-9_./-]+/(minidalle/|site-packages/)", r"\1", text)


def run(path, preset, timeout):
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    os.environ["MINIDALLE_PRESET"] = preset
    t = time.perf_counter()
    NotebookClient(nb, timeout=timeout, kernel_name="python3",
                   resources={"metadata": {"path": str(Path(path).parent)}}).execute()
    nbformat.validator.normalize(nb)
    nbformat.write(clean(nb), path)
    print(f"ran {path} at preset {preset} in {time.perf_counter() - t:.0f} s")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("paths", nargs="+")
    r.add_argument("--preset", default="cpu", choices=("cpu", "gpu"), help="never ci: committed outputs come from cpu or better")
    r.add_argument("--timeout", type=int, default=1800, help="seconds per cell")
    c = sub.add_parser("clean")
    c.add_argument("paths", nargs="+")
    args = ap.parse_args()
    for p in args.paths:
        if args.cmd == "run":
            run(p, args.preset, args.timeout)
        else:
            nbformat.write(clean(nbformat.read(p, as_version=4)), p)
            print(f"cleaned {p}")


if __name__ == "__main__":
    sys.exit(main())
