"""Eye-labelled model samples: the yardstick the oracle is measured against (lesson 01).

A judge that passes what a person would reject makes every number of the course too
high, so the oracle (`minidalle.oracle`) is measured on pictures that models really
drew, each labelled by eye without seeing the prompt or any oracle output. Three sets
live in `data/oracle-eye/` (its README says how each was made):

* `shared`: 170 samples of the shipped GLIDE, unCLIP and DALL·E checkpoints, with 20 true
  renders as controls, labelled by the course's designer — the set the bars are set on;
* `course-1`: 219 fresh samples of the same checkpoints, labelled while the oracle was tuned;
* `course-2`: 151 more, labelled after its design was settled: the closest to held out.

A sample *passes by eye* when the eye counted exactly the prompt's objects and named each
one's colour and shape as the prompt does (and, for a pair, the layout holds the prompt's
relation). `agreement` compares that with the oracle's `exact` verdict.
"""
from __future__ import annotations

import csv
from dataclasses import dataclass

import torch
from safetensors.torch import load_file

from minidalle.config import ROOT
from minidalle.world.captions import parse
from minidalle.world.oracle import STRICT, Strictness, check, read
from minidalle.world.scenes import SHAPES, UNCLEAR


FOLDER = ROOT / "data" / "oracle-eye"
SETS = ("shared", "course-1", "course-2")
_INVERSE = {"left of": "right of", "right of": "left of", "above": "below", "below": "above"}


@dataclass(frozen=True)
class Sample:
    """One eye-labelled picture (a row of the set's labels.tsv)."""

    n: int
    model: str                     # glide, unclip, dalle, or render (a control)
    kind: str                      # single, pair or control
    res: int
    prompt: str                    # what the model was asked for ("" for controls)
    eye_count: int                 # objects the eye counted (specks of 1–2 px not counted)
    eye_objects: tuple[str, ...]   # "colour shape", the shape "?" when not nameable
    eye_layout: str                # the first listed object relative to the second
    sure: bool
    note: str

    def passes(self) -> bool | None:
        """Does the picture show the prompt, by eye? None for controls (they have no prompt)."""
        if not self.prompt:
            return None
        q = parse(self.prompt)
        want = sorted(f"{d.colour} {d.shape}" for d in q.objects for _ in range(d.count))
        if self.eye_count != len(want) or sorted(self.eye_objects) != want:
            return False
        if not q.relations:
            return True
        i, rel, _ = q.relations[0]
        first = f"{q.objects[i].colour} {q.objects[i].shape}"
        return ("A " + (rel if self.eye_objects[0] == first else _INVERSE[rel])) in self.eye_layout


def load(name: str = "shared") -> tuple[list[torch.Tensor], list[Sample]]:
    """The pictures ((3, R, R) floats in [0, 1], each at its own resolution) and labels of one eye set."""
    if name not in SETS:
        raise ValueError(f"unknown eye set {name!r}; the sets are {', '.join(SETS)}")
    folder = FOLDER / name
    if not (folder / "labels.tsv").exists():
        raise FileNotFoundError(f"{folder}/labels.tsv is missing: the eye sets ship with the repository "
                                "(data/oracle-eye/); reinstall from a full clone")
    tensors = load_file(folder / "images.safetensors")
    images, samples = [], []
    for r in csv.DictReader(open(folder / "labels.tsv", encoding="utf-8"), delimiter="\t"):
        x = tensors[f"t{r['n']}"]
        images.append(x.float() / 255 if x.dtype == torch.uint8 else x.float())
        samples.append(Sample(int(r["n"]), r["model"], r["kind"], int(r["res"]), r["prompt"], int(r["eye_count"]),
                              tuple(o.strip() for o in r["eye_objects"].split(";")), r["eye_layout"],
                              r["eye_confidence"] == "sure", r["eye_note"]))
    return images, samples


def verdicts(images, samples, strict: Strictness = STRICT) -> list:
    """The oracle's reading of every picture and, for model samples, its `exact` verdict on the prompt."""
    readings = [None] * len(images)
    for res in {x.shape[-1] for x in images}:                        # one batch per resolution
        idx = [i for i, x in enumerate(images) if x.shape[-1] == res]
        for i, r in zip(idx, read(torch.stack([images[i] for i in idx]), strict)):
            readings[i] = r
    return [(r, check(r.scene, s.prompt)["exact"] if s.prompt else None) for r, s in zip(readings, samples)]


def agreement(name: str = "shared", strict: Strictness = STRICT) -> dict:
    """How often the oracle agrees with the eye on a set, overall and per model.

    For each group: `rejects` — of the samples the eye rejects, how many the oracle rejects too (n, k);
    `accepts` — of those the eye accepts and is sure of, how many the oracle accepts; and `shapes`, the
    confusion counts {(eye shape, oracle shape): n} of single-object samples where both saw one object.
    """
    images, samples = load(name)
    out = {}
    for s, (r, exact) in zip(samples, verdicts(images, samples, strict)):
        eye = s.passes()
        if eye is None:
            continue
        for group in ("all", s.model):
            g = out.setdefault(group, {"rejects": [0, 0], "accepts": [0, 0], "shapes": {}})
            if not eye:
                g["rejects"][0] += 1
                g["rejects"][1] += not exact
            elif s.sure:
                g["accepts"][0] += 1
                g["accepts"][1] += exact
            if s.kind == "single" and s.eye_count == 1 and len(r.objects) == 1:
                key = (s.eye_objects[0].split()[-1], r.objects[0].shape)
                g["shapes"][key] = g["shapes"].get(key, 0) + 1
    return out


def confusion(shapes: dict) -> tuple[list[str], list[list[int]]]:
    """The shape confusion counts of `agreement` as a table: labels and rows (eye) × columns (oracle)."""
    labels = list(SHAPES) + [UNCLEAR]
    return labels, [[shapes.get((e, o), 0) for o in labels] for e in labels]
