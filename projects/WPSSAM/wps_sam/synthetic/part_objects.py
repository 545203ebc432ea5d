"""Procedural object kinds of the synthetic part dataset, each made of semantic parts.

A part's identity comes from its shape and where it sits in the object (a roof is the triangle on
top of the wall, a wheel the circle under the car body), never from its colour: colours and textures
are chosen per instance in :mod:`wps_sam.synthetic.parts`.

Each builder takes a ``numpy.random.Generator`` and returns the object as a list of
:class:`PartPiece` in drawing order (a later piece covers an earlier one), in a local frame with
x to the right and y **down**. :func:`build_object` normalizes that frame so the object's bounding
box is centred on the origin with its longer side equal to 1.
"""

from dataclasses import dataclass, field

import numpy as np

from ..data.synthetic_parts_classes import SYNTHETIC_PART_TABLE

__all__ = [
    "OBJECT_KINDS",
    "PART_CLASSES",
    "PART_CLASS_NAMES",
    "PartPiece",
    "build_object",
]

# (object kind, part) in class-id order. Ids are contiguous 0..C-1; background is C. The table has
# one home, beside the datasets' registration (which must not import the generator).
PART_CLASSES = SYNTHETIC_PART_TABLE
PART_CLASS_NAMES = tuple(f"{kind} {part}" for kind, part in PART_CLASSES)
OBJECT_KINDS = tuple(dict.fromkeys(kind for kind, _ in PART_CLASSES))
_CLASS_ID = {name: i for i, name in enumerate(PART_CLASS_NAMES)}


@dataclass
class PartPiece:
    """One part instance: its class, its outline and optional details drawn on it.

    Attributes:
        class_id: part class id (index into :data:`PART_CLASS_NAMES`).
        polygons: list of (N x 2) float arrays in the object's frame; their union is the part.
        details: list of (N x 2) polygons painted on the part in another colour but keeping the
            part's label (an eye, a hubcap); they are clipped to the part.
        clip_to: an earlier :class:`PartPiece` of the same object, or None. The part is drawn only
            inside that piece's outline (a door inside its wall), so shared edges match exactly.
    """

    class_id: int
    polygons: list
    details: list = field(default_factory=list)
    clip_to: "PartPiece | None" = None


def _u(rng, lo, hi):
    return float(rng.uniform(lo, hi))


def _rect(x0, y0, w, h):
    return np.array([[x0, y0], [x0 + w, y0], [x0 + w, y0 + h], [x0, y0 + h]], dtype=np.float64)


def _ellipse(cx, cy, a, b, n=40, start=0.0, end=2 * np.pi):
    t = np.linspace(start, end, n, endpoint=False)
    return np.stack([cx + a * np.cos(t), cy + b * np.sin(t)], axis=1)


def _circle(cx, cy, r, n=40):
    return _ellipse(cx, cy, r, r, n)


def _rounded_rect(x0, y0, w, h, r, n=6):
    """Rectangle with corner radius ``r`` (clamped to half the shorter side)."""
    r = min(r, w / 2, h / 2)
    corners = ((x0 + w - r, y0 + r, -np.pi / 2), (x0 + w - r, y0 + h - r, 0.0))
    corners += ((x0 + r, y0 + h - r, np.pi / 2), (x0 + r, y0 + r, np.pi))
    pts = []
    for cx, cy, a0 in corners:
        t = np.linspace(a0, a0 + np.pi / 2, n)
        pts.append(np.stack([cx + r * np.cos(t), cy + r * np.sin(t)], axis=1))
    return np.concatenate(pts, axis=0)


def _segment(p0, p1, width):
    """A quad of the given width around the segment p0 -> p1."""
    p0, p1 = np.asarray(p0, dtype=np.float64), np.asarray(p1, dtype=np.float64)
    d = p1 - p0
    n = np.array([-d[1], d[0]]) / max(np.linalg.norm(d), 1e-9) * width / 2
    return np.stack([p0 + n, p1 + n, p1 - n, p0 - n])


def _rotate_about(pts, center, angle):
    c, s = np.cos(angle), np.sin(angle)
    rot = np.array([[c, -s], [s, c]])
    return (pts - center) @ rot.T + center


