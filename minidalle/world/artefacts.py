"""The artefact suite: pictures of the ways models fail, each with the label a careful person would give.

Lesson 01 shows it and measures the oracle (`minidalle.oracle`) on it. Models do not
draw clean templates: they draw diamonds rounded towards circles, squares turned part
way, rectangles, triangles with a flat top, crosses with an arm missing or grown fat,
bites and bumps, two shapes fused into one blob, specks, colour fringes and colours
between two palette colours. Each family below draws such pictures from a parameter,
at 16, 32 and 64 px, sharp (pixel centres, as `minidalle.render`), soft (area
coverage, as a model's smooth edges) or sharp with the 3×3 blur and noise of
`render.degrade` (the oracle's stress test of renders), and labels each picture from how far its outline lies from the
nearest clean shape, in pixels of that resolution:

* *clear*: within `CLEAR` px (0.4) of one shape's outline — no person would see the
  difference at that resolution — so the oracle must name that shape;
* *ambiguous*: far enough from every shape it could be taken for (its "lures") that a
  careful person would not name it: a shape between two (rounded diamonds, squares
  turned part way) at least `AMBIGUOUS` px (1.0) and a third of the way from both
  along the outline; a
  rectangle whose sides differ by at least 25% and 2 px; a flat top at least 3 px wide
  and a quarter of the side; a corner cut, bite or bump at least 2 px (1.5 px radius)
  and a fifth (a sixth) of the side; a missing arm at least 2 px long; arms at least
  half the cross wide;
* anything between the two bands is left out: a person could go either way.

Small shapes at 16×16 (a 4-pixel box) are ambiguous whatever their family: a small
circle, diamond and cross are the same picture there.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from minidalle.world.render import PALETTE, degrade
from minidalle.world.scenes import COLOURS, COLOUR_NAMES, SHAPES, SIZES


CLEAR = 0.4          # px: an outline this close to a shape's is that shape
AMBIGUOUS = 1.0      # px: an outline this far from every lure is not any of them
CONDITIONS = ("sharp", "soft", "blur+noise")
# neighbouring palette colours, for colours between two


# neighbouring palette colours, for colours between two
NEIGHBOURS = (("red", "orange"), ("orange", "yellow"), ("yellow", "green"), ("green", "cyan"),
              ("cyan", "blue"), ("blue", "purple"), ("purple", "red"), ("yellow", "white"))


@dataclass(frozen=True)
class Artefact:
    """One picture's label. shape / colour: the name a person gives, or None when ambiguous;
    lures: shapes an ambiguous picture must not be called; count: objects a person counts
    (None: not one clean object, as two shapes fused)."""

    family: str
    param: float
    res: int
    condition: str
    shape: str | None
    lures: tuple[str, ...]
    colour: str | None
    colour_lures: tuple[str, ...]
    count: int | None


def _inside(kind: str, u: torch.Tensor, v: torch.Tensor, p: float = 0.0) -> torch.Tensor:
    """Is (u, v) inside a shape of half-side 1 centred at 0 (v down)? `p` is the family's parameter."""
    au, av = u.abs(), v.abs()
    box = (au <= 1) & (av <= 1)
    if kind == "circle":
        return au**2 + av**2 <= 1
    if kind == "square":
        return box
    if kind == "diamond":
        return au + av <= 1
    if kind == "triangle":
        return box & (2 * au - v <= 1)
    if kind == "cross":                                   # p: arm width as a share of the side (0.25 in the world)
        return box & ((au <= p) | (av <= p))
    if kind == "superellipse":
        return au**p + av**p <= 1
    if kind == "rectangle":                               # p: aspect ratio ≥ 1 (wide)
        return (au <= 1) & (av <= 1 / p)
    raise ValueError(kind)


def _coverage(fn, xy, half, res: int, ss: int, angle: float = 0.0) -> torch.Tensor:
    """(res, res) share of each pixel inside fn(u, v), the object centred at xy (px) with half-side `half` px."""
    s = (torch.arange(res * ss, dtype=torch.float64) + 0.5) / ss
    Y, X = torch.meshgrid(s, s, indexing="ij")
    dx, dy = X - xy[0], Y - xy[1]
    c, si = math.cos(angle), math.sin(angle)
    u, v = (c * dx + si * dy) / half, (-si * dx + c * dy) / half
    inside = fn(u, v).double()
    return inside.view(res, ss, res, ss).mean((1, 3)).float()


def _paint(img: torch.Tensor, cover: torch.Tensor, rgb) -> torch.Tensor:
    rgb = torch.as_tensor(rgb, dtype=torch.float32).view(3, 1, 1)
    return img * (1 - cover) + rgb * cover


