"""Colours, textures and cluttered backgrounds for the synthetic part dataset.

Everything here draws into ``uint8`` RGB arrays (H x W x 3) with a caller-supplied
``numpy.random.Generator``, so an image is a pure function of its generator's seed. Nothing here
knows about parts: :mod:`wps_sam.synthetic.parts` decides what is drawn where and which label it
gets.
"""

import cv2
import numpy as np

__all__ = [
    "contrasting_color",
    "draw_background",
    "fill_texture",
    "paint",
    "part_palette",
    "random_color",
    "random_distractor_mask",
    "random_texture",
]

# Texture kinds and their probabilities for parts (mostly flat-ish, so parts stay segmentable) and
# for backgrounds/distractors (busier).
_PART_TEXTURES = (("solid", 0.34), ("gradient", 0.2), ("stripes", 0.14), ("noise", 0.14))
_PART_TEXTURES += (("blotches", 0.12), ("checker", 0.06))
_BG_TEXTURES = (("solid", 0.1), ("gradient", 0.2), ("stripes", 0.15), ("noise", 0.15))
_BG_TEXTURES += (("blotches", 0.3), ("checker", 0.1))


def random_color(rng):
    """A uniformly random RGB colour as a float array of shape (3,)."""
    return rng.uniform(0, 255, size=3)


def _color_distance(a, b):
    return float(np.linalg.norm(np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)))


def contrasting_color(rng, others, min_distance=90.0, tries=24):
    """A random colour at least ``min_distance`` (RGB Euclidean) from every colour in ``others``.

    Falls back to the best of ``tries`` candidates when the constraint cannot be met.
    """
    best, best_d = None, -1.0
    for _ in range(tries):
        c = random_color(rng)
        d = min((_color_distance(c, o) for o in others), default=np.inf)
        if d >= min_distance:
            return c
        if d > best_d:
            best, best_d = c, d
    return best


def part_palette(rng, num_parts, p_close=0.15):
    """Base colours for the parts of one object (float array num_parts x 3).

    Usually each part gets a colour far from the colours already chosen for the object, so that
    neighbouring parts are separable by colour; with probability ``p_close`` per part it instead
    gets a colour close to an earlier part's (the hard case: only shape and layout tell them apart).
    """
    colors = []
    for i in range(num_parts):
        if i > 0 and rng.random() < p_close:
            ref = colors[int(rng.integers(0, len(colors)))]
            c = np.clip(ref + rng.normal(0.0, 18.0, size=3), 0, 255)
        else:
            c = contrasting_color(rng, colors)
        colors.append(c)
    return np.stack(colors) if colors else np.zeros((0, 3))


def _choose(rng, table):
    cum = np.cumsum([p for _, p in table])
    return table[
        min(int(np.searchsorted(cum, rng.random() * cum[-1], side="right")), len(cum) - 1)
    ][0]


def random_texture(rng, base_color, background=False):
    """Describe a random texture as a dict (kind + parameters) around ``base_color``.

    Parts get a second colour near the base colour (moderate contrast inside a part); backgrounds
    and distractors get an unrelated second colour (strong clutter).
    """
    kind = _choose(rng, _BG_TEXTURES if background else _PART_TEXTURES)
    base = np.asarray(base_color, dtype=np.float64)
    if background:
        second = random_color(rng)
    else:
        second = np.clip(base + rng.normal(0.0, 40.0, size=3), 0, 255)
    return {
        "kind": kind,
        "c1": base,
        "c2": second,
        "angle": float(rng.uniform(0, np.pi)),
        "period": float(rng.uniform(3.0, 14.0)),
        "duty": float(rng.uniform(0.3, 0.7)),
        "sigma": float(rng.uniform(6.0, 28.0)),
        "cell": int(rng.integers(3, 10)),
        "grid": int(rng.integers(2, 7)),
        "seed": int(rng.integers(0, 2**31 - 1)),
    }


def _ramp(c1, c2):
    """256 x 3 uint8 colour table from ``c1`` (index 0) to ``c2`` (index 255)."""
    t = np.linspace(0.0, 1.0, 256, dtype=np.float32)[:, None]
    c1 = np.asarray(c1, dtype=np.float32)
    return np.clip(c1 + t * (np.asarray(c2, dtype=np.float32) - c1), 0, 255).astype(np.uint8)


