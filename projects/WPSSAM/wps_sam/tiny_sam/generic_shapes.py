"""Generic random shapes: the class-agnostic pre-training data of the project's tiny SAM.

Each image holds 1-5 *objects* on a cluttered, textured background. An object is either one
random shape (ellipse, rotated rectangle, polygon, star, smooth blob, ring, crescent, thin bar,
thick curve) or a *composite*: a body with 1-4 attached or nested shapes of other colours, whose
every component is a separate target (and, sometimes, the whole composite as well). Composites
teach the segmenter to cut out one region that touches other regions, which is what part
segmentation asks of it. Shapes occlude each other; every target mask is the *visible* region.

Nothing here knows about object parts or about the synthetic part dataset: shapes, colours,
textures and layouts are drawn independently of any semantics.

A sample is a pure function of ``(seed, index)`` (see :func:`generate_generic_sample`), so any
subset of a stream can be regenerated in any order.
"""

import math
from dataclasses import dataclass
from typing import Dict, List, Tuple

import cv2
import numpy as np

__all__ = ["GenericShapesConfig", "generate_generic_sample", "SHAPE_KINDS"]

SHAPE_KINDS = (
    "ellipse",
    "rectangle",
    "polygon",
    "star",
    "blob",
    "ring",
    "crescent",
    "bar",
    "curve",
)
# Relative frequency of each kind for stand-alone shapes.
_KIND_WEIGHTS = np.array([3.0, 3.0, 2.5, 1.0, 2.5, 1.0, 1.0, 1.2, 0.8])
_BODY_KINDS = ("ellipse", "rectangle", "polygon", "blob")


@dataclass
class GenericShapesConfig:
    """Sizes and probabilities of the generic-shape generator.

    Attributes:
        image_size: longest side of the generated images (SAM's input size).
        min_objects, max_objects: number of objects per image (each a shape or a composite).
        composite_prob: probability that an object is a composite of touching shapes.
        small_shape_prob: probability that an object's radius is below 5% of ``image_size``.
        union_target_prob: probability that a composite's union is a target too.
        non_square_prob: probability that the shorter side is shorter than ``image_size``.
        min_visible_area: visible pixels a target needs; fewer means it is dropped.
        min_visible_fraction: visible fraction of its drawn area a target needs.
        max_clutter_lines, max_clutter_shapes: background clutter (never targets).
    """

    image_size: int = 256
    min_objects: int = 1
    max_objects: int = 5
    composite_prob: float = 0.4
    small_shape_prob: float = 0.3
    union_target_prob: float = 0.2
    non_square_prob: float = 0.25
    min_visible_area: int = 12
    min_visible_fraction: float = 0.15
    max_clutter_lines: int = 6
    max_clutter_shapes: int = 4


# -------------------------------------------------------------------------------------------------
# Colours and textures
# -------------------------------------------------------------------------------------------------
def _random_colour(rng: np.random.Generator, near=None, spread: float = 30.0) -> np.ndarray:
    if near is None:
        return rng.uniform(0, 255, size=3).astype(np.float32)
    return np.clip(near + rng.normal(0, spread, size=3), 0, 255).astype(np.float32)