def _outline(kind: str, p: float) -> float:
    """Distance from the centre to the outline along the diagonal, for a half-side of 1."""
    if kind == "superellipse":
        return 2 ** (0.5 - 1 / p)
    return {"diamond": 2**-0.5, "circle": 1.0, "square": 2**0.5}[kind]


def _band(dist: dict[str, float]):
    """Label of a picture between two shapes from its outline's distances (px) to each: ("clear", shape) within
    CLEAR px of one, ("ambiguous", both) when at least AMBIGUOUS px and a third of the way from each, else None."""
    (name, d), (_, d2) = sorted(dist.items(), key=lambda kv: kv[1])
    if d <= CLEAR:
        return ("clear", name)
    if d >= max(AMBIGUOUS, (d + d2) / 3):
        return ("ambiguous", tuple(sorted(dist)))
    return None


def _draw_one(family: str, g: torch.Generator, res: int, ss: int):
    """Draw one picture of a family: (image (3, res, res), label fields). Returns None to ask for another draw."""
    u = lambda: float(torch.rand((), generator=g))                          # noqa: E731
    pick = lambda seq: seq[int(torch.randint(len(seq), (), generator=g))]   # noqa: E731
    size = pick(("small", "large"))
    side = SIZES[size] * res * (0.97 + 0.06 * u())                          # px
    h = side / 2
    colour = pick(COLOUR_NAMES)
    rgb = COLOURS[colour]
    lo = 0.02 * res + side * 0.75
    xy = (lo + (res - 2 * lo) * u(), lo + (res - 2 * lo) * u())
    img = torch.zeros(3, res, res)
    cover = lambda fn, angle=0.0, at=xy: _coverage(fn, at, h, res, ss, angle)   # noqa: E731
    colour_label, colour_lures, count = colour, (), 1
    if family == "clean":
        shape = pick(SHAPES)
        img = _paint(img, cover(lambda a, b: _inside(shape, a, b, 0.25)), rgb)
        label, param = ("clear", shape), float(SHAPES.index(shape))
    elif family == "superellipse":                                         # diamond (1) → circle (2) → square (∞)
        p = math.exp(math.log(0.9) + u() * (math.log(12) - math.log(0.9)))
        dist = {k: h * abs(_outline("superellipse", p) - _outline(k, 0)) for k in ("diamond", "circle", "square")}
        near2 = dict(sorted(dist.items(), key=lambda kv: kv[1])[:2])
        label = _band(near2)
        img, param = _paint(img, cover(lambda a, b: _inside("superellipse", a, b, p)), rgb), p
    elif family == "tilted square":                                        # a square turned θ, 0° (square) … 45° (diamond)
        th = u() * math.pi / 4
        k = 1 / (math.cos(th) + math.sin(th))                              # the turned square keeps its box
        corner = h * k * math.sqrt(2)
        label = _band({"square": corner * th, "diamond": corner * (math.pi / 4 - th)})
        fn = lambda a, b: _inside("square", a / k, b / k)                     # noqa: E731
        img, param = _paint(img, cover(fn, th), rgb), math.degrees(th)
    elif family == "rectangle":                                            # a square stretched to aspect 1–2
        a = 1 + u()
        gap = side * (1 - 1 / a)                                            # long side − short side, px
        label = ("clear", "square") if gap <= 2 * CLEAR or a <= 1.05 else (
            ("ambiguous", ("square",)) if a >= 1.25 and gap >= 2 else None)
        angle = pick((0.0, math.pi / 2))
        img, param = _paint(img, cover(lambda x, y: _inside("rectangle", x, y, a), angle), rgb), a
    elif family == "flat-topped triangle":                                 # the apex cut off at depth c of the height
        c = 0.45 * u()
        cut = c * side                                                      # the flat top's width, px
        label = ("clear", "triangle") if cut <= CLEAR else (
            ("ambiguous", ("triangle",)) if cut >= max(3.0, side / 4) else None)
        fn = lambda x, y: _inside("triangle", x, y) & (y >= -1 + 2 * c)          # noqa: E731
        img, param = _paint(img, cover(fn), rgb), c
    elif family == "cut-corner triangle":                                  # one base corner cut off, c of the side
        c = 0.45 * u()
        cut = c * side
        sgn = pick((-1.0, 1.0))
        label = ("clear", "triangle") if cut <= CLEAR else (
            ("ambiguous", ("triangle",)) if cut >= max(2.0, side / 5) else None)
        fn = lambda x, y: _inside("triangle", x, y) & (sgn * x <= 1 - 2 * c)     # noqa: E731
        img, param = _paint(img, cover(fn), rgb), c
    elif family == "cross, arm missing":
        arm = pick(("up", "down", "left", "right"))
        keep = {"up": lambda x, y: ~((y < -0.25) & (x.abs() <= 0.25)), "down": lambda x, y: ~((y > 0.25) & (x.abs() <= 0.25)),
                "left": lambda x, y: ~((x < -0.25) & (y.abs() <= 0.25)),
                "right": lambda x, y: ~((x > 0.25) & (y.abs() <= 0.25))}[arm]
        label = ("ambiguous", ("cross",)) if h * 0.75 >= 2.0 else None
        fn = lambda x, y: _inside("cross", x, y, 0.25) & keep(x, y)              # noqa: E731
        img, param = _paint(img, cover(fn), rgb), 0.0
    elif family == "fat cross":                                            # arm width w of the side (0.25 in the world)
        w = 0.25 + 0.45 * u()
        off = (w - 0.25) * side / 2                                         # how far each arm edge moved, px
        notch = (1 - w) * h                                                 # the corner notches left, px
        label = ("clear", "cross") if off <= CLEAR else (
            ("ambiguous", ("cross", "square")) if w >= 0.5 and notch >= AMBIGUOUS else None)
        img, param = _paint(img, cover(lambda x, y: _inside("cross", x, y, w)), rgb), w
    elif family in ("bite", "bump"):                                       # a disc taken from or added to the outline
        shape = pick(("circle", "square", "diamond", "triangle"))
        b = 0.45 * u()                                                      # radius as a share of the side
        rad = b * side
        ang = u() * 2 * math.pi
        # a point on the outline in direction ang
        t = torch.linspace(0, 1.5, 301)
        pts = _inside(shape, t * math.cos(ang), t * math.sin(ang))
        edge = float(t[pts].max())
        cx, cy = edge * math.cos(ang), edge * math.sin(ang)
        disc = lambda x, y: (x - cx) ** 2 + (y - cy) ** 2 <= (2 * b) ** 2   # noqa: E731  (radius b·side = 2b half-sides)
        base = lambda x, y: _inside(shape, x, y)                            # noqa: E731
        fn = (lambda x, y: base(x, y) & ~disc(x, y)) if family == "bite" else (lambda x, y: base(x, y) | disc(x, y))
        label = ("clear", shape) if rad <= CLEAR else (
            ("ambiguous", (shape,)) if rad >= max(1.5, side / 6) else None)
        img, param = _paint(img, cover(fn), rgb), b
    elif family == "fused":                                                # two shapes of one colour melted together
        s1, s2 = pick(SHAPES), pick(SHAPES)
        d = 0.3 + 0.3 * u()
        ang = u() * 2 * math.pi
        off = (d * side * math.cos(ang), d * side * math.sin(ang))
        xy = (min(max(xy[0], side), res - side), min(max(xy[1], side), res - side))
        img = _paint(img, cover(lambda a, b: _inside(s1, a, b, 0.25), at=(xy[0] - off[0] / 2, xy[1] - off[1] / 2)), rgb)
        img = _paint(img, cover(lambda a, b: _inside(s2, a, b, 0.25), at=(xy[0] + off[0] / 2, xy[1] + off[1] / 2)), rgb)
        label, param, count = ("ambiguous", SHAPES), d, None
    elif family == "specks":                                               # a clean shape and 1–3 specks of 1–2 px
        shape = pick(SHAPES)
        img = _paint(img, cover(lambda a, b: _inside(shape, a, b, 0.25)), rgb)
        k = 1 + int(3 * u())
        placed = 0
        for _ in range(40):
            if placed == k:
                break
            px, py = int(u() * (res - 1)), int(u() * (res - 1))
            if math.hypot(px + 0.5 - xy[0], py + 0.5 - xy[1]) < h * 1.5 + 2:
                continue
            img[:, py, px] = torch.tensor(COLOURS[pick(COLOUR_NAMES)])
            if u() < 0.5:
                img[:, py, px + 1] = img[:, py, px]
            placed += 1
        label, param = ("clear", shape), float(k)
    elif family == "colour fringe":                                        # a 1-px crescent of another colour on one side
        shape = pick(SHAPES)
        other = pick([c for c in COLOUR_NAMES if c != colour])
        dx, dy = pick(((1, 0), (-1, 0), (0, 1), (0, -1)))
        fn = lambda a, b: _inside(shape, a, b, 0.25)                        # noqa: E731
        img = _paint(img, cover(fn, at=(xy[0] + dx, xy[1] + dy)), COLOURS[other])
        img = _paint(img, cover(fn), rgb)
        label, param = ("clear", shape), 1.0
    elif family == "colour between two":                                   # t of the way to a neighbouring colour
        shape = pick(SHAPES)
        a, b = pick(NEIGHBOURS)
        t = 0.5 * u()
        mix = (1 - t) * PALETTE[COLOUR_NAMES.index(a)] + t * PALETTE[COLOUR_NAMES.index(b)]
        img = _paint(img, cover(lambda x, y: _inside(shape, x, y, 0.25)), mix.tolist())
        colour = a
        if t <= 0.12:
            colour_label = a
        elif t >= 0.38:
            colour_label, colour_lures = None, (a, b)
        else:
            return None
        label, param = ("clear", shape), t
    else:
        raise ValueError(f"unknown artefact family {family!r}")
    if label is None:
        return None
    if res == 16 and size == "small":
        label = ("ambiguous", SHAPES)
    kind, what = label
    return img, dict(family=family, param=round(param, 4), res=res,
                     shape=what if kind == "clear" else None, lures=() if kind == "clear" else tuple(what),
                     colour=colour_label, colour_lures=colour_lures, count=count)


