"""Why a small object inside a large one is hard for an 8×8-token dVAE (book/dalle1.md).

Cuts every 32×32 scene into the 64 cells of 4×4 pixels that one token covers and
compares the cells of 500 held-out two-object scenes, by how the pair is placed,
with the 1,280,000 cells of the dVAE's 20,000 training scenes: how many hold two
object colours, and how many are patterns that training never showed. Run from
the repository root: `python book/experiments/dvae-cells.py` (about 20 s).
"""
from collections import Counter

from minidalle.dalle1.dvae import colour_index
from minidalle.eval.dalle1 import placement
from minidalle.world.data import held_out, training_images
from minidalle.world.scenes import CONTACT


def cells(images):
    """Images (N, 3, 32, 32) in [−1, 1] → list per scene of its 64 cells, each 16 colour indices as bytes."""
    idx = colour_index(images)                                                    # (N, 32, 32)
    c = idx.unfold(1, 4, 4).unfold(2, 4, 4).reshape(len(idx), 64, 16).byte()     # (N, 64, 16)
    return [[bytes(cell) for cell in scene.tolist()] for scene in c]


def recoloured(cell: bytes) -> bytes:
    """The cell's layout without its colours: each colour renamed by first appearance, black kept."""
    names = {0: 0}
    return bytes(names.setdefault(v, len(names)) for v in cell)


train = Counter(c for scene in cells(training_images(20_000, 32)) for c in scene)   # the dVAE's own set
layouts = {recoloured(c) for c in train}
print(f"training cells {sum(train.values()):,}: {len(train):,} distinct patterns, {len(layouts):,} layouts")
held = held_out(500, 32)                                                         # as `eval dvae`
kinds = [placement(r) for r in held.scenes.relations()]
held_cells = cells(held.images.float() / 127.5 - 1)
print("placement     scenes  cells  two colours  unseen  unseen layout  scenes with an unseen cell")
for p in ("apart",) + CONTACT:
    scenes = [[c for c in s if any(c)] for s, k in zip(held_cells, kinds) if k == p]
    every = [c for s in scenes for c in s]
    unseen = [c for c in every if c not in train]
    print(f"{p:12s} {len(scenes):7d} {len(every):6d} {sum(len(set(c) - {0}) > 1 for c in every) / len(every):12.3f}"
          f" {len(unseen) / len(every):7.3f} {sum(recoloured(c) not in layouts for c in unseen) / len(every):14.3f}"
          f" {sum(any(c not in train for c in s) for s in scenes) / len(scenes):27.3f}")
