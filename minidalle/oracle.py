"""The oracle: read a scene graph off any image, and check a caption against it.

Lesson 01 builds it and validates it; lessons 04–11 judge every model with it.
GenEval (Ghosh et al., 2023) judges samples with an object detector and Conwell
& Ullman (2022) with 169 people; in the shapes world a short program does it
exactly. The steps, each a few lines below:

1. pixel colours: on a black background a pixel is `alpha * colour`; for each
   palette colour project the pixel on its direction, keep the best fit, and
   call the pixel foreground when alpha ≥ 0.5 (this also undoes a blur);
2. connected components of equal colour are object candidates; tiny ones are
   noise;
3. each component is explained by a template — shape × size × sub-pixel
   position, rendered by `minidalle.render` — where pixels of other objects
   are "don't care", so partly hidden objects are still recognised;
4. where two fitted objects overlap, the colour seen in the overlap says
   which is in front;
5. relations come from `minidalle.world.relation_margins`, the same code that
   defines them for the generator.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass

import torch

from .captions import Query, parse
from .render import PALETTE, masks
from .world import (COLOUR_NAMES, RESOLUTIONS, SHAPES, SIZE_NAMES, SIZES, Obj, Scene,
                    relation_margins)

_DIR = PALETTE / (PALETTE**2).sum(1, keepdim=True)          # (8, 3): alpha = pixel · _DIR[k]
_MIN_AREA = {16: 3, 32: 6, 64: 20}                          # smaller components are noise
_VOTE = torch.tensor([[0, 1, 0], [1, 2.1, 1], [0, 1, 0]]).view(1, 1, 3, 3)


def as_images(images) -> torch.Tensor:
    """Check and convert images to float (B, 3, H, W) in [0, 1]. Accepts uint8 or float, CHW or BCHW."""
    x = torch.as_tensor(images)
    if x.dim() == 3:
        x = x[None]
    if x.dim() != 4 or x.shape[1] != 3:
        hint = " (channels last? use .permute(2, 0, 1))" if x.shape[-1] == 3 else ""
        raise ValueError(f"expected an RGB image (3, H, W) or a batch (B, 3, H, W), got shape {tuple(x.shape)}{hint}")
    H, W = x.shape[-2:]
    if H != W or H not in RESOLUTIONS:
        raise ValueError(f"expected square images of {', '.join(map(str, RESOLUTIONS))} pixels, got {H}×{W}")
    if x.dtype == torch.uint8:
        return x.float() / 255
    if not x.is_floating_point():
        raise ValueError(f"expected uint8 (0–255) or float (0–1) pixels, got {x.dtype}")
    x = x.detach().float().cpu()
    if x.min() < -0.05 or x.max() > 1.05:
        raise ValueError(f"float pixels must lie in [0, 1], got [{x.min():.2f}, {x.max():.2f}]; "
                         "map model outputs in [-1, 1] with (x + 1) / 2")
    return x.clamp(0, 1)


@dataclass
class Reading:
    """What the oracle saw in one image: the scene graph plus each object's fit quality."""

    scene: Scene
    fit: tuple[float, ...]          # per object: soft IoU of its template with the picture, 1 is perfect

    @property
    def objects(self):
        return self.scene.objects


def coverage(x: torch.Tensor) -> torch.Tensor:
    """alpha (B, 8, H, W): how much of each palette colour each pixel holds. x: float (B, 3, H, W)."""
    return torch.einsum("bchw,kc->bkhw", x, _DIR).clamp(0, 1.5)