FAMILIES = ("clean", "superellipse", "tilted square", "rectangle", "flat-topped triangle", "cut-corner triangle",
            "cross, arm missing", "fat cross", "bite", "bump", "fused", "specks", "colour fringe", "colour between two")


def suite(n: int = 20, resolutions=(16, 32, 64), conditions=CONDITIONS, families=FAMILIES,
          seed: int = 0) -> tuple[dict, list[Artefact]]:
    """n pictures of every family × resolution × condition, with their labels.

    Returns ({res: images (N_res, 3, res, res) in [0, 1]}, labels in the same order, res by res).
    """
    for c in conditions:
        if c not in CONDITIONS:
            raise ValueError(f"unknown condition {c!r}; use {', '.join(CONDITIONS)}")
    for f in families:
        if f not in FAMILIES:
            raise ValueError(f"unknown artefact family {f!r}; the families are {', '.join(FAMILIES)}")
    for r in resolutions:
        if r not in (16, 32, 64):
            raise ValueError(f"the suite is drawn at 16, 32 and 64 px, not {r}")
    g = torch.Generator().manual_seed(seed)
    images, labels = {}, []
    for res in resolutions:
        batch = []
        for family in families:
            for cond in conditions:
                got = 0
                while got < n:
                    out = _draw_one(family, g, res, 4 if cond == "soft" else 1)
                    if out is None:
                        continue
                    img, lab = out
                    if cond == "blur+noise":
                        img = degrade(img[None], seed=int(torch.randint(1 << 30, (), generator=g)))[0]
                    batch.append(img)
                    labels.append(Artefact(condition=cond, **lab))
                    got += 1
        images[res] = torch.stack(batch)
    return images, labels


