"""Rasterise shapes-world scenes into images.

Lesson 01 explains it. A pixel belongs to a shape when its *centre* lies inside
the shape (no anti-aliasing), so a clean render holds only palette colours and
black. Everything is batched tensor code: one call renders thousands of scenes.
"""
from __future__ import annotations

import torch
import torchvision.transforms.functional as TF

from minidalle.world.scenes import BACKGROUND, COLOURS, COLOUR_NAMES, MAX_OBJECTS, RESOLUTIONS, SHAPES, SIZES, SIZE_NAMES, SceneArrays


_SIZE_T = torch.tensor(list(SIZES.values()), dtype=torch.float64)
PALETTE = torch.tensor(list(COLOURS.values()), dtype=torch.float32)   # (8, 3)


def inside(s: int, ax: torch.Tensor, ay: torch.Tensor, dy: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    """Is a pixel inside shape number `s`? Offsets from the centre (|dx|, |dy| and dy).

    ax: (M, 1, W), ay and dy: (M, H, 1), r: (M, 1, 1) half the box side. The shapes
    are, in order, circle, square, triangle (apex up), diamond, cross (arms a quarter of
    the side thick, so that it stays unlike a diamond when small).
    """
    if s == 0:
        return ax**2 + ay**2 <= r**2
    in_box = (ax <= r) & (ay <= r)
    if s == 1:
        return in_box
    if s == 2:
        return in_box & (2 * ax - dy <= r)
    if s == 3:
        return ax + ay <= r
    return in_box & ((ax <= r / 4) | (ay <= r / 4))


def masks(shape: torch.Tensor, size: torch.Tensor, xy: torch.Tensor, res: int,
          origin: torch.Tensor | None = None, window: int | None = None) -> torch.Tensor:
    """Boolean masks (..., res, res) of objects with shape/size indices and centres xy (..., 2).

    With `origin` (..., 2) (top-left pixel, x then y) and `window`, only that
    window × window crop of each object's mask is drawn.
    """
    return side_masks(shape, _SIZE_T[size.reshape(-1)].view(size.shape), xy, res, origin, window)


def side_masks(shape: torch.Tensor, side: torch.Tensor, xy: torch.Tensor, res: int,
               origin: torch.Tensor | None = None, window: int | None = None) -> torch.Tensor:
    """`masks` for any box side (..., in image widths), not only the world's two sizes: the oracle's templates."""
    lead = shape.shape
    shape, side, xy = shape.reshape(-1), side.reshape(-1), xy.reshape(-1, 2).float()
    w = window or res
    c = torch.arange(w, dtype=torch.float32) + 0.5
    if origin is None:
        cx = cy = (c / res).view(1, w)
    else:
        o = origin.reshape(-1, 2).float()
        cx, cy = (c + o[:, :1]) / res, (c + o[:, 1:]) / res         # (M, w) pixel centres
    dx = cx[:, None, :] - xy[:, 0, None, None]                     # (M, 1, W)
    dy = cy[:, :, None] - xy[:, 1, None, None]                     # (M, H, 1)
    r = (side.float() / 2)[:, None, None]                          # (M, 1, 1)
    out = torch.empty(len(shape), w, w, dtype=torch.bool)
    for s in range(5):                                            # one test per object
        idx = torch.nonzero(shape == s).squeeze(1)
        if len(idx):
            ix = idx if len(dx) > 1 else torch.zeros_like(idx)
            out[idx] = inside(s, dx[ix].abs(), dy[ix].abs(), dy[ix], r[idx])
    return out.view(*lead, w, w)


def depth(shape: torch.Tensor, side: torch.Tensor, xy: torch.Tensor, res: int, origin: torch.Tensor,
          window: int) -> torch.Tensor:
    """How far inside its shape each pixel centre lies, in pixels (negative outside): (M, window, window).

    shape (M,), side (M,) and xy (M, 2) in image widths, origin (M, 2) the window's top-left pixel.
    `depth ≥ 0` is `side_masks` up to rounding; the oracle uses it to tell a defect (deep) from a
    pixel that flips along an outline (shallow).
    """
    c = torch.arange(window, dtype=torch.float32) + 0.5
    o = origin.float()
    dx = ((c + o[:, :1]) - xy[:, :1] * res)[:, None, :]                    # (M, 1, W) pixels
    dy = ((c + o[:, 1:]) - xy[:, 1:] * res)[:, :, None]                    # (M, H, 1)
    ax, ay = dx.abs(), dy.abs()
    r = (side.float() * res / 2)[:, None, None]
    box = r - torch.maximum(ax, ay)
    d = torch.stack([r - (ax**2 + ay**2).sqrt(), box,
                     torch.minimum(box, (r + dy - 2 * ax) / 5**0.5),
                     (r - ax - ay) / 2**0.5,
                     torch.minimum(box, torch.maximum(r / 4 - ax, r / 4 - ay))], 1)   # (M, 5, H, W)
    return d[torch.arange(len(shape)), shape]


def render(scenes: SceneArrays, res: int = 32) -> torch.Tensor:
    """Render a batch of scenes to float images (N, 3, res, res) in [0, 1]."""
    if res not in RESOLUTIONS:
        raise ValueError(f"resolution {res} is not supported; use one of {RESOLUTIONS}")
    N = len(scenes)
    img = torch.tensor(BACKGROUND, dtype=torch.float32).view(1, 3, 1, 1).repeat(N, 1, res, res)
    m = masks(scenes.shape, scenes.size, scenes.xy, res)                   # (N, 4, res, res)
    m &= (torch.arange(MAX_OBJECTS) < scenes.n[:, None])[..., None, None]
    col = PALETTE[scenes.colour]                                           # (N, 4, 3)
    for k in range(MAX_OBJECTS):                                           # drawing order = z
        img = torch.where(m[:, k, None], col[:, k, :, None, None], img)
    return img


def render_scenes(scenes, res: int = 32) -> torch.Tensor:
    """Render a list of `Scene` objects (the slow, friendly path)."""

    N = len(scenes)
    t = {k: torch.zeros(N, MAX_OBJECTS, dtype=torch.long) for k in ("shape", "colour", "size")}
    xy = torch.zeros(N, MAX_OBJECTS, 2, dtype=torch.float64)
    n = torch.zeros(N, dtype=torch.long)
    for i, s in enumerate(scenes):
        if len(s.objects) > MAX_OBJECTS:
            raise ValueError(f"a scene holds at most {MAX_OBJECTS} objects, got {len(s.objects)}")
        objs = sorted(s.objects, key=lambda o: o.z)
        n[i] = len(objs)
        for k, o in enumerate(objs):
            t["shape"][i, k] = SHAPES.index(o.shape)
            t["colour"][i, k] = COLOUR_NAMES.index(o.colour)
            t["size"][i, k] = SIZE_NAMES.index(o.size)
            xy[i, k] = torch.tensor([o.x, o.y])
    return render(SceneArrays(t["shape"], t["colour"], t["size"], xy, n), res)


def degrade(img: torch.Tensor, noise: float = 0.1, blur: bool = True, seed: int = 0) -> torch.Tensor:
    """The oracle's stress test: a 3×3 Gaussian blur (σ = 1 px), then Gaussian noise, clamped to [0, 1]."""
    g = torch.Generator().manual_seed(seed)
    if blur:
        img = TF.gaussian_blur(img, kernel_size=3, sigma=1.0)
    img = img + noise * torch.randn(img.shape, generator=g)
    return img.clamp(0, 1)
