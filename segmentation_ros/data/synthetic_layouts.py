"""Scene layouts of the synthetic world: street, rural road, park (outdoor) and room (indoor).

A layout draws the stuff (sky, ground regions, backdrops) into a `Canvas` and places objects on
the ground; `synthetic.generate_scene` then draws the objects far to near. Ground regions are
polygons in ground coordinates (z = 0), bands along a road centre line
y = c0 + c1 x + c2 x^2 (base_link), clipped and projected by the canvas. Raw labels: a stuff
region of category c carries c + 1; thing instance k carries S + 1 + k (S stuff classes).
"""

from __future__ import annotations

import math

import numpy as np

from segmentation_ros.data.classes import SYNTHETIC_CLASSES
from segmentation_ros.data.synthetic_camera import SceneCamera
from segmentation_ros.data.synthetic_render import (
    TEX_CEILING,
    TEX_FACADE,
    TEX_FLAT,
    TEX_GROUND,
    Canvas,
    circle,
)
from segmentation_ros.data.synthetic_shapes import Light, draw_hexahedron
from segmentation_ros.data.synthetic_world import (
    FAR,
    TEXTURE_AMPLITUDE,
    Facade,
    Paving,
    Road,
    World,
    area_sampler,
    place,
    populate,
    random_light,
    road_sampler,
    stuff_label,
)


def _jitter(rng, color, k=0.12) -> np.ndarray:
    return np.clip(np.asarray(color, float) * rng.uniform(1 - k, 1 + k, 3), 0, 255)


def _ground_color(rng, name: str) -> np.ndarray:
    base = {
        "road": (rng.uniform(55, 115),) * 3,
        "sidewalk": rng.uniform(140, 195) * np.array([1.0, 0.97, 0.92]),
        "terrain": rng.uniform(110, 160) * np.array([1.0, 0.8, 0.58]),
        "grass": rng.uniform(80, 130) * np.array([0.62, 1.0, 0.35]),
    }[name]
    return _jitter(rng, base, 0.06)


def _sky(rng) -> tuple[np.ndarray, np.ndarray, float]:
    if rng.random() < 0.25:  # overcast
        g = rng.uniform(170, 215)
        return _jitter(rng, (g, g, g * 1.03), 0.03), _jitter(rng, (g - 25,) * 3, 0.03), 0.0
    hor = _jitter(rng, (200, 218, 235), 0.05)
    zen = _jitter(rng, (70, 120, 200), 0.12)
    return hor, zen, float(rng.uniform(0.0, 0.8))


def _fill_ground(canvas, quads, color, name, amp=None):
    part = canvas.add_part(
        color, stuff_label(name), TEX_GROUND, TEXTURE_AMPLITUDE[name] if amp is None else amp
    )
    for q in quads:
        canvas.polygon(q, part)


def _base_ground(canvas, rng, name) -> None:
    q = np.array([[-FAR, -FAR, 0], [FAR, -FAR, 0], [FAR, FAR, 0], [-FAR, FAR, 0]], float)
    _fill_ground(canvas, [q], _ground_color(rng, name), name)


def _treeline(canvas, rng, dist: float, yaw: float) -> None:
    """A far vertical ribbon of vegetation with a bumpy top, across the view at `dist` m."""
    s = np.linspace(-6 * dist, 6 * dist, 60)
    top = rng.uniform(6, 14) + sum(
        rng.uniform(1, 4) * np.sin(s / rng.uniform(4, 25) + rng.uniform(0, 6)) for _ in range(3)
    )
    c, sn = math.cos(yaw), math.sin(yaw)
    x = dist * c - s * sn
    y = dist * sn + s * c
    bottom = np.stack([x, y, np.zeros_like(s)], 1)
    upper = np.stack([x, y, np.maximum(top, 2.0)], 1)[::-1]
    color = _jitter(rng, (55, 85, 45), 0.15)
    part = canvas.add_part(color, stuff_label("vegetation"), TEX_FLAT, 0.25)
    canvas.polygon(np.concatenate([bottom, upper]), part)


