"""Tracking library: ids against the synthetic world's stable ids, survival of dropped frames,
ground velocity against a known motion."""

import math

import numpy as np
import pytest

from segmentation_ros.data.sequence_render import render_frame
from segmentation_ros.data.sequence_world import build_world, odom_to_base
from segmentation_ros.tracking import (
    GroundMotion,
    MotionParams,
    ObjectTracker,
    TrackerParams,
    base_to_odom,
)


def _gt(frame, min_area=150):
    s = frame.segments[frame.segments.is_thing & (frame.segments.areas >= min_area)]
    x, y, w, h = s.bboxes.T.astype(float)
    return np.stack([x, y, x + w, y + h], 1), s.track_ids, s.category_ids


@pytest.fixture(scope="module")
def truth():
    world = build_world(77, kind="drive", num_frames=40, width=320, height=240)
    return world, [render_frame(world, k) for k in range(40)]


@pytest.fixture(scope="module")
def walk():
    world = build_world(78, kind="walk", num_frames=40)
    slow = {a.id for a in world.agents if math.hypot(a.vx, a.vy) < 2.0}
    return [render_frame(world, k) for k in range(40)], slow


def _mapping(tracker, frames, skip=()):
    """gt id -> set of track ids given to it (frames in `skip` are dropped)."""
    seen: dict[int, set] = {}
    for f in frames:
        if f.index in skip:
            continue
        boxes, gt_ids, cats = _gt(f)
        ids = tracker.update(boxes, np.full(len(boxes), 0.9), cats, f.stamp)
        for g, t in zip(gt_ids, ids):
            if t:
                seen.setdefault(int(g), set()).add(int(t))
    return seen


def test_track_ids_follow_ground_truth_ids(truth):
    _, frames = truth
    seen = _mapping(ObjectTracker(TrackerParams(frame_rate=10.0)), frames)
    assert len(seen) >= 5
    switched = [g for g, t in seen.items() if len(t) > 1]
    assert len(switched) <= 1, seen
    owners = {}
    for g, ts in seen.items():  # no track id shared by two agents
        for t in ts:
            assert owners.setdefault(t, g) == g


def _ids_by_frame(tracker, frames, skip=()):
    """{frame index: {gt id: track id}} with the frames in `skip` dropped."""
    out = {}
    for f in frames:
        if f.index in skip:
            continue
        boxes, gt_ids, cats = _gt(f)
        ids = tracker.update(boxes, np.full(len(boxes), 0.9), cats, f.stamp)
        out[f.index] = {int(g): int(t) for g, t in zip(gt_ids, ids) if t}
    return out


def test_tracks_survive_dropped_frames_within_max_age(walk):
    """Walkers and static things seen from a walking camera keep their track through 0.4 s
    without images when max_age_s allows it, and get new ids when it does not. (A car passing
    close by moves too far in the image for IoU matching over such a gap.)"""
    frames, slow = walk
    gap = set(range(15, 19))
    keep = _ids_by_frame(ObjectTracker(TrackerParams(max_age_s=1.0)), frames, skip=gap)
    lose = _ids_by_frame(ObjectTracker(TrackerParams(max_age_s=0.2)), frames, skip=gap)
    across = set(keep[14]) & set(keep[20]) & set(lose[14]) & set(lose[20]) & slow
    assert len(across) >= 2, (keep[14], keep[20])
    assert all(keep[14][g] == keep[20][g] for g in across), (keep[14], keep[20])
    assert all(lose[14][g] != lose[20][g] for g in across), (lose[14], lose[20])


def test_bad_input():
    t = ObjectTracker()
    with pytest.raises(ValueError, match="differ"):
        t.update(np.zeros((2, 4)), np.zeros(3), np.zeros(2), 0.0)
    with pytest.raises(ValueError, match="high_score"):
        TrackerParams(high_score=2.0)
    assert len(t.update(np.zeros((0, 4)), np.zeros(0), np.zeros(0), 0.0)) == 0