def pixel_labels(x: torch.Tensor) -> torch.Tensor:
    """Per-pixel colour index (B, H, W), -1 for background. x: float (B, 3, H, W)."""
    alpha = coverage(x)                                                      # (B, 8, H, W)
    resid = ((x[:, None] - alpha[:, :, None] * PALETTE[None, :, :, None, None]) ** 2).sum(2)
    best = resid.argmin(1)                                                  # (B, H, W)
    fg = alpha.gather(1, best[:, None])[:, 0] >= 0.5
    # a vote of each pixel (weight 2.1) and its 4 neighbours (1 each) mends isolated noisy
    # labels but keeps 2-pixel-wide arms and tips that another colour surrounds
    onehot = torch.nn.functional.one_hot(best, len(PALETTE)).permute(0, 3, 1, 2).float() * fg[:, None]
    k = len(PALETTE)
    votes = torch.nn.functional.conv2d(onehot, _VOTE.expand(k, 1, 3, 3), padding=1, groups=k)
    return torch.where(fg, votes.argmax(1), -1)


def components(labels: torch.Tensor) -> torch.Tensor:
    """Connected components (4-neighbour) of equal labels. Returns ids (B, H, W), -1 background."""
    B, H, W = labels.shape
    big = H * W
    ids = torch.where(labels >= 0, torch.arange(big).view(1, H, W).expand(B, -1, -1), big)
    while True:
        new = ids.clone()
        for dim, step in ((1, 1), (1, -1), (2, 1), (2, -1)):
            nb = torch.roll(ids, step, dim)
            nl = torch.roll(labels, step, dim)
            edge = torch.zeros_like(labels, dtype=torch.bool)     # roll wraps around; mask the seam
            if dim == 1:
                edge[:, 0 if step == 1 else -1] = True
            else:
                edge[:, :, 0 if step == 1 else -1] = True
            ok = (nl == labels) & (labels >= 0) & ~edge
            new = torch.where(ok, torch.minimum(new, nb), new)
        if torch.equal(new, ids):
            break
        ids = new
    return torch.where(labels >= 0, ids, -1)


# offsets searched around a component's box centre, in pixels
def _grid(radius: float, step: float) -> torch.Tensor:
    r = torch.arange(-radius, radius + 1e-6, step)
    return torch.cartesian_prod(r, r).float()                                # (P, 2)


_TEMPLATES = torch.cartesian_prod(torch.arange(len(SHAPES)), torch.arange(len(SIZES)))   # (10, 2)


def _blur(t: torch.Tensor) -> torch.Tensor:
    """3×3 Gaussian blur (σ = 1 px, as `render.degrade`) of (..., H, W) maps, done separably."""
    e, c = 0.27407, 0.45186                                        # the kernel's edge and centre weights
    p = torch.nn.functional.pad(t, (1, 1, 0, 0))
    t = e * p[..., :-2] + c * p[..., 1:-1] + e * p[..., 2:]
    p = torch.nn.functional.pad(t, (0, 0, 1, 1))
    return e * p[..., :-2, :] + c * p[..., 1:-1, :] + e * p[..., 2:, :]