def _texture(rng: np.random.Generator, h: int, w: int, base: np.ndarray) -> np.ndarray:
    """An ``h x w x 3`` float32 texture around colour ``base``: solid, noisy, gradient, stripes
    or checker, with a second colour drawn at random."""
    # Mostly flat colours: a 4-block ViT trained for minutes on CPU learns to group textured
    # regions much more slowly.
    kind = rng.choice(
        ["solid", "noise", "gradient", "stripes", "checker"], p=[0.6, 0.2, 0.12, 0.05, 0.03]
    )
    if kind == "solid":
        return np.broadcast_to(base, (h, w, 3)).astype(np.float32)
    if kind == "noise":
        sigma = rng.uniform(3, 15)
        return base + rng.normal(0, sigma, size=(h, w, 1 if rng.random() < 0.5 else 3)).astype(
            np.float32
        )
    second = _random_colour(rng, near=base if rng.random() < 0.6 else None, spread=60.0)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    angle = rng.uniform(0, math.pi)
    proj = xx * math.cos(angle) + yy * math.sin(angle)
    if kind == "gradient":
        t = (proj - proj.min()) / max(float(np.ptp(proj)), 1.0)
        return base + t[..., None] * (second - base)
    if kind == "stripes":
        period = rng.uniform(3, 16)
        t = (np.floor(proj / period) % 2)[..., None]
        return base + t * (second - base)
    cell = int(rng.integers(3, 13))
    t = (((yy // cell) + (xx // cell)) % 2)[..., None]
    return base + t * (second - base)


# -------------------------------------------------------------------------------------------------
# Shapes, drawn as uint8 masks on a canvas of shape (h, w)
# -------------------------------------------------------------------------------------------------
def _log_uniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(math.exp(rng.uniform(math.log(lo), math.log(hi))))


def _poly(mask: np.ndarray, pts: np.ndarray) -> np.ndarray:
    cv2.fillPoly(mask, [np.round(pts).astype(np.int32)], 1)
    return mask


def _radial_polygon(center, radii: np.ndarray, angles: np.ndarray, rot: float) -> np.ndarray:
    a = angles + rot
    return np.stack([center[0] + radii * np.cos(a), center[1] + radii * np.sin(a)], axis=1)


def _draw_shape(
    rng: np.random.Generator, kind: str, shape_hw: Tuple[int, int], center, radius: float
) -> np.ndarray:
    """Draw one shape of ``kind`` centred at ``center`` (x, y) with size ``radius`` (pixels)."""
    h, w = shape_hw
    mask = np.zeros((h, w), np.uint8)
    cx, cy = float(center[0]), float(center[1])
    rot = rng.uniform(0, 2 * math.pi)
    c = (int(round(cx)), int(round(cy)))
    if kind == "ellipse":
        aspect = rng.uniform(0.3, 1.0)
        axes = (max(1, int(round(radius))), max(1, int(round(radius * aspect))))
        cv2.ellipse(mask, c, axes, math.degrees(rot), 0, 360, 1, -1)
    elif kind == "rectangle" or kind == "bar":
        if kind == "bar":
            length, width = radius * 2, rng.uniform(2.0, max(2.5, radius * 0.25))
        else:
            length, width = radius * 2, radius * 2 * rng.uniform(0.25, 1.0)
        box = cv2.boxPoints(((cx, cy), (length, width), math.degrees(rot)))
        _poly(mask, box)
    elif kind == "polygon":
        n = int(rng.integers(3, 9))
        angles = np.sort(rng.uniform(0, 2 * math.pi, n))
        radii = radius * rng.uniform(0.55, 1.0, n)
        _poly(mask, _radial_polygon((cx, cy), radii, angles, rot))
    elif kind == "star":
        n = int(rng.integers(4, 8))
        angles = np.arange(2 * n) * math.pi / n
        radii = np.where(np.arange(2 * n) % 2 == 0, radius, radius * rng.uniform(0.35, 0.65))
        _poly(mask, _radial_polygon((cx, cy), radii, angles, rot))
    elif kind == "blob":
        angles = np.linspace(0, 2 * math.pi, 48, endpoint=False)
        r = np.ones_like(angles)
        for k in range(1, 5):
            r += rng.uniform(0, 0.35 / k) * np.sin(k * angles + rng.uniform(0, 2 * math.pi))
        aspect = rng.uniform(0.5, 1.0)
        pts = _radial_polygon((0, 0), radius * r / r.max(), angles, 0)
        pts[:, 1] *= aspect
        cr, sr = math.cos(rot), math.sin(rot)
        pts = pts @ np.array([[cr, sr], [-sr, cr]]) + np.array([cx, cy])
        _poly(mask, pts)
    elif kind == "ring":
        aspect = rng.uniform(0.5, 1.0)
        thickness = max(2, int(round(radius * rng.uniform(0.15, 0.45))))
        axes = (max(2, int(round(radius))), max(2, int(round(radius * aspect))))
        cv2.ellipse(mask, c, axes, math.degrees(rot), 0, 360, 1, thickness)
    elif kind == "crescent":
        r = max(2, int(round(radius)))
        cv2.circle(mask, c, r, 1, -1)
        off = radius * rng.uniform(0.3, 0.8)
        c2 = (int(round(cx + off * math.cos(rot))), int(round(cy + off * math.sin(rot))))
        cv2.circle(mask, c2, max(1, int(round(radius * rng.uniform(0.7, 1.0)))), 0, -1)
    elif kind == "curve":
        n = 5
        t = np.linspace(-1, 1, n)
        bend = rng.uniform(-0.8, 0.8)
        pts = np.stack([t * radius, bend * radius * (1 - t**2)], axis=1)
        cr, sr = math.cos(rot), math.sin(rot)
        pts = pts @ np.array([[cr, sr], [-sr, cr]]) + np.array([cx, cy])
        thickness = int(rng.integers(2, max(3, int(radius * 0.3)) + 1))
        cv2.polylines(mask, [np.round(pts).astype(np.int32)], False, 1, thickness)
    else:
        raise ValueError(f"Unknown shape kind {kind!r}; expected one of {SHAPE_KINDS}")
    return mask


def _ray_exit(mask: np.ndarray, center, angle: float, max_r: float) -> Tuple[float, float]:
    """The last point of ``mask`` on the ray from ``center`` at ``angle`` (x, y)."""
    h, w = mask.shape
    last = (float(center[0]), float(center[1]))
    for r in np.arange(0, max_r * 1.5 + 2, 1.0):
        x, y = center[0] + r * math.cos(angle), center[1] + r * math.sin(angle)
        xi, yi = int(round(x)), int(round(y))
        if 0 <= xi < w and 0 <= yi < h and mask[yi, xi]:
            last = (x, y)
    return last


def _composite(
    rng: np.random.Generator, shape_hw: Tuple[int, int], center, radius: float
) -> List[np.ndarray]:
    """A body and 1-4 shapes attached to its boundary or nested in it; masks in drawing order."""
    h, w = shape_hw
    body = _draw_shape(rng, str(rng.choice(_BODY_KINDS)), shape_hw, center, radius)
    if not body.any():
        return [body]
    below, above = [], []
    for _ in range(int(rng.integers(1, 5))):
        angle = rng.uniform(0, 2 * math.pi)
        style = rng.choice(["limb", "head", "inner", "cap"], p=[0.35, 0.3, 0.15, 0.2])
        if style == "inner":
            ys, xs = np.nonzero(body)
            i = int(rng.integers(len(xs)))
            part = _draw_shape(
                rng,
                str(rng.choice(["ellipse", "rectangle", "polygon", "blob"])),
                shape_hw,
                (xs[i], ys[i]),
                max(2.0, radius * rng.uniform(0.12, 0.4)),
            )
            above.append(part & body)
            continue
        ex, ey = _ray_exit(body, center, angle, radius)
        if style == "limb":
            length = radius * rng.uniform(0.5, 1.3)
            width = max(2.0, radius * rng.uniform(0.1, 0.35))
            tilt = angle + rng.uniform(-0.5, 0.5)
            inset = length * rng.uniform(0.1, 0.3)
            mx = ex + (length / 2 - inset) * math.cos(tilt)
            my = ey + (length / 2 - inset) * math.sin(tilt)
            part = np.zeros((h, w), np.uint8)
            _poly(part, cv2.boxPoints(((mx, my), (length, width), math.degrees(tilt))))
        else:
            size = max(2.0, radius * rng.uniform(0.2, 0.6))
            push = size * rng.uniform(0.3, 0.9)
            mx, my = ex + push * math.cos(angle), ey + push * math.sin(angle)
            kind = "ellipse" if style == "head" else str(rng.choice(["rectangle", "polygon"]))
            part = _draw_shape(rng, kind, shape_hw, (mx, my), size)
        (above if rng.random() < 0.5 else below).append(part)
    return below + [body] + above


# -------------------------------------------------------------------------------------------------
# Images
# -------------------------------------------------------------------------------------------------
def _background(rng: np.random.Generator, h: int, w: int, cfg: GenericShapesConfig) -> np.ndarray:
    bg_colour = _random_colour(rng)
    image = _texture(rng, h, w, bg_colour).copy()
    for _ in range(int(rng.integers(0, cfg.max_clutter_lines + 1))):
        p1 = (int(rng.integers(0, w)), int(rng.integers(0, h)))
        p2 = (int(rng.integers(0, w)), int(rng.integers(0, h)))
        colour = tuple(float(v) for v in _random_colour(rng, near=bg_colour, spread=35))
        cv2.line(image, p1, p2, colour, int(rng.integers(1, 4)), cv2.LINE_AA)
    for _ in range(int(rng.integers(0, cfg.max_clutter_shapes + 1))):
        kind = str(rng.choice(["ellipse", "polygon", "blob", "rectangle"]))
        m = _draw_shape(
            rng, kind, (h, w), (rng.uniform(0, w), rng.uniform(0, h)), rng.uniform(3, 40)
        )
        colour = _random_colour(rng, near=bg_colour, spread=20)
        image[m.astype(bool)] = colour
    return image


def generate_generic_sample(
    seed: int, index: int, cfg: GenericShapesConfig = GenericShapesConfig()
) -> Dict[str, object]:
    """Draw the ``index``-th image of the generic-shape stream of ``seed``.

    Returns a dict with:
        "image": uint8 array ``H x W x 3`` (RGB); ``max(H, W) == cfg.image_size``.
        "masks": bool array ``K x H x W``, the visible region of each target (K >= 1).
        "boxes": float32 array ``K x 4``, XYXY boxes of the masks (x1, y1 exclusive, in pixels).
        "is_union": bool array ``K``, True for targets that are a whole composite object.
        "num_dropped": number of shapes dropped as targets because they are (nearly) hidden or
            out of the frame (too few visible pixels or too small a visible fraction).
    The same ``(seed, index, cfg)`` gives the same sample.
    """
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), int(index)]))
    s = cfg.image_size
    h = w = s
    if rng.random() < cfg.non_square_prob:
        short = int(rng.integers(s // 2, s))
        if rng.random() < 0.5:
            h = short
        else:
            w = short
    image = _background(rng, h, w, cfg)

    # Objects: lists of component masks; composites may add their union as a target.
    objects: List[Tuple[List[np.ndarray], bool]] = []
    for _ in range(int(rng.integers(cfg.min_objects, cfg.max_objects + 1))):
        # Mostly medium and large shapes, a fair share of small ones (radius in pixels).
        if rng.random() < cfg.small_shape_prob:
            radius = _log_uniform(rng, 3.0, 0.05 * s)
        else:
            radius = _log_uniform(rng, 0.05 * s, 0.42 * s)
        center = (rng.uniform(-0.05, 1.05) * w, rng.uniform(-0.05, 1.05) * h)
        if rng.random() < cfg.composite_prob and radius >= 8:
            objects.append((_composite(rng, (h, w), center, radius), True))
        else:
            kind = str(rng.choice(SHAPE_KINDS, p=_KIND_WEIGHTS / _KIND_WEIGHTS.sum()))
            objects.append(([_draw_shape(rng, kind, (h, w), center, radius)], False))
    if rng.random() < 0.5:  # big objects first, so that small ones stay visible
        objects.sort(key=lambda o: -int(sum(int(m.sum()) for m in o[0])))

    # Paint; `owner` keeps which layer is visible at each pixel.
    owner = np.full((h, w), -1, np.int32)
    layers: List[np.ndarray] = []
    groups: List[Tuple[List[int], bool]] = []
    bg_mean = image.reshape(-1, 3).mean(0)
    for components, is_composite in objects:
        ids = []
        for m in components:
            m = m.astype(bool)
            if not m.any():
                continue
            ys, xs = np.nonzero(m)
            y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
            near = bg_mean if rng.random() < 0.1 else None  # some low-contrast shapes
            tex = _texture(rng, y1 - y0, x1 - x0, _random_colour(rng, near=near, spread=25))
            sub = m[y0:y1, x0:x1]
            image[y0:y1, x0:x1][sub] = tex[sub]
            owner[m] = len(layers)
            ids.append(len(layers))
            layers.append(m)
        if ids:
            groups.append((ids, is_composite))

    masks, is_union = [], []
    num_dropped = 0

    def _keep(visible: np.ndarray, drawn: int) -> bool:
        area = int(visible.sum())
        return area >= cfg.min_visible_area and area >= cfg.min_visible_fraction * drawn

    for ids, is_composite in groups:
        visibles = []
        for i in ids:
            visible = owner == i
            visibles.append(visible)
            if _keep(visible, int(layers[i].sum())):
                masks.append(visible)
                is_union.append(False)
            else:
                num_dropped += 1
        if is_composite and len(ids) > 1 and rng.random() < cfg.union_target_prob:
            union = np.logical_or.reduce(visibles)
            drawn = int(np.logical_or.reduce([layers[i] for i in ids]).sum())
            if _keep(union, drawn):
                masks.append(union)
                is_union.append(True)

    # Photometric noise (targets are unaffected).
    if rng.random() < 0.3:
        image = cv2.GaussianBlur(image, (3, 3), rng.uniform(0.3, 1.0))
    if rng.random() < 0.5:
        image = image + rng.normal(0, rng.uniform(1, 8), size=image.shape).astype(np.float32)
    image = np.clip(image, 0, 255).astype(np.uint8)

    if not masks:  # every shape hidden or out of frame: fall back to the largest visible layer
        areas = [int((owner == i).sum()) for i in range(len(layers))]
        if not areas or max(areas) == 0:
            return generate_generic_sample(seed, index + 1_000_003, cfg)
        masks, is_union = [owner == int(np.argmax(areas))], [False]
    masks_arr = np.stack(masks)
    boxes = np.zeros((len(masks), 4), np.float32)
    for k, m in enumerate(masks_arr):
        ys, xs = np.nonzero(m)
        boxes[k] = (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
    return {
        "image": image,
        "masks": masks_arr,
        "boxes": boxes,
        "is_union": np.array(is_union, bool),
        "num_dropped": num_dropped,
    }
