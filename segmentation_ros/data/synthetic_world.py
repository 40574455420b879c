"""The synthetic world's model and object placement: a road centre line, facades, pavings and
the objects standing on the ground plane (base_link metres), random cameras and lights, and
placement of objects where the camera sees them. The layouts that draw and fill a world are in
`synthetic_layouts`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from segmentation_ros.data.classes import SYNTHETIC_CLASSES
from segmentation_ros.data.synthetic_camera import SceneCamera
from segmentation_ros.data.synthetic_catalogue import PARAMS, RADIUS
from segmentation_ros.data.synthetic_shapes import Light, Thing

FAR = 2000.0  # m, extent of the base ground polygon (the horizon gap is far below a pixel)
_S_SAMPLES = np.array(
    [-30, -8, 0, 3, 6, 10, 15, 21, 28, 37, 48, 62, 80, 105, 140, 190, 260, 360, 500, 800, 1200]
)
TEXTURE_AMPLITUDE = {"road": 0.12, "sidewalk": 0.1, "terrain": 0.3, "floor": 0.07, "grass": 0.35}


def stuff_label(name: str) -> int:
    """Raw label of a stuff class (category id + 1)."""
    return SYNTHETIC_CLASSES.id_of(name) + 1


@dataclass(frozen=True)
class Road:
    """Centre line y = c0 + c1 x + c2 x^2 in base_link; `width` of the carriageway (m)."""

    c0: float
    c1: float
    c2: float
    width: float
    lanes: int

    def center(self, s: np.ndarray) -> np.ndarray:
        s = np.asarray(s, dtype=np.float64)
        return np.stack([s, self.c0 + self.c1 * s + self.c2 * s * s], -1)

    def normal(self, s: np.ndarray) -> np.ndarray:
        """Unit left normal of the centre line at x = s."""
        d = self.c1 + 2 * self.c2 * np.asarray(s, dtype=np.float64)
        n = np.stack([-d, np.ones_like(d)], -1)
        return n / np.linalg.norm(n, axis=-1, keepdims=True)

    def heading(self, s: float) -> float:
        return math.atan(self.c1 + 2 * self.c2 * s)

    def point(self, s: float, off: float) -> tuple[float, float]:
        p = self.center(s) + off * self.normal(s)
        return float(p[0]), float(p[1])

    def band(self, off0: float, off1: float, z: float = 0.0) -> list[np.ndarray]:
        """Quads [4, 3] covering lateral offsets off0..off1 along the road."""
        s = _S_SAMPLES if self.c2 != 0.0 else _S_SAMPLES[[0, -1]]
        c, n = self.center(s), self.normal(s)
        a, b = c + off0 * n, c + off1 * n
        quads = []
        for k in range(len(s) - 1):
            q = np.array([a[k], a[k + 1], b[k + 1], b[k]])
            quads.append(np.concatenate([q, np.full((4, 1), z)], 1))
        return quads


@dataclass(frozen=True)
class Facade:
    """A row of building fronts in the vertical plane through `origin` along unit `direction`
    (base_link, horizontal). Window grid: `period` (along, up) m, `window` (fraction along, up),
    `ground_floor` m without the regular grid."""

    origin: tuple[float, float]
    direction: tuple[float, float]
    period: tuple[float, float]
    window: tuple[float, float]
    ground_floor: float
    glass: tuple[float, float, float]


@dataclass(frozen=True)
class Paving:
    """Joint pattern on a ground class: `period` (along, across) m, joint width m, `stagger`
    (offset every other row by half a period: bricks / planks), frame yaw and origin."""

    category: int
    period: tuple[float, float]
    joint: float
    color: tuple[float, float, float]
    stagger: bool
    yaw: float = 0.0
    origin: tuple[float, float] = (0.0, 0.0)


@dataclass
class World:
    """What a layout produced, for texturing and drawing the objects."""

    kind: str
    camera: SceneCamera
    light: Light
    indoor: bool
    sky: tuple[np.ndarray, np.ndarray, float] | None = None  # horizon, zenith colours, clouds
    road: Road | None = None
    lane_marks: tuple = ()  # (offset, width, dashed, color)
    facades: list[Facade] = field(default_factory=list)
    paving: list[Paving] = field(default_factory=list)
    ceiling: tuple[float, float, float] | None = None  # height, light period, room yaw
    objects: list[Thing] = field(default_factory=list)  # things and vertical stuff, any order
    # Sequences: pose (x, y, yaw) of base_link in a fixed frame, so that ground texture stays on
    # the ground as the camera moves, and the lane-dash phase (m along the road at x = 0).
    ground_pose: tuple[float, float, float] | None = None
    lane_phase: float = 0.0


def random_camera(rng: np.random.Generator, width: int, height: int, indoor: bool) -> SceneCamera:
    """A plausible robot camera: 60-100 deg horizontal FOV, 0.3-1.6 m high, pitched 0-20 deg."""
    hfov = rng.uniform(60.0, 100.0)
    h = rng.uniform(0.3, 1.3) if indoor else rng.uniform(0.4, 1.6)
    pitch = math.radians(rng.uniform(0.0, 20.0))
    return SceneCamera.from_fov(width, height, hfov, h, pitch)


def random_light(rng: np.random.Generator, indoor: bool) -> Light:
    if indoor:
        el, amb, dif = rng.uniform(1.1, 1.5), rng.uniform(0.6, 0.8), rng.uniform(0.2, 0.4)
    else:
        el, amb, dif = rng.uniform(0.3, 1.2), rng.uniform(0.45, 0.65), rng.uniform(0.3, 0.6)
    az = rng.uniform(-math.pi, math.pi)
    d = np.array([math.cos(el) * math.cos(az), math.cos(el) * math.sin(az), math.sin(el)])
    return Light(d, amb, dif)


# ------------------------------------------------------------------ placement


def view_range(camera: SceneCamera) -> tuple[float, float]:
    """(nearest ground distance fully in view, tangent of half the horizontal FOV)."""
    vhalf = math.atan((camera.height - camera.cy) / camera.fy)
    ang = camera.pitch + vhalf
    near = camera.camera_height / math.tan(ang) if ang < math.pi / 2 - 1e-3 else 0.5
    return near, (camera.width / 2) / camera.fx


def _visible(camera: SceneCamera, x: float, y: float, r: float) -> bool:
    if x < max(1.0 + r, 2.0 * r):  # not on top of the camera; big things (cars) farther
        return False
    uv, z = camera.project(np.array([[x, y, 0.0]]))
    u, v = uv[0]
    return bool(
        z[0] > 0
        and -0.15 * camera.width < u < 1.15 * camera.width
        and camera.horizon_row + 1 < v < 1.25 * camera.height
    )


def place(rng, world: World, kind: str, sampler, *, tries: int = 12) -> Thing | None:
    """Draw parameters for `kind`, then up to `tries` positions from `sampler(rng, r)` ->
    (x, y, yaw) until one is visible and clear of the objects placed so far."""
    params = PARAMS[kind](rng)
    r = RADIUS[kind](params)
    for _ in range(tries):
        x, y, yaw = sampler(rng, r)
        if not _visible(world.camera, x, y, r):
            continue
        if any(math.hypot(x - o.x, y - o.y) < r + o.radius for o in world.objects):
            continue
        t = Thing(kind, x, y, yaw, r, params)
        world.objects.append(t)
        return t
    return None


def _distance(rng, camera: SceneCamera, far: float) -> float:
    near, _ = view_range(camera)
    lo = max(1.2, 0.8 * near)
    return lo + (max(far, lo + 1) - lo) * rng.random() ** 1.7


def area_sampler(camera: SceneCamera, far: float, inside=None):
    _, tan_half = view_range(camera)

    def sample(rng, r):
        x = _distance(rng, camera, far)
        y = rng.uniform(-1.15, 1.15) * x * tan_half
        if inside is not None and not inside(x, y, r):
            return -1.0, 0.0, 0.0
        return x, y, rng.uniform(-math.pi, math.pi)

    return sample


def road_sampler(camera: SceneCamera, road: Road, offsets, far: float, along: bool = True):
    """Positions at lateral offsets drawn from `offsets` (list of (lo, hi, yaw_flip))."""

    def sample(rng, r):
        s = _distance(rng, camera, far)
        lo, hi, flip = offsets[rng.integers(len(offsets))]
        x, y = road.point(s, rng.uniform(lo, hi))
        yaw = road.heading(s) + (math.pi if flip else 0.0)
        if not along:
            yaw = rng.uniform(-math.pi, math.pi)
        else:
            yaw += rng.normal(0, 0.05)
        return x, y, yaw

    return sample


def populate(rng, world, n: int, weights: dict, where: dict) -> None:
    kinds = list(weights)
    p = np.array([weights[k] for k in kinds], float)
    for _ in range(n):
        kind = kinds[rng.choice(len(kinds), p=p / p.sum())]
        samplers = where[kind]
        place(rng, world, kind, samplers[rng.integers(len(samplers))])
