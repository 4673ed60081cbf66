"""The shapes world: vocabulary, scene graphs, relations and the scene sampler.

Lesson 01 (`notebooks/01_shapes_world.ipynb`) explains this file. The course
cannot download a data set, so it makes its own: coloured shapes on a black
background, each scene a small *scene graph* (objects with shape, colour,
size, position and drawing order) from which captions are written and against
which the oracle (`minidalle.oracle`) judges any image.

Coordinates are resolution-free: the image is the unit square, x to the right,
y *down* (as in image rows). An object of size `s` occupies the box
`centre ± s/2`, whatever its shape, so one scene renders at 16, 32 or 64 px.

Every relation is a *signed margin*: positive when the relation holds, and its
magnitude says how clearly. The sampler keeps only scenes in which every
margin of every ordered pair is at least `MARGIN` away from zero, so no
generated scene sits on a decision boundary; the oracle applies the very same
functions to the objects it finds in a picture.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import torch


SHAPES = ("circle", "square", "triangle", "diamond", "cross")


# RGB in [0, 1]. On a black background each colour is a *direction* in RGB
# space; the oracle tells them apart by direction, so no two are multiples.
COLOURS = {
    "red": (0.95, 0.10, 0.10),
    "orange": (1.00, 0.55, 0.00),
    "yellow": (0.90, 0.90, 0.05),
    "green": (0.10, 0.75, 0.15),
    "cyan": (0.05, 0.80, 0.85),
    "blue": (0.15, 0.30, 1.00),
    "purple": (0.60, 0.15, 0.85),
    "white": (0.95, 0.95, 0.95),
}
COLOUR_NAMES = tuple(COLOURS)
SIZES = {"small": 0.26, "large": 0.40}  # side of the object's box, in image widths
SIZE_NAMES = tuple(SIZES)
BACKGROUND = (0.0, 0.0, 0.0)
RESOLUTIONS = (16, 32, 64)
MAX_OBJECTS = 4
UNCLEAR = "?"   # an attribute the oracle cannot read clearly off a picture (never matches a caption)

RELATIONS = (
    "left of", "right of", "above", "below", "on", "under",
    "inside", "in front of", "behind", "near", "next to",
)
# inverse[r]: A r B  <=>  B inverse[r] A  (None: no single-word inverse)
INVERSE = {
    "left of": "right of", "right of": "left of", "above": "below", "below": "above",
    "on": "under", "under": "on", "in front of": "behind", "behind": "in front of",
    "near": "near", "next to": "next to", "inside": None,
}
CONTACT = ("on", "inside", "in front of")  # relations the sampler builds on purpose

TOUCH = 0.04    # boxes closer than this count as touching (≈1.3 px at 32×32)
NEAR = 0.15     # box gap up to which two objects are "near"
MARGIN = 0.04   # every sampled relation margin is at least this far from 0
SAME_GAP = 0.1  # objects of one colour keep this far apart (≈3 px at 32×32), so a blur cannot join them


def _check(kind: str, value: str, allowed) -> int:
    if value not in allowed:
        raise ValueError(f"unknown {kind} {value!r}; expected one of {', '.join(allowed)}")
    return list(allowed).index(value)


@dataclass(frozen=True)
class Obj:
    """One object of a scene. `z` is the drawing order (higher is in front).

    The oracle's readings may hold `UNCLEAR` ("?") for a shape, colour or size that the
    picture does not show clearly, and `side`, the box side it measured (image widths);
    a scene drawn by the sampler has neither, and its box side is its size's.
    """

    shape: str
    colour: str
    size: str
    x: float
    y: float
    z: int = 0
    side: float | None = None

    def __post_init__(self):
        _check("shape", self.shape, SHAPES + (UNCLEAR,))
        _check("colour", self.colour, COLOUR_NAMES + (UNCLEAR,))
        _check("size", self.size, SIZE_NAMES + (UNCLEAR,))
        if self.size == UNCLEAR and self.side is None:
            raise ValueError("an object of unclear size needs its measured side")

    @property
    def width(self) -> float:
        """Side of the object's box in image widths."""
        return SIZES[self.size] if self.side is None else self.side

    @property
    def box(self) -> tuple[float, float, float, float]:
        r = self.width / 2
        return (self.x - r, self.y - r, self.x + r, self.y + r)

    def describe(self, with_size: bool = True) -> str:
        return f"{self.size + ' ' if with_size else ''}{self.colour} {self.shape}"


@dataclass(frozen=True)
class Scene:
    """A scene graph: objects in drawing order plus the relations between them."""

    objects: tuple[Obj, ...]
    forbidden: bool = False

    def relations(self) -> list[tuple[int, str, int]]:
        """Every (i, relation, j) that holds, for ordered pairs i != j."""
        return relations_between(self.objects)

    def to_dict(self) -> dict:
        objs = [{k: v for k, v in dataclasses.asdict(o).items() if v is not None} for o in self.objects]
        return {"objects": objs, "forbidden": self.forbidden}

    @staticmethod
    def from_dict(d: dict) -> "Scene":
        return Scene(tuple(Obj(**o) for o in d["objects"]), bool(d.get("forbidden", False)))


