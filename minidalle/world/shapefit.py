"""Fitting shape templates to one object of a picture: the measurements the oracle decides on.

Lesson 01 shows every step. For each object (a connected component, see `minidalle.oracle`)
the picture is compared with templates of the world's five shapes:

1. coarse: every shape, at every box side within ±0.04 image widths of the world's two sizes
   (½-px steps) and every position (½-px steps), drawn with area coverage so that the error
   changes smoothly — one matrix product for all templates and all window shifts;
2. fine: the two best shapes again around their coarse fit, sides in ¼-px and positions in
   ¼-px steps (½ px at 64 px), each drawn three ways — sharp (pixel centres, as `render`),
   soft (area coverage, as a model's smooth edges) and blurred (as `render.degrade`);
3. near misses: the best shape's near misses (`NEAR_MISSES`: an ellipse for a circle, a
   rectangle for a square, a triangle with a flat top, a cross without an arm, …) around
   the same fit, in the same drawing.

A template's error is Σ (A − t)² over the pixels not covered by other objects, plus 0.3
for each template pixel under another object (it may hide there). `evidence` turns the
fits into the numbers of `oracle.Strictness`: how far the picture lies from the best
shape towards the runner-up and towards the nearest miss (ρ, 1 at the shape, 0 halfway),
how much of its outline is wrong, and how many of its pixels lie far from the template.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from minidalle.world.render import depth, inside
from minidalle.world.scenes import SHAPES, SIZES


VARIANTS = ("sharp", "soft", "blurred")   # how a fine template is drawn
_SUB = 2                                  # the fine search divides the coarse position step by this


def blur(t: torch.Tensor) -> torch.Tensor:
    """3×3 Gaussian blur (σ = 1 px, as `render.degrade`) of (..., H, W) maps, done separably."""
    e, c = 0.27407, 0.45186                                        # the kernel's edge and centre weights
    p = F.pad(t, (1, 1, 0, 0))
    t = e * p[..., :-2] + c * p[..., 1:-1] + e * p[..., 2:]
    p = F.pad(t, (0, 0, 1, 1))
    return e * p[..., :-2, :] + c * p[..., 1:-1, :] + e * p[..., 2:, :]


def interior(M: torch.Tensor) -> torch.Tensor:
    """Pixels of masks (C, H, W) whose four neighbours are in the mask too."""
    p = F.pad(M, (1, 1, 1, 1))
    H, W = M.shape[-2:]
    return M & p[:, :H, 1:W + 1] & p[:, 2:, 1:W + 1] & p[:, 1:H + 1, :W] & p[:, 1:H + 1, 2:]


# What each shape looks like when a model draws it not quite right. The oracle names a shape only
# when the picture looks more like it than like its near misses (lesson 01 draws them all).
# (kind, parameter): an ellipse, rectangle or rhombus of aspect p, wide (w) or tall (t), of the same
# area; a superellipse |u|^p + |v|^p ≤ 1 (1.4: an octagon between diamond and circle; 4: a square with
# round corners); a circle pointed like an egg, or cut flat, on side p (up, down, left, right); a square
# turned p degrees; a triangle with its top p of the height cut off, a base
# corner |p| of the side cut off, or its apex moved p half-sides sideways; a cross missing arm p (up,
# down, left, right), with its arms crossing off the centre towards p, or with arms p of the side wide.
NEAR_MISSES = {
    "circle": (("ellipse w", 1.4), ("ellipse t", 1.4), ("superellipse", 1.4), ("superellipse", 4.0),
               ("egg", 0), ("egg", 1), ("egg", 2), ("egg", 3), ("cut circle", 0), ("cut circle", 1),
               ("cut circle", 2), ("cut circle", 3)),
    "square": (("rectangle w", 1.4), ("rectangle t", 1.4), ("superellipse", 4.0), ("turned square", 22.5)),
    "triangle": (("flat-topped triangle", 0.3), ("lopsided triangle", 0.5), ("lopsided triangle", -0.5),
                 ("cut-corner triangle", 0.3), ("cut-corner triangle", -0.3)),
    "diamond": (("rhombus w", 1.4), ("rhombus t", 1.4), ("superellipse", 1.4), ("turned square", 22.5)),
    "cross": (("cross without arm", 0), ("cross without arm", 1), ("cross without arm", 2), ("cross without arm", 3),
              ("off-centre cross", 0), ("off-centre cross", 1), ("off-centre cross", 2), ("off-centre cross", 3),
              ("fat cross", 0.55)),
}
MISSES = sorted({m for ms in NEAR_MISSES.values() for m in ms})
_N_MISS = max(len(ms) for ms in NEAR_MISSES.values())
_MISS_OF = torch.tensor([[MISSES.index(m) for m in (ms * _N_MISS)[:_N_MISS]] for ms in NEAR_MISSES.values()])


def near_miss(kind: str, p: float, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Is (u, v) inside a near miss of half-side 1 centred at 0 (v down)?"""
    if kind.endswith(" t"):
        u, v, kind = v, u, kind[:-2] + " w"
    au, av = u.abs(), v.abs()
    r = p ** 0.5
    if kind == "ellipse w":
        return (au / r) ** 2 + (av * r) ** 2 <= 1
    if kind == "rectangle w":
        return (au <= r) & (av <= 1 / r)
    if kind == "rhombus w":
        return au / r + av * r <= 1
    if kind == "superellipse":
        return au**p + av**p <= 1
    if kind in ("egg", "cut circle"):                      # pointed (egg) or flattened on side p: up, down, left, right
        along = [-v, v, -u, u][int(p)]                     # the coordinate towards that side
        if kind == "egg":
            return torch.where(along > 0, au + av, au**2 + av**2) <= 1
        return (au**2 + av**2 <= 1) & (along <= 0.55)
    if kind == "turned square":
        a = math.radians(p)
        x, y = math.cos(a) * u + math.sin(a) * v, -math.sin(a) * u + math.cos(a) * v
        return (x.abs() <= 1) & (y.abs() <= 1)
    box = (au <= 1) & (av <= 1)
    if kind == "flat-topped triangle":
        return box & (2 * au - v <= 1) & (v >= -1 + 2 * p)
    if kind == "cut-corner triangle":
        return box & (2 * au - v <= 1) & (math.copysign(1, p) * u <= 1 - 2 * abs(p))
    if kind == "lopsided triangle":                      # apex at (p, -1), base from -1 to 1
        t = (v + 1) / 2
        return (av <= 1) & (u >= p + t * (-1 - p)) & (u <= p + t * (1 - p))
    if kind == "cross without arm":
        arm = [(v < -0.25), (v > 0.25), (u < -0.25), (u > 0.25)][int(p)]
        return box & ((au <= 0.25) | (av <= 0.25)) & ~arm
    if kind == "off-centre cross":
        dx, dy = [(0, -0.4), (0, 0.4), (-0.4, 0), (0.4, 0)][int(p)]
        return box & (((u - dx).abs() <= 0.25) | ((v - dy).abs() <= 0.25))
    if kind == "fat cross":
        return box & ((au <= p) | (av <= p))
    raise ValueError(f"unknown near miss {kind!r}")