def _house(rng):
    ids = _CLASS_ID
    w = _u(rng, 0.7, 1.0)
    h = w * _u(rng, 0.5, 0.8)
    over = w * _u(rng, 0.03, 0.12)
    rh = w * _u(rng, 0.3, 0.55)
    left, right = -w / 2 - over, w / 2 + over
    if rng.random() < 0.6:
        apex = w * _u(rng, -0.1, 0.1)
        top = [(left, 0.0), (apex, -rh), (right, 0.0)]
    else:
        tw = w * _u(rng, 0.2, 0.5)
        top = [(left, 0.0), (-tw / 2, -rh), (tw / 2, -rh), (right, 0.0)]
    roof = np.array(top, dtype=np.float64)
    roof[:, 1] += h * _u(rng, 0.03, 0.08)  # the roof overlaps the wall (no sliver between them)
    wall = PartPiece(ids["House Wall"], [_rect(-w / 2, 0.0, w, h)])
    pieces = [wall]
    if rng.random() < 0.75:
        cw = w * _u(rng, 0.08, 0.14)
        cx = float(rng.choice([-1.0, 1.0])) * w * _u(rng, 0.15, 0.33)
        xs, ys = roof[:, 0], roof[:, 1]
        roof_y = min(np.interp(cx - cw / 2, xs, ys), np.interp(cx + cw / 2, xs, ys))
        ctop = roof_y - w * _u(rng, 0.08, 0.2)
        # Drawn before the roof, so only the part above the roof line stays visible.
        pieces.insert(0, PartPiece(ids["House Chimney"], [_rect(cx - cw / 2, ctop, cw, -ctop)]))
    pieces.append(PartPiece(ids["House Roof"], [roof]))
    dw = w * _u(rng, 0.15, 0.25)
    dh = h * _u(rng, 0.4, 0.7)
    margin = 0.08 * w
    dx = _u(rng, -w / 2 + margin + dw / 2, w / 2 - margin - dw / 2)
    # The door reaches below the wall and is clipped to it: its bottom is exactly the wall's.
    bottom = h + 0.05
    if rng.random() < 0.4:  # arched door
        arch = _ellipse(dx, h - dh + dw / 2, dw / 2, dw / 2, n=16, start=np.pi, end=2 * np.pi)
        door = np.concatenate([arch, [[dx + dw / 2, bottom], [dx - dw / 2, bottom]]], axis=0)
    else:
        door = _rect(dx - dw / 2, h - dh, dw, bottom - (h - dh))
    details = []
    if rng.random() < 0.5:
        knob_x = dx + float(rng.choice([-1.0, 1.0])) * dw * 0.3
        details.append(_circle(knob_x, h - dh * 0.45, dw * 0.09, n=12))
    pieces.append(PartPiece(ids["House Door"], [door], details, clip_to=wall))
    return pieces


def _fish(rng):
    ids = _CLASS_ID
    a = _u(rng, 0.45, 0.6)
    b = a * _u(rng, 0.35, 0.6)
    pieces = []
    xt = -a * _u(rng, 0.75, 0.9)
    tl = a * _u(rng, 0.4, 0.7)
    th = b * _u(rng, 0.7, 1.2)
    if rng.random() < 0.4:  # forked tail
        tail = [[xt, 0.0], [xt - tl, -th], [xt - tl * _u(rng, 0.5, 0.7), 0.0], [xt - tl, th]]
    else:
        tail = [[xt, 0.0], [xt - tl, -th], [xt - tl, th]]
    pieces.append(PartPiece(ids["Fish Tail"], [np.array(tail, dtype=np.float64)]))

    def edge_y(x, sign):
        return sign * b * np.sqrt(max(1.0 - (x / a) ** 2, 0.0)) * 0.8

    for sign, prob, scale in ((-1.0, 0.9, 1.0), (1.0, 0.6, 0.6)):  # dorsal, ventral fin
        if rng.random() < prob:
            x1 = a * _u(rng, -0.35, 0.05)
            x2 = x1 + a * _u(rng, 0.3, 0.5) * scale
            apex_x = x1 - a * _u(rng, 0.0, 0.2)
            apex_y = edge_y((x1 + x2) / 2, sign) / 0.8 + sign * b * _u(rng, 0.3, 0.6) * scale
            fin = np.array([[x1, edge_y(x1, sign)], [x2, edge_y(x2, sign)], [apex_x, apex_y]])
            pieces.append(PartPiece(ids["Fish Fin"], [fin]))
    eye = _circle(a * 0.6, -b * 0.25, b * _u(rng, 0.1, 0.18), n=16)
    body = PartPiece(ids["Fish Body"], [_ellipse(0.0, 0.0, a, b, n=48)], [eye])
    pieces.append(body)
    if rng.random() < 0.5:  # pectoral fin on the body
        px, py = a * _u(rng, 0.0, 0.3), b * _u(rng, 0.0, 0.35)
        fl = a * _u(rng, 0.2, 0.35)
        fin = np.array([[px, py], [px - fl, py - fl * 0.35], [px - fl * 0.8, py + fl * 0.35]])
        pieces.append(PartPiece(ids["Fish Fin"], [fin], clip_to=body))
    return pieces


