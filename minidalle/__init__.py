"""minidalle: DALL·E 1 and DALL·E 2 in miniature, built to be read and learned from.

The package's folders mirror the book's parts, and imports run one way, down this list
(book/design.md draws the map):

- `config`, `runtime`, `checkpoint`, `trainer` — presets and configs, device/seed/progress,
  safetensors checkpoints, the one training loop
- `world` — the shapes world: scene graphs, pictures, captions, data sets, and the oracle (lesson 01)
- `text` — tokenizers; `nn` — building blocks shared by the model families
- `clip` (lesson 02), `diffusion` (03–04), `dalle2` (05–07), `dalle1` (08–09) — the models
- `eval` — measuring them; `registry` — the model kinds; `cli` — `python -m minidalle`
"""
from minidalle.config import PRESETS, Preset, get_preset
from minidalle.runtime import device, progress, seed_everything

__version__ = "0.1.0"
__all__ = ["PRESETS", "Preset", "get_preset", "device", "progress", "seed_everything", "__version__"]