def fill_texture(tex, x0, y0, h, w):
    """Render texture ``tex`` over the image window [y0, y0+h) x [x0, x0+w): uint8 h x w x 3.

    Coordinates are image coordinates, so stripes and checkers line up across a part's pieces. Each
    kind computes a per-pixel index into a 256-entry colour table (fast on CPU).
    """
    kind = tex["kind"]
    c1 = np.asarray(tex["c1"], dtype=np.float32)
    if kind == "solid":
        return np.broadcast_to(np.clip(c1, 0, 255).astype(np.uint8), (h, w, 3))
    xs = np.arange(x0, x0 + w, dtype=np.float32)[None, :]
    ys = np.arange(y0, y0 + h, dtype=np.float32)[:, None]
    if kind == "noise":
        # Gray noise of std sigma around c1; the table spans +-3 sigma.
        noise_rng = np.random.default_rng(tex["seed"])
        t = noise_rng.standard_normal((h, w), dtype=np.float32) * np.float32(255.0 / 6.0) + 127.5
        spread = np.float32(3.0 * tex["sigma"])
        table = _ramp(c1 - spread, c1 + spread)
    else:
        if kind == "checker":
            s = tex["cell"]
            t = ((xs // s + ys // s) % 2) * np.float32(255.0)
        elif kind in ("gradient", "stripes"):
            proj = np.float32(np.cos(tex["angle"])) * xs + np.float32(np.sin(tex["angle"])) * ys
            if kind == "gradient":
                lo = float(proj.min())
                t = (proj - lo) * np.float32(255.0 / max(float(proj.max()) - lo, 1.0))
            else:
                t = ((proj / np.float32(tex["period"])) % 1.0 < tex["duty"]) * np.float32(255.0)
        elif kind == "blotches":
            noise_rng = np.random.default_rng(tex["seed"])
            g = tex["grid"]
            field = noise_rng.uniform(0.0, 255.0, size=(g, g)).astype(np.float32)
            t = cv2.resize(field, (max(w, 1), max(h, 1)), interpolation=cv2.INTER_CUBIC)
        else:
            raise ValueError(f"Unknown texture kind {kind!r}")
        table = _ramp(c1, tex["c2"])
    index = np.clip(np.broadcast_to(t, (h, w)), 0, 255).astype(np.uint8)
    return table[index]


def _random_blob_polygon(rng, cx, cy, radius):
    """A random star-shaped polygon (N x 2 float) around (cx, cy)."""
    n = int(rng.integers(3, 10))
    angles = np.sort(rng.uniform(0, 2 * np.pi, size=n))
    radii = radius * rng.uniform(0.4, 1.0, size=n)
    return np.stack([cx + radii * np.cos(angles), cy + radii * np.sin(angles)], axis=1)


def random_distractor_mask(rng, height, width, min_frac=0.04, max_frac=0.25):
    """A mask (uint8 H x W, 1 inside) of a random blob/ellipse/ring that is not any part class."""
    mask = np.zeros((height, width), dtype=np.uint8)
    size = min(height, width)
    radius = size * rng.uniform(min_frac, max_frac)
    cx, cy = rng.uniform(0, width), rng.uniform(0, height)
    kind = int(rng.integers(0, 4))
    if kind == 0:
        pts = _random_blob_polygon(rng, cx, cy, radius)
        cv2.fillPoly(mask, [np.round(pts * 16).astype(np.int32)], 1, cv2.LINE_8, 4)
    elif kind == 1:
        axes = (int(radius), int(radius * rng.uniform(0.3, 1.0)))
        cv2.ellipse(mask, (int(cx), int(cy)), axes, float(rng.uniform(0, 180)), 0, 360, 1, -1)
    elif kind == 2:
        thickness = max(2, int(radius * rng.uniform(0.15, 0.4)))
        cv2.circle(mask, (int(cx), int(cy)), max(int(radius), thickness), 1, thickness)
    else:
        pts = rng.uniform(-radius, radius, size=(int(rng.integers(3, 6)), 2)) + [cx, cy]
        thickness = max(2, int(radius * rng.uniform(0.1, 0.3)))
        cv2.polylines(mask, [np.round(pts).astype(np.int32)], False, 1, thickness)
    return mask


def paint(image, mask, tex, offset=(0, 0)):
    """Paint texture ``tex`` into ``image`` (H x W x 3 uint8, in place) where ``mask`` is nonzero.

    ``mask`` covers the image window whose top-left pixel is ``offset`` = (y, x) (the whole image by
    default). Returns ``(y0, y1, x0, x1, box_mask)``: the painted pixels' bounding box in image
    coordinates and the boolean mask inside it; None when the mask is empty.
    """
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask.any(axis=0))
    r0, r1, c0, c1 = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
    box_mask = mask[r0:r1, c0:c1].astype(bool)
    y0, x0 = r0 + int(offset[0]), c0 + int(offset[1])
    y1, x1 = y0 + (r1 - r0), x0 + (c1 - c0)
    patch = fill_texture(tex, x0, y0, y1 - y0, x1 - x0)
    np.copyto(image[y0:y1, x0:x1], patch, where=box_mask[..., None])
    return y0, y1, x0, x1, box_mask


def draw_background(rng, height, width):
    """A cluttered background: a textured base, random lines and random distractor blobs.

    Returns uint8 H x W x 3 RGB. None of it is a part: the label map stays background here.
    """
    base = fill_texture(
        random_texture(rng, random_color(rng), background=True), 0, 0, height, width
    )
    image = np.ascontiguousarray(base)
    size = min(height, width)
    for _ in range(int(rng.integers(2, 12))):
        p0 = (int(rng.integers(0, width)), int(rng.integers(0, height)))
        p1 = (int(rng.integers(0, width)), int(rng.integers(0, height)))
        color = tuple(float(v) for v in random_color(rng))
        thickness = int(rng.integers(1, max(2, size // 40) + 1))
        cv2.line(image, p0, p1, color, thickness, cv2.LINE_AA)
    for _ in range(int(rng.integers(1, 7))):
        mask = random_distractor_mask(rng, height, width)
        paint(image, mask, random_texture(rng, random_color(rng), background=True))
    return image
