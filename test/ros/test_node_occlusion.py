"""A track keeps its id through a real occlusion, over DDS: the constructed `passing_world` (an
oncoming van passes through the line of sight to a parked car) played with odometry into the
node (default model, config/default.yaml). The occlusion is read from the world's exact
annotations (the parked car's visible area); which object is which comes from the world's agent
ids (truth boxes), never from the node."""

import numpy as np
import pytest
import rclpy
from occlusion_scene import HIDDEN, passing_world

from .harness import rclpy_session
from .test_node_tracking import _iou, _play, start_tracking_node

pytestmark = pytest.mark.ros

NAME = "seg_occlusion"
TINY = 300  # visible pixels below which the parked car counts as hidden


@pytest.fixture(scope="module")
def world():
    return passing_world()


@pytest.fixture(scope="module")
def occlusion_node(tmp_path_factory, ros_env, world):
    process = start_tracking_node(tmp_path_factory, ros_env, world, NAME, max_age_s=None)
    yield process
    process.stop()


def _area(frame, agent) -> int:
    m = frame.segments.track_ids == agent
    return int(frame.segments.areas[m][0]) if m.any() else 0


@pytest.fixture(scope="module")
def tracked(occlusion_node, world):
    """Played once over DDS: (hidden frames, the parked car's published ids before and after)."""
    with rclpy_session(lambda: rclpy.create_node("occlusion_client")) as node:
        played = _play(node, occlusion_node, world, gap=())
    frames = [f for f, _, _ in played]
    areas = [_area(f, HIDDEN) for f in frames]
    # The occlusion is real: the first run of frames where the car is hidden (it leaves the view
    # at the end) lasts 3 to 6 frames, and it is well in view before and after.
    assert [f.index for f in frames] == list(range(len(frames)))
    first = next(k for k, a in enumerate(areas) if a < TINY)
    last = next(k for k in range(first, len(areas)) if areas[k] >= TINY) - 1
    hidden = list(range(first, last + 1))
    assert 3 <= len(hidden) <= 6, areas
    assert min(areas[first - 8 : first - 2]) > 800 and min(areas[last + 2 : last + 8]) > 800
    ids: dict[int, int] = {}  # frame -> track id of the object on the parked car's truth box
    for f, objects, _ in played:
        m = f.segments.track_ids == HIDDEN
        if not m.any():
            continue
        truth = f.segments.bboxes[m][0]
        best = max(
            ((_iou((o.roi.x_offset, o.roi.y_offset, o.roi.width, o.roi.height), truth), o)
             for o in objects.objects if o.is_thing),
            default=(0.0, None), key=lambda p: p[0],
        )  # fmt: skip
        if best[0] >= 0.4 and best[1].track_id:
            ids[f.index] = int(best[1].track_id)
    print(f"parked car hidden in frames {hidden}; its track ids over DDS: {ids}")
    before = [ids[k] for k in sorted(ids) if k < first]
    after = [ids[k] for k in sorted(ids) if k > last]
    return hidden, before, after, ids


def test_the_parked_car_is_tracked_on_both_sides_of_the_occlusion(tracked):
    _, before, after, ids = tracked
    assert len(before) >= 5 and len(after) >= 5, ids
    assert np.mean(np.array(before) == before[-1]) >= 0.8, ids


def test_a_track_keeps_its_id_through_an_occlusion(tracked):
    # With the node's defaults. The default model's stage 4 scored the parked car 0.14-0.35 for
    # ~1 s after the van cleared it and found it again at the image's side; this needed the 2 s
    # life of a lost track and a side-cut box's contact to gate it (`cut_by_border(sides=False)`).
    _, before, after, ids = tracked
    assert before[-1] == after[0], ids  # the same id on both sides of the occlusion


def test_it_keeps_that_id_until_it_leaves_the_view(tracked):
    # (a strict xfail with stage 4, whose detection gap at the image's side cost the id)
    _, _, after, ids = tracked
    assert len(set(after)) == 1, ids
