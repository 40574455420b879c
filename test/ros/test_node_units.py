"""The node's parts without a running node: input admission, drop counting, diagnostics, the
conversions of a FrameResult to messages, and the overlay and markers."""

import threading
import time

import numpy as np
import pytest
from builtin_interfaces.msg import Time
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from std_msgs.msg import Header

from segmentation_ros.drivable import GridGeometry
from segmentation_ros.pipeline import (
    ClassMeta,
    FrameResult,
    OutputRequest,
    SegmentGeometry,
    Segments,
    Timings,
)
from segmentation_ros.ros.diagnostics import (
    DROP_CAUSES,
    ERROR,
    WARN,
    FrameStats,
    NodeStatus,
    diagnostics_values,
    make_diagnostics,
)
from segmentation_ros.ros.image_codec import image_to_numpy, numpy_to_compressed, numpy_to_image
from segmentation_ros.ros.inputs import (
    Frame,
    FrameDropped,
    LatestSlot,
    StampOrder,
    camera_from_info,
    check_age,
    decode_image,
)
from segmentation_ros.ros.messages import decode_mask_full
from segmentation_ros.ros.output_table import iter_messages
from segmentation_ros.ros.outputs import OutputContext, class_table
from segmentation_ros.ros.visualization import class_palette, draw_overlay


def _cause(fn, *args, **kwargs) -> str:
    with pytest.raises(FrameDropped) as info:
        fn(*args, **kwargs)
    return info.value.cause


def test_decode_image_drop_causes():
    rgb = np.zeros((16, 24, 3), np.uint8)  # inputs.MIN_IMAGE_SIDE is 16
    good = numpy_to_image(rgb, "rgb8")
    assert decode_image(good, max_side=4096).shape == (16, 24, 3)
    bgr = numpy_to_image(rgb, "bgr8")
    assert decode_image(bgr, max_side=4096).shape == (16, 24, 3)
    bad = numpy_to_image(rgb, "rgb8")
    bad.encoding = "rgb16_weird"
    assert _cause(decode_image, bad, max_side=4096) == "bad_encoding"
    truncated = numpy_to_image(rgb, "rgb8")
    truncated.data = truncated.data[:10]
    assert _cause(decode_image, truncated, max_side=4096) == "bad_size"
    assert _cause(decode_image, Image(encoding="rgb8"), max_side=4096) == "bad_size"  # 0 x 0
    huge = Image(width=8000, height=8000, encoding="rgb8", step=24000)  # no data: never read
    assert _cause(decode_image, huge, max_side=4096) == "too_large"
    jpeg = numpy_to_compressed(np.full((16, 16, 3), 200, np.uint8))
    assert decode_image(jpeg, max_side=4096).shape == (16, 16, 3)
    corrupt = CompressedImage(format="jpeg")
    corrupt.data = b"\xff\xd8 not a jpeg"
    assert _cause(decode_image, corrupt, max_side=4096) == "decode_error"


def test_stamp_order_and_age():
    order = StampOrder()
    order.check(2_000)
    order.check(2_000)  # equal stamps pass
    assert _cause(order.check, 1_000) == "out_of_order"
    order.check(0)  # unset stamps pass
    assert _cause(check_age, 1_000_000_000, 2_000_000_000, 500.0) == "stale"
    check_age(1_600_000_000, 2_000_000_000, 500.0)
    check_age(1, 10**18, 0.0)  # 0: no limit
    check_age(0, 10**18, 500.0)  # unset stamp: no age


def test_latest_slot_keeps_only_the_newest():
    slot = LatestSlot()
    assert slot.put(Frame("a", 0.0, 1)) is False
    assert slot.put(Frame("b", 0.0, 2)) is True  # "a" overwritten
    assert slot.take(0.0).msg == "b"
    assert slot.take(0.01) is None
    got = []
    consumer = threading.Thread(target=lambda: got.append(slot.take(5.0)))
    consumer.start()
    time.sleep(0.05)
    slot.close()  # wakes the consumer
    consumer.join(2.0)
    assert got == [None] and slot.closed
    slot.open()
    slot.put(Frame("c", 0.0, 3))
    assert slot.take(0.0).msg == "c"


def test_hand_over_waits_instead_of_replacing():
    from segmentation_ros.ros.inputs import HandOver

    box = HandOver()
    assert box.put("a", timeout=0.0) is True
    assert box.put("b", timeout=0.05) is False  # "a" not taken yet: nothing replaced
    done = []
    producer = threading.Thread(target=lambda: done.append(box.put("c", timeout=5.0)))
    producer.start()
    time.sleep(0.05)
    assert done == [] and box.take(0.0) == "a"  # taking "a" lets "c" in
    producer.join(2.0)
    assert done == [True] and box.take(1.0) == "c"
    blocked = threading.Thread(target=lambda: done.append(box.put("d", timeout=5.0)))
    box.put("x", timeout=0.0)
    blocked.start()
    time.sleep(0.05)
    box.close(wait_s=0.0)  # refuses "d" and drops "x"
    blocked.join(2.0)
    assert done == [True, False] and box.take(0.0) is None


