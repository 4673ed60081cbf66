"""The scene sampler: clear scenes drawn from a `SceneSpec`, fast and deterministic for a seed.

Lesson 01 (`notebooks/01_shapes_world.ipynb`, section 4) explains it. Objects are placed one after
another at random spots, thousands of scenes at once; a layout is kept only when every relation
margin of every pair is clear of zero (`scenes.MARGIN`) and, for a planned contact pair, the pixels
agree (`render.masks` at 32×32): the inner object really inside, the back object still visible.
"""
from __future__ import annotations

import math

import torch

from minidalle.world.render import masks
from minidalle.world.scenes import (_SIZE_T, _VOCAB, MARGIN, MAX_OBJECTS, NEAR, SAME_GAP, SIZE_NAMES, SceneArrays,
                                    SceneSpec, relation_margins)


def _draw(weights: torch.Tensor, shape, g) -> torch.Tensor:
    return torch.multinomial(weights, math.prod(shape), replacement=True, generator=g).view(shape)


def _attributes(spec: SceneSpec, N: int, g) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    shape = _draw(spec.weights("shape"), (N, MAX_OBJECTS), g)
    colour = _draw(spec.weights("colour"), (N, MAX_OBJECTS), g)
    size = _draw(spec.weights("size"), (N, MAX_OBJECTS), g)
    attrs = {"shape": shape, "colour": colour, "size": size}
    for sk in spec.skews:
        w = torch.zeros(len(_VOCAB[sk.attr]), dtype=torch.float64)
        for v, p in sk.weights.items():
            w[_VOCAB[sk.attr].index(v)] = p
        w *= spec._allowed(sk.attr)
        if w.sum() <= 0:
            raise ValueError(f"the skew {sk} leaves no {sk.attr} to draw once forbidden values are dropped")
        hit = attrs[sk.given_attr] == _VOCAB[sk.given_attr].index(sk.given_value)
        attrs[sk.attr] = torch.where(hit, _draw(w / w.sum(), (N, MAX_OBJECTS), g), attrs[sk.attr])
    return attrs["shape"], attrs["colour"], attrs["size"]


def _pair_clear(pa, pb, same_colour, planned) -> torch.Tensor:
    """May objects a (drawn first) and b sit like this? pa, pb: (..., 3) = (x, y, size).

    Every relation margin must be clear of 0 by MARGIN; objects of one colour
    stay SAME_GAP apart (else a blurred picture could join them); and only a `planned`
    contact pair may touch, overlap or nest.
    """
    m = relation_margins(pa, pb, torch.zeros(pa.shape[:-1], dtype=torch.bool))
    ok = torch.stack(list(m.values())).abs().amin(0) >= MARGIN
    ok &= ~(same_colour & (m["near"] > NEAR - SAME_GAP))
    contact = (torch.maximum(m["in front of"], m["behind"]) > 0) | (m["on"] > 0) | (m["under"] > 0)
    contact |= torch.maximum(m["inside"], m["contains"]) > 0
    return ok & (planned | ~contact)


def _valid(shape, colour, size, xy, n, pair_rel) -> torch.Tensor:
    """Which rows are clear scenes: in bounds, every pair clear, contact pairs right in pixels."""

    s = _SIZE_T[size]                                            # (N, 4)
    live = torch.arange(MAX_OBJECTS) < n[:, None]                # (N, 4)
    r = s / 2
    inb = ((xy - r[..., None]) >= 0.02 - 1e-9) & ((xy + r[..., None]) <= 0.98 + 1e-9)
    ok = (inb.all(-1) | ~live).all(1)
    p = torch.cat([xy, s[..., None]], -1)                        # (N, 4, 3)
    ii, jj = torch.triu_indices(MAX_OBJECTS, MAX_OBJECTS, 1)
    planned = ((ii == 0) & (jj == 1))[None] & (pair_rel > 0)[:, None]
    clear = _pair_clear(p[:, ii], p[:, jj], colour[:, ii] == colour[:, jj], planned)
    ok &= (clear | ~(live[:, ii] & live[:, jj])).all(1)
    # the planned contact pair: check its pixels (inner inside outer; back object still visible)
    rows = torch.nonzero(pair_rel > 0).squeeze(1)
    if len(rows):
        m0 = masks(shape[rows, 0], size[rows, 0], xy[rows, 0], 32)   # (R, 32, 32)
        m1 = masks(shape[rows, 1], size[rows, 1], xy[rows, 1], 32)
        hidden = (m0 & m1).flatten(1).sum(1) / m0.flatten(1).sum(1).clamp(min=1)
        rel = pair_rel[rows]
        # "in front of" (rel 3): object 1 drawn over object 0, hiding 20–50% of it
        good = torch.where(rel == 3, (hidden >= 0.2) & (hidden <= 0.5), True)
        # "inside" (rel 2): object 1 inside 0 with ≥ 1 px of the outer around it
        k = rel == 2
        good[k] &= (m1[k] & _grow(~m0[k])).flatten(1).sum(1) == 0
        # "on" (rel 1): object 1 rests on object 0, and the two really meet in pixels
        k = rel == 1
        good[k] &= (m1[k] & _grow(m0[k])).flatten(1).sum(1) >= 2
        ok[rows] &= good
    return ok