@dataclass(frozen=True)
class Bank:
    """Templates at one resolution: K maps of w × w pixels, ordered kind, side, phase y, phase x, variant."""

    t: torch.Tensor          # (K, w*w) template pixels
    mass: torch.Tensor       # (K,) Σ t²
    sides: torch.Tensor      # (S,) box sides, pixels
    phases: torch.Tensor     # (P,) centre offsets from the window's centre, pixels (the same for x and y)
    w: int                   # window side
    variants: int            # 1 (soft only) or len(VARIANTS)

    def index(self, kind, side, py, px, variant=0):
        """The template number of (kind, side index, phase indices, variant); broadcasts."""
        S, P = len(self.sides), len(self.phases)
        return (((kind * S + side) * P + py) * P + px) * self.variants + variant


def _bank(res: int, draw, kinds: int, sides: torch.Tensor, phases: torch.Tensor, w: int,
          variants: int) -> Bank:
    """Templates of kinds × sides × phases; draw(kind index, u (K, H, W), v) tells which points of a
    template of half-side 1 are inside. variants 1: area coverage only; 3: sharp, soft, blurred."""
    grid = torch.cartesian_prod(torch.arange(kinds), torch.arange(len(sides)),
                                torch.arange(len(phases)), torch.arange(len(phases)))   # (K/V, 4)
    cx, cy = w / 2 + phases[grid[:, 3]], w / 2 + phases[grid[:, 2]]             # centres in the window, px
    half = sides[grid[:, 1]].view(-1, 1, 1) / 2
    drawn = []
    for ss in (4, 1) if variants > 1 else (4,):                                # 4 × 4 samples a pixel, then 1
        c = (torch.arange(w * ss, dtype=torch.float32) + 0.5) / ss
        u = ((c.view(1, 1, -1) - cx.view(-1, 1, 1)) / half).expand(-1, w * ss, -1)
        v = ((c.view(1, -1, 1) - cy.view(-1, 1, 1)) / half).expand(-1, -1, w * ss)
        m = torch.zeros(len(grid), w * ss, w * ss, dtype=torch.bool)
        for k in range(kinds):
            sel = grid[:, 0] == k
            m[sel] = draw(k, u[sel], v[sel])
        drawn.append(F.avg_pool2d(m.float()[:, None], ss)[:, 0] if ss > 1 else m.float())
    if variants > 1:
        soft, sharp = drawn
        t = torch.stack([sharp, soft, blur(sharp)], 1).flatten(0, 1)         # the order of VARIANTS
    else:
        t = drawn[0]
    t = t.flatten(1).contiguous()
    return Bank(t, (t * t).sum(1), sides, phases, w, variants)


