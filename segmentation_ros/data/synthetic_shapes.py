"""Objects of the synthetic world: the parts they are built from and the moving objects (person,
car, bicycle); static ones are in `synthetic_props`. 3D polygons and strokes in base_link metres.

Each object stands on the ground plane z = 0 at (x, y) and draws itself into a `Canvas` as parts
that all carry the object's raw label. Flat objects (person, cone body, tree crown) are billboards:
vertical planes through (x, y) facing the camera; cars and boxes are convex hexahedra with
back-face culling, bicycles are strokes in the vertical plane of their heading.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from segmentation_ros.data.synthetic_render import (
    TEX_FLAT,
    Canvas,
    circle,
)

# hexahedron faces (vertex indices 0-3 bottom ccw seen from above, 4-7 the top above them)
_FACES = ((0, 3, 2, 1), (4, 5, 6, 7), (0, 1, 5, 4), (1, 2, 6, 5), (2, 3, 7, 6), (3, 0, 4, 7))
UP = np.array([0.0, 0.0, 1.0])


@dataclass(frozen=True)
class Light:
    """Directional light: `direction` unit vector towards the light (base_link)."""

    direction: np.ndarray
    ambient: float
    diffuse: float

    def shade(self, color, normal: np.ndarray) -> np.ndarray:
        k = self.ambient + self.diffuse * max(0.0, float(np.dot(normal, self.direction)))
        return np.asarray(color, dtype=np.float64) * k


@dataclass
class Thing:
    """An object placed on the ground.

    kind: class name; x, y: ground contact point (base_link, m); yaw: heading (rad, from x
    towards y); radius: footprint radius used for placement (m); params: shape parameters drawn
    when the object was placed.
    """

    kind: str
    x: float
    y: float
    yaw: float
    radius: float
    params: dict = field(default_factory=dict)

    @property
    def distance(self) -> float:
        return math.hypot(self.x, self.y)


def billboard(x: float, y: float):
    """(origin, right) of a camera-facing vertical plane through ground point (x, y)."""
    n = math.hypot(x, y)
    right = np.array([y / n, -x / n, 0.0])
    return np.array([x, y, 0.0]), right


def bb_points(origin, right, sz: np.ndarray) -> np.ndarray:
    """[N, 2] (s, z) billboard coordinates -> [N, 3] base_link."""
    return origin + sz[:, :1] * right + sz[:, 1:2] * UP


def toward_camera(x: float, y: float) -> np.ndarray:
    n = math.hypot(x, y)
    return np.array([-x / n, -y / n, 0.0])


def hexahedron(x, y, yaw, bottom: tuple, top: tuple, z0: float, z1: float) -> np.ndarray:
    """[8, 3] vertices; bottom/top = (a0, a1, b0, b1) extents along heading a and left b."""
    f = np.array([math.cos(yaw), math.sin(yaw), 0.0])
    left = np.array([-f[1], f[0], 0.0])
    o = np.array([x, y, 0.0])
    out = []
    for (a0, a1, b0, b1), z in ((bottom, z0), (top, z1)):
        for a, b in ((a0, b0), (a1, b0), (a1, b1), (a0, b1)):
            out.append(o + a * f + b * left + z * UP)
    return np.array(out)


def draw_hexahedron(canvas, verts, colors, label, light, texture=TEX_FLAT, amp=0.04):
    """Draw the camera-facing faces of a convex hexahedron.

    colors: one base colour, or six (per face in `_FACES` order). Returns {face index: (part,
    face vertices, outward normal)} of the faces drawn.
    """
    center = verts.mean(0)
    drawn = {}
    for i, face in enumerate(_FACES):
        p = verts[list(face)]
        n = np.cross(p[1] - p[0], p[2] - p[0])
        norm = np.linalg.norm(n)
        if norm < 1e-12:
            continue
        n = n / norm
        fc = p.mean(0)
        if np.dot(n, fc - center) < 0:
            n = -n
        if not canvas.facing(fc, n):
            continue
        base = colors if np.ndim(colors) == 1 else colors[i]
        part = canvas.add_part(light.shade(base, n), label, texture, amp)
        if canvas.polygon(p, part):
            drawn[i] = (part, p, n)
    return drawn


def shrink(p: np.ndarray, k: float) -> np.ndarray:
    c = p.mean(0)
    return c + (p - c) * k


# ---------------------------------------------------------------- person
# Billboard coordinates (s, z) in units of the person's height: s to the image right, z up.


def _arm(side: int, swing: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(shoulder, elbow, hand) centres of one arm, (s, z) / height."""
    sh = np.array([side * 0.125, 0.805])
    hand = np.array([side * (0.15 + 0.02 * abs(swing)), 0.45 + 0.04 * swing * side])
    return sh, sh + 0.5 * (hand - sh), hand


