"""The free-space scan, the obstacle points and the ground contacts, checked against the
synthetic world's exact truth (its annotation, its camera's own ray geometry, where it placed
each object) and against a wall at a known distance."""

import math

import numpy as np
import pytest

from segmentation_ros.data.classes import SYNTHETIC_CLASSES
from segmentation_ros.data.synthetic import generate_scene
from segmentation_ros.data.synthetic_camera import SceneCamera
from segmentation_ros.drivable import (
    POINT_DTYPE,
    GridGeometry,
    GroundProjector,
    ScanProjector,
    mask_ground_contacts,
    obstacle_points,
)
from segmentation_ros.structures import segment_geometry
from segmentation_ros.train.drivable_eval import scene_camera_model, true_scan

# Seeds no training, validation or other test uses.
SEEDS = (931_001, 931_002, 931_003, 931_004)
STEP = math.radians(0.5)
RANGE_MAX = 20.0
DRIVABLE = [SYNTHETIC_CLASSES.id_of(n) for n in SYNTHETIC_CLASSES.drivable_names]


def _scan_of(camera: SceneCamera, drivable, known, stride=1):
    model, mount = scene_camera_model(camera)
    projector = GroundProjector(model, mount, GridGeometry(0.1, 10, 10), stride=stride)
    scans = ScanProjector(
        projector.ray_ground, projector.ray_pixels, angle_increment=STEP, range_max=RANGE_MAX
    )
    return scans.scan(drivable, known)


@pytest.mark.parametrize("seed", SEEDS)
def test_scan_of_the_true_mask_is_the_worlds_free_space(seed):
    scene = generate_scene(seed, width=320, height=240, effects=False)
    drivable, known = np.isin(scene.semantic_map(), DRIVABLE), scene.id_map > 0
    scan = _scan_of(scene.camera, drivable, known)
    truth = true_scan(
        scene.camera, drivable, known, angle_min=scan.angle_min,
        angle_increment=STEP, count=len(scan.ranges), range_max=RANGE_MAX,
    )  # fmt: skip
    np.testing.assert_array_equal(np.isnan(scan.ranges), np.isnan(truth))
    np.testing.assert_array_equal(np.isposinf(scan.ranges), np.isposinf(truth))
    finite = np.isfinite(truth)
    assert finite.sum() >= 20, "the scene should put obstacles in range"
    # float32 ranges: exact up to their rounding (2^-24 relative).
    np.testing.assert_allclose(scan.ranges[finite], truth[finite], rtol=2**-23, atol=0)
    # The beams span the camera's field of view on the ground: widest at the bottom corners.
    a, b, _ = scene.camera.rays()
    span = math.atan2(b[0], a[-1]) - math.atan2(b[-1], a[-1])
    assert scan.angle_max - scan.angle_min == pytest.approx(span, abs=2 * STEP)
    assert 0 < scan.range_min < scan.range_max <= RANGE_MAX
    assert np.all(scan.ranges[finite] >= scan.range_min - 1e-6)


def test_a_wall_ahead_gives_its_distance_per_bearing_and_inf_where_the_road_goes_on():
    camera = SceneCamera.from_fov(320, 240, 90.0, 1.0, 0.3)
    x, y, valid = camera.ground_points()
    wall = 4.0
    with np.errstate(invalid="ignore"):
        # Non-drivable beyond x = wall for y < 0 (right); the road goes on to the left.
        drivable = valid & ~((x >= wall) & (y < 0))
    scan = _scan_of(camera, drivable, valid)
    angles = scan.angles()
    # Beams to the right whose wall point is in the image (wider ones see no wall: +inf).
    foot = np.stack([np.full_like(angles, wall), wall * np.tan(angles), 0 * angles], 1)
    uv, depth = camera.project(foot)
    in_view = (depth > 0) & (uv[:, 0] >= 1) & (uv[:, 0] <= camera.width - 2)
    right = (angles < -STEP) & in_view
    assert right.sum() >= 40
    expected = wall / np.cos(angles[right])
    # The first pixel row past the wall line: within about one row's ground spacing there,
    # (r^2 + h^2) / (f h) for a camera h above the ground.
    spacing = (expected**2 + 1.0) / (camera.fy * 1.0)
    assert np.all(scan.ranges[right] >= expected - 1e-6)
    assert np.all(scan.ranges[right] - expected <= 1.5 * spacing)
    assert np.all(np.isposinf(scan.ranges[(angles < -STEP) & ~in_view][2:-2]))
    assert np.all(np.isposinf(scan.ranges[angles > STEP]))


def test_obstacle_points_hold_the_boundary_and_each_things_footprint():
    scene = generate_scene(SEEDS[0], width=320, height=240, effects=False)
    drivable, known = np.isin(scene.semantic_map(), DRIVABLE), scene.id_map > 0
    scan = _scan_of(scene.camera, drivable, known)
    model, mount = scene_camera_model(scene.camera)
    s = scene.segments
    points = obstacle_points(
        scan, model, mount, scene.id_map, s.category_ids, s.is_thing, height=0.25
    )
    assert points.dtype == POINT_DTYPE and POINT_DTYPE.itemsize == 16
    assert np.all(points["z"] == np.float32(0.25))
    hits = np.isfinite(scan.ranges).sum()
    np.testing.assert_allclose(
        np.hypot(points["x"][:hits], points["y"][:hits]), scan.ranges[np.isfinite(scan.ranges)],
        rtol=1e-6,
    )  # fmt: skip
    # Every point's class is the class the world drew there and is not drivable.
    assert not np.isin(points["class_id"], DRIVABLE).any()
    near = np.hypot(s.ground_xy[:, 0], s.ground_xy[:, 1]) < RANGE_MAX - 5.0
    # Things whose visible mask reaches below the horizon (an occluded bottom has no footprint).
    bottom = np.array([np.nonzero(scene.id_map == i)[0].max() for i in s.ids])
    below = bottom > scene.camera.horizon_row + 2
    things = np.flatnonzero(s.is_thing & near & below)
    assert things.size
    for i in things:
        own = points[points["instance_id"] == s.ids[i]]
        assert own.size and np.all(own["class_id"] == s.category_ids[i])
        # The footprint's near edge lies within a few metres of where the world placed it.
        d = np.hypot(own["x"] - s.ground_xy[i, 0], own["y"] - s.ground_xy[i, 1])
        assert np.median(d) < 3.0, (SYNTHETIC_CLASSES.names[s.category_ids[i]], d)


def test_mask_ground_contact_is_near_where_the_world_placed_each_thing():
    errors, radii = [], []
    for seed in SEEDS:
        scene = generate_scene(seed, width=640, height=480, effects=False)
        s = scene.segments
        model, mount = scene_camera_model(scene.camera)
        geometry = segment_geometry(scene.id_map, len(s))
        contact = mask_ground_contacts(model, mount, scene.id_map, s.ids, geometry.rois)
        for i in np.flatnonzero(s.is_thing & (s.areas >= 400)):
            errors.append(np.hypot(*(contact[i] - s.ground_xy[i])))
            radii.append(np.hypot(*s.ground_xy[i]))
    errors = np.array(errors)
    assert errors.size >= 5 and np.isfinite(errors).all()
    # The mask's lowest point is the near edge of the footprint: the object's centre lies about
    # its radius behind (persons, cones ~0.2-0.4 m; cars ~2 m).
    assert np.median(errors) < 1.0, errors