def _car(rng):
    ids = _CLASS_ID
    bh = _u(rng, 0.2, 0.3)
    lower = _rounded_rect(-0.5, 0.0, 1.0, bh, bh * _u(rng, 0.1, 0.4))
    cw = _u(rng, 0.5, 0.7)
    tw = cw * _u(rng, 0.55, 0.8)
    ch = _u(rng, 0.17, 0.27)
    cx = _u(rng, -0.1, 0.1)
    tx = cx + _u(rng, -0.05, 0.05)
    eps = bh * 0.1  # the cabin overlaps the lower body so the two are one region
    cabin = np.array(
        [[cx - cw / 2, eps], [tx - tw / 2, -ch], [tx + tw / 2, -ch], [cx + cw / 2, eps]],
        dtype=np.float64,
    )
    body = PartPiece(ids["Car Body"], [lower, cabin])
    pieces = [body]
    # Windows: the cabin inset by a margin, as one window or split in two by a pillar.
    m = ch * _u(rng, 0.15, 0.25)
    wy0, wy1 = -ch + m, -m * 0.5
    f0, f1 = (wy0 + ch) / ch, (wy1 + ch) / ch  # fraction down the cabin height

    def cabin_x(frac, side):
        bottom = cx + side * cw / 2
        top = tx + side * tw / 2
        return top + (bottom - top) * frac - side * m

    xl0, xl1 = cabin_x(f0, -1), cabin_x(f1, -1)
    xr0, xr1 = cabin_x(f0, 1), cabin_x(f1, 1)
    window = np.array([[xl1, wy1], [xl0, wy0], [xr0, wy0], [xr1, wy1]], dtype=np.float64)
    if rng.random() < 0.5 and (xr0 - xl0) > 6 * m:
        pillar = _u(rng, 0.35, 0.65)
        gap = m * 0.6
        xm0 = xl0 + (xr0 - xl0) * pillar
        xm1 = xl1 + (xr1 - xl1) * pillar
        front = np.array([[xl1, wy1], [xl0, wy0], [xm0 - gap, wy0], [xm1 - gap, wy1]])
        back = np.array([[xm1 + gap, wy1], [xm0 + gap, wy0], [xr0, wy0], [xr1, wy1]])
        pieces.append(PartPiece(ids["Car Window"], [front], clip_to=body))
        pieces.append(PartPiece(ids["Car Window"], [back], clip_to=body))
    else:
        pieces.append(PartPiece(ids["Car Window"], [window], clip_to=body))
    r = _u(rng, 0.1, 0.14)
    wy = bh - r * _u(rng, 0.1, 0.4)
    for side in (-1.0, 1.0):
        wx = side * _u(rng, 0.28, 0.36)
        details = [_circle(wx, wy, r * _u(rng, 0.35, 0.55), n=20)] if rng.random() < 0.6 else []
        pieces.append(PartPiece(ids["Car Wheel"], [_circle(wx, wy, r)], details))
    return pieces


