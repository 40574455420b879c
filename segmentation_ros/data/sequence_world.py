"""A persistent synthetic world for camera sequences: a straight street in a fixed `odom` frame,
a camera that moves along it (a drive in the right lane or a walk on the right pavement) and
agents that move on their own at constant ground velocities (cars, people, cyclists) beside
static ones (parked cars, cones, boxes, trees).

Frames (ROS REP-103 / REP-105): `odom` is fixed to the world, x along the street, y to its left,
z up; the road centre line is y = 0. `base_link` is the ground point below the camera, x along
the camera's heading; the camera sits on it as in `synthetic_camera` (height, pitch). The pose
of base_link in odom at time t is (x, y, yaw): p_odom = R(yaw) p_base + (x, y).
Times in seconds, lengths in metres, velocities in m/s (odom frame). Rendering is in
`sequence_render`, files in `sequence_io`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from segmentation_ros.data.synthetic_camera import SceneCamera
from segmentation_ros.data.synthetic_catalogue import PARAMS, RADIUS
from segmentation_ros.data.synthetic_shapes import Light

KINDS = ("drive", "walk")
#: thing kinds that carry an instance (tracked) id; trees are stuff (vegetation)
AGENT_KINDS = ("person", "car", "bicycle", "traffic_cone", "box")


@dataclass(frozen=True)
class Agent:
    """One thing in the world. id: stable instance id (>= 1) in every frame it is visible;
    (x0, y0): ground contact in odom at t = 0; (vx, vy): constant ground velocity in odom (m/s);
    yaw: heading in odom (rad); radius: footprint (m); params: shape (see `synthetic_catalogue`);
    stride: step frequency (Hz) of a walker's legs, 0 for the others."""

    id: int
    kind: str
    x0: float
    y0: float
    vx: float
    vy: float
    yaw: float
    radius: float
    params: dict = field(compare=False)
    stride: float = 0.0

    def position(self, t: float) -> tuple[float, float]:
        return self.x0 + self.vx * t, self.y0 + self.vy * t


@dataclass(frozen=True)
class Building:
    """A building front on the side `side` (+1 left) from x0 to x1 (odom) at |y| = offset."""

    side: int
    x0: float
    x1: float
    offset: float
    height: float
    color: tuple[float, float, float]


@dataclass(frozen=True)
class StreetPlan:
    """Everything of the street drawn once per sequence (colours and sizes)."""

    lanes: int
    road_width: float
    sidewalk: float
    verge: float
    road_color: np.ndarray
    sidewalk_color: np.ndarray
    verge_color: np.ndarray
    base_ground: str
    base_color: np.ndarray
    paving: tuple  # (period (a, c), joint, colour, stagger)
    lane_marks: tuple  # (offset, width, dashed, colour), offsets from the centre line
    facade: tuple  # (period, window, ground floor, glass) shared by all buildings
    buildings: tuple[Building, ...]
    trees: tuple[tuple[float, float, dict], ...]  # (x, y, params) in odom
    sky: tuple
    light: Light


@dataclass(frozen=True)
class SequenceWorld:
    """The sequence: seed, kind ("drive" / "walk"), rate (Hz), number of frames, the camera
    (intrinsics + mounting), the camera path (forward speed m/s, start lateral position y0,
    a gentle weave of amplitude `weave` m and period `weave_period` s), the street and the
    agents."""

    seed: int
    kind: str
    rate: float
    num_frames: int
    camera: SceneCamera
    speed: float
    y0: float
    weave: float
    weave_period: float
    street: StreetPlan
    agents: tuple[Agent, ...]
    effects: bool = True

    def time(self, k: int) -> float:
        """Stamp of frame k, seconds since the first frame."""
        return k / self.rate

    def pose(self, t: float) -> tuple[float, float, float]:
        """Camera base_link pose (x, y, yaw) in odom at time t: x = v t,
        y = y0 + weave sin(w t), yaw along the path's tangent."""
        w = 2 * math.pi / self.weave_period
        x = self.speed * t
        y = self.y0 + self.weave * math.sin(w * t)
        return x, y, math.atan2(self.weave * w * math.cos(w * t), self.speed)

    def twist(self, t: float) -> tuple[float, float, float]:
        """Camera velocity in base_link (vx forward, vy left, m/s) and yaw rate (rad/s)."""
        w = 2 * math.pi / self.weave_period
        dx, dy = self.speed, self.weave * w * math.cos(w * t)
        ddy = -self.weave * w * w * math.sin(w * t)
        return math.hypot(dx, dy), 0.0, dx * ddy / (dx * dx + dy * dy)


def odom_to_base(pose: tuple[float, float, float], xy: np.ndarray) -> np.ndarray:
    """[N, 2] odom points -> [N, 2] base_link points for a base_link pose (x, y, yaw)."""
    x, y, yaw = pose
    c, s = math.cos(yaw), math.sin(yaw)
    d = np.asarray(xy, dtype=np.float64).reshape(-1, 2) - (x, y)
    return np.stack([c * d[:, 0] + s * d[:, 1], -s * d[:, 0] + c * d[:, 1]], 1)