def _fit(A, O, centre, radius, step, res, blur=True, chunk=64):
    """Best template per component. A: float (C, H, W) the component's colour coverage
    (0–1, zero away from it); O: bool (C, H, W) pixels of other colours; centre (C, 2).

    Templates are every shape and size at centre + offsets (a grid of ±radius
    pixels), drawn in a window around the centre, sharp and (with `blur`)
    blurred 3×3, σ = 1 px, since a model's samples are often soft. Score: −Σ(A − t)² over
    pixels not of other colours, − 0.3 × (template pixels under other objects).
    Returns shape, size (C,), xy (C, 2) in image widths, and the fit (soft IoU, 1 = perfect).
    """
    grid = _grid(radius, step)
    T, P = len(_TEMPLATES), len(grid)
    w = int(max(SIZES.values()) * res + 2 * radius + 3)                       # window side
    best = []
    for s in range(0, len(A), chunk):
        a, o, c = A[s:s + chunk], O[s:s + chunk], centre[s:s + chunk]
        n = len(a)
        origin = (c * res).round().long() - w // 2                            # (n, 2) top-left
        rows = (origin[:, 1, None] + torch.arange(w)).clamp(0, res - 1)       # (n, w)
        cols = (origin[:, 0, None] + torch.arange(w)).clamp(0, res - 1)
        inside = ((origin[:, 1, None] + torch.arange(w)) == rows)[:, :, None] & \
                 ((origin[:, 0, None] + torch.arange(w)) == cols)[:, None, :]
        r = torch.arange(n)[:, None, None]
        aw = (a[r, rows[:, :, None], cols[:, None, :]] * inside).flatten(1)            # (n, w*w)
        ow = (o[r, rows[:, :, None], cols[:, None, :]] & inside).flatten(1).float()
        xy = (c[:, None, :] + grid[None] / res)[:, None].expand(n, T, P, 2)
        sh = _TEMPLATES[:, 0].view(1, T, 1).expand(n, T, P)
        sz = _TEMPLATES[:, 1].view(1, T, 1).expand(n, T, P)
        t = masks(sh, sz, xy, res, origin[:, None, None].expand(n, T, P, 2), w).float()  # (n, T, P, w, w)
        if blur:
            t = torch.cat([t, _blur(t)], 1)                                   # sharp, then blurred
        t = t.view(n, -1, w * w)
        score = (2 * torch.bmm(t, aw[:, :, None]) - torch.bmm(t * t, 1 - ow[:, :, None])
                 - 0.3 * torch.bmm(t, ow[:, :, None]))[..., 0]               # (n, [2] T*P)
        k = score.argmax(1)
        i = torch.arange(n)
        tk = t[i, k]                                                          # (n, w*w)
        fit = torch.minimum(tk, aw).sum(1) / torch.maximum(tk, aw * (1 - ow)).sum(1).clamp(min=1e-6)
        k = k % (T * P)
        best.append((_TEMPLATES[k // P, 0], _TEMPLATES[k // P, 1], xy.reshape(n, T * P, 2)[i, k], fit))
    return [torch.cat(v) for v in zip(*best)]


def read(images) -> list[Reading]:
    """Parse images (see `as_images`) into scene graphs, one Reading per image."""
    x = as_images(images)
    B, _, res, _ = x.shape
    alpha = coverage(x)
    labels = pixel_labels(x)
    ids = components(labels)
    # gather components: (image, id) with enough pixels
    flat = ids.flatten(1)
    comps = []                                        # (image index, component id)
    for b in range(B):
        u, cnt = flat[b][flat[b] >= 0].unique(return_counts=True)
        comps += [(b, int(i)) for i in u[cnt >= _MIN_AREA[res]]]
    if not comps:
        return [Reading(Scene(()), ()) for _ in range(B)]
    bi = torch.tensor([b for b, _ in comps])
    M = ids[bi] == torch.tensor([i for _, i in comps]).view(-1, 1, 1)      # (C, H, W)
    O = (labels[bi] >= 0) & ~M                                              # pixels of other colours
    # centre of each component's box, in image widths
    ys, xs = torch.arange(res).view(1, res, 1), torch.arange(res).view(1, 1, res)
    big = res * 2
    x0 = torch.where(M, xs, big).flatten(1).amin(1)
    x1 = torch.where(M, xs, -1).flatten(1).amax(1)
    y0 = torch.where(M, ys, big).flatten(1).amin(1)
    y1 = torch.where(M, ys, -1).flatten(1).amax(1)
    centre = torch.stack([(x0 + x1 + 1) / 2, (y0 + y1 + 1) / 2], 1).float() / res
    # the component's own colour coverage, up to 2 px around it (a blur's soft edge)
    label = labels[bi].flatten(1).gather(1, M.flatten(1).float().argmax(1, keepdim=True))[:, 0]
    near = torch.nn.functional.max_pool2d(M[:, None].float(), 5, 1, 2)[:, 0] > 0
    A = alpha[bi, label].clamp(0, 1) * (near & ~O)                          # (C, H, W)
    # components that touch another object may be partly hidden: search wider around them
    touch = (torch.nn.functional.max_pool2d(M[:, None].float(), 3, 1, 1)[:, 0] > 0) & O
    wide = touch.flatten(1).any(1)
    shape = torch.zeros(len(comps), dtype=torch.long)
    size, xy, fits = shape.clone(), torch.zeros(len(comps), 2), torch.zeros(len(comps))
    for sel, radius in ((~wide, 1.0), (wide, 4.0)):
        k = torch.nonzero(sel).squeeze(1)
        if len(k) == 0:
            continue
        c_ = centre[k]
        for rad, step in ((radius, 0.5 if radius < 2 else 1.0), (0.5 if radius < 2 else 0.75, 0.25)):
            s_, z_, c_, f_ = _fit(A[k], O[k], c_, rad, step, res, blur=step < 0.5)   # coarse, then fine
        shape[k], size[k], xy[k], fits[k] = s_, z_, c_, f_
    colour = _colours(x[bi], M)
    out = []
    for b in range(B):
        k = torch.nonzero(bi == b).squeeze(1).tolist()
        order = _depth_order(k, shape, size, xy, M, res)
        objs = tuple(Obj(SHAPES[shape[i]], COLOUR_NAMES[colour[i]], SIZE_NAMES[size[i]],
                         round(float(xy[i, 0]), 4), round(float(xy[i, 1]), 4), z)
                     for z, i in enumerate(order))
        fit = tuple(round(float(fits[i]), 3) for i in order)
        out.append(Reading(Scene(objs), fit))
    return out


def _colours(x: torch.Tensor, M: torch.Tensor) -> torch.Tensor:
    """Colour of each component from its mean pixel direction. x (C, 3, H, W), M (C, H, W)."""
    mean = (x * M[:, None]).flatten(2).sum(-1) / M.flatten(1).sum(1, keepdim=True)   # (C, 3)
    cos = torch.nn.functional.normalize(mean, dim=1) @ torch.nn.functional.normalize(PALETTE, dim=1).T
    return cos.argmax(1)


def _depth_order(k: list[int], shape, size, xy, M, res) -> list[int]:
    """Order components back to front: where two fitted shapes overlap, the visible one is in front."""
    if len(k) < 2:
        return k
    t = masks(shape[k], size[k], xy[k], res)                                 # (n, H, W)
    n = len(k)
    above = torch.zeros(n, n, dtype=torch.bool)                             # above[a, b]: a over b
    for a in range(n):
        for b in range(a + 1, n):
            both = t[a] & t[b]
            va, vb = (both & M[k[a]]).sum(), (both & M[k[b]]).sum()
            if va + vb > 0:
                above[a, b], above[b, a] = va > vb, vb > va
    # back to front: repeatedly take an object that is over none of those still left
    order, left = [], list(range(n))
    while left:
        nxt = next((a for a in left if not any(above[a, b] for b in left if b != a)), left[0])
        order.append(nxt)
        left.remove(nxt)
    return [k[i] for i in order]


# -------------------------------------------------------------------- checks
def check(scene: Scene, query: Query | str) -> dict[str, bool]:
    """Which of a caption's predicates hold in a scene graph.

    Predicates: "objects" (every described object is there), "count" (exactly
    as many objects as described, none extra), "colour"/"shape"/"size" (each
    described attribute found on some assignment), one "relation: R" per stated
    relation, and "exact" (all of them at once).
    """
    q = parse(query) if isinstance(query, str) else query
    objs = scene.objects
    singles = [d for d in q.objects if d.count == 1]
    counted = [d for d in q.objects if d.count > 1]
    out = {"count": len(objs) == q.n_objects}
    out["counts"] = all(sum(d.matches(o) for o in objs) >= d.count for d in counted)
    # try every assignment of the single descriptions to distinct objects
    idx = [i for i, d in enumerate(q.objects) if d.count == 1]
    best = None
    for perm in itertools.permutations(range(len(objs)), len(singles)):
        attrs = all(d.matches(objs[p]) for d, p in zip(singles, perm))
        pos = dict(zip(idx, perm))
        rels = [_holds(objs, pos.get(i), r, pos.get(j)) for i, r, j in q.relations]
        score = (attrs and all(rels), attrs, sum(rels))
        if best is None or score > best[0]:
            best = (score, attrs, rels, perm)
    if best is None:  # fewer objects than descriptions
        out["objects"] = False
        out.update({f"relation: {r}": False for _, r, _ in q.relations})
    else:
        _, attrs, rels, _ = best
        out["objects"] = attrs and out["counts"]
        out.update({f"relation: {r}": v for (_, r, _), v in zip(q.relations, rels)})
    for attr in ("colour", "shape", "size"):
        out[attr] = _attribute_found(objs, q, attr)
    out["exact"] = out["count"] and out["objects"] and all(v for k, v in out.items() if k.startswith("relation"))
    return out


def _attribute_found(objs, q: Query, attr: str) -> bool:
    """Is every value of `attr` that the caption names carried by enough objects?"""
    need = {}
    for d in q.objects:
        v = getattr(d, attr)
        if v is not None:
            need[v] = need.get(v, 0) + d.count
    return all(sum(getattr(o, attr) == v for o in objs) >= c for v, c in need.items())


def _holds(objs, i, rel, j) -> bool:
    if i is None or j is None:
        return False
    a, b = objs[i], objs[j]
    pa = torch.tensor([a.x, a.y, SIZES[a.size]], dtype=torch.float64)
    pb = torch.tensor([b.x, b.y, SIZES[b.size]], dtype=torch.float64)
    return bool(relation_margins(pa, pb, torch.tensor(a.z > b.z))[rel] > 0)


def bootstrap(hits, n_boot: int = 1000, seed: int = 0) -> dict:
    """Rate of 0/1 outcomes `hits` (n,) with a 95% percentile bootstrap interval (COURSE.md §6).

    Returns {value, lo, hi, n}; every probe of the course reports its rate this way.
    """
    hits = torch.as_tensor(hits).float().flatten()
    g = torch.Generator().manual_seed(seed)
    means = hits[torch.randint(0, len(hits), (n_boot, len(hits)), generator=g)].mean(1)   # (n_boot,)
    lo, hi = torch.quantile(means, torch.tensor([0.025, 0.975])).tolist()
    return {"value": hits.mean().item(), "lo": lo, "hi": hi, "n": len(hits)}


def judge(images, captions) -> list[dict[str, bool]]:
    """Read each image and check its caption: the one call the evaluation lessons use."""
    readings = read(images)
    if isinstance(captions, str):
        captions = [captions] * len(readings)
    if len(captions) != len(readings):
        raise ValueError(f"got {len(readings)} images but {len(captions)} captions")
    return [check(r.scene, c) for r, c in zip(readings, captions)]


# ---------------------------------------------------------------- validation
def _match(true: Scene, seen: Scene) -> list[int | None]:
    """For each true object, the seen object it corresponds to (or None): the assignment
    with the least total distance in (x, y, size), each seen object used once."""
    def cost(o, s):
        return (o.x - s.x) ** 2 + (o.y - s.y) ** 2 + (SIZES[o.size] - SIZES[s.size]) ** 2

    t, s = true.objects, seen.objects
    best, out = None, [None] * len(t)
    if not t or not s:
        return out
    # try every way to pair min(len) objects: permute the longer list against the shorter
    for perm in itertools.permutations(range(max(len(t), len(s))), min(len(t), len(s))):
        pairs = list(zip(perm, range(len(s)))) if len(t) >= len(s) else list(zip(range(len(t)), perm))
        c = sum(cost(t[a], s[b]) for a, b in pairs)
        if best is None or c < best:
            best, out = c, [None] * len(t)
            for a, b in pairs:
                out[a] = b if cost(t[a], s[b]) < 0.15**2 else None
    return out


def scene_difference(a: Scene, b: Scene) -> str | None:
    """How scene graph b differs from a, the first difference found: "more objects" or
    "fewer objects", "moved" (an object with no counterpart near its place), "shape",
    "colour", "size" (of a matched object) or "relation"; None when they are the same."""
    if len(a.objects) != len(b.objects):
        return "more objects" if len(b.objects) > len(a.objects) else "fewer objects"
    m = _match(a, b)
    if None in m:
        return "moved"
    for k in ("shape", "colour", "size"):
        if any(getattr(o, k) != getattr(b.objects[m[i]], k) for i, o in enumerate(a.objects)):
            return k
    if {(m[i], r, m[j]) for i, r, j in a.relations()} != set(b.relations()):
        return "relation"
    return None


def same_scene(a: Scene, b: Scene) -> bool:
    """Are two scene graphs the same: the same objects (shape, colour, size, matched by place)
    and the same relations between them? Lesson 08 asks it of an image and its reconstruction."""
    return scene_difference(a, b) is None


def validate(scenes, images) -> dict[str, float]:
    """Compare the oracle's readings of `images` with the true `scenes` they were rendered from.

    Returns accuracies: shape, colour, size (per true object; a missed object
    counts wrong), count (per image), relations (every relation for every
    ordered pair of true objects, true or false), and stated (the relations
    that hold, alone).
    """
    readings = read(images)
    tot = {k: 0 for k in ("shape", "colour", "size", "count", "relations", "stated")}
    n = {k: 0 for k in tot}
    for true, r in zip(scenes, readings):
        seen = r.scene
        m = _match(true, seen)
        tot["count"] += len(seen.objects) == len(true.objects)
        n["count"] += 1
        for i, o in enumerate(true.objects):
            for attr in ("shape", "colour", "size"):
                tot[attr] += m[i] is not None and getattr(seen.objects[m[i]], attr) == getattr(o, attr)
                n[attr] += 1
        held = set(true.relations())
        got = {(i, rel, j) for i, j in itertools.permutations(range(len(m)), 2)
               if m[i] is not None and m[j] is not None
               for (a, rel, b) in seen.relations() if (a, b) == (m[i], m[j])}
        for i, j in itertools.permutations(range(len(true.objects)), 2):
            for rel in ("left of", "right of", "above", "below", "on", "under", "inside",
                        "in front of", "behind", "near", "next to"):
                t = (i, rel, j) in held
                tot["relations"] += t == ((i, rel, j) in got)
                n["relations"] += 1
                if t:
                    tot["stated"] += (i, rel, j) in got
                    n["stated"] += 1
    return {k: tot[k] / max(n[k], 1) for k in tot}


def validation_suite(n: int = 2000, seed: int = 12345) -> dict[str, dict[str, float]]:
    """The oracle's acceptance test (lesson 01): held-out renders, clean and degraded.

    Conditions: 32×32 scenes of 1–4 objects, clean and with a 3×3 blur (σ = 1 px)
    plus Gaussian noise σ = 0.1; and single objects at 16×16, clean and degraded.
    The seed is far from the ones training sets use, so the scenes are held out.
    """
    from .render import degrade, render
    from .world import SceneSpec, sample_scenes

    out = {}
    sa = sample_scenes(n, seed=seed)
    scenes, img = sa.to_scenes(), render(sa, 32)
    out["32×32 clean"] = validate(scenes, img)
    out["32×32 blur+noise"] = validate(scenes, degrade(img, seed=seed))
    one = sample_scenes(n, SceneSpec(n_objects=(1, 0, 0, 0)), seed=seed + 1)
    scenes1, img1 = one.to_scenes(), render(one, 16)
    out["16×16 single, clean"] = validate(scenes1, img1)
    out["16×16 single, blur+noise"] = validate(scenes1, degrade(img1, seed=seed))
    for k in ("16×16 single, clean", "16×16 single, blur+noise"):
        del out[k]["relations"], out[k]["stated"]           # one object: no relations
    return out
