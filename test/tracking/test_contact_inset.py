"""The ground contact of a box and the speed of an oncoming vehicle, against the world's exact
truth: `passing_world`'s van comes at 8 m/s while the camera drives at 4 m/s; its ground-truth
boxes (the world's own rasterisation) are the detections.

The synthetic labels reach past an object's outline (OpenCV fills every pixel within half a
pixel of a polygon; wheels are strokes >= 1 px), so a box's bottom edge lies below the ground
contact. The error in metres grows with range squared and shrinks as the van approaches, which
reads as a slower van. `LABEL_CONTACT_INSET_PX` (1 px, chosen on the validation sequences)
removes it.

A prototype-mask model's segment boxes snap to its prototype grid (the default model: 96 cells
across the image), so `box_contacts` projects the detector's own bottom edge instead and counts
a box a cell short of the image's border as cut by it."""

import numpy as np
import pytest
from occlusion_scene import OCCLUDER, passing_world

from segmentation_ros.data.sequence_render import render_frame
from segmentation_ros.drivable.camera import CameraModel
from segmentation_ros.tracking import (
    LABEL_CONTACT_INSET_PX,
    GroundMotion,
    MotionParams,
    box_contacts,
    cut_by_border,
)


@pytest.fixture(scope="module")
def passing():
    world = passing_world(num_frames=20)
    return world, [render_frame(world, k) for k in range(world.num_frames)]


def _van_velocity(world, frames, params: MotionParams, *, snap=False, bottoms=False):
    """The van's filtered velocity at its last measured frame (odom, m/s) and its truth, from
    its exact boxes, or (snap) those snapped to a 96-cell grid across the image as the default
    model's segment boxes are to its 96 x 72 prototypes; bottoms: the exact bottom edges go to
    `box_contacts` as the detector's (regressed boxes are not snapped)."""
    cam = world.camera
    camera = CameraModel(K=cam.K, D=np.zeros(5), width=cam.width, height=cam.height)
    size = (cam.height, cam.width)
    cell = cam.width / 96
    motion = GroundMotion(params)
    last = None
    for f in frames:
        s = f.segments[(f.segments.track_ids == OCCLUDER) & (f.segments.areas >= 100)]
        if not len(s):
            continue
        x, y, w, h = s.bboxes.T.astype(float)
        exact = np.stack([x, y, x + w, y + h], 1)
        boxes = np.round(exact / cell) * cell if snap else exact
        edges = exact[:, 3] if bottoms else None
        xy, gate = box_contacts(camera, cam.camera_to_base, boxes, size, params, edges)
        if not np.isfinite(xy).all():
            continue  # the van continues outside the image: its box bottom is not its contact
        est = motion.update(np.array([1]), xy, f.pose, f.stamp, gate)
        last = (est.velocity[0], s.velocity[0], est.updates[0])
    assert last is not None and last[2] >= 8, last  # enough measurements to have converged
    return last[0], last[1]


def test_the_calibrated_inset_gives_the_oncoming_vans_speed(passing):
    world, frames = passing
    est, truth = _van_velocity(world, frames, MotionParams(contact_inset_px=LABEL_CONTACT_INSET_PX))
    assert truth[0] < -7.0  # the world's van: 8 m/s towards the camera
    assert np.hypot(*(est - truth)) < 0.25, (est, truth)


def test_the_bottom_edge_alone_reads_the_van_slower(passing):
    world, frames = passing
    est, truth = _van_velocity(world, frames, MotionParams(contact_inset_px=0.0))
    # The bias this parameter exists for: at least 0.4 m/s too slow, not a random error.
    assert np.hypot(*est) < np.hypot(*truth) - 0.4, (est, truth)


def test_the_detectors_bottom_edge_undoes_a_box_snapped_to_the_mask_grid(passing):
    world, frames = passing
    params = MotionParams(contact_inset_px=LABEL_CONTACT_INSET_PX)
    est, truth = _van_velocity(world, frames, params, snap=True, bottoms=True)
    snapped, _ = _van_velocity(world, frames, params, snap=True)
    error, snapped_error = np.hypot(*(est - truth)), np.hypot(*(snapped - truth))
    assert error < 0.25, (est, truth)
    # A bottom edge that holds still, then jumps a cell, is what `bottoms` exists for.
    assert snapped_error > 2 * error, (snapped, est, truth)


def test_a_box_a_grid_cell_short_of_the_border_is_cut(passing):
    world, frames = passing
    cam = world.camera
    size = (cam.height, cam.width)
    cell = cam.width / 96
    side_cut = []
    for f in frames:
        x, y, w, h = f.segments.bboxes[f.segments.track_ids > 0].T.astype(float)
        boxes = np.stack([x, y, x + w, y + h], 1)
        side_cut.append(boxes[(boxes[:, 0] <= 0) | (boxes[:, 2] >= cam.width)])
    boxes = np.concatenate(side_cut)
    assert len(boxes) >= 3  # the world's own labels: these objects continue outside the image
    # A mask that misses the first (last) prototype column ends one cell inside the image.
    short = boxes + np.where(boxes[:, :1] <= 0, [cell, 0, 0, 0], [0, 0, -cell, 0])
    assert cut_by_border(short, size, MotionParams().border_margin_px).all()
    assert not cut_by_border(short, size, 2.0).any()