def _leg_foot(side: int, spread: float) -> float:
    """s / height of one leg's foot (the leg's top centre is side * 0.05 at z 0.5)."""
    return side * (0.055 + spread)


def person_keypoints_sz(params: dict) -> np.ndarray:
    """[14, 2] the person's keypoints in billboard (s, z) metres, the order of
    `synthetic_keypoints.KEYPOINT_NAMES`. Each is a point the drawing below covers: shoulders
    inside the shirt, elbows where upper arm and forearm meet, wrists at the hands' centres,
    hips in the hip band, knees halfway down the legs, ankles where the legs meet the shoes,
    head and neck at their centres. The billboard faces the camera, so the person's left is at
    s > 0 (image right)."""
    spread, swing = params["spread"], params["swing"]
    pts = {}
    for name, side in (("left", 1), ("right", -1)):
        _, elbow, hand = _arm(side, swing)
        foot = _leg_foot(side, spread)
        pts[name] = [
            (side * 0.105, 0.79),  # shoulder, inside the shirt's top corner
            tuple(elbow),
            tuple(hand),
            (side * 0.06, 0.5),  # hip
            (0.5 * (side * 0.05 + foot), 0.265),  # knee: halfway along the leg's centre line
            (foot, 0.03),
        ]
    left, right = pts["left"], pts["right"]
    interleaved = [p for pair in zip(left, right) for p in pair]
    return np.asarray(interleaved + [(0.0, 0.925), (0.0, 0.845)]) * params["height"]


def draw_person(canvas: Canvas, t: Thing, label: int, light: Light) -> None:
    h = t.params["height"]
    origin, right = billboard(t.x, t.y)
    nrm = toward_camera(t.x, t.y)
    k = light.ambient + light.diffuse * max(0.0, float(np.dot(nrm, light.direction)))
    k = max(k, 0.35)

    def poly(sz, color):
        part = canvas.add_part(np.asarray(color) * k, label, TEX_FLAT, 0.05)
        canvas.polygon(bb_points(origin, right, np.asarray(sz, dtype=np.float64) * h), part)

    spread, swing = t.params["spread"], t.params["swing"]
    pants, shirt, skin, hair, shoes = (
        t.params[c] for c in ("pants", "shirt", "skin", "hair", "shoes")
    )
    for side in (-1, 1):
        top, bot = side * 0.05, _leg_foot(side, spread)
        poly(
            [[top - 0.045, 0.5], [top + 0.045, 0.5], [bot + 0.033, 0.03], [bot - 0.033, 0.03]],
            pants,
        )
        poly(
            [[bot - 0.04, 0.0], [bot + 0.04, 0.0], [bot + 0.035, 0.035], [bot - 0.035, 0.035]],
            shoes,
        )
    poly([[-0.105, 0.45], [0.105, 0.45], [0.11, 0.54], [-0.11, 0.54]], pants)
    poly(
        [[-0.11, 0.5], [0.11, 0.5], [0.13, 0.8], [0.09, 0.835], [-0.09, 0.835], [-0.13, 0.8]], shirt
    )
    for side in (-1, 1):
        sh, elbow, hand = _arm(side, swing)
        d = hand - sh
        perp = np.array([-d[1], d[0]]) / np.linalg.norm(d) * 0.027
        poly([sh - perp, sh + perp, elbow + perp, elbow - perp], shirt)
        poly(
            [elbow - perp * 0.85, elbow + perp * 0.85, hand + perp * 0.8, hand - perp * 0.8],
            t.params["sleeve"],
        )
        poly(hand + circle(8) * 0.024, skin)
    poly([[-0.028, 0.82], [0.028, 0.82], [0.028, 0.87], [-0.028, 0.87]], skin)
    head = circle(16) * (0.057, 0.068) + (0.0, 0.925)
    poly(head, skin)
    ang = np.linspace(-0.15, math.pi + 0.15, 12)
    hair_pts = np.stack([np.cos(ang) * 0.062, np.sin(ang) * 0.075 + 0.938], 1)
    poly(hair_pts, hair)