def _tree(rng):
    ids = _CLASS_ID
    tw = _u(rng, 0.1, 0.2)
    th = _u(rng, 0.3, 0.5)
    trunk = _rect(-tw / 2, -0.15, tw, th + 0.15)
    style = int(rng.integers(0, 3))
    if style == 0:  # one ellipse
        ca, cb = _u(rng, 0.3, 0.5), _u(rng, 0.3, 0.5)
        crown = [_ellipse(0.0, -cb * 0.85, ca, cb, n=48)]
    elif style == 1:  # cluster of circles
        rc = _u(rng, 0.3, 0.45)
        crown = [_circle(0.0, -rc * 0.9, rc * 0.8)]
        for _ in range(int(rng.integers(3, 7))):
            ang = _u(rng, 0.0, 2 * np.pi)
            rr = rc * _u(rng, 0.35, 0.6)
            crown.append(_circle(np.cos(ang) * rc * 0.6, -rc * 0.9 + np.sin(ang) * rc * 0.6, rr))
    else:  # conifer: stacked triangles
        n = int(rng.integers(2, 4))
        base_w = _u(rng, 0.5, 0.8)
        tier_h = _u(rng, 0.25, 0.4)
        crown, y = [], 0.05
        for i in range(n):
            wdt = base_w * (1.0 - 0.22 * i)
            crown.append(np.array([[-wdt / 2, y], [wdt / 2, y], [0.0, y - tier_h]]))
            y -= tier_h * 0.55
    return [PartPiece(ids["Tree Trunk"], [trunk]), PartPiece(ids["Tree Crown"], crown)]


def _snowman(rng):
    ids = _CLASS_ID
    r1 = _u(rng, 0.28, 0.34)
    r2 = r1 * _u(rng, 0.65, 0.8)
    y2 = -r1 - r2 * _u(rng, 0.6, 0.85)
    r3 = r2 * _u(rng, 0.6, 0.8)
    y3 = y2 - r2 - r3 * _u(rng, 0.6, 0.85)
    pieces = []
    if rng.random() < 0.85:  # stick arms, drawn first so they come out of the body
        for side in (-1.0, 1.0):
            p0 = np.array([side * r2 * 0.5, y2])
            p1 = np.array([side * (r2 + _u(rng, 0.2, 0.35)), y2 - _u(rng, -0.1, 0.25)])
            width = _u(rng, 0.025, 0.045)
            polys = [_segment(p0, p1, width)]
            if rng.random() < 0.5:  # a twig
                q0 = p0 + (p1 - p0) * _u(rng, 0.6, 0.8)
                q1 = q0 + np.array([side * 0.06, -_u(rng, 0.06, 0.12)])
                polys.append(_segment(q0, q1, width * 0.8))
            pieces.append(PartPiece(ids["Snowman Arm"], polys))
    buttons = []
    if rng.random() < 0.5:
        for k in range(int(rng.integers(2, 4))):
            buttons.append(_circle(0.0, y2 - r2 * 0.4 + k * r2 * 0.4, r2 * 0.08, n=12))
    body = [_circle(0.0, 0.0, r1, n=48), _circle(0.0, y2, r2, n=44)]
    pieces.append(PartPiece(ids["Snowman Body"], body, buttons))
    eyes = [_circle(s * r3 * 0.35, y3 - r3 * 0.2, r3 * 0.1, n=10) for s in (-1.0, 1.0)]
    pieces.append(PartPiece(ids["Snowman Head"], [_circle(0.0, y3, r3, n=40)], eyes))
    if rng.random() < 0.8:
        brim_w = 2 * r3 * _u(rng, 1.0, 1.4)
        brim_h = r3 * _u(rng, 0.15, 0.25)
        brim_y = y3 - r3 * _u(rng, 0.55, 0.8)
        crown_w = 2 * r3 * _u(rng, 0.6, 0.85)
        # The crown covers the head above the brim, so no slivers of head show beside it.
        above = y3 - (brim_y - brim_h)
        if above < r3:
            crown_w = max(crown_w, 2 * np.sqrt(r3**2 - above**2) + 0.3 * r3)
        crown_h = r3 * _u(rng, 0.6, 1.2)
        hat = [
            _rect(-brim_w / 2, brim_y - brim_h, brim_w, brim_h),
            _rect(-crown_w / 2, brim_y - brim_h - crown_h, crown_w, crown_h + brim_h * 0.5),
        ]
        tilt = _u(rng, -0.25, 0.25)
        hat = [_rotate_about(p, np.array([0.0, brim_y]), tilt) for p in hat]
        pieces.append(PartPiece(ids["Snowman Hat"], hat))
    return pieces