def _shape(k: int, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """`render`'s shape number k in the bank's coordinates (half-side 1)."""
    return inside(k, u.abs(), v.abs(), v, torch.ones(1, 1, 1))


@functools.lru_cache(maxsize=None)
def banks(res: int) -> tuple[Bank, Bank, Bank, float]:
    """The coarse, fine and near-miss banks of a resolution, and the coarse position step (px).

    Built once per resolution (a tenth of a second at 32 px).
    """
    c, sc = (0.5, 0.5) if res <= 32 else (1.0, 1.0)                          # coarse position and side steps
    sides = torch.cat([torch.arange((v - 0.04) * res, (v + 0.04) * res + 1e-6, sc) for v in SIZES.values()])
    w = math.ceil(float(sides[-1]) + sc) + 3
    coarse = _bank(res, _shape, len(SHAPES), sides, torch.arange(0, 1 - 1e-6, c), w, 1)
    fine_sides = torch.stack([sides - sc / 2, sides, sides + sc / 2], 1).flatten()    # coarse i ↔ fine 3i + 1
    fine = _bank(res, _shape, len(SHAPES), fine_sides, torch.arange(-c / 2, 1 - c / 2 + 1e-6, c / _SUB),
                 w, len(VARIANTS))
    misses = _bank(res, lambda k, u, v: near_miss(*MISSES[k], u, v), len(MISSES), sides,
                   torch.arange(-c, 1 + 1e-6, c), w, len(VARIANTS))
    return coarse, fine, misses, c


def crops(maps: torch.Tensor, origin: torch.Tensor, size: int) -> torch.Tensor:
    """size × size crops of maps (C, ch, H, W) with top-left corners origin (C, 2) (x, y); zero outside."""
    C, ch, H, W = maps.shape
    ar = torch.arange(size)
    rows, cols = origin[:, 1, None] + ar, origin[:, 0, None] + ar                 # (C, size)
    okr, okc = (rows >= 0) & (rows < H), (cols >= 0) & (cols < W)
    r = rows.clamp(0, H - 1)[:, None, :, None]
    c = cols.clamp(0, W - 1)[:, None, None, :]
    out = maps[torch.arange(C)[:, None, None, None], torch.arange(ch)[None, :, None, None], r, c]
    return out * (okr[:, None, :, None] & okc[:, None, None, :])


def _score(t: torch.Tensor, mass: torch.Tensor, a: torch.Tensor, o: torch.Tensor) -> torch.Tensor:
    """Σ a² − error of templates t (..., K, w²) against windows a, o (..., w², 1): the larger the better."""
    return 2 * t @ a - mass[..., None] + (t * t - 0.3 * t) @ o


def fit(A: torch.Tensor, O: torch.Tensor, M: torch.Tensor, centre: torch.Tensor, radius: int, res: int,
        chunk: int = 96) -> dict:
    """Fit templates to C components. A: (C, H, W) the component's own-colour coverage (0–1, zero away
    from it); O: (C, H, W) 1 on pixels of other objects; M: (C, H, W) the component's pixels; centre: (C, 2)
    its box centre (px); radius: how many pixels the window may shift (wider for partly hidden objects).

    Returns, per component, in its crop (C, L, L): `a`, `o`, `m` (A, O and M), `t` (C, 5, L, L): the fine
    templates of the two best shapes, their sharp drawings, the best near miss; and `top` (C, 2) the two
    shapes, `miss` (C,) the near miss, `side` (C,) and `xy` (C, 2) the best template's side and centre (px),
    `variant` (C,) how it is drawn, `origin` (C, 2) the crop's corner, `outside` (C,) coverage beyond the crop.
    """
    coarse, fine, miss, c = banks(res)
    w, n = coarse.w, 2 * radius + 1
    S, P, Pm, V = len(coarse.sides), len(coarse.phases), len(miss.phases), len(VARIANTS)
    K5 = len(coarse.t) // len(SHAPES)
    L = w + 2 * radius
    total = (A * A).flatten(1).sum(1)
    out = {}
    for s in range(0, len(A), chunk):
        a_, o_, m_, c_ = A[s:s + chunk], O[s:s + chunk], M[s:s + chunk], centre[s:s + chunk]
        C, i = len(a_), torch.arange(len(a_))
        origin = (c_ - w / 2 - (1 - c) / 2).round().long() - radius                # (C, 2) the crop's corner
        crop = crops(torch.stack([a_, o_, m_.float()], 1), origin, L)               # (C, 3, L, L)
        outside = total[s:s + chunk] - (crop[:, 0] ** 2).flatten(1).sum(1)
        cols = F.unfold(crop[:, :2], w).view(C, 2, w * w, n * n)                    # (C, 2, w², shifts)
        # 1. coarse: all templates at all shifts
        sc = (2 * coarse.t @ cols[:, 0] - coarse.mass[:, None]).transpose(1, 2)     # (C, shifts, K)
        has_o = crop[:, 1].flatten(1).any(1)
        if has_o.any():
            sc[has_o] += ((coarse.t * coarse.t - 0.3 * coarse.t) @ cols[has_o, 1]).transpose(1, 2)
        best, where = sc.reshape(C, n * n, len(SHAPES), K5).permute(0, 2, 1, 3).flatten(2).max(2)   # (C, 5)
        top = best.topk(2, dim=1).indices                                           # (C, 2) the two best shapes
        wh = where.gather(1, top)
        shift, k = wh // K5, wh % K5                                                # window shift, template
        px, k = k % P, k // P
        py, si = k % P, k // P
        # 2. fine: sides 3i..3i+2, positions around the coarse one, every drawing
        e = (..., None, None, None, None)
        d3, dp = torch.arange(3), torch.arange(_SUB + 1)
        cand = fine.index(top[e], (3 * si)[e] + d3.view(3, 1, 1, 1), (_SUB * py)[e] + dp.view(1, -1, 1, 1),
                          (_SUB * px)[e] + dp.view(1, 1, -1, 1), torch.arange(V).view(1, 1, 1, V)).flatten(2)
        win = cols.permute(0, 3, 1, 2)[i[:, None], shift]                         # (C, 2 shapes, 2 ch, w²)
        fs = _score(fine.t[cand], fine.mass[cand], win[:, :, 0, :, None], win[:, :, 1, :, None])[..., 0]
        fbest, fk = fs.max(2)                                                       # (C, 2)
        kk = cand.gather(2, fk[..., None])[..., 0]                                  # fine template numbers
        order = torch.stack([(fbest[:, 1] > fbest[:, 0]).long(), (fbest[:, 1] <= fbest[:, 0]).long()], 1)
        kk, top, shift = kk.gather(1, order), top.gather(1, order), shift.gather(1, order)   # best first
        pos = kk // V
        pxf, pyf = pos % len(fine.phases), pos // len(fine.phases) % len(fine.phases)
        sif = pos // len(fine.phases) ** 2 % len(fine.sides)
        # 3. the best shape's near misses, at the two coarse sides and positions around its fit
        j0 = ((fine.sides[sif[:, 0]] - coarse.sides[0]) / (coarse.sides[1] - coarse.sides[0])).floor().long()
        j0 = j0.clamp(0, S - 2).view(C, 1, 1, 1, 1)
        q = ((fine.phases[torch.stack([pyf[:, 0], pxf[:, 0]], 1)] + c) / c).floor().long().clamp(0, Pm - 2)
        d2 = torch.arange(2)
        mc = miss.index(_MISS_OF[top[:, 0]].view(C, -1, 1, 1, 1), j0 + d2.view(2, 1, 1),
                        q[:, 0].view(C, 1, 1, 1, 1) + d2.view(2, 1), q[:, 1].view(C, 1, 1, 1, 1) + d2,
                        (kk[:, 0] % V).view(C, 1, 1, 1, 1)).flatten(1)               # (C, 8 × misses)
        wb = cols.permute(0, 3, 1, 2)[i, shift[:, 0]]                              # (C, 2 ch, w²) the best's window
        ms = _score(miss.t[mc], miss.mass[mc], wb[:, 0, :, None], wb[:, 1, :, None])[..., 0]
        mk = mc.gather(1, ms.argmax(1, keepdim=True))[:, 0]
        # paste into the crop: the two best shapes, their sharp drawings, the near miss (at the best's window)
        t = torch.cat([fine.t[kk], fine.t[kk - kk % V], miss.t[mk][:, None]], 1).view(C, 5, w, w)
        sy, sx = shift // n, shift % n
        sy5, sx5 = torch.cat([sy, sy, sy[:, :1]], 1), torch.cat([sx, sx, sx[:, :1]], 1)
        canvas = torch.zeros(C, 5, L, L)
        canvas[i.view(C, 1, 1, 1), torch.arange(5).view(1, 5, 1, 1),
               (sy5[..., None] + torch.arange(w)).view(C, 5, w, 1), (sx5[..., None] + torch.arange(w)).view(C, 5, 1, w)] = t
        xy = torch.stack([origin[:, 0] + sx[:, 0] + w / 2 + fine.phases[pxf[:, 0]],
                          origin[:, 1] + sy[:, 0] + w / 2 + fine.phases[pyf[:, 0]]], -1)
        part = {"a": crop[:, 0], "o": crop[:, 1], "m": crop[:, 2], "t": canvas, "top": top,
                "miss": mk // V // (Pm * Pm * S), "side": fine.sides[sif[:, 0]], "xy": xy,
                "variant": kk[:, 0] % V, "origin": origin, "outside": outside}
        for key, v in part.items():
            out.setdefault(key, []).append(v)
    return {k: torch.cat(v) for k, v in out.items()}


def evidence(f: dict, res: int, noise: torch.Tensor, tolerance: float = 0.25) -> dict:
    """The numbers `oracle.decide` weighs, from `fit`'s templates (C components; noise (C,) the picture's).

    rho: where the picture lies between the best shape (1) and the runner-up (−1), 0 halfway, on the
    pixels that tell them apart; miss_rho: the same towards the best near miss; rho_sd / miss_sd: their
    spread from the picture's noise; apart: how many pixels the two shapes' sharp drawings differ by;
    outline: error per pixel of the best shape's outline, counting only errors deeper than `tolerance` px
    (so a row that flips along a straight edge is no error); defect: error on pixels more than 1 px (2 px at
    64) from the template, or template pixels that far from the picture — a notch, a bump, a lost arm;
    visible: the share of the best template not hidden by other objects; iou: its soft IoU with the picture.
    """
    t1, t2, tm, a, o = f["t"][:, 0], f["t"][:, 1], f["t"][:, 4], f["a"], 1 - f["o"]   # o: 1 where it counts
    sharp = f["t"][:, 2] >= 0.5
    d = depth(f["top"][:, 0], f["side"] / res, f["xy"] / res, res, f["origin"], a.shape[-1])   # (C, L, L)
    inner, outer = (d >= tolerance).float(), (d > -tolerance).float()
    blurred = f["variant"] == VARIANTS.index("blurred")
    inner[blurred], outer[blurred] = blur(inner[blurred]), blur(outer[blurred])
    # errors next to another object are a blur mixing the two colours, not the shape's
    clear = o * (1 - F.max_pool2d(f["o"][:, None], 3, 1, 1)[:, 0])
    wrong = ((F.relu(inner - a) ** 2 + F.relu(a - outer) ** 2) * clear).flatten(1).sum(1) + f["outside"]
    # another object's pixels are evidence against covering them for an object in front (its best template
    # in full view) and none either way for one behind
    seen = (t1 * o).flatten(1).sum(1)
    front = (seen >= 0.97 * t1.flatten(1).sum(1)).float().view(-1, 1, 1)
    weight = o + (1 - o) * front
    sq = lambda x: (x * weight).flatten(1).sum(1)                                 # noqa: E731
    e1, diff, mdiff = sq((a - t1) ** 2), sq((t1 - t2) ** 2), sq((t1 - tm) ** 2)
    reach = 2 if res >= 64 else 1
    grow = lambda m: F.max_pool2d(m[:, None], 2 * reach + 1, 1, reach)[:, 0]     # noqa: E731
    pic, tem = f["m"], (t1 >= 0.5).float()            # the best template as the picture would show it
    far = (pic * (1 - grow(tem)) + tem * (1 - grow(pic))) * clear
    return {"rho": (sq((a - t2) ** 2) - e1) / diff.clamp(min=1e-6),
            "rho_sd": 2 * noise / diff.sqrt().clamp(min=1e-6),
            # a near miss that differs from the shape mostly where the picture does not show it is no evidence
            "miss_rho": torch.where(mdiff >= 0.5 * ((t1 - tm) ** 2).flatten(1).sum(1),
                                    (sq((a - tm) ** 2) - e1) / mdiff.clamp(min=1e-6), 1.0),
            "miss_sd": 2 * noise / mdiff.sqrt().clamp(min=1e-6),
            "apart": ((f["t"][:, 2] - f["t"][:, 3]) ** 2).flatten(1).sum(1),
            "outline": wrong / (sharp & ~interior(sharp)).flatten(1).sum(1).clamp(min=1),
            "defect": (far * (a - t1).abs()).flatten(1).sum(1),
            "visible": seen / t1.flatten(1).sum(1).clamp(min=1e-6),
            "iou": torch.minimum(t1, a).flatten(1).sum(1) / torch.maximum(t1 * o, a).flatten(1).sum(1).clamp(min=1e-6)}