def person_params(rng: np.random.Generator) -> dict:
    skins = [(241, 194, 160), (224, 172, 130), (198, 134, 90), (141, 85, 54), (92, 58, 38)]
    hair = [(30, 25, 20), (70, 45, 25), (120, 80, 40), (200, 170, 100), (140, 140, 140)]
    child = rng.random() < 0.12
    shirt = rng.uniform(20, 235, 3)
    return {
        "height": rng.uniform(1.0, 1.4) if child else rng.uniform(1.55, 1.95),
        "spread": rng.uniform(0.0, 0.06),
        "swing": rng.uniform(-1, 1),
        "skin": skins[rng.integers(len(skins))],
        "hair": hair[rng.integers(len(hair))],
        "shirt": shirt,
        "sleeve": shirt if rng.random() < 0.6 else skins[rng.integers(len(skins))],
        "pants": rng.uniform(15, 140, 3) * (1, 1, 1.3),
        "shoes": rng.uniform(10, 80, 3),
    }


# ---------------------------------------------------------------- car


def draw_car(canvas: Canvas, t: Thing, label: int, light: Light) -> None:
    p = t.params
    L, W, H = p["length"], p["width"], p["height"]
    z_body0, z_body1 = 0.26, p["body_top"]
    body = hexahedron(
        t.x,
        t.y,
        t.yaw,
        (-L / 2, L / 2, -W / 2, W / 2),
        (-L / 2, L / 2, -W / 2, W / 2),
        z_body0,
        z_body1,
    )
    cab_bottom = (-p["cab_back"] * L, p["cab_front"] * L, -0.47 * W, 0.47 * W)
    cab_top = (-(p["cab_back"] - 0.07) * L, (p["cab_front"] - p["rake"]) * L, -0.4 * W, 0.4 * W)
    cabin = hexahedron(t.x, t.y, t.yaw, cab_bottom, cab_top, z_body1, H)
    f = np.array([math.cos(t.yaw), math.sin(t.yaw), 0.0])
    left = np.array([-f[1], f[0], 0.0])
    o = np.array([t.x, t.y, 0.0])
    r = p["wheel_r"]

    def wheels(side: int) -> None:
        for a in (-L / 2 + 0.19 * L, L / 2 - 0.19 * L):
            c = o + a * f + side * (W / 2 + 0.005) * left + r * UP
            ring = circle(16)
            tyre = c + r * (ring[:, :1] * f + ring[:, 1:] * UP)
            canvas.polygon(tyre, canvas.add_part((22, 22, 24), label, TEX_FLAT, 0.03))
            rim = c + 0.58 * r * (ring[:, :1] * f + ring[:, 1:] * UP)
            canvas.polygon(rim, canvas.add_part(light.shade((150, 150, 155), side * left), label))

    near_side = 1 if canvas.facing(o + left * W / 2, left) else -1
    wheels(-near_side)
    paint = p["paint"]
    drawn = draw_hexahedron(canvas, body, paint, label, light, amp=0.03)
    glass = p["glass"]
    cab = draw_hexahedron(canvas, cabin, paint, label, light, amp=0.03)
    for i, (_, face, n) in cab.items():
        if i in (0, 1):
            continue
        canvas.polygon(shrink(face, 0.84), canvas.add_part(light.shade(glass, n), label))
        if i in (2, 4):  # side window: B pillar
            lo, hi = (face[0] + face[1]) / 2, (face[2] + face[3]) / 2
            ax = f * 0.04 * L
            pillar = np.array([lo - ax, lo + ax, hi + ax, hi - ax])
            canvas.polygon(pillar, canvas.add_part(light.shade(paint, n), label))
    for i, (_, _face, n) in drawn.items():
        if i not in (3, 5):
            continue
        front = i == 3
        lamp = (250, 245, 210) if front else (200, 20, 20)
        zt = z_body1 - 0.08
        for side in (-1, 1):
            b0, b1 = side * (W / 2 - 0.08), side * (W / 2 - 0.3)
            a = (L / 2 + 0.004) * (1 if front else -1)
            q = np.array(
                [
                    o + a * f + b * left + z * UP
                    for b, z in ((b0, zt - 0.1), (b1, zt - 0.1), (b1, zt), (b0, zt))
                ]
            )
            canvas.polygon(q, canvas.add_part(lamp, label))
        a = (L / 2 + 0.006) * (1 if front else -1)
        bump = np.array(
            [
                o + a * f + b * left + z * UP
                for b, z in (
                    (-W / 2, z_body0),
                    (W / 2, z_body0),
                    (W / 2, z_body0 + 0.1),
                    (-W / 2, z_body0 + 0.1),
                )
            ]
        )
        canvas.polygon(bump, canvas.add_part(light.shade((35, 35, 38), n), label))
    wheels(near_side)