def base_to_odom(pose: tuple[float, float, float], xy: np.ndarray) -> np.ndarray:
    """[N, 2] base_link points -> [N, 2] odom points for a base_link pose (x, y, yaw)."""
    x, y, yaw = pose
    c, s = math.cos(yaw), math.sin(yaw)
    p = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
    return np.stack([c * p[:, 0] - s * p[:, 1] + x, s * p[:, 0] + c * p[:, 1] + y], 1)


# ------------------------------------------------------------------ drawing a world


def _jit(rng, color, k=0.1) -> np.ndarray:
    return np.clip(np.asarray(color, float) * rng.uniform(1 - k, 1 + k, 3), 0, 255)


def _street(rng, length: float) -> StreetPlan:
    from segmentation_ros.data.synthetic_layouts import _ground_color, _sky
    from segmentation_ros.data.synthetic_world import random_light

    lanes = 2 if rng.random() < 0.75 else 4
    rw = lanes * rng.uniform(3.1, 3.6)
    sw = rng.uniform(3.0, 4.5)
    verge = rng.uniform(1.0, 2.0) if rng.random() < 0.35 else 0.0
    base = "terrain" if rng.random() < 0.5 else "grass"
    white = (235, 235, 230)
    marks = [(0.0, 0.12, lanes == 2, (235, 200, 60) if rng.random() < 0.3 else white)]
    if lanes == 4:
        marks += [(s * rw / 4, 0.12, True, white) for s in (-1, 1)]
    marks += [(s * (rw / 2 - 0.25), 0.12, False, white) for s in (-1, 1)]
    side_col = _ground_color(rng, "sidewalk")
    paving = ((rng.uniform(0.3, 0.8),) * 2, 0.02, tuple(side_col * 0.75), bool(rng.random() < 0.5))
    facade = (
        (rng.uniform(2.5, 4.5), rng.uniform(2.8, 3.6)),
        (rng.uniform(0.35, 0.65), rng.uniform(0.4, 0.6)),
        rng.uniform(3.0, 4.5),
        tuple(_jit(rng, (60, 75, 95), 0.3)),
    )
    outer = rw / 2 + verge + sw
    buildings = []
    for side in (-1, 1):
        x = -80.0
        while x < length + 700.0:
            w = rng.uniform(8, 35)
            if rng.random() < 0.12:
                x += 0.5 * w
                continue
            color = _jit(rng, rng.uniform(90, 220) * np.array([1.0, 0.92, 0.82]), 0.15)
            buildings.append(Building(side, x, x + w, outer, rng.uniform(5, 30), tuple(color)))
            x += w
    trees = []
    if verge:
        for side in (-1, 1):
            for x in np.arange(rng.uniform(-30, 0), length + 120, rng.uniform(12, 30)):
                y = side * (rw / 2 + verge / 2)
                trees.append((float(x), float(y), PARAMS["tree"](rng)))
    return StreetPlan(
        lanes,
        rw,
        sw,
        verge,
        _ground_color(rng, "road"),
        side_col,
        _ground_color(rng, "grass"),
        base,
        _ground_color(rng, base),
        paving,
        tuple(marks),
        facade,
        tuple(buildings),
        tuple(trees),
        _sky(rng),
        random_light(rng, False),
    )