def _buildings(canvas, rng, road: Road, side: int, offset: float) -> Facade:
    """Building fronts along a straight road at lateral `offset` on `side` (+1 left)."""
    n = road.normal(0.0)
    e = np.array([n[1], -n[0]])  # along the road, +x
    o = road.center(0.0) + side * offset * n
    s = -40.0
    while s < 600.0:
        w = rng.uniform(8, 35)
        if rng.random() < 0.12:  # gap between buildings
            s += w * 0.5
            continue
        hgt = rng.uniform(5, 30)
        a, b = o + s * e, o + (s + w) * e
        q = np.array([[a[0], a[1], 0], [b[0], b[1], 0], [b[0], b[1], hgt], [a[0], a[1], hgt]])
        color = _jitter(rng, rng.uniform(90, 220) * np.array([1.0, 0.92, 0.82]), 0.15)
        canvas.polygon(q, canvas.add_part(color, stuff_label("building"), TEX_FACADE, 0.06))
        s += w
    return Facade(
        origin=(float(o[0]), float(o[1])),
        direction=(float(e[0]), float(e[1])),
        period=(rng.uniform(2.5, 4.5), rng.uniform(2.8, 3.6)),
        window=(rng.uniform(0.35, 0.65), rng.uniform(0.4, 0.6)),
        ground_floor=rng.uniform(3.0, 4.5),
        glass=tuple(_jitter(rng, (60, 75, 95), 0.3)),
    )


def _low_wall(canvas, rng, road: Road, side: int, offset: float, light: Light) -> None:
    """A wall or fence along a straight road (stuff `wall`), 0.25 m thick."""
    n = road.normal(0.0)
    e = np.array([n[1], -n[0]])
    o = road.center(0.0) + side * offset * n
    a, b = o - 40 * e, o + 300 * e
    ring = np.array([a, b, b + side * 0.25 * n, a + side * 0.25 * n])
    h = rng.uniform(0.5, 1.8)
    verts = np.concatenate(
        [np.c_[ring, np.zeros(4)], np.c_[ring, np.full(4, h)]], 0
    )  # bottom ring, then the top above it
    color = _jitter(rng, rng.uniform(100, 200) * np.array([1.0, 0.95, 0.88]), 0.1)
    draw_hexahedron(canvas, verts, color, stuff_label("wall"), light, amp=0.08)


# ------------------------------------------------------------------ layouts


def _street_ground(canvas, rng, world: World, sw: float, verge: float) -> np.ndarray:
    """Road, grass verges and sidewalks of a street, their paving and lane marks; returns the
    grass colour (for set-backs)."""
    road = world.road
    rw = road.width
    _base_ground(canvas, rng, "terrain" if rng.random() < 0.5 else "grass")
    _fill_ground(canvas, road.band(-rw / 2, rw / 2), _ground_color(rng, "road"), "road")
    side_col = _ground_color(rng, "sidewalk")
    grass_col = _ground_color(rng, "grass")
    for side in (-1, 1):
        if verge:
            _fill_ground(
                canvas, road.band(side * rw / 2, side * (rw / 2 + verge)), grass_col, "grass"
            )
        a = rw / 2 + verge
        _fill_ground(canvas, road.band(side * a, side * (a + sw)), side_col, "sidewalk")
    period = (rng.uniform(0.3, 0.8),) * 2
    stagger = bool(rng.random() < 0.5)
    yaw = math.atan(road.c1)
    world.paving.append(
        Paving(
            SYNTHETIC_CLASSES.id_of("sidewalk"),
            period,
            0.02,
            tuple(side_col * 0.75),
            stagger,
            yaw,
            (0.0, road.c0),
        )
    )
    white = (235, 235, 230)
    centre = (235, 200, 60) if rng.random() < 0.3 else white
    marks = [(0.0, 0.12, road.lanes == 2, centre)]
    if road.lanes == 4:
        marks += [(s * rw / 4, 0.12, True, white) for s in (-1, 1)]
    marks += [(s * (rw / 2 - 0.25), 0.12, False, white) for s in (-1, 1)]
    world.lane_marks = tuple(marks)
    return grass_col