def relation_margins(a, b, a_front=None) -> dict[str, torch.Tensor]:
    """Signed margins of every relation "a REL b"; > 0 means it holds.

    a, b: tensors (..., 3) holding (x, y, size) in image widths (any batch shape).
    a_front: bool tensor (...) — is a drawn over b? Needed only for
    "in front of"/"behind"; when None those two are left out.
    Returns {relation: tensor (...)} for RELATIONS, plus "contains" (b inside a).
    """
    ax, ay, ar = a[..., 0], a[..., 1], a[..., 2] / 2
    bx, by, br = b[..., 0], b[..., 1], b[..., 2] / 2
    a0, a1, b0, b1 = ax - ar, ax + ar, bx - br, bx + br     # x extents
    at, ab, bt, bb = ay - ar, ay + ar, by - br, by + br     # y extents (top, bottom)
    m = {}
    m["left of"] = b0 - a1 + TOUCH
    m["right of"] = a0 - b1 + TOUCH
    m["above"] = bt - ab + TOUCH
    m["below"] = at - bb + TOUCH
    # resting on: bottom of a touches top of b and a's centre is over b
    support_a = torch.minimum(ax - b0, b1 - ax)
    support_b = torch.minimum(bx - a0, a1 - bx)
    m["on"] = torch.minimum(TOUCH - (bt - ab).abs(), support_a)
    m["under"] = torch.minimum(TOUCH - (at - bb).abs(), support_b)
    m["inside"] = torch.stack([a0 - b0, b1 - a1, at - bt, bb - ab]).amin(0)
    m["contains"] = contains = torch.stack([b0 - a0, a1 - b1, bt - at, ab - bb]).amin(0)  # b inside a
    depth = torch.minimum(torch.minimum(a1, b1) - torch.maximum(a0, b0),
                          torch.minimum(ab, bb) - torch.maximum(at, bt))  # box overlap depth
    m["near"] = NEAR - _box_gap(a0, a1, at, ab, b0, b1, bt, bb)
    horiz = torch.maximum(m["left of"], m["right of"])
    vert = torch.maximum(m["above"], m["below"])
    m["next to"] = torch.minimum(torch.minimum(m["near"], horiz), -vert)
    if a_front is not None:
        overlap = depth - TOUCH
        # overlapping, neither inside the other, and a drawn over b
        nested = torch.maximum(m["inside"], contains)
        base = torch.minimum(overlap, -nested)
        sign = torch.where(a_front, 1.0, -1.0)
        m["in front of"] = torch.where(base > 0, sign * base, base)
        m["behind"] = torch.where(base > 0, -sign * base, base)
    return m


def _box_gap(a0, a1, at, ab, b0, b1, bt, bb):
    """Euclidean distance between two axis-aligned boxes (0 if they overlap)."""
    gx = torch.clamp(torch.maximum(b0 - a1, a0 - b1), min=0)
    gy = torch.clamp(torch.maximum(bt - ab, at - bb), min=0)
    return torch.sqrt(gx**2 + gy**2)


def _xys(objs) -> torch.Tensor:
    return torch.tensor([[o.x, o.y, o.width] for o in objs], dtype=torch.float64)


def relations_between(objs) -> list[tuple[int, str, int]]:
    """All (i, relation, j) with a positive margin, i != j, for a list of Obj."""
    n = len(objs)
    if n < 2:
        return []
    p = _xys(objs)
    ii, jj = zip(*[(i, j) for i in range(n) for j in range(n) if i != j])
    z = torch.tensor([o.z for o in objs])
    ii, jj = torch.tensor(ii), torch.tensor(jj)
    margins = relation_margins(p[ii], p[jj], z[ii] > z[jj])
    held = torch.stack([margins[r] > 0 for r in RELATIONS], 1)          # (pairs, relations)
    return [(int(ii[k]), RELATIONS[r], int(jj[k])) for k, r in torch.nonzero(held).tolist()]


@dataclass(frozen=True)
class Skew:
    """Given `given_attr == given_value`, draw `attr` with these weights.

    Example: Skew("shape", "circle", "colour", {"red": 0.9, "blue": 0.1}) makes
    90% of circles red — a correlation a caption like "a circle" never states.
    """

    given_attr: str
    given_value: str
    attr: str
    weights: dict

    def __post_init__(self):
        for kind in (self.given_attr, self.attr):
            _check("attribute", kind, ("shape", "colour", "size"))
        _check(self.given_attr, self.given_value, _VOCAB[self.given_attr])
        for v in self.weights:
            _check(self.attr, v, _VOCAB[self.attr])


_VOCAB = {"shape": SHAPES, "colour": COLOUR_NAMES, "size": SIZE_NAMES}


