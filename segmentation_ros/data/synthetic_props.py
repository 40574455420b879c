"""Static objects of the synthetic world: traffic cone, box, tree, bush, pillar (see
`synthetic_shapes` for the parts they are built from and the coordinate conventions)."""

from __future__ import annotations

import math

import numpy as np

from segmentation_ros.data.synthetic_render import TEX_FLAT, TEX_FOLIAGE, Canvas, circle
from segmentation_ros.data.synthetic_shapes import (
    UP,
    Light,
    Thing,
    bb_points,
    billboard,
    draw_hexahedron,
    hexahedron,
    toward_camera,
)


def draw_cone(canvas: Canvas, t: Thing, label: int, light: Light) -> None:
    p = t.params
    h, base = p["height"], p["base"]
    plate = hexahedron(
        t.x,
        t.y,
        t.yaw,
        (-base / 2, base / 2, -base / 2, base / 2),
        (-base / 2, base / 2, -base / 2, base / 2),
        0.0,
        0.03,
    )
    draw_hexahedron(canvas, plate, p["color"] * 0.8, label, light)
    origin, right = billboard(t.x, t.y)
    origin = origin - toward_camera(t.x, t.y) * 0.0
    r0, r1 = base * 0.36, base * 0.07

    def band(z0, z1, color):
        w0 = r0 + (r1 - r0) * z0 / h
        w1 = r0 + (r1 - r0) * z1 / h
        nrm = toward_camera(t.x, t.y)
        for sgn in (-1, 1):
            side = np.array([[0, z0], [sgn * w0, z0], [sgn * w1, z1], [0, z1]], float)
            shade = light.shade(color, nrm + 0.7 * sgn * right)
            part = canvas.add_part(shade, label, TEX_FLAT, 0.03)
            canvas.polygon(bb_points(origin, right, side), part)

    band(0.03, h, p["color"])
    band(0.45 * h, 0.62 * h, (235, 235, 235))
    if h > 0.6:
        band(0.72 * h, 0.8 * h, (235, 235, 235))


def cone_params(rng: np.random.Generator) -> dict:
    color = np.array([250, rng.uniform(70, 120), rng.uniform(0, 30)])
    h = rng.uniform(0.45, 0.8)
    return {"height": h, "base": h * rng.uniform(0.5, 0.6), "color": color}


# ---------------------------------------------------------------- box


def draw_box(canvas: Canvas, t: Thing, label: int, light: Light) -> None:
    p = t.params
    a, b, h = p["size"]
    verts = hexahedron(
        t.x, t.y, t.yaw, (-a / 2, a / 2, -b / 2, b / 2), (-a / 2, a / 2, -b / 2, b / 2), 0.0, h
    )
    drawn = draw_hexahedron(canvas, verts, p["color"], label, light, amp=0.06)
    if p["tape"] and 1 in drawn:
        f = np.array([math.cos(t.yaw), math.sin(t.yaw), 0.0])
        left = np.array([-f[1], f[0], 0.0])
        o = np.array([t.x, t.y, h + 0.002])
        tw = min(0.05, b / 6)
        q = np.array(
            [o + s * a / 2 * f + w * left for s, w in ((-1, -tw), (1, -tw), (1, tw), (-1, tw))]
        )
        color = light.shade(np.asarray(p["color"]) * 1.15, UP)
        canvas.polygon(q, canvas.add_part(np.clip(color, 0, 255), label))


def box_params(rng: np.random.Generator) -> dict:
    cardboard = rng.random() < 0.7
    color = (
        rng.uniform(150, 200) * np.array([1.0, 0.75, 0.48])
        if cardboard
        else rng.uniform(30, 220, 3)
    )
    s = rng.uniform(0.3, 1.0)
    return {
        "size": (s * rng.uniform(0.7, 1.3), s * rng.uniform(0.7, 1.3), s * rng.uniform(0.5, 1.1)),
        "color": color,
        "tape": cardboard,
    }


# ---------------------------------------------------------------- vegetation (stuff)


def draw_tree(canvas: Canvas, t: Thing, label: int, light: Light) -> None:
    p = t.params
    origin, right = billboard(t.x, t.y)
    tw, th = p["trunk_w"], p["trunk_h"]
    trunk = np.array([[-tw / 2, 0], [tw / 2, 0], [tw / 3, th + 0.5], [-tw / 3, th + 0.5]])
    canvas.polygon(bb_points(origin, right, trunk), canvas.add_part(p["bark"], label))
    for (ds, dz, rs, rz), shade in zip(p["blobs"], p["shades"]):
        pts = circle(18) * (rs, rz) + (ds, th + dz)
        part = canvas.add_part(np.asarray(p["leaf"]) * shade, label, TEX_FOLIAGE, 0.35)
        canvas.polygon(bb_points(origin, right, pts), part)


def tree_params(rng: np.random.Generator, scale: float = 1.0) -> dict:
    cr = rng.uniform(1.2, 2.8) * scale
    th = rng.uniform(1.5, 4.0) * scale
    n = int(rng.integers(3, 7))
    blobs = [
        (
            rng.uniform(-0.6, 0.6) * cr,
            rng.uniform(0.3, 1.4) * cr,
            cr * rng.uniform(0.6, 1.0),
            cr * rng.uniform(0.5, 0.9),
        )
        for _ in range(n)
    ]
    return {
        "trunk_w": rng.uniform(0.15, 0.4) * scale,
        "trunk_h": th,
        "bark": rng.uniform(50, 100) * np.array([1.0, 0.8, 0.6]),
        "leaf": rng.uniform(60, 120) * np.array([0.55, 1.0, 0.35]),
        "blobs": blobs,
        "shades": rng.uniform(0.75, 1.2, n),
    }


def draw_bush(canvas: Canvas, t: Thing, label: int, light: Light) -> None:
    p = t.params
    origin, right = billboard(t.x, t.y)
    for (ds, rs, rz), shade in zip(p["blobs"], p["shades"]):
        pts = circle(16) * (rs, rz) + (ds, rz * 0.85)
        pts[:, 1] = np.maximum(pts[:, 1], 0.0)
        part = canvas.add_part(np.asarray(p["leaf"]) * shade, label, TEX_FOLIAGE, 0.35)
        canvas.polygon(bb_points(origin, right, pts), part)


def bush_params(rng: np.random.Generator) -> dict:
    r = rng.uniform(0.4, 1.1)
    n = int(rng.integers(2, 4))
    return {
        "blobs": [
            (rng.uniform(-0.7, 0.7) * r, r * rng.uniform(0.6, 1.0), r * rng.uniform(0.5, 0.9))
            for _ in range(n)
        ],
        "leaf": rng.uniform(50, 110) * np.array([0.6, 1.0, 0.35]),
        "shades": rng.uniform(0.75, 1.2, n),
    }


def draw_pillar(canvas: Canvas, t: Thing, label: int, light: Light) -> None:
    a = t.params["size"]
    verts = hexahedron(
        t.x,
        t.y,
        t.yaw,
        (-a / 2, a / 2, -a / 2, a / 2),
        (-a / 2, a / 2, -a / 2, a / 2),
        0.0,
        t.params["height"],
    )
    draw_hexahedron(canvas, verts, t.params["color"], label, light, amp=0.04)


def pillar_params(rng: np.random.Generator) -> dict:
    """Square pillar; `height` is set to the room's ceiling height after placement."""
    return {
        "size": rng.uniform(0.3, 0.8),
        "height": 3.0,
        "color": rng.uniform(150, 230) * np.array([1.0, 1.0, 0.97]),
    }
