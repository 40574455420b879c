"""Ids through a real occlusion: the constructed scene of `occlusion_scene` (a car crosses behind
a standing car), ground-truth boxes of the world's exact annotations as detections. The truth
is the world's agent ids; the occlusion is read from the annotations (the crosser's visible
area), not assumed."""

import numpy as np
import pytest
from occlusion_scene import HIDDEN, occlusion_world

from segmentation_ros.data.sequence_render import render_frame
from segmentation_ros.data.sequence_world import build_world
from segmentation_ros.drivable.camera import CameraModel
from segmentation_ros.drivable.ground import ground_contacts
from segmentation_ros.tracking import (
    GroundMotion,
    ObjectTracker,
    TrackerParams,
    TrackReassociation,
    cut_by_border,
)

MIN_AREA = 100  # ground truth smaller than this is not detected (as in the tracking eval)


def _camera(world):
    cam = world.camera
    model = CameraModel(K=cam.K, D=np.zeros(5), width=cam.width, height=cam.height)
    return model, cam.camera_to_base


def _track(world, frames, carry: bool):
    """agent id -> {frame index: published id} over the frames, ground-truth detections."""
    tracker, motion = ObjectTracker(TrackerParams(frame_rate=world.rate)), GroundMotion()
    reassoc = TrackReassociation()
    camera, mount = _camera(world)
    size = (world.camera.height, world.camera.width)
    out: dict[int, dict[int, int]] = {}
    for f in frames:
        s = f.segments[f.segments.is_thing & (f.segments.areas >= MIN_AREA)]
        x, y, w, h = s.bboxes.T.astype(float)
        boxes = np.stack([x, y, x + w, y + h], 1)
        ids = tracker.update(boxes, np.ones(len(boxes)), s.category_ids, f.stamp)
        xy, _ = ground_contacts(camera, mount, s.bboxes.astype(float), size)
        xy[cut_by_border(boxes, size)] = np.nan
        if carry:
            ids = reassoc.update(ids, s.category_ids, xy, f.pose, f.stamp, motion, boxes)
        motion.update(ids, xy, f.pose, f.stamp)
        for agent, tid in zip(s.track_ids.tolist(), ids.tolist()):
            if tid:
                out.setdefault(agent, {})[f.index] = tid
    return out


@pytest.fixture(scope="module")
def occlusion():
    world = occlusion_world()
    return world, [render_frame(world, k) for k in range(world.num_frames)]


def _hidden(frames, agent, below=MIN_AREA):
    """Frame indices where the agent's visible area is below `below` pixels (or it is absent),
    and its largest visible area."""
    areas = []
    for f in frames:
        m = f.segments.track_ids == agent
        areas.append(int(f.segments.areas[m][0]) if m.any() else 0)
    return [k for k, a in enumerate(areas) if a < below], max(areas)


def test_the_scene_has_a_real_occlusion(occlusion):
    _, frames = occlusion
    hidden, biggest = _hidden(frames, HIDDEN)
    assert biggest > 3000
    # hidden for 3 to 6 consecutive frames, well visible before and after
    assert 3 <= len(hidden) <= 6 and hidden == list(range(hidden[0], hidden[-1] + 1)), hidden
    before = frames[hidden[0] - 4].segments
    after = frames[hidden[-1] + 8].segments
    assert before.areas[before.track_ids == HIDDEN][0] > 1000
    assert after.areas[after.track_ids == HIDDEN][0] > 1000


def test_the_occluded_car_keeps_its_id(occlusion):
    world, frames = occlusion
    hidden, _ = _hidden(frames, HIDDEN)
    ids = _track(world, frames, carry=True)[HIDDEN]
    before = [ids[k] for k in sorted(ids) if k < hidden[0]]
    after = [ids[k] for k in sorted(ids) if k > hidden[-1]]
    assert before and after, ids
    assert before[-1] == after[0] == after[-1], ids
    # ByteTrack alone (image-plane IoU) does not find it again here
    plain = _track(world, frames, carry=False)[HIDDEN]
    assert plain[max(k for k in plain if k < hidden[0])] != plain[max(plain)], plain


def test_carried_ids_stay_on_one_agent():
    """Over a whole drive with traffic, no published id is ever given to two agents (carrying
    an id to the wrong object would be worse than a new id) and carrying does not add id
    switches against the world's truth."""
    world = build_world(930_990, kind="drive", num_frames=60)
    frames = [render_frame(world, k) for k in range(world.num_frames)]
    carried = _track(world, frames, carry=True)
    plain = _track(world, frames, carry=False)
    owner: dict[int, int] = {}
    for agent, per in carried.items():
        for tid in per.values():
            assert owner.setdefault(tid, agent) == agent, (tid, agent, owner[tid])

    def switches(tracks):
        return sum(
            sum(a != b for a, b in zip(list(p.values()), list(p.values())[1:]))
            for p in tracks.values()
        )

    print(f"id switches over 60 frames: ByteTrack {switches(plain)}, carried {switches(carried)}")
    assert switches(carried) <= switches(plain)