def street(canvas: Canvas, rng, camera: SceneCamera) -> World:
    """Straight urban street: road with lane marks, sidewalks, verges, buildings, trees."""
    world = World("street", camera, random_light(rng, False), False, sky=_sky(rng))
    lanes = 2 if rng.random() < 0.7 else 4
    rw = lanes * rng.uniform(3.0, 3.6)
    sw = rng.uniform(1.8, 4.0)
    verge = rng.uniform(1.0, 2.5) if rng.random() < 0.4 else 0.0
    c0 = rng.uniform(-(rw / 2 + verge + sw * 0.8), rw / 2 + verge + sw * 0.8)
    road = Road(c0, math.tan(rng.normal(0, 0.08)), 0.0, rw, lanes)
    world.road = road
    grass_col = _street_ground(canvas, rng, world, sw, verge)
    outer = rw / 2 + verge + sw
    for side in (-1, 1):
        if rng.random() < 0.85:
            setback = rng.uniform(0.0, 4.0) if rng.random() < 0.5 else 0.0
            if setback:
                _fill_ground(
                    canvas, road.band(side * outer, side * (outer + setback)), grass_col, "grass"
                )
            world.facades.append(_buildings(canvas, rng, road, side, outer + setback))
        else:
            _treeline(canvas, rng, rng.uniform(40, 120), side * rng.uniform(0.3, 1.0))
        if rng.random() < 0.3:
            _low_wall(canvas, rng, road, side, outer, world.light)
    far = 45.0
    lanes_off = [(-rw / 2 + 1.2, -0.3, False), (0.3, rw / 2 - 1.2, True)]
    parked = [(-rw / 2 + 0.9, -rw / 2 + 1.1, False), (rw / 2 - 1.1, rw / 2 - 0.9, True)]
    walk = [(-(outer - 0.3), -(outer - sw + 0.3), False), (outer - sw + 0.3, outer - 0.3, False)]
    on_road = road_sampler(camera, road, lanes_off, far)
    on_edge = road_sampler(camera, road, parked, far)
    on_walk = road_sampler(camera, road, walk, far, along=False)
    on_road_any = road_sampler(camera, road, [(-rw / 2, rw / 2, False)], far, along=False)
    for _ in range(int(rng.integers(0, 6))):
        off = (rw / 2 + verge / 2) if verge else (outer - 0.4)
        tree_at = road_sampler(
            camera, road, [(-off - 0.1, -off + 0.1, 0), (off - 0.1, off + 0.1, 0)], far
        )
        place(rng, world, "tree", tree_at)
    weights = {"car": 0.35, "person": 0.35, "bicycle": 0.12, "traffic_cone": 0.1, "box": 0.08}
    where = {
        "car": [on_road, on_road, on_edge],
        "person": [on_walk, on_walk, on_road_any],
        "bicycle": [on_walk, on_edge],
        "traffic_cone": [on_road_any],
        "box": [on_walk],
    }
    populate(rng, world, int(rng.integers(3, 15)), weights, where)
    return world


def rural(canvas: Canvas, rng, camera: SceneCamera) -> World:
    """Curving country road with terrain shoulders, grass, bushes and a far tree line."""
    world = World("rural", camera, random_light(rng, False), False, sky=_sky(rng))
    rw = rng.uniform(5.0, 7.0)
    sh = rng.uniform(0.5, 2.0)
    c0 = rng.uniform(-(rw / 2 + sh), rw / 2 + sh)
    road = Road(c0, math.tan(rng.normal(0, 0.12)), rng.normal(0, 0.004), rw, 2)
    world.road = road
    _base_ground(canvas, rng, "grass")
    _fill_ground(canvas, road.band(-rw / 2, rw / 2), _ground_color(rng, "road"), "road")
    tcol = _ground_color(rng, "terrain")
    for side in (-1, 1):
        _fill_ground(canvas, road.band(side * rw / 2, side * (rw / 2 + sh)), tcol, "terrain")
    world.lane_marks = ((0.0, 0.1, True, (235, 235, 230)),) if rng.random() < 0.7 else ()
    _treeline(canvas, rng, rng.uniform(50, 200), rng.uniform(-0.5, 0.5))
    far = 45.0
    shoulder = [(-(rw / 2 + sh), -rw / 2, False), (rw / 2, rw / 2 + sh, False)]
    beyond = [(-(rw / 2 + sh + 15), -(rw / 2 + sh + 1), 0), (rw / 2 + sh + 1, rw / 2 + sh + 15, 0)]
    lanes_off = [(-rw / 2 + 1.1, -0.6, False), (0.6, rw / 2 - 1.1, True)]
    for kind, n in (("tree", int(rng.integers(0, 6))), ("bush", int(rng.integers(0, 6)))):
        for _ in range(n):
            place(rng, world, kind, road_sampler(camera, road, beyond, 60.0, along=False))
    on_road = road_sampler(camera, road, lanes_off, far)
    on_sh = road_sampler(camera, road, shoulder, far, along=False)
    on_any = road_sampler(camera, road, [(-rw / 2, rw / 2, False)], far, along=False)
    weights = {"car": 0.35, "person": 0.25, "bicycle": 0.15, "traffic_cone": 0.2, "box": 0.05}
    where = {
        "car": [on_road],
        "person": [on_sh, on_any],
        "bicycle": [on_sh, on_road],
        "traffic_cone": [on_any, on_sh],
        "box": [on_sh],
    }
    populate(rng, world, int(rng.integers(2, 9)), weights, where)
    return world


