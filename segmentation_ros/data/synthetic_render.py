"""Rasterising the synthetic world: 3D polygons and lines in base_link -> a map of part ids.

Every drawn primitive is a *part* with a colour, a raw label (which segment it belongs to) and a
texture kind. The painter's algorithm writes part indices into one [H, W] int32 map (later parts
overwrite earlier ones); image colours and segment labels are both looked up from that map at the
end, so the image and the annotation come from the very same rasterisation.
Rasterisation is OpenCV's (`fillPoly` / `polylines`, 8-connected, 4 fractional bits), pixel
centres at integer image coordinates (see `synthetic_camera`).
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from segmentation_ros.data.synthetic_camera import SceneCamera

_SHIFT = 4
_SCALE = float(1 << _SHIFT)
Z_NEAR = 0.05  # m, polygons are clipped to optical depth >= Z_NEAR

# texture kinds (how `synthetic_texture` modulates a part's colour)
TEX_FLAT, TEX_GROUND, TEX_SKY, TEX_FACADE, TEX_WALL, TEX_FOLIAGE, TEX_CEILING = range(7)


def circle(n: int) -> np.ndarray:
    """[n, 2] points of the unit circle, counter-clockwise from angle 0."""
    a = np.linspace(0.0, 2 * math.pi, n, endpoint=False)
    return np.stack([np.cos(a), np.sin(a)], 1)


class Canvas:
    """Part-id map of one image plus the per-part tables.

    parts:  [H, W] int32 part index per pixel (0 = nothing drawn).
    colors: per part (r, g, b) float in 0..255; labels: per part raw label; textures: per part
    texture kind; amps: per part texture amplitude. Part 0 is the empty part (black, label 0).
    """

    def __init__(self, camera: SceneCamera) -> None:
        self.camera = camera
        self.parts = np.zeros((camera.height, camera.width), np.int32)
        self.colors: list[tuple[float, float, float]] = [(0.0, 0.0, 0.0)]
        self.labels: list[int] = [0]
        self.textures: list[int] = [TEX_FLAT]
        self.amps: list[float] = [0.0]
        self._R = camera.rotation
        self._C = np.array([0.0, 0.0, camera.camera_height])
        self._f = np.array([camera.fx, camera.fy]) * _SCALE  # to fixed-point pixels
        self._c = np.array([camera.cx, camera.cy]) * _SCALE
        m = float(max(camera.width, camera.height))
        fx, fy, cx, cy = camera.fx, camera.fy, camera.cx, camera.cy
        w1, h1 = camera.width - 1, camera.height - 1
        # clip planes n . p + d >= 0 in optical coordinates: near, then u and v within a margin
        self._planes_n = np.array(
            [
                [0, 0, 1],
                [fx, 0, cx + m],
                [-fx, 0, w1 + m - cx],
                [0, fy, cy + m],
                [0, -fy, h1 + m - cy],
            ],
            dtype=np.float64,
        ).T
        self._planes_d = np.array([-Z_NEAR, 0, 0, 0, 0], dtype=np.float64)

    def add_part(self, color, label: int, texture: int = TEX_FLAT, amp: float = 0.04) -> int:
        """Register a part: base colour (r, g, b) 0..255, raw label, texture kind, texture
        amplitude (relative colour variation); returns its index for `polygon` / `polyline`."""
        self.colors.append(tuple(float(c) for c in color))
        self.labels.append(int(label))
        self.textures.append(int(texture))
        self.amps.append(float(amp))
        return len(self.colors) - 1

    def fill_all(self, color, label: int, texture: int, amp: float = 0.04) -> None:
        """Paint the whole image with a new part (background)."""
        self.parts[:] = self.add_part(color, label, texture, amp)

    def _optical(self, points: np.ndarray) -> np.ndarray:
        return (np.asarray(points, dtype=np.float64) - self._C) @ self._R

    def _clip(self, p: np.ndarray) -> np.ndarray:
        s_all = p @ self._planes_n + self._planes_d
        if (s_all >= 0).all():
            return p
        for k in range(s_all.shape[1]):
            s = p @ self._planes_n[:, k] + self._planes_d[k]
            inside = s >= 0
            if inside.all():
                continue
            if not inside.any():
                return p[:0]
            pn, sn = np.roll(p, -1, 0), np.roll(s, -1)
            cross = inside != (sn >= 0)
            with np.errstate(divide="ignore", invalid="ignore"):
                t = np.where(cross, s / (s - sn), 0.0)
            inter = p + t[:, None] * (pn - p)
            out = np.stack([p, inter], 1).reshape(-1, 3)
            p = out[np.stack([inside, cross], 1).reshape(-1)]
        return p

    def _pixels(self, p: np.ndarray) -> np.ndarray:
        uv = p[:, :2] / p[:, 2:3] * self._f + self._c
        return np.rint(uv).astype(np.int32)

    def polygon(self, points: np.ndarray, part: int, target: np.ndarray | None = None) -> bool:
        """Fill the planar polygon `points` [N, 3] (base_link) with `part` in `parts` (or in
        `target`, another [H, W] map); False if it is out of view."""
        p = self._clip(self._optical(points))
        if len(p) < 3:
            return False
        out = self.parts if target is None else target
        cv2.fillPoly(out, [self._pixels(p)], part, cv2.LINE_8, _SHIFT)
        return True

    def polyline(self, points: np.ndarray, width_m: float, part: int, closed: bool = False) -> None:
        """Draw a polyline [N, 3] whose stroke is `width_m` wide at its depth (>= 1 pixel)."""
        p = self._optical(points)
        if closed:
            p = np.concatenate([p, p[:1]])
        a, b = p[:-1], p[1:]
        keep = (a[:, 2] > Z_NEAR) & (b[:, 2] > Z_NEAR)
        if not keep.any():
            return
        a, b = a[keep], b[keep]
        depth = float(np.mean(np.concatenate([a[:, 2], b[:, 2]])))
        px = max(1, int(round(width_m * self.camera.fx / depth)))
        segs = np.stack([self._pixels(a), self._pixels(b)], 1)
        cv2.polylines(self.parts, list(segs), False, part, px, cv2.LINE_8, _SHIFT)

    def facing(self, center: np.ndarray, normal: np.ndarray) -> bool:
        """True when a face at `center` with outward `normal` (base_link) faces the camera."""
        return float(np.dot(self._C - center, normal)) > 0.0

    def depth_of(self, point: np.ndarray) -> float:
        """Optical depth (m) of one base_link point."""
        return float(self._optical(np.asarray(point, dtype=np.float64)[None])[0, 2])
