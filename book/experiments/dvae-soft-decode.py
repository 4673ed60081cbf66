"""Is it the tokens or the decoder that loses a small object inside a large one? (book/dalle1.md)

Decodes the 500 held-out two-object scenes of `eval dvae` two ways: from the hard
argmax tokens, as `eval dvae` does, and from the encoder's soft code distribution
q = softmax(logits), which carries everything the encoder computed. Prints, for
each, the share read as the same scene graph, by how the pair is placed, and the
share of pixels painted another colour. Run from the repository root:

    python book/experiments/dvae-soft-decode.py              # the trained dVAE of the preset
    python book/experiments/dvae-soft-decode.py runs/dvae-cpu-state   # a periodic state of a run

A dVAE trained as a continuous autoencoder (the softmax of the logits decoded,
no Gumbel noise) is judged by its soft row; a Gumbel-trained one by its argmax row.
"""
import sys
from collections import defaultdict

import torch
import torch.nn.functional as F

from minidalle import checkpoint, dvae
from minidalle.oracle import read, scene_difference
from minidalle.world import CONTACT

if len(sys.argv) > 1:                                                            # a run's periodic state
    model = dvae.DVAE(dvae.dvae_config())
    info = checkpoint.load_into(model, sys.argv[1], model.config)
    print(f"{sys.argv[1]}: step {info.get('steps')}")
else:
    model, _ = dvae.load_trained()
model = model.cpu().eval()
held = dvae.held_out(500, 32)                                                    # as `eval dvae`
x = held.images.float() / 127.5 - 1                                              # (500, 3, 32, 32)
kinds = [dvae.placement(r) for r in held.scenes.relations()]
seen = read((x + 1) / 2)
with torch.no_grad():
    logits = model.logits(x)                                                     # (500, K, 8, 8)
    decoded = {"argmax": model.decode(logits.argmax(1)),
               "soft q": model.pixels(model.decode_soft(F.softmax(logits, 1)))}
print("decoded from   two objects  " + "  ".join(f"{p:>11s}" for p in ("apart",) + CONTACT) + "  pixels off")
for name, recon in decoded.items():
    kept = [scene_difference(a.scene, b.scene) is None for a, b in zip(seen, read((recon + 1) / 2))]
    by = defaultdict(list)
    for k, p in zip(kept, kinds):
        by[p].append(k)
    off = (dvae.colour_index(recon) != dvae.colour_index(x)).float().mean().item()
    print(f"{name:12s} {sum(kept) / len(kept):12.3f}  "
          + "  ".join(f"{sum(by[p]) / len(by[p]):11.3f}" for p in ("apart",) + CONTACT) + f"  {off:10.4f}")