def park(canvas: Canvas, rng, camera: SceneCamera) -> World:
    """Lawn with a winding path (sidewalk or terrain), trees, bushes, walls, far backdrop."""
    world = World("park", camera, random_light(rng, False), False, sky=_sky(rng))
    _base_ground(canvas, rng, "grass")
    pw = rng.uniform(1.5, 4.0)
    road = Road(rng.uniform(-2.5, 2.5), math.tan(rng.normal(0, 0.25)), rng.normal(0, 0.02), pw, 1)
    world.road = road
    path = "sidewalk" if rng.random() < 0.5 else "terrain"
    pcol = _ground_color(rng, path)
    _fill_ground(canvas, road.band(-pw / 2, pw / 2), pcol, path)
    if path == "sidewalk":
        world.paving.append(
            Paving(
                SYNTHETIC_CLASSES.id_of("sidewalk"),
                (rng.uniform(0.2, 0.5),) * 2,
                0.015,
                tuple(pcol * 0.8),
                True,
                math.atan(road.c1),
                (0.0, road.c0),
            )
        )
    for _ in range(int(rng.integers(0, 4))):  # terrain patches
        cx, cy = rng.uniform(3, 40), rng.uniform(-20, 20)
        r = rng.uniform(1, 5)
        pts = circle(14) * (r * rng.uniform(0.5, 1.0, (14, 1))) + (cx, cy)
        q = np.concatenate([pts, np.zeros((14, 1))], 1)
        _fill_ground(canvas, [q], _ground_color(rng, "terrain"), "terrain")
    if rng.random() < 0.5:
        _treeline(canvas, rng, rng.uniform(40, 150), rng.uniform(-0.5, 0.5))
    else:
        straight = Road(0.0, 0.0, 0.0, 1.0, 1)
        world.facades.append(
            _buildings(canvas, rng, straight, 1 if rng.random() < 0.5 else -1, rng.uniform(30, 80))
        )
    inside = area_sampler(camera, 50.0)
    for kind, n in (("tree", int(rng.integers(1, 8))), ("bush", int(rng.integers(0, 6)))):
        for _ in range(n):
            place(rng, world, kind, inside)
    on_path = road_sampler(camera, road, [(-pw / 2, pw / 2, False)], 40.0, along=False)
    near = area_sampler(camera, 35.0)
    weights = {"person": 0.5, "bicycle": 0.2, "traffic_cone": 0.1, "box": 0.15, "car": 0.05}
    where = {
        "person": [on_path, near],
        "bicycle": [on_path, near],
        "traffic_cone": [near],
        "box": [near],
        "car": [near],
    }
    populate(rng, world, int(rng.integers(2, 12)), weights, where)
    return world


_FLOORS = ((170, 120, 70), (190, 185, 175), (120, 120, 125), (200, 170, 130), (90, 95, 110))
_WALLS = ((230, 228, 220), (200, 210, 215), (225, 215, 190), (180, 185, 190), (150, 170, 150))