def test_ground_velocity_of_a_walker_seen_from_a_turning_robot():
    """Known motion: a walker at (1.2, -0.4) m/s in odom, the robot driving at 6 m/s while
    turning; contacts in base_link with 0.1 m noise. The filter's odom velocity converges."""
    rng = np.random.default_rng(0)
    motion = GroundMotion(MotionParams(max_age_s=1.0))
    v_true = np.array([1.2, -0.4])
    for k in range(60):
        t = k / 10
        pose = (6.0 * t, 0.5 * math.sin(t), 0.2 * math.sin(0.5 * t))
        walker = np.array([20.0, 3.0]) + v_true * t
        seen = odom_to_base(pose, walker[None]) + rng.normal(0, 0.1, (1, 2))
        out = motion.update([5], seen, pose, t)
    assert np.linalg.norm(out.velocity[0] - v_true) < 0.2, out.velocity
    assert np.linalg.norm(out.position[0] - walker) < 0.3
    assert out.updates[0] == 60
    # an untracked object and an unknown contact give no estimate
    out = motion.update([0, 9], [[1.0, 1.0], [np.nan, np.nan]], pose, 6.1)
    assert np.isnan(out.velocity).all()


def test_filters_expire_after_max_age():
    motion = GroundMotion(MotionParams(max_age_s=0.5))
    motion.update([1], [[5.0, 0.0]], (0.0, 0.0, 0.0), 0.0)
    motion.update([2], [[5.0, 1.0]], (0.0, 0.0, 0.0), 0.4)
    assert set(motion.tracks) == {1, 2}
    motion.update([2], [[5.0, 1.0]], (0.0, 0.0, 0.0), 0.6)
    assert set(motion.tracks) == {2}


def test_contacts_the_filter_cannot_explain_are_rejected_then_restart_it():
    # A parked object at (6, 0) m seen for 2 s (noise 0.05 m), then its track's box shows
    # something 3 m to the side. The filter predicts (6, 0) within ~0.1 m; the contact's
    # measurement std at 6 m is 0.15 + 0.006 * 36 = 0.37 m, so d^2 ~ (3 / 0.37)^2 ~ 66, far
    # beyond the 99.9 % gate of a chi-square with 2 dof (13.82): the contact is not used; three
    # in a row and the filter restarts there. A true contact (0.8 std off) passes the gate.
    rng = np.random.default_rng(1)
    pose = (0.0, 0.0, 0.0)

    def parked(params):
        motion = GroundMotion(params)
        for k in range(20):
            motion.update([4], [[6.0, 0.0]] + rng.normal(0, 0.05, (1, 2)), pose, k / 10)
        return motion

    motion = parked(MotionParams())
    out = motion.update([4], [[6.0, 0.3]], pose, 2.0)
    assert out.updates[0] == 21
    for t in (2.1, 2.2):  # outliers: the filter predicts, its velocity stays ~0
        out = motion.update([4], [[6.0, 3.0]], pose, t)
        assert out.updates[0] == 21 and np.linalg.norm(out.velocity[0]) < 0.2
    out = motion.update([4], [[6.0, 3.0]], pose, 2.3)  # the third: another object
    assert out.updates[0] == 1 and np.allclose(out.position[0], [6.0, 3.0])
    assert np.allclose(out.velocity[0], 0.0)  # a new filter: its velocity is not yet known
    # without the gate the old filter takes the contact and reads a false lateral speed
    out = parked(MotionParams(restart_chi2=0.0)).update([4], [[6.0, 3.0]], pose, 2.0)
    assert out.updates[0] == 21 and out.velocity[0, 1] > 0.5
    # no contact (a box cut at the image's side) but gate points 3 m off: dropped at the third
    motion = parked(MotionParams())
    for t in (2.0, 2.1, 2.2):
        out = motion.update([4], [[np.nan, np.nan]], pose, t, gate_xy=[[6.0, 3.0]])
    assert 4 not in motion.tracks and np.isnan(out.velocity).all()
    # gate points where the filter expects them keep it (it predicts)
    motion = parked(MotionParams())
    for t in (2.0, 2.1, 2.2):
        out = motion.update([4], [[np.nan, np.nan]], pose, t, gate_xy=[[6.0, 0.1]])
    assert out.updates[0] == 20 and np.isfinite(out.velocity).all()
    for bad in ({"restart_chi2": -1.0}, {"restart_after": 0}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            MotionParams(**bad)


def test_base_to_odom_inverts_odom_to_base():
    pose = (3.0, -2.0, 0.7)
    p = np.array([[1.0, 2.0], [-4.0, 0.5]])
    assert np.allclose(base_to_odom(pose, odom_to_base(pose, p)), p)