@dataclass(frozen=True)
class SceneSpec:
    """What kind of scenes to draw. Later lessons change it, never the sampler.

    n_objects: probabilities of 1..4 objects.
    shapes / colours / sizes: weights (dict) or allowed values (tuple).
    contact: probability that the first two objects are placed in a contact
        relation (on, inside, in front of) rather than freely.
    same_kind: probability that a multi-object scene repeats one shape and
        colour (for counting captions like "three red circles").
    skews: conditional skews of attributes (see Skew).
    duplicates: fraction of samples that repeat one of `n_duplicated` scenes.
    forbidden: (attr, value) pairs; a scene holding such an object is flagged
        `forbidden`, for filtering studies. With `drop_forbidden` those values
        are never drawn (a filtered training set).
    """

    n_objects: tuple = (0.25, 0.35, 0.2, 0.2)
    shapes: object = SHAPES
    colours: object = COLOUR_NAMES
    sizes: object = SIZE_NAMES
    contact: float = 0.4
    same_kind: float = 0.15
    skews: tuple = ()
    duplicates: float = 0.0
    n_duplicated: int = 10
    forbidden: tuple = ()
    drop_forbidden: bool = False

    def __post_init__(self):
        if len(self.n_objects) != MAX_OBJECTS or min(self.n_objects) < 0 or sum(self.n_objects) <= 0:
            raise ValueError(f"n_objects must be {MAX_OBJECTS} non-negative probabilities of 1..{MAX_OBJECTS} objects")
        for attr in ("shape", "colour", "size"):
            self.weights(attr)  # validates names
        for attr, value in self.forbidden:
            _check("attribute", attr, tuple(_VOCAB))
            _check(attr, value, _VOCAB[attr])
        for p in (self.contact, self.same_kind, self.duplicates):
            if not 0 <= p <= 1:
                raise ValueError("contact, same_kind and duplicates are probabilities in [0, 1]")

    def weights(self, attr: str) -> torch.Tensor:
        """Probability vector over the vocabulary of `attr`."""
        vocab = _VOCAB[attr]
        given = getattr(self, attr + "s")
        if isinstance(given, dict):
            items = given.items()
        else:
            if isinstance(given, str):
                given = (given,)
            items = ((v, 1.0) for v in given)
        w = torch.zeros(len(vocab), dtype=torch.float64)
        for v, p in items:
            w[_check(attr, v, vocab)] = float(p)
        w *= self._allowed(attr)
        if w.sum() <= 0:
            raise ValueError(f"no {attr} left to draw: give at least one with positive weight")
        return w / w.sum()

    def _allowed(self, attr: str) -> torch.Tensor:
        """1 for every value of `attr` that may be drawn, 0 for forbidden ones when they are dropped."""
        keep = torch.ones(len(_VOCAB[attr]), dtype=torch.float64)
        if self.drop_forbidden:
            for a, v in self.forbidden:
                if a == attr:
                    keep[_VOCAB[attr].index(v)] = 0
        return keep


_SIZE_T = torch.tensor([SIZES[s] for s in SIZE_NAMES], dtype=torch.float32)   # (2,) box side of each size


@dataclass
class SceneArrays:
    """A batch of scenes as tensors (the fast path; see `to_scenes`).

    shape, colour, size: long (N, 4); xy: float (N, 4, 2); n: long (N,);
    objects beyond n[i] are padding. Object k is drawn k-th (z = k).
    """

    shape: torch.Tensor
    colour: torch.Tensor
    size: torch.Tensor
    xy: torch.Tensor
    n: torch.Tensor
    forbidden: torch.Tensor = field(default=None)

    def __len__(self):
        return len(self.n)

    def scene(self, i: int) -> Scene:
        return self.to_scenes(slice(i, i + 1))[0]

    def to_scenes(self, rows: slice = slice(None)) -> list[Scene]:
        shape, colour, size, n = (getattr(self, k)[rows].tolist() for k in ("shape", "colour", "size", "n"))
        xy = self.xy[rows].tolist()
        flag = self.forbidden[rows].tolist() if self.forbidden is not None else [False] * len(n)
        return [Scene(tuple(Obj(SHAPES[shape[i][k]], COLOUR_NAMES[colour[i][k]], SIZE_NAMES[size[i][k]],
                                round(xy[i][k][0], 4), round(xy[i][k][1], 4), k) for k in range(n[i])), flag[i])
                for i in range(len(n))]

    def relations(self) -> list[list[tuple[int, str, int]]]:
        """`Scene.relations()` of every scene at once (one vectorised pass)."""
        ii, jj = zip(*[(i, j) for i in range(MAX_OBJECTS) for j in range(MAX_OBJECTS) if i != j])
        ii, jj = torch.tensor(ii), torch.tensor(jj)
        p = torch.cat([self.xy.float(), _SIZE_T[self.size][..., None]], -1)     # (N, 4, 3)
        m = relation_margins(p[:, ii], p[:, jj], (ii > jj).expand(len(self), -1))
        live = (ii[None] < self.n[:, None]) & (jj[None] < self.n[:, None])       # (N, 12)
        held = torch.stack([m[r] > 0 for r in RELATIONS], -1) & live[..., None]  # (N, 12, R)
        out = [[] for _ in range(len(self))]
        ii, jj = ii.tolist(), jj.tolist()
        for row, k, r in torch.nonzero(held).tolist():
            out[row].append((ii[k], RELATIONS[r], jj[k]))
        return out