def _room_wall(canvas, rng, world: World, q: np.ndarray, color) -> None:
    """One wall quad [4, 3] (bottom edge q0-q1, top q3-q2) with skirting and 0-2 doors."""
    wall = stuff_label("wall")
    n = np.cross(q[1] - q[0], q[3] - q[0])
    n /= np.linalg.norm(n)
    if not canvas.facing(q.mean(0), n):
        n = -n
    canvas.polygon(q, canvas.add_part(world.light.shade(color, n), wall, TEX_FLAT, 0.03))
    skirt = q.copy()
    skirt[2:, 2] = rng.uniform(0.06, 0.12)
    canvas.polygon(skirt, canvas.add_part(color * 0.55, wall))
    along = q[1] - q[0]
    length = float(np.linalg.norm(along))
    hc = float(q[2, 2])
    for _ in range(int(rng.integers(0, 3))):
        t0 = rng.uniform(0.05, 0.9) * length
        t1 = t0 + rng.uniform(0.8, 1.6)
        if t1 > length:
            continue
        p0, p1 = q[0] + along * t0 / length, q[0] + along * t1 / length
        top = np.array([0.0, 0.0, rng.uniform(2.0, min(2.3, hc - 0.1))])
        door_c = _jitter(rng, rng.uniform(60, 200) * np.array([1.0, 0.85, 0.65]), 0.1)
        door = np.array([p0, p1, p1 + top, p0 + top])
        canvas.polygon(door, canvas.add_part(world.light.shade(door_c, n), wall))


def room(canvas: Canvas, rng, camera: SceneCamera) -> World:
    """Indoor hall: floor with tiles or planks, walls with doors and skirting, a ceiling with
    light panels, pillars; people, boxes, cones, bicycles. The room is a rectangle turned by
    `yaw` around the camera: a (along the room) from -20 m to `depth`, b from -wr to wl."""
    world = World("indoor", camera, random_light(rng, True), True)
    yaw = rng.normal(0, 0.25)
    depth = rng.uniform(6, 30)
    wl, wr = rng.uniform(1.5, 10), rng.uniform(1.5, 10)
    hc = rng.uniform(2.5, 4.5)
    c, s = math.cos(yaw), math.sin(yaw)

    def to_base(a, b, z=0.0):
        return np.array([a * c - b * s, a * s + b * c, z])

    corners = [(-20, -wr), (depth, -wr), (depth, wl), (-20, wl)]
    canvas.fill_all((0, 0, 0), 0, TEX_FLAT)  # void where nothing is drawn (never, in practice)
    ceil_c = _jitter(rng, (225, 225, 220), 0.05)
    ceil = np.array([to_base(a, b, hc) for a, b in corners])
    canvas.polygon(ceil, canvas.add_part(ceil_c, stuff_label("ceiling"), TEX_CEILING, 0.03))
    world.ceiling = (hc, rng.uniform(1.5, 3.5), yaw)
    floor_c = _jitter(rng, _FLOORS[rng.integers(len(_FLOORS))], 0.1)
    floor = np.array([to_base(a, b) for a, b in corners])
    _fill_ground(canvas, [floor], floor_c, "floor")
    planks = bool(rng.random() < 0.4)
    if planks:
        period = (rng.uniform(0.8, 1.5), rng.uniform(0.12, 0.2))
    else:
        period = (rng.uniform(0.3, 1.0),) * 2
    floor_id = SYNTHETIC_CLASSES.id_of("floor")
    joint = 0.006 if planks else 0.01
    world.paving.append(Paving(floor_id, period, joint, tuple(floor_c * 0.7), planks, yaw))
    wall_c = _jitter(rng, _WALLS[rng.integers(len(_WALLS))], 0.06)
    for (a0, b0), (a1, b1) in zip(corners[:3], corners[1:]):
        q = np.array([to_base(a0, b0), to_base(a1, b1), to_base(a1, b1, hc), to_base(a0, b0, hc)])
        _room_wall(canvas, rng, world, q, wall_c)

    def inside(x, y, r):
        a, b = x * c + y * s, -x * s + y * c
        return -wr + r + 0.2 < b < wl - r - 0.2 and a < depth - r - 0.2

    sampler = area_sampler(camera, depth, inside)
    for _ in range(int(rng.integers(0, 4))):
        pillar = place(rng, world, "pillar", sampler)
        if pillar is not None:
            pillar.params["height"] = hc
    weights = {"person": 0.35, "box": 0.4, "traffic_cone": 0.15, "bicycle": 0.1}
    populate(rng, world, int(rng.integers(2, 13)), weights, {k: [sampler] for k in weights})
    return world


LAYOUTS = {"street": street, "rural": rural, "park": park, "indoor": room}
#: stuff label of the vertical-stuff object kinds (drawn with the things, far to near)
OBJECT_STUFF = {"tree": "vegetation", "bush": "vegetation", "pillar": "wall"}