def test_frame_stages_publish_every_inferred_frame_in_order():
    """Two threads: every frame the inference stage returns is published, in arrival order;
    a stage's exception is reported and the next frame goes on; stop waits for both stages."""
    from segmentation_ros.ros.frame_stages import FrameStages

    published, errors = [], []

    def infer(frame):
        if frame.msg == 3:
            raise RuntimeError("bad frame")
        time.sleep(0.01)
        return frame.msg

    def publish(item):
        time.sleep(0.02)  # slower than inference: the inference waits, nothing is lost
        published.append(item)

    stages = FrameStages(infer, publish, errors.append, stopping=lambda: False)
    stages.start()
    overwritten = set()  # the camera slot's own drops (a busy machine): not the stages' losses
    for i in range(8):
        if stages.frames.put(Frame(i, 0.0, i)):
            overwritten.add(i - 1)
        time.sleep(0.06)
    expected = [i for i in range(8) if i != 3 and i not in overwritten]
    deadline = time.monotonic() + 5.0
    while len(published) < len(expected) and time.monotonic() < deadline:
        time.sleep(0.01)
    stages.stop(final=True)
    assert published == expected
    assert [str(e) for e in errors] == ([] if 3 in overwritten else ["bad frame"])


def test_camera_from_info_rejects_nan():
    info = CameraInfo(width=80, height=48, distortion_model="plumb_bob")
    info.k = [60.0, 0.0, 40.0, 0.0, 60.0, 24.0, 0.0, 0.0, 1.0]
    assert camera_from_info(info).width == 80
    info.k[0] = float("nan")
    assert _cause(camera_from_info, info) == "bad_camera_info"
    assert _cause(camera_from_info, CameraInfo()) == "bad_camera_info"  # all-zero K


def test_frame_stats_and_diagnostics():
    stats = FrameStats(window_s=10.0)
    for t in range(5):
        stats.frame_in(now=100.0 + t)
    for latency in (10.0, 20.0, 30.0):
        stats.frame_out(latency, inference_ms=5.0, now=104.0, model_ms=latency / 2)
    stats.drop("stale")
    stats.drop("stale")
    with pytest.raises(ValueError, match="unknown drop cause"):
        stats.drop("gremlins")
    snap = stats.snapshot(now=104.0, mark_reported=True)
    assert snap.frames_in == 5 and snap.frames_out == 3
    assert snap.input_rate == pytest.approx(5 / 4)
    assert snap.latency_p50_ms == pytest.approx(20.0) and snap.model_p50_ms == 10.0
    assert snap.drops["stale"] == 2 and snap.recent_drops == {"stale": 2}
    assert stats.snapshot(now=104.0).recent_drops == {}
    status = NodeStatus(state="active", model="m", backend="torch")
    msg = make_diagnostics("/seg", status, snap)
    assert msg.status[0].level == bytes([WARN])
    values = diagnostics_values(msg)
    assert values["drops_stale"] == "2" and values["backend"] == "torch"
    assert values["model_p50_ms"] == "10.0" and values["inference_p50_ms"] == "5.0"
    assert {f"drops_{c}" for c in DROP_CAUSES} <= set(values)
    failed = NodeStatus(state="unconfigured", problems=[(ERROR, "configure failed: no file")])
    msg = make_diagnostics("/seg", failed, stats.snapshot(now=104.0))
    assert msg.status[0].level == bytes([ERROR]) and "no file" in msg.status[0].message


def _result(h=6, w=8):
    id_map = np.zeros((h, w), np.int32)
    id_map[0:3, 0:4] = 1  # a person
    id_map[4:6, :] = 2  # road (stuff)
    segments = Segments(
        ids=np.array([1, 2], np.int32),
        class_ids=np.array([1, 0]),
        is_thing=np.array([True, False]),
        scores=np.array([0.9, 0.6], np.float32),
        mask_scores=np.array([0.8, 0.6], np.float32),
        boxes=np.array([[0, 0, 4, 3], [0, 4, 8, 6]], np.float32),
    )
    semantic = np.full((h, w), 255, np.uint8)
    semantic[id_map == 1], semantic[id_map == 2] = 1, 0
    return FrameResult(
        image_size=(h, w),
        segments=segments,
        id_map=id_map,
        timings=Timings(inference_ms=3.0),
        geometry=SegmentGeometry(
            rois=np.array([[0, 0, 4, 3], [0, 4, 8, 2]]),
            centroids=np.array([[2.0, 1.5], [4.0, 5.0]], np.float32),
            areas=np.array([12, 16]),
        ),
        semantic=semantic,
        confidence=np.where(id_map == 1, 0.9, np.where(id_map == 2, 0.6, 0.0)).astype(np.float32),
        drivable=id_map == 2,
        grid=np.array([[0, 100], [-1, 0]], np.int8),
        ground_xy=np.array([[2.0, 0.5], [np.nan, np.nan]]),
        ground_width=np.array([0.4, np.nan]),
    )


