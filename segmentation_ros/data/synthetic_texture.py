"""Colouring the part map: textures, markings, sky, windows, shadows, lighting, sensor effects.

Works on the image only; the annotation is read from the part map and never changes here.
Ground textures are looked up in ground coordinates (perspective-correct) and faded by the
pixel footprint on the ground, so far ground does not alias; thin patterns (lane marks, joints,
window frames) are drawn with their exact 1-D box-filter coverage of the pixel footprint.
All per-pixel geometry comes from `SceneCamera.rays()` (separable, roll 0).
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from segmentation_ros.data.classes import SYNTHETIC_CLASSES
from segmentation_ros.data.synthetic_render import (
    TEX_CEILING,
    TEX_FACADE,
    TEX_FOLIAGE,
    TEX_GROUND,
    TEX_SKY,
    Canvas,
    circle,
)
from segmentation_ros.data.synthetic_world import World

_TILE = 64
_OCTAVES = ((0.025, 0.45), (0.2, 0.35), (1.6, 0.3))  # (texel m, weight)


def _tile(rng: np.random.Generator) -> np.ndarray:
    """[64, 64] float32 smooth periodic noise in about [-1, 1]."""
    t = rng.random((_TILE, _TILE), dtype=np.float32)
    for _ in range(2):
        t = (t + np.roll(t, 1, 0) + np.roll(t, 1, 1) + np.roll(np.roll(t, 1, 0), 1, 1)) / 4
    t -= t.mean()
    return t / (np.abs(t).max() + 1e-6)


def _screen_noise(rng, h: int, w: int, cell: int) -> np.ndarray:
    """[h, w] float32 value noise in about [-1, 1] with features of `cell` pixels."""
    small = rng.random((max(2, h // cell + 2), max(2, w // cell + 2)), dtype=np.float32) * 2 - 1
    if cell >= 8:  # smooth large features (clouds, foliage patches): cubic, and a finer octave
        small = cv2.resize(small, None, fx=2, fy=2, interpolation=cv2.INTER_CUBIC)
        small += 0.5 * (rng.random(small.shape, dtype=np.float32) * 2 - 1)
        return cv2.resize(small / 1.5, (w, h), interpolation=cv2.INTER_CUBIC)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


def box_coverage(d: np.ndarray, width: float, fp: np.ndarray) -> np.ndarray:
    """Fraction of a pixel of footprint `fp` (centred at distance `d` from a line's centre)
    covered by the line of `width` (all metres)."""
    half = 0.5 * fp
    lo = np.maximum(d - half, -width / 2)
    hi = np.minimum(d + half, width / 2)
    return np.clip(hi - lo, 0, None) / fp


def _nearest_line(coord: np.ndarray, period: float) -> np.ndarray:
    f = coord / period
    return (f - np.round(f)) * period


def _lerp(img: np.ndarray, cov: np.ndarray, color) -> None:
    """img += cov * (color - img) in place, where cov > 0; img [h, w, 3], cov [h, w] in [0, 1]."""
    idx = np.flatnonzero(cov > 1e-3)
    if not len(idx):
        return
    flat = img.reshape(-1, 3)
    px = flat[idx]
    flat[idx] = px + cov.reshape(-1)[idx, None] * (np.asarray(color, np.float32) - px)


class _Ground:
    """Ground coordinates and pixel footprints of the rows below the horizon."""

    def __init__(self, world: World) -> None:
        cam = world.camera
        a, b, c = cam.rays()
        rows = np.flatnonzero(c < -1e-9)
        self.r0 = int(rows[0]) if len(rows) else cam.height
        c = c[self.r0 :]
        t = np.minimum(-cam.camera_height / c, 1e4)  # per row; beyond 10 km all detail is faded
        self.x = (t * a[self.r0 :]).astype(np.float32)
        self.y = (t[:, None] * b[None, :]).astype(np.float32)
        fpx = np.abs(np.gradient(self.x)) if len(self.x) > 1 else np.ones_like(self.x)
        self.fp_x = np.maximum(fpx, 1e-6).astype(np.float32)[:, None]
        self.fp_y = (t / cam.fx).astype(np.float32)[:, None]
        self.fp = np.maximum(self.fp_x, self.fp_y)


def _wrap(v: np.ndarray) -> np.ndarray:
    return v - np.floor(v * (1.0 / _TILE)) * _TILE


def _ground_texture(img, mod, amp_ground, cat, world: World, rng) -> None:
    """Ground noise into `mod`, joints and lane marks into `img` (rows below the horizon)."""
    g = _Ground(world)
    if g.r0 >= img.shape[0]:
        return
    amp = amp_ground[g.r0 :]
    if not amp.any():
        return
    shape = amp.shape
    noise = np.zeros(shape, np.float32)
    xs = np.broadcast_to(g.x[:, None], shape)
    gx, gy = xs, g.y
    if world.ground_pose is not None:  # texture fixed to the world, not to the camera
        x0, y0, yaw = world.ground_pose
        c, s = np.float32(math.cos(yaw)), np.float32(math.sin(yaw))
        gx, gy = c * xs - s * g.y + np.float32(x0), s * xs + c * g.y + np.float32(y0)
    for texel, weight in _OCTAVES:
        tile = _tile(rng)
        mx = _wrap(gy * np.float32(1 / texel))
        my = np.ascontiguousarray(np.broadcast_to(_wrap(gx * np.float32(1 / texel)), shape))
        n = cv2.remap(tile, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_WRAP)
        fade = np.clip(1.5 - 0.5 * g.fp / np.float32(texel), 0, 1)
        noise += np.float32(weight) * fade * n
    mod[g.r0 :] *= 1 + amp * noise
    sub = img[g.r0 :]
    cat_sub = cat[g.r0 :]
    for pav in world.paving:
        m = cat_sub == pav.category
        if not m.any():
            continue
        ca, sa = math.cos(pav.yaw), math.sin(pav.yaw)
        dx, dy = xs - pav.origin[0], g.y - pav.origin[1]
        along, across = dx * ca + dy * sa, -dx * sa + dy * ca
        pa, pc = pav.period
        if pav.stagger:
            along = along + 0.5 * pa * (np.floor(across / pc) % 2)
        cov = np.maximum(
            box_coverage(np.abs(_nearest_line(along, pa)), pav.joint, g.fp),
            box_coverage(np.abs(_nearest_line(across, pc)), pav.joint, g.fp),
        )
        cov *= np.clip(2.0 - 3.0 * g.fp / min(pa, pc), 0, 1) * m
        _lerp(sub, cov, pav.color)
    road = world.road
    if road is not None and world.lane_marks:
        m = cat_sub == SYNTHETIC_CLASSES.id_of("road")
        if m.any():
            slope = road.c1 + 2 * road.c2 * g.x
            cos = 1 / np.sqrt(1 + slope * slope)
            yc = road.c0 + road.c1 * g.x + road.c2 * g.x * g.x
            d = (g.y - yc[:, None]) * cos[:, None]
            along = (g.x / cos)[:, None] + np.float32(world.lane_phase)
            for off, width, dashed, color in world.lane_marks:
                cov = box_coverage(np.abs(d - off), width, g.fp_y)
                if dashed:
                    cov = cov * box_coverage(np.abs(np.mod(along, 9.0) - 1.5), 3.0, g.fp_x)
                _lerp(sub, cov * m * 0.9, color)


def _sky(img, tex, world: World, noise) -> None:
    if world.sky is None:
        return
    idx = np.flatnonzero(tex == TEX_SKY)
    if not len(idx):
        return
    hor, zen, clouds = world.sky
    a, _, c = world.camera.rays()
    elev = np.arctan2(c, a)
    k = np.clip(elev / 0.7, 0, 1) ** 0.6
    rowcol = (hor[None, :] + (zen - hor)[None, :] * k[:, None]).astype(np.float32)
    sky = rowcol[idx // world.camera.width]
    if clouds > 0:
        cov = np.clip((noise.reshape(-1)[idx] - (1 - clouds)) * 2.5, 0, 0.9)
        sky += cov[:, None] * (np.float32(240) - sky)
    img.reshape(-1, 3)[idx] = sky


def _facades(img, tex, world: World) -> None:
    """Window grids on building fronts, in the coordinates (along, up) of each front's plane."""
    if not world.facades:
        return
    idx = np.flatnonzero(tex == TEX_FACADE)
    if not len(idx):
        return
    cam = world.camera
    a, b, c = (v.astype(np.float32) for v in cam.rays())
    rows, cols = idx // cam.width, idx % cam.width
    da, db, dc = a[rows], b[cols], c[rows]
    best_t = np.full(len(idx), np.inf, np.float32)
    best = np.full(len(idx), -1, np.int8)
    for i, f in enumerate(world.facades):  # the nearest plane in front of the camera
        nx, ny = -f.direction[1], f.direction[0]
        with np.errstate(divide="ignore", invalid="ignore"):
            t = np.float32(nx * f.origin[0] + ny * f.origin[1]) / (nx * da + ny * db)
        take = (t > 0) & (t < best_t)
        best_t[take] = t[take]
        best[take] = i
    flat = img.reshape(-1, 3)
    for i, f in enumerate(world.facades):
        sel = np.flatnonzero(best == i)
        if not len(sel):
            continue
        t = best_t[sel]
        ex, ey = f.direction
        s = t * (ex * da[sel] + ey * db[sel]) - np.float32(ex * f.origin[0] + ey * f.origin[1])
        z = np.float32(cam.camera_height) + t * dc[sel]
        fp = t * np.float32(1.5 / cam.fx)
        pa, pz = f.period
        wa, wz = f.window
        zz = z - np.float32(f.ground_floor)
        cov = box_coverage(np.abs(_nearest_line(s - pa / 2, pa)), wa * pa, fp)
        cov *= box_coverage(np.abs(_nearest_line(zz - pz / 2, pz)), wz * pz, fp) * (zz > 0.3)
        shop = box_coverage(np.abs(_nearest_line(s - pa, 2 * pa)), 1.6 * pa, fp)
        shop *= box_coverage(
            np.abs(z - np.float32(f.ground_floor / 2 + 0.2)), f.ground_floor - 1.2, fp
        )
        cov = np.maximum(cov, shop)
        on = np.flatnonzero(cov > 1e-3)
        if not len(on):
            continue
        cell = (np.floor(s[on] / pa).astype(np.int64) * 73856093) ^ (
            np.floor(zz[on] / pz).astype(np.int64) * 19349663
        )
        bright = 0.6 + 0.8 * ((cell & 1023) / np.float32(1023))
        glass = np.asarray(f.glass, np.float32)[None, :] * bright[:, None].astype(np.float32)
        k = idx[sel[on]]
        px = flat[k]
        flat[k] = px + cov[on, None] * (glass - px)


def _ceiling(img, tex, world: World) -> None:
    m = tex == TEX_CEILING
    if world.ceiling is None or not m.any():
        return
    hc, period, yaw = world.ceiling
    cam = world.camera
    a, b, c = cam.rays()
    rows, cols = np.nonzero(m)
    t = (hc - cam.camera_height) / np.maximum(c[rows], 1e-9)
    x, y = t * a[rows], t * b[cols]
    ca, sa = math.cos(yaw), math.sin(yaw)
    u, v = x * ca + y * sa, -x * sa + y * ca
    fp = t / cam.fx * 1.5
    cov = box_coverage(np.abs(_nearest_line(u, period)), 0.6, fp) * box_coverage(
        np.abs(_nearest_line(v, period)), 1.2, fp
    )
    px = img[rows, cols]
    img[rows, cols] = px + cov[:, None].astype(np.float32) * (np.float32(252) - px)


def _shadows(mod, tex, canvas: Canvas, world: World) -> None:
    cam = world.camera
    mask = np.zeros((cam.height, cam.width), np.uint8)
    lx, ly, lz = world.light.direction
    shift = -np.array([lx, ly]) / max(lz, 0.3) * 0.25
    for t in world.objects:
        if t.kind in ("car", "box", "pillar"):
            size = (
                (t.params["length"], t.params["width"])
                if t.kind == "car"
                else (
                    (t.params["size"][0], t.params["size"][1])
                    if t.kind == "box"
                    else (t.params["size"], t.params["size"])
                )
            )
            ring = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], float) * 0.5 * np.array(size)
            ring *= 1.08
        else:
            r = {"person": 0.3, "bicycle": 0.5, "traffic_cone": 0.22, "tree": 0.8, "bush": 0.9}[
                t.kind
            ]
            ring = circle(12) * (r, r * 0.6 if t.kind == "bicycle" else r)
        cy, sy = math.cos(t.yaw), math.sin(t.yaw)
        pts = ring @ np.array([[cy, sy], [-sy, cy]]) + (t.x, t.y) + shift
        canvas.polygon(np.concatenate([pts, np.full((len(pts), 1), 0.002)], 1), 255, mask)
    if not mask.any():
        return
    k = max(3, (cam.width // 160) | 1)
    soft = cv2.GaussianBlur(mask, (k, k), 0).astype(np.float32) * (0.45 / 255)
    mod *= 1 - soft * (tex == TEX_GROUND)


def shade(canvas: Canvas, world: World, rng: np.random.Generator, *, effects: bool) -> np.ndarray:
    """Colour the canvas -> [H, W, 3] uint8 RGB image.

    Colour changes (sky, joints, lane marks, windows, light panels) are written into the base
    colours; brightness changes (texture noise, shadows, lighting gradient, exposure) are
    collected in one [H, W] factor applied at the end. effects: also random exposure, blur and
    sensor noise.
    """
    cam = world.camera
    h, w = cam.height, cam.width
    parts = canvas.parts
    tex_p = np.asarray(canvas.textures, np.uint8)
    amp_p = np.asarray(canvas.amps, np.float32)
    img = np.take(np.asarray(canvas.colors, np.float32), parts, axis=0)
    tex = np.take(tex_p, parts)
    s = SYNTHETIC_CLASSES.num_stuff
    lab = np.asarray(canvas.labels)
    cat = np.take(np.where((lab >= 1) & (lab <= s), lab - 1, -1).astype(np.int16), parts)
    fine = _screen_noise(rng, h, w, 2)
    coarse = _screen_noise(rng, h, w, max(4, w // 12))
    flat_p = np.where((tex_p != TEX_GROUND) & (tex_p != TEX_SKY), amp_p, 0)
    fol_p = np.where(tex_p == TEX_FOLIAGE, amp_p * 0.6, 0).astype(np.float32)
    mod = 1 + np.take(flat_p, parts) * fine
    if fol_p.any():
        mod += np.take(fol_p, parts) * coarse
    ground_p = np.where(tex_p == TEX_GROUND, amp_p, 0).astype(np.float32)
    _ground_texture(img, mod, np.take(ground_p, parts), cat, world, rng)
    _sky(img, tex, world, coarse)
    _facades(img, tex, world)
    _ceiling(img, tex, world)
    _shadows(mod, tex, canvas, world)
    u = (np.arange(w, dtype=np.float32) / w - 0.5)[None, :]
    v = (np.arange(h, dtype=np.float32) / h - 0.5)[:, None]
    gx, gy = rng.uniform(-0.25, 0.25, 2)
    vig = rng.uniform(0.0, 0.5)
    gain = rng.uniform(0.8, 1.15) if effects else 1.0
    mod *= np.float32(gain) * (1 + gx * u + gy * v - vig * (u * u + v * v * (h / w) ** 2))
    img = cv2.multiply(img, cv2.merge((mod, mod, mod)))
    if effects:
        if rng.random() < 0.35:
            cv2.GaussianBlur(img, (0, 0), rng.uniform(0.4, 1.2) * max(1.0, w / 640), dst=img)
        if rng.random() < 0.7:
            sigma = rng.uniform(1.0, 6.0)  # uniform noise of that standard deviation
            noise = np.frombuffer(rng.bytes(h * w * 3), np.uint8).reshape(h, w, 3)
            img = cv2.scaleAdd(noise.astype(np.float32), sigma / 73.9, img - sigma * 1.725)
    return cv2.convertScaleAbs(img)