def _grow(m: torch.Tensor) -> torch.Tensor:
    """Dilate boolean masks (R, H, W) by one pixel (3×3)."""
    p = torch.nn.functional.pad(m, (1, 1, 1, 1))
    H, W = m.shape[-2:]
    out = m.clone()
    for dy in range(3):
        for dx in range(3):
            out |= p[:, dy:dy + H, dx:dx + W]
    return out


def _uniform_xy(size, shape, g) -> torch.Tensor:
    """Uniform centres keeping each object 0.02 inside the image. size: (...) -> (..., 2)."""
    lo = 0.02 + _SIZE_T[size] / 2
    return lo[..., None] + (1 - 2 * lo)[..., None] * torch.rand(*shape, 2, generator=g, dtype=torch.float32)


def _layouts(spec: SceneSpec, N: int, g):
    """Per scene: object count n, contact kind pair_rel, and whether all objects are alike.

    pair_rel: 0 free, 1 "object 1 on object 0", 2 "1 inside 0", 3 "1 in front of 0".
    """
    n = _draw(torch.tensor(spec.n_objects, dtype=torch.float64), (N,), g) + 1
    same = (torch.rand(N, generator=g, dtype=torch.float64) < spec.same_kind) & (n > 1)
    want = (torch.rand(N, generator=g, dtype=torch.float64) < spec.contact) & (n > 1) & ~same
    pair_rel = torch.where(want, torch.randint(1, 4, (N,), generator=g), 0)
    return n, pair_rel, same