def test_messages_of_every_topic_objects_first():
    classes = ClassMeta(("road", "person"), (False, True))
    context = OutputContext(
        table=class_table(classes, "no drivable classes"),
        model_name="tiny",
        grid=GridGeometry(resolution=0.5, width=2, height=2, origin_y=-0.5),
        grid_frame="base_link",
        confidence_encoding="32FC1",
    )
    header = Header(stamp=Time(sec=12, nanosec=34), frame_id="cam")
    rgb = np.full((6, 8, 3), 100, np.uint8)
    request = OutputRequest.all()
    msgs = dict(iter_messages(_result(), rgb, header, request, context, arrival=time.monotonic()))
    assert list(msgs)[0] == "objects" and list(msgs)[-1] == "overlay"  # planners first
    assert set(msgs) == {
        "objects", "instances", "semantic", "confidence", "drivable/mask", "drivable/grid",
        "overlay", "markers",
    }  # fmt: skip
    for topic in ("objects", "instances", "semantic", "confidence", "drivable/mask", "overlay"):
        assert msgs[topic].header == header, topic
    for topic in ("drivable/grid",):
        assert msgs[topic].header.frame_id == "base_link" and msgs[topic].header.stamp.sec == 12
    objects = msgs["objects"]
    assert [o.class_label for o in objects.objects] == ["person", "road"]
    assert objects.objects[0].is_thing and not objects.objects[1].is_thing
    np.testing.assert_array_equal(decode_mask_full(objects.objects[1], 6, 8), _result().id_map == 2)
    assert objects.inference_ms == 3.0 and objects.total_ms >= 0
    np.testing.assert_array_equal(image_to_numpy(msgs["instances"]), _result().id_map)
    assert msgs["instances"].encoding == "mono16" and msgs["semantic"].encoding == "mono8"
    assert msgs["confidence"].encoding == "32FC1"
    assert set(np.unique(image_to_numpy(msgs["drivable/mask"]))) == {0, 255}
    grid = msgs["drivable/grid"]
    assert (grid.info.width, grid.info.height, grid.info.resolution) == (2, 2, 0.5)
    assert list(grid.data) == [0, 100, -1, 0] and grid.info.origin.position.y == -0.5
    assert msgs["overlay"].encoding == "rgb8" and msgs["overlay"].width == 8
    markers = msgs["markers"].markers
    assert markers[0].action == markers[0].DELETEALL
    assert [m.ns for m in markers[1:]] == ["objects", "labels"]  # the road has no ground point
    assert markers[2].text == "person 0.90"


@pytest.mark.parametrize("num_segments", [1, 40, 254, 300])
def test_overlay_tint_matches_a_float_blend(num_segments):
    """The 8-bit table path (< 255 segments) and the gather path agree with a float blend."""
    rng = np.random.default_rng(num_segments)
    rgb = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
    id_map = rng.integers(0, num_segments + 1, (48, 64)).astype(np.int32)
    colors = rng.integers(0, 256, (num_segments, 3), dtype=np.uint8)
    out = draw_overlay(rgb, id_map, colors, boxes=np.zeros((0, 4)), labels=[], alpha=0.3)
    lut = np.concatenate([np.zeros((1, 3)), colors]).astype(np.float64)
    blend = np.where((id_map > 0)[..., None], rgb * 0.7 + lut[id_map] * 0.3, rgb)
    assert np.abs(out.astype(np.float64) - blend).max() <= 0.5 + 1e-6


def test_overlay_tints_segments_and_keeps_the_rest():
    rgb = np.full((20, 30, 3), 50, np.uint8)
    id_map = np.zeros((20, 30), np.int32)
    id_map[5:10, 5:10] = 1
    colors = np.array([[255, 0, 0]], np.uint8)
    out = draw_overlay(rgb, id_map, colors, boxes=np.zeros((0, 4)), labels=[], alpha=0.5)
    # 152.5 and 25 (OpenCV rounds halves to even)
    assert tuple(out[7, 7]) == (152, 25, 25) and tuple(out[0, 0]) == (50, 50, 50)
    assert out is not rgb and (rgb == 50).all()
    palette = class_palette(20)
    assert palette.shape == (20, 3) and len({tuple(c) for c in palette}) == 20
