"""The ground contact of a box and the speed of an oncoming vehicle, against the world's exact
truth: `passing_world`'s van comes at 8 m/s while the camera drives at 4 m/s; its ground-truth
boxes (the world's own rasterisation) are the detections.

The synthetic labels reach past an object's outline (OpenCV fills every pixel within half a
pixel of a polygon; wheels are strokes >= 1 px), so a box's bottom edge lies below the ground
contact. The error in metres grows with range squared and shrinks as the van approaches, which
reads as a slower van. `LABEL_CONTACT_INSET_PX` (1 px, chosen on the validation sequences)
removes it."""

import numpy as np
import pytest
from occlusion_scene import OCCLUDER, passing_world

from segmentation_ros.data.sequence_render import render_frame
from segmentation_ros.drivable.camera import CameraModel
from segmentation_ros.drivable.ground import ground_contacts
from segmentation_ros.tracking import (
    LABEL_CONTACT_INSET_PX,
    GroundMotion,
    MotionParams,
    cut_by_border,
)


@pytest.fixture(scope="module")
def passing():
    world = passing_world(num_frames=20)
    return world, [render_frame(world, k) for k in range(world.num_frames)]


def _van_velocity(world, frames, params: MotionParams):
    """The van's filtered velocity at its last measured frame (odom, m/s) and its truth."""
    cam = world.camera
    camera = CameraModel(K=cam.K, D=np.zeros(5), width=cam.width, height=cam.height)
    size = (cam.height, cam.width)
    motion = GroundMotion(params)
    last = None
    for f in frames:
        s = f.segments[(f.segments.track_ids == OCCLUDER) & (f.segments.areas >= 100)]
        if not len(s):
            continue
        x, y, w, h = s.bboxes.T.astype(float)
        boxes = np.stack([x, y, x + w, y + h], 1)
        xy, _ = ground_contacts(camera, cam.camera_to_base, s.bboxes.astype(float), size,
                                params.contact_inset_px)  # fmt: skip
        if cut_by_border(boxes, size)[0]:
            continue  # the van continues outside the image: its box bottom is not its contact
        est = motion.update(np.array([1]), xy, f.pose, f.stamp)
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