def _robot(rng):
    ids = _CLASS_ID
    bw = _u(rng, 0.4, 0.55)
    bh = _u(rng, 0.35, 0.5)
    pieces = []
    aw = _u(rng, 0.07, 0.12)
    al = _u(rng, 0.3, 0.45)
    for side in (-1.0, 1.0):
        shoulder = np.array([side * (bw / 2 + aw * 0.3), -bh / 2 + aw * 0.6])
        arm = _rect(shoulder[0] - aw / 2, shoulder[1] - aw * 0.2, aw, al)
        arm = _rotate_about(arm, shoulder, -side * _u(rng, -0.2, 0.7))
        pieces.append(PartPiece(ids["Robot Arm"], [arm]))
    lw = _u(rng, 0.09, 0.15)
    ll = _u(rng, 0.25, 0.4)
    lx = bw * _u(rng, 0.2, 0.32)
    foot = rng.random() < 0.5
    for side in (-1.0, 1.0):
        polys = [_rect(side * lx - lw / 2, bh / 2 - 0.03, lw, ll + 0.03)]
        if foot:
            fw = lw * _u(rng, 1.4, 1.9)
            polys.append(
                _rect(side * lx - fw / 2 + side * lw * 0.2, bh / 2 + ll - lw * 0.5, fw, lw)
            )
        pieces.append(PartPiece(ids["Robot Leg"], polys))
    body = _rounded_rect(-bw / 2, -bh / 2, bw, bh, min(bw, bh) * _u(rng, 0.0, 0.2))
    body_details = []
    if rng.random() < 0.5:  # a panel on the chest
        pw, ph = bw * _u(rng, 0.3, 0.5), bh * _u(rng, 0.2, 0.35)
        body_details.append(_rect(-pw / 2, -bh / 2 + bh * 0.2, pw, ph))
    pieces.append(PartPiece(ids["Robot Body"], [body], body_details))
    hw = bw * _u(rng, 0.5, 0.85)
    hh = _u(rng, 0.2, 0.3)
    gap = _u(rng, 0.0, 0.06)
    head_y = -bh / 2 - gap - hh
    head = [_rounded_rect(-hw / 2, head_y, hw, hh, hh * _u(rng, 0.0, 0.3))]
    if gap > 0.02:
        head.append(_rect(-hw * 0.15, head_y + hh - 0.01, hw * 0.3, gap + 0.03))  # neck
    if rng.random() < 0.5:
        ax = _u(rng, -0.3, 0.3) * hw
        tip = np.array([ax, head_y - _u(rng, 0.08, 0.15)])
        head.append(_segment(np.array([ax, head_y + 0.01]), tip, 0.02))
        head.append(_circle(tip[0], tip[1], 0.03, n=12))
    eyes = [_circle(s * hw * 0.22, head_y + hh * 0.4, hh * 0.12, n=12) for s in (-1.0, 1.0)]
    pieces.append(PartPiece(ids["Robot Head"], head, eyes))
    return pieces


_BUILDERS = {
    "House": _house,
    "Fish": _fish,
    "Car": _car,
    "Tree": _tree,
    "Snowman": _snowman,
    "Robot": _robot,
}
assert tuple(_BUILDERS) == OBJECT_KINDS


def build_object(rng, kind):
    """Build one object of ``kind`` as a list of :class:`PartPiece` in drawing order.

    The frame is normalized: the bounding box of all part outlines is centred on (0, 0) and its
    longer side is 1 (y points down, the object's "up" is -y).
    """
    if kind not in _BUILDERS:
        raise KeyError(f"Unknown object kind {kind!r}; expected one of {OBJECT_KINDS}")
    pieces = _BUILDERS[kind](rng)
    pts = np.concatenate([p for piece in pieces for p in piece.polygons], axis=0)
    lo, hi = pts.min(axis=0), pts.max(axis=0)
    center, extent = (lo + hi) / 2, float((hi - lo).max())
    for piece in pieces:
        piece.polygons = [(p - center) / extent for p in piece.polygons]
        piece.details = [(p - center) / extent for p in piece.details]
    return pieces