def passed(reading, label: Artefact) -> tuple[bool | None, bool | None]:
    """(clear right, ambiguous kept out) for one picture: for a clearly shaped one, did the oracle read exactly
    one object of that shape (and colour, when the colour is clear)? For an ambiguous one, did it avoid
    reading exactly one object named as a lure? None where the picture is not of that kind."""
    objs = reading.objects
    clear = ambiguous = None
    if label.shape is not None:
        clear = len(objs) == 1 and objs[0].shape == label.shape and label.colour in (None, objs[0].colour)
    if label.shape is None or label.colour is None:
        lured = [o for o in objs if (label.shape is not None or o.shape in label.lures)
                 and (label.colour is not None or o.colour in label.colour_lures)]
        ambiguous = not (len(objs) == 1 and lured)
    return clear, ambiguous


def score(readings, labels: list[Artefact]) -> dict:
    """The oracle on the suite: {res: {"clear": (rate, n), "ambiguous": (rate, n), "families": {family: …}}}."""
    tally = {}
    for r, lab in zip(readings, labels):
        for key in ((lab.res, None), (lab.res, lab.family)):
            t = tally.setdefault(key, {"clear": [], "ambiguous": []})
            for kind, ok in zip(("clear", "ambiguous"), passed(r, lab)):
                if ok is not None:
                    t[kind].append(ok)
    rate = lambda v: (sum(v) / len(v), len(v)) if v else (float("nan"), 0)   # noqa: E731
    out = {}
    for (res, family), t in sorted(tally.items(), key=lambda kv: (kv[0][0], kv[0][1] or "")):
        row = {k: rate(v) for k, v in t.items()}
        if family is None:
            out[res] = {**row, "families": {}}
        else:
            out[res]["families"][family] = row
    return out
