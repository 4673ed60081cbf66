"""Is it the tokens or the decoder that loses a small object inside a large one? (book/dalle1.md)

Decodes the 500 held-out two-object scenes of `eval dvae` two ways: from the hard
argmax tokens, as `eval dvae` does, and from the encoder's soft code distribution
q = softmax(logits), which carries everything the encoder computed. With
`--refit N` it then asks the tokens alone: the encoder frozen, the decoder and
codebook are trained N more steps on the argmax tokens of the training scenes
(no Gumbel noise), and the argmax tokens are decoded again. Prints, for each
way, the share read as the same scene graph, by how the pair is placed, and the
share of pixels painted another colour. Run from the repository root:

    python book/experiments/dvae-soft-decode.py              # the trained dVAE of the preset
    python book/experiments/dvae-soft-decode.py runs/dvae-cpu-state   # a periodic state of a run
    python book/experiments/dvae-soft-decode.py --refit 6000          # and a decoder refitted to its tokens

A dVAE trained as a continuous autoencoder (the softmax of the logits decoded,
no Gumbel noise) is judged by its soft row; a Gumbel-trained one by its argmax row.
"""
import argparse
from collections import defaultdict

import torch
import torch.nn.functional as F

from minidalle import checkpoint
from minidalle.dalle1 import dvae
from minidalle.eval.dalle1 import placement
from minidalle.runtime import progress, warmup_cosine
from minidalle.world.data import held_out, training_images
from minidalle.world.oracle import read, scene_difference
from minidalle.world.scenes import CONTACT

parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
parser.add_argument("state", nargs="?", help="a run's periodic state, e.g. runs/dvae-cpu-state (default: the trained dVAE)")
parser.add_argument("--refit", type=int, default=0, metavar="N", help="refit the decoder to the argmax tokens for N steps")
args = parser.parse_args()
if args.state:                                                                   # a run's periodic state
    model = dvae.DVAE(dvae.dvae_config())
    info = checkpoint.load_into(model, args.state, model.config)
    print(f"{args.state}: step {info.get('steps')}")
else:
    model = dvae.load()
model = model.cpu().eval()
held = held_out(500, 32)                                                    # as `eval dvae`
x = held.images.float() / 127.5 - 1                                              # (500, 3, 32, 32)
kinds = [placement(r) for r in held.scenes.relations()]
seen = read((x + 1) / 2)
with torch.no_grad():
    logits = model.logits(x)                                                     # (500, K, g, g)
    decoded = {"argmax": model.decode(logits.argmax(1)),
               "soft q": model.pixels(model.decode_soft(F.softmax(logits, 1)))}

if args.refit:                                                                   # the decoder, taught the hard tokens
    c = model.config
    images = training_images(c.train.n_train, c.res, c.train.seed)          # (N, 3, 32, 32), the dVAE's own set
    with torch.no_grad():
        tokens = torch.cat([model.encode(b) for b in images.split(512)])         # (N, g, g), fixed from here on
    params = [model.codebook, *model.decoder.parameters()]
    opt = torch.optim.Adam(params, lr=5e-4)
    gen = torch.Generator().manual_seed(0)
    model.decoder.train()
    for step in progress(range(args.refit), desc="refitting the decoder"):
        for group in opt.param_groups:
            group["lr"] = warmup_cosine(step, 5e-4, 0, args.refit)
        i = torch.randint(0, len(images), (c.train.batch,), generator=gen)
        out = model.decode_soft(F.one_hot(tokens[i], c.codes).permute(0, 3, 1, 2).float())
        loss = model.recon_loss(out, images[i])
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    decoded[f"refit {args.refit}"] = model.decode(logits.argmax(1))

print("decoded from   two objects  " + "  ".join(f"{p:>11s}" for p in ("apart",) + CONTACT) + "  pixels off")
for name, recon in decoded.items():
    kept = [scene_difference(a.scene, b.scene) is None for a, b in zip(seen, read((recon + 1) / 2))]
    by = defaultdict(list)
    for k, p in zip(kept, kinds):
        by[p].append(k)
    off = (dvae.colour_index(recon) != dvae.colour_index(x)).float().mean().item()
    print(f"{name:12s} {sum(kept) / len(kept):12.3f}  "
          + "  ".join(f"{sum(by[p]) / len(by[p]):11.3f}" for p in ("apart",) + CONTACT) + f"  {off:10.4f}")