def _agents(rng, st: StreetPlan, kind: str, speed: float, y_cam: float, length: float):
    """Agents along x in [-30, length + 90]: lanes of cars (one speed per lane, spaced so that
    they never overlap), parked cars on the left edge, walkers and standing people on both
    pavements, cyclists on the right edge, cones and boxes."""
    rw, sw, verge = st.road_width, st.sidewalk, st.verge
    x_lo, x_hi = -30.0, length + 90.0
    out: list[tuple] = []  # (kind, x0, y0, vx, yaw, stride)

    def row(kind_, y, v, yaw, gap, stride=0.0, lo=x_lo, n_max=99):
        x = lo + rng.uniform(0, gap[1])
        n = 0
        while x < x_hi + abs(v) * length / max(speed, 0.5) and n < n_max:
            out.append((kind_, x, y, v, yaw, stride))
            x += rng.uniform(*gap)
            n += 1

    lane_w = rw / st.lanes
    right_lanes = [-rw / 2 + lane_w * (i + 0.5) for i in range(st.lanes // 2)]
    left_lanes = [-y for y in right_lanes]
    for y in right_lanes:  # same direction; faster than a driving camera, ahead of it
        v = speed + rng.uniform(1.0, 4.0) if kind == "drive" else rng.uniform(5.0, 12.0)
        lo = 10.0 if kind == "drive" and abs(y - y_cam) < lane_w / 2 else x_lo
        row("car", y + rng.normal(0, 0.1), v, 0.0, (14.0, 45.0), lo=lo)
    for y in left_lanes:  # oncoming
        row("car", y + rng.normal(0, 0.1), -rng.uniform(5.0, 12.0), math.pi, (16.0, 50.0))
    parked = verge == 0.0
    if parked:  # half on the left pavement, clear of the oncoming lane
        row("car", rw / 2 + 0.9, 0.0, math.pi, (7.0, 30.0))
    if kind == "drive":
        row("bicycle", -rw / 2 + 0.35, rng.uniform(3.0, 6.0), 0.0, (25.0, 80.0), n_max=3)
    for side in (-1, 1):  # pavements: walkers both ways, a few standing
        inner = 2.1 if parked and side == 1 else 0.4
        y_in, y_out = side * (rw / 2 + verge + inner), side * (rw / 2 + verge + sw - 0.4)
        for _ in range(int(rng.integers(5, 11))):
            y = rng.uniform(min(y_in, y_out), max(y_in, y_out))
            if kind == "walk" and abs(y - y_cam) < 0.9:
                y = y_cam + math.copysign(0.9, y - y_cam + 1e-9)
            x = rng.uniform(x_lo, x_hi)
            moving = rng.random() < 0.8
            v = rng.choice([-1, 1]) * rng.uniform(0.9, 1.7) if moving else 0.0
            yaw = 0.0 if v > 0 else (math.pi if v < 0 else rng.uniform(-math.pi, math.pi))
            out.append(("person", x, y, v, yaw, rng.uniform(0.8, 1.0) if moving else 0.0))
    for _ in range(int(rng.integers(1, 5))):
        k = "traffic_cone" if rng.random() < 0.6 else "box"
        y = (rw / 2 - 0.3) if k == "traffic_cone" else -(rw / 2 + verge + sw - 0.3)
        out.append((k, rng.uniform(0.0, x_hi), y, 0.0, rng.uniform(-math.pi, math.pi), 0.0))
    agents, taken = [], []
    for k, x, y, v, yaw, stride in out:
        params = PARAMS[k](rng)
        r = RADIUS[k](params)
        if v == 0.0 and any(abs(x - a) < r + b and abs(y - c) < 2.0 for a, c, b in taken):
            continue  # static things clear of each other
        if v == 0.0:
            taken.append((x, y, r))
        agents.append(Agent(len(agents) + 1, k, x, y, v, 0.0, yaw, r, params, stride))
    return tuple(agents)


def build_world(
    seed: int,
    *,
    kind: str | None = None,
    num_frames: int = 150,
    rate: float = 10.0,
    width: int = 640,
    height: int = 480,
    effects: bool = True,
) -> SequenceWorld:
    """Draw a sequence world from `seed` (a pure function of the arguments).

    kind: "drive" (camera in the right lane, 5-10 m/s, 1.2-1.6 m high) or "walk" (camera on
    the right pavement, 1.1-1.6 m/s, 1.2-1.7 m high); None: drawn from the seed.
    num_frames >= 1 frames at `rate` Hz (> 0); width, height: image size in pixels.
    """
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise ValueError(f"seed must be an int >= 0, got {seed!r}")
    if kind is not None and kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS} or None, got {kind!r}")
    if isinstance(num_frames, bool) or not isinstance(num_frames, int) or num_frames < 1:
        raise ValueError(f"num_frames must be an int >= 1, got {num_frames!r}")
    if not (isinstance(rate, int | float) and math.isfinite(rate) and 0 < rate <= 1000):
        raise ValueError(f"rate must be in (0, 1000] Hz, got {rate!r}")
    rng = np.random.default_rng([int(seed), 16])
    if kind is None:
        kind = "drive" if rng.random() < 0.6 else "walk"
    drive = kind == "drive"
    hfov = rng.uniform(70.0, 95.0)
    h = rng.uniform(1.2, 1.6) if drive else rng.uniform(1.2, 1.7)
    camera = SceneCamera.from_fov(width, height, hfov, h, math.radians(rng.uniform(3.0, 12.0)))
    speed = rng.uniform(5.0, 10.0) if drive else rng.uniform(1.1, 1.6)
    length = speed * num_frames / rate
    street = _street(rng, length)
    rw = street.road_width
    if drive:
        y0 = -rw / 2 + rw / street.lanes * (0.5 + (street.lanes // 2 - 1))
    else:
        y0 = -(rw / 2 + street.verge + 0.6 + rng.uniform(0.0, 0.4))
    weave = rng.uniform(0.1, 0.35) if drive else rng.uniform(0.05, 0.15)
    agents = _agents(rng, street, kind, speed, y0, length)
    return SequenceWorld(
        int(seed),
        kind,
        float(rate),
        num_frames,
        camera,
        speed,
        y0,
        weave,
        float(rng.uniform(6.0, 12.0)),
        street,
        agents,
        bool(effects),
    )