def car_params(rng: np.random.Generator) -> dict:
    paints = [
        (235, 235, 235),
        (25, 25, 28),
        (170, 172, 176),
        (110, 112, 118),
        (160, 20, 25),
        (25, 55, 140),
        (30, 80, 50),
        (210, 180, 40),
        (120, 70, 40),
        (200, 90, 20),
    ]
    van = rng.random() < 0.2
    paint = np.asarray(paints[rng.integers(len(paints))], float) * rng.uniform(0.85, 1.1)
    return {
        "length": rng.uniform(4.4, 5.2) if van else rng.uniform(3.7, 4.8),
        "width": rng.uniform(1.7, 2.0),
        "height": rng.uniform(1.75, 2.1) if van else rng.uniform(1.38, 1.6),
        "body_top": rng.uniform(0.85, 1.0),
        "cab_back": 0.45 if van else rng.uniform(0.25, 0.35),
        "cab_front": rng.uniform(0.25, 0.32) if van else rng.uniform(0.1, 0.2),
        "rake": 0.08 if van else rng.uniform(0.1, 0.16),
        "wheel_r": rng.uniform(0.29, 0.35),
        "paint": np.clip(paint, 0, 255),
        "glass": rng.uniform(30, 80) * np.array([0.9, 1.0, 1.15]),
    }


# ---------------------------------------------------------------- bicycle


def draw_bicycle(canvas: Canvas, t: Thing, label: int, light: Light) -> None:
    p = t.params
    f = np.array([math.cos(t.yaw), math.sin(t.yaw), 0.0])
    left = np.array([-f[1], f[0], 0.0])
    o = np.array([t.x, t.y, 0.0])
    r, wb = p["wheel_r"], p["wheelbase"]

    def pt(a, z, b=0.0):
        return o + a * f + b * left + z * UP

    rear, front = pt(-wb / 2, r), pt(wb / 2, r)
    bb = pt(-0.06, 0.3)
    seat = pt(-0.24, 0.8 + p["seat"])
    head_top, head_bot = pt(0.36, 0.85), pt(0.39, 0.72)
    frame = canvas.add_part(p["frame"], label, TEX_FLAT, 0.03)
    tyre = canvas.add_part((20, 20, 20), label, TEX_FLAT, 0.02)
    for c in (rear, front):
        ring = circle(20)
        pts = c + r * (ring[:, :1] * f + ring[:, 1:] * UP)
        canvas.polyline(pts, 0.05, tyre, closed=True)
        canvas.polyline(np.array([c - 0.04 * f, c + 0.04 * f]), 0.05, tyre)
    w = 0.035
    for a, b in (
        (rear, bb),
        (rear, seat),
        (bb, seat),
        (seat, head_top),
        (bb, head_bot),
        (head_bot, front),
        (head_bot, head_top),
    ):
        canvas.polyline(np.array([a, b]), w, frame)
    bar = pt(0.33, 0.97)
    canvas.polyline(np.array([head_top, bar]), w, frame)
    canvas.polyline(np.array([pt(0.33, 0.97, -0.26), pt(0.33, 0.97, 0.26)]), 0.03, tyre)
    saddle = np.array([pt(-0.33, 0.83 + p["seat"]), pt(-0.14, 0.83 + p["seat"])])
    canvas.polyline(saddle, 0.06, tyre)


def bicycle_params(rng: np.random.Generator) -> dict:
    return {
        "wheel_r": rng.uniform(0.3, 0.36),
        "wheelbase": rng.uniform(0.98, 1.1),
        "seat": rng.uniform(0.0, 0.15),
        "frame": rng.uniform(20, 230, 3),
    }


# ---------------------------------------------------------------- traffic cone