def _place(spec: SceneSpec, n, pair_rel, same, g, candidates: int = 16):
    """Propose attributes and positions for the given layouts; the caller rejects unclear ones.

    Objects are placed one after another; each tries `candidates` random spots
    and takes the first that is clear of the objects already placed.
    """
    N = len(n)
    shape, colour, size = _attributes(spec, N, g)
    shape = torch.where(same[:, None], shape[:, :1], shape)
    colour = torch.where(same[:, None], colour[:, :1], colour)
    size = size.clone()
    inner = pair_rel == 2
    size[inner, 0], size[inner, 1] = SIZE_NAMES.index("large"), SIZE_NAMES.index("small")
    xy = _uniform_xy(size, (N, MAX_OBJECTS), g)
    r0, r1 = _SIZE_T[size[:, 0]] / 2, _SIZE_T[size[:, 1]] / 2
    u = torch.rand(N, 2, generator=g, dtype=torch.float32) * 2 - 1
    on_xy = torch.stack([xy[:, 0, 0] + u[:, 0] * (r0 - 0.06).clamp(min=0), xy[:, 0, 1] - r0 - r1], -1)
    in_xy = xy[:, 0] + 0.02 * u
    ang = torch.rand(N, generator=g, dtype=torch.float32) * 2 * math.pi
    dist = (r0 + r1) * (0.55 + 0.2 * torch.rand(N, generator=g, dtype=torch.float32))
    fr_xy = xy[:, 0] + dist[:, None] * torch.stack([ang.cos(), ang.sin()], -1)
    xy[:, 1] = torch.where((pair_rel == 1)[:, None], on_xy, xy[:, 1])
    xy[:, 1] = torch.where(inner[:, None], in_xy, xy[:, 1])
    xy[:, 1] = torch.where((pair_rel == 3)[:, None], fr_xy, xy[:, 1])
    # move each contact pair as a whole to a random spot where both fit
    r01 = _SIZE_T[size[:, :2]][..., None] / 2                                # (N, 2, 1)
    lo, hi = (xy[:, :2] - r01).amin(1), (xy[:, :2] + r01).amax(1)            # (N, 2)
    new_lo = 0.02 + (0.96 - (hi - lo)).clamp(min=0) * torch.rand(N, 2, generator=g, dtype=torch.float32)
    shift = torch.where((pair_rel > 0)[:, None], new_lo - lo, 0.0)
    xy[:, :2] += shift[:, None]
    p = torch.cat([xy, _SIZE_T[size][..., None]], -1)                       # (N, 4, 3)
    for k in range(1, MAX_OBJECTS):
        rows = torch.nonzero((n > k) & ~((k == 1) & (pair_rel > 0))).squeeze(1)
        if len(rows) == 0:
            continue
        cand = _uniform_xy(size[rows, k, None].expand(-1, candidates), (len(rows), candidates), g)
        pc = torch.cat([cand, p[rows, k, None, 2:].expand(-1, candidates, 1)], -1)  # (R, C, 3)
        ok = torch.ones(len(rows), candidates, dtype=torch.bool)
        for j in range(k):
            same_c = (colour[rows, j] == colour[rows, k])[:, None]
            ok &= _pair_clear(p[rows, j, None].expand_as(pc), pc, same_c, torch.tensor(False))
        first = torch.where(ok.any(1), ok.float().argmax(1), 0)
        p[rows, k] = pc[torch.arange(len(rows)), first]
    return shape, colour, size, p[..., :2].contiguous(), n, pair_rel


def sample_scenes(N: int, spec: SceneSpec | None = None, seed: int = 0) -> SceneArrays:
    """Draw N clear scenes from `spec`, deterministically for `seed`."""
    spec = spec or SceneSpec()
    g = torch.Generator().manual_seed(seed)
    n, pair_rel, same = _layouts(spec, N, g)
    out = [torch.zeros(N, MAX_OBJECTS, dtype=torch.long) for _ in range(3)] + [
        torch.zeros(N, MAX_OBJECTS, 2, dtype=torch.float32)]
    todo = torch.arange(N)
    for attempt in range(100):  # propose layouts for every unplaced scene; keep the first clear one
        copies = (1, 4)[min(attempt, 1)] if len(todo) > 64 else 64
        rep = todo.repeat_interleave(copies)
        shape, colour, size, xy, _, _ = prop = _place(spec, n[rep], pair_rel[rep], same[rep], g)
        ok = _valid(*prop).view(-1, copies)
        done = ok.any(1)
        pick = torch.arange(len(todo)) * copies + ok.float().argmax(1)
        for o, src in zip(out, (shape, colour, size, xy)):
            o[todo[done]] = src[pick[done]]
        todo = todo[~done]
        if len(todo) == 0:
            break
    else:  # pragma: no cover - only a spec that forbids every layout gets here
        raise RuntimeError("could not place scenes for this spec; allow fewer objects or more sizes")
    sa = SceneArrays(*out, n)
    sa.forbidden = _forbidden(sa, spec)
    if spec.duplicates > 0:
        k = min(spec.n_duplicated, N)
        dup = torch.rand(N, generator=g) < spec.duplicates
        src = torch.randint(0, k, (N,), generator=g)
        dup[:k] = False
        for name in ("shape", "colour", "size", "xy", "n", "forbidden"):
            t = getattr(sa, name)
            t[dup] = t[src[dup]]
    return sa


def _forbidden(sa: SceneArrays, spec: SceneSpec) -> torch.Tensor:
    live = torch.arange(MAX_OBJECTS) < sa.n[:, None]
    flag = torch.zeros(len(sa), dtype=torch.bool)
    for attr, value in spec.forbidden:
        t = getattr(sa, attr)
        flag |= ((t == _VOCAB[attr].index(value)) & live).any(1)
    return flag
