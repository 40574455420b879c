"""Our messages and large images cross process boundaries over DDS with every field intact, and
latched class metadata reaches a subscriber that joins late."""

import time

import numpy as np
import pytest
from builtin_interfaces.msg import Time
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from segmentation_ros.msg import ClassInfoArray, SegmentationResult
from sensor_msgs.msg import Image
from std_msgs.msg import Header

from segmentation_ros.ros.image_codec import image_to_numpy, numpy_to_image
from segmentation_ros.ros.messages import (
    class_table_from_msg,
    decode_mask_full,
    make_object,
    make_result,
)

from .harness import spin_until

pytestmark = pytest.mark.ros
RELIABLE = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)


def relay_round_trip(ros_node, start_process, msg_type, msg, name):
    """Publish `msg` to a relay process and return what comes back (or fail with its log)."""
    type_name = f"{msg_type.__module__.rsplit('.', 1)[0]}.{msg_type.__name__}"
    relay = start_process(name, ["test/ros/nodes/relay.py", "relay", type_name, "in", "out"])
    received = []
    ros_node.create_subscription(msg_type, "out", received.append, RELIABLE)
    publisher = ros_node.create_publisher(msg_type, "in", RELIABLE)
    matched = spin_until(
        ros_node,
        lambda: (
            publisher.get_subscription_count() > 0
            and ros_node.count_publishers("out") > 0
            and len(ros_node.get_subscriptions_info_by_topic("out")) > 0
        ),
        timeout=20,
    )
    assert matched, f"relay never matched:\n{relay.output()}"
    time.sleep(0.2)  # let the relay's own subscription/publisher pair match too
    publisher.publish(msg)
    assert spin_until(ros_node, lambda: received, timeout=10), f"nothing back:\n{relay.output()}"
    return received[0]


def test_segmentation_result_round_trip(ros_node, start_process):
    rng = np.random.default_rng(7)
    full_mask = rng.random((480, 640)) > 0.5  # a 640x480 mask payload
    objects = [
        make_object(
            instance_id=1, class_id=3, class_label="person", is_thing=True, score=0.875,
            mask_score=0.5, roi_xywh=(0, 0, 640, 480), mask=full_mask,
            centroid_xy=(320.25, 240.75), area=int(full_mask.sum()),
        ),
        make_object(
            instance_id=2, class_id=0, class_label="road", is_thing=False, score=0.25,
            mask_score=0.25, roi_xywh=(10, 400, 5, 3), mask=np.eye(3, 5, dtype=bool),
            centroid_xy=(11.5, 401.5), area=3,
        ),
    ]  # fmt: skip
    # Every field finite (NaN, the default of the ground and track fields, is unequal to itself).
    for k, obj in enumerate(objects):
        obj.ground_frame_id, obj.track_frame_id = "base_link", "odom"
        obj.ground_x, obj.ground_y, obj.ground_distance, obj.ground_bearing = 3.5, -1.25, 3.7, -0.3
        obj.track_id = 7 + k
        obj.track_x, obj.track_y, obj.track_velocity_x, obj.track_velocity_y = 10.5, 2.0, 1.5, -0.25
        obj.track_position_covariance = [0.25, 0.01, 0.01, 0.5]
        obj.track_velocity_covariance = [1.5, -0.125, -0.125, 0.75]
    header = Header(stamp=Time(sec=1234, nanosec=567890), frame_id="camera_optical")
    sent = make_result(
        header=header, image_height=480, image_width=640, model_name="panoptic_test",
        objects=objects, inference_ms=12.5, total_ms=20.25,
    )  # fmt: skip
    got = relay_round_trip(ros_node, start_process, SegmentationResult, sent, "relay_result")
    assert got == sent  # generated messages compare every field, nested ones included
    assert got.header.stamp.sec == 1234 and got.header.frame_id == "camera_optical"
    np.testing.assert_array_equal(decode_mask_full(got.objects[0], 480, 640), full_mask)


def test_large_image_round_trip(ros_node, start_process):
    rgb = np.random.default_rng(8).integers(0, 255, (480, 640, 3), dtype=np.uint8)
    sent = numpy_to_image(rgb, "rgb8", header=Header(frame_id="cam"))
    got = relay_round_trip(ros_node, start_process, Image, sent, "relay_image")
    np.testing.assert_array_equal(image_to_numpy(got), rgb)


def test_latched_class_info_reaches_late_subscriber(ros_node, start_process):
    publisher = start_process("latch", ["test/ros/nodes/relay.py", "latch-class-info", "m", "5"])
    deadline = time.monotonic() + 20
    while "published class_info once" not in publisher.output():
        assert publisher.alive(), publisher.output()
        assert time.monotonic() < deadline, publisher.output()
        time.sleep(0.1)
    time.sleep(0.5)  # the message is long gone when we subscribe
    received = []
    latched = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL)
    ros_node.create_subscription(ClassInfoArray, "class_info", received.append, latched)
    assert spin_until(ros_node, lambda: received, timeout=20), publisher.output()
    table = class_table_from_msg(received[0])
    assert received[0].model_name == "m"
    assert table.names == tuple(f"class_{i}" for i in range(5))
    np.testing.assert_array_equal(table.is_thing, np.arange(5) % 2 == 1)
