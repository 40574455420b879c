"""Rendering one frame of a `SequenceWorld`: the world moved into the camera's base_link at the
frame's time, drawn with the still-scene renderer (`synthetic_render`, `synthetic_catalogue`,
`synthetic_texture`), and its exact panoptic annotation with stable instance ids.

Segment ids of a frame (the id map's values): stuff = category id + 1 (1..10); a thing =
`THING_ID_BASE` + its agent id, the same in every frame where it is visible; 0 = void.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import numpy as np

from segmentation_ros.data.classes import SYNTHETIC_CLASSES
from segmentation_ros.data.sequence_world import SequenceWorld, base_to_odom, odom_to_base
from segmentation_ros.data.synthetic_catalogue import DRAW
from segmentation_ros.data.synthetic_keypoints import KEYPOINT_KIND, NUM_KEYPOINTS, PendingKeypoints
from segmentation_ros.data.synthetic_render import TEX_FACADE, TEX_GROUND, TEX_SKY, Canvas
from segmentation_ros.data.synthetic_scene import MIN_AREA, _boxes
from segmentation_ros.data.synthetic_shapes import Light, Thing
from segmentation_ros.data.synthetic_texture import shade
from segmentation_ros.data.synthetic_world import (
    FAR,
    TEXTURE_AMPLITUDE,
    Facade,
    Paving,
    Road,
    World,
    stuff_label,
)

THING_ID_BASE = 1000


@dataclass(frozen=True)
class FrameSegments:
    """Segments of one frame, struct of arrays (stuff first by category, then things by id).

    ids:          [N] int32 segment id in the id map (see module docstring).
    category_ids: [N] int64 `SYNTHETIC_CLASSES` category id.
    track_ids:    [N] int64 agent id (stable over the sequence), 0 for stuff.
    bboxes:       [N, 4] int64 (x, y, w, h) tightest box of the visible pixels.
    areas:        [N] int64 visible pixel count (>= min_area).
    ground_xy:    [N, 2] float64 ground contact (x, y) in odom, m; NaN for stuff.
    velocity:     [N, 2] float64 ground velocity (vx, vy) in odom, m/s; NaN for stuff.
    keypoints:    [N, K, 3] float64 people's exact keypoints (x, y, visibility), COCO pixels
                  (`synthetic_keypoints`); zeros for every other segment.
    """

    ids: np.ndarray
    category_ids: np.ndarray
    track_ids: np.ndarray
    bboxes: np.ndarray
    areas: np.ndarray
    ground_xy: np.ndarray
    velocity: np.ndarray
    keypoints: np.ndarray

    def __len__(self) -> int:
        return int(self.ids.shape[0])

    def __getitem__(self, item) -> FrameSegments:
        return FrameSegments(*(getattr(self, f.name)[item] for f in fields(self)))

    @property
    def is_thing(self) -> np.ndarray:
        return self.track_ids > 0


@dataclass(frozen=True, eq=False)
class SequenceFrame:
    """Frame `index` at `stamp` s: image [H, W, 3] uint8 RGB, id_map [H, W] int32, segments,
    pose (x, y, yaw) of base_link in odom and the camera twist (vx, vy m/s in base_link, yaw
    rate rad/s)."""

    index: int
    stamp: float
    image: np.ndarray
    id_map: np.ndarray
    segments: FrameSegments
    pose: tuple[float, float, float]
    twist: tuple[float, float, float]


def _road(pose, st) -> Road:
    """The odom road y = 0 as a `Road` in base_link (a straight line there too)."""
    q = odom_to_base(pose, [[0.0, 0.0], [1.0, 0.0]])
    d = q[1] - q[0]
    c1 = d[1] / d[0]
    return Road(float(q[0, 1] - c1 * q[0, 0]), float(c1), 0.0, st.road_width, st.lanes)


def _quad_base(pose, xy: np.ndarray, z: np.ndarray) -> np.ndarray:
    return np.concatenate([odom_to_base(pose, xy), np.asarray(z, float)[:, None]], 1)


def _fill(canvas, quads, color, name) -> None:
    part = canvas.add_part(color, stuff_label(name), TEX_GROUND, TEXTURE_AMPLITUDE[name])
    for q in quads:
        canvas.polygon(q, part)


def _draw_street(canvas: Canvas, sw: SequenceWorld, pose, world: World) -> None:
    st = sw.street
    rw, road = st.road_width, world.road
    canvas.fill_all((0, 0, 0), stuff_label("sky"), TEX_SKY, 0.0)
    far = np.array([[-FAR, -FAR, 0], [FAR, -FAR, 0], [FAR, FAR, 0], [-FAR, FAR, 0]], float)
    _fill(canvas, [far], st.base_color, st.base_ground)
    _fill(canvas, road.band(-rw / 2, rw / 2), st.road_color, "road")
    for side in (-1, 1):
        if st.verge:
            _fill(
                canvas,
                road.band(side * rw / 2, side * (rw / 2 + st.verge)),
                st.verge_color,
                "grass",
            )
        a = rw / 2 + st.verge
        _fill(canvas, road.band(side * a, side * (a + st.sidewalk)), st.sidewalk_color, "sidewalk")
    for b in st.buildings:
        y = b.side * b.offset
        xy = np.array([[b.x0, y], [b.x1, y], [b.x1, y], [b.x0, y]])
        q = _quad_base(pose, xy, np.array([0.0, 0.0, b.height, b.height]))
        canvas.polygon(q, canvas.add_part(b.color, stuff_label("building"), TEX_FACADE, 0.06))


def _world(sw: SequenceWorld, pose) -> World:
    st = sw.street
    yaw = pose[2]
    c, s = math.cos(-yaw), math.sin(-yaw)
    d = st.light.direction
    light = Light(
        np.array([c * d[0] - s * d[1], s * d[0] + c * d[1], d[2]]),
        st.light.ambient,
        st.light.diffuse,
    )
    road = _road(pose, st)
    world = World("street", sw.camera, light, False, sky=st.sky, road=road)
    world.lane_marks = st.lane_marks
    world.ground_pose = pose
    world.lane_phase = float(base_to_odom(pose, [[0.0, road.c0]])[0, 0])
    o = odom_to_base(pose, [[0.0, 0.0]])[0]
    period, joint, color, stagger = st.paving
    world.paving.append(
        Paving(SYNTHETIC_CLASSES.id_of("sidewalk"), period, joint, color, stagger, -yaw, tuple(o))
    )
    period, window, ground_floor, glass = st.facade
    e = (math.cos(-yaw), math.sin(-yaw))
    for side in (-1, 1):
        if any(b.side == side for b in st.buildings):
            oo = odom_to_base(pose, [[0.0, side * (st.road_width / 2 + st.verge + st.sidewalk)]])[0]
            world.facades.append(Facade(tuple(oo), e, period, window, ground_floor, glass))
    return world


def render_frame(sw: SequenceWorld, k: int, *, min_area: int = MIN_AREA) -> SequenceFrame:
    """Frame k (0 <= k < num_frames) of the sequence, a pure function of (world, k)."""
    if not 0 <= k < sw.num_frames:
        raise ValueError(f"frame index must be in 0..{sw.num_frames - 1}, got {k}")
    t = sw.time(k)
    pose = sw.pose(t)
    canvas = Canvas(sw.camera)
    world = _world(sw, pose)
    _draw_street(canvas, sw, pose, world)
    things: list[tuple[Thing, int]] = []  # (thing in base_link, agent id or 0 for a tree)
    for x, y, params in sw.street.trees:
        bx, by = odom_to_base(pose, [[x, y]])[0]
        things.append((Thing("tree", float(bx), float(by), 0.0, 0.4, params), 0))
    for a in sw.agents:
        bx, by = odom_to_base(pose, [a.position(t)])[0]
        if bx < -2.0 or math.hypot(bx, by) > 150.0:
            continue
        params = a.params
        if a.stride:  # legs and arms swing with the step
            ph = 2 * math.pi * a.stride * t + a.id
            params = {**params, "swing": math.sin(ph), "spread": 0.03 + 0.03 * abs(math.cos(ph))}
        things.append(
            (Thing(a.kind, float(bx), float(by), a.yaw - pose[2], a.radius, params), a.id)
        )
    things.sort(key=lambda ti: (-ti[0].distance, ti[1]))
    num_stuff = SYNTHETIC_CLASSES.num_stuff
    drawn_ids, pending = [], {}
    for thing, aid in things:
        if thing.distance < 0.3:
            continue
        if aid:
            label = num_stuff + 1 + len(drawn_ids)
            drawn_ids.append(aid)
        else:
            label = stuff_label("vegetation")
        DRAW[thing.kind](canvas, thing, label, world.light)
        if aid and thing.kind == KEYPOINT_KIND:
            pending[label] = PendingKeypoints(canvas, thing, label)
    world.objects = [ti[0] for ti in things if ti[0].distance >= 0.3]
    image = shade(canvas, world, np.random.default_rng([sw.seed, 17]), effects=sw.effects)
    raw = np.asarray(canvas.labels, np.int32)[canvas.parts]
    return SequenceFrame(
        k, t, image, *_annotate(sw, raw, drawn_ids, t, min_area, pending), pose, sw.twist(t)
    )


def _annotate(
    sw: SequenceWorld, raw: np.ndarray, drawn_ids: list[int], t: float, min_area: int, pending
):
    num_stuff = SYNTHETIC_CLASSES.num_stuff
    n_raw = num_stuff + 1 + len(drawn_ids)
    counts = np.bincount(raw.ravel(), minlength=n_raw)
    keep = counts >= max(1, min_area)
    keep[0] = False
    seg_id = np.zeros(n_raw, np.int32)
    seg_id[1 : num_stuff + 1] = np.arange(1, num_stuff + 1)
    seg_id[num_stuff + 1 :] = THING_ID_BASE + np.asarray(drawn_ids, np.int32)
    kept = np.flatnonzero(keep)
    compact = np.zeros(n_raw, np.int32)
    compact[kept] = np.arange(1, len(kept) + 1, dtype=np.int32)
    boxes, areas = _boxes(compact[raw], len(kept))
    by_id = {a.id: a for a in sw.agents}
    cats, tracks, xy, vel = [], [], [], []
    keypoints = np.zeros((len(kept), NUM_KEYPOINTS, 3))
    for row, r in enumerate(kept):
        if r in pending:
            keypoints[row] = pending[r].annotate(raw)
    for r in kept:
        if r <= num_stuff:
            cats.append(r - 1)
            tracks.append(0)
            xy.append((math.nan, math.nan))
            vel.append((math.nan, math.nan))
        else:
            a = by_id[drawn_ids[r - num_stuff - 1]]
            cats.append(SYNTHETIC_CLASSES.id_of(a.kind))
            tracks.append(a.id)
            xy.append(a.position(t))
            vel.append((a.vx, a.vy))
    order = np.argsort(seg_id[kept], kind="stable")
    lut = np.where(keep, seg_id, 0).astype(np.int32)
    segments = FrameSegments(
        ids=seg_id[kept][order],
        category_ids=np.asarray(cats, np.int64)[order],
        track_ids=np.asarray(tracks, np.int64)[order],
        bboxes=boxes[1:][order].reshape(-1, 4),
        areas=areas[1:][order],
        ground_xy=np.asarray(xy, np.float64).reshape(-1, 2)[order],
        velocity=np.asarray(vel, np.float64).reshape(-1, 2)[order],
        keypoints=keypoints[order],
    )
    return lut[raw], segments


def frames(sw: SequenceWorld, *, min_area: int = MIN_AREA):
    """Iterate over the frames of the sequence in order."""
    for k in range(sw.num_frames):
        yield render_frame(sw, k, min_area=min_area)


__all__ = ["THING_ID_BASE", "FrameSegments", "SequenceFrame", "frames", "render_frame"]
