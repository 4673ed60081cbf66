"""minidalle: DALL·E 1 and DALL·E 2 in miniature, built to be read and learned from.

The modules, one concept each (the lesson that explains each is in its docstring):

- `presets`, `runtime`, `checkpoint` — scale, device/seed/progress, safetensors checkpoints
- `world`, `render`, `captions`, `data` — the shapes world: scene graphs, pictures, captions, data sets
- `oracle` — reads a scene graph off any image and checks captions against it
"""
from .presets import PRESETS, Preset, get_preset
from .runtime import device, progress, seed_everything

__version__ = "0.1.0"
__all__ = ["PRESETS", "Preset", "get_preset", "device", "progress", "seed_everything", "__version__"]
