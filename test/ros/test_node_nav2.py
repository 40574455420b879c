"""The Nav2 inputs over DDS: the node as launched for the default model (config/default.yaml),
fed synthetic camera frames at 30 Hz with CameraInfo and odometry. `drivable/scan` and
`drivable/obstacles` carry each processed frame's camera stamp in the grid frame, one per
`objects` message; `drivable/grid_fused` lies in the odometry frame. A second test checks, on a
node in this process over the same DDS graph, that the scan and the cloud are requested from
the pipeline only while somebody subscribes.

Seeds 777_301.. are used by no training, validation or other test.
"""

import math
import time

import numpy as np
import pytest
import rclpy
from nav_msgs.msg import OccupancyGrid, Odometry
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile, ReliabilityPolicy
from segmentation_ros.msg import SegmentationResult
from sensor_msgs.msg import CameraInfo, Image, LaserScan, PointCloud2
from std_msgs.msg import Header

from segmentation_ros.data.synthetic import generate_scene
from segmentation_ros.ros.image_codec import numpy_to_image

from .harness import NodeProcess, rclpy_session, spin_until

pytestmark = pytest.mark.ros

NAME = "seg_nav2"
RATE_HZ = 30.0
SECONDS = 6.0
SEEDS = range(777_301, 777_306)
RELIABLE = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
TOPICS = {
    "objects": SegmentationResult,
    "drivable/scan": LaserScan,
    "drivable/obstacles": PointCloud2,
    "drivable/grid_fused": OccupancyGrid,
}
# The documented `drivable/obstacles` layout (README), written out here, not taken from the code.
CLOUD_DTYPE = np.dtype(
    {
        "names": ["x", "y", "z", "class_id", "instance_id"],
        "formats": ["<f4", "<f4", "<f4", "<u2", "<u2"],
        "offsets": [0, 4, 8, 12, 14],
        "itemsize": 16,
    }
)


@pytest.fixture(scope="module")
def scenes():
    return [generate_scene(seed) for seed in SEEDS]


@pytest.fixture(scope="module")
def nav2_node(tmp_path_factory, ros_env, scenes):
    camera = scenes[0].camera
    args = [
        "bin/segmentation_node", "--ros-args", "-r", f"__node:={NAME}",
        "--params-file", "config/default.yaml",
        "-p", f"engine_cache_dir:={tmp_path_factory.mktemp('engines')}",
        "-p", f"camera_height:={camera.camera_height}", "-p", f"camera_pitch:={camera.pitch}",
        "-p", "publish_overlay:=false", "-p", "publish_markers:=false",
    ]  # fmt: skip
    process = NodeProcess(args, env=ros_env, log_dir=tmp_path_factory.mktemp("log"), name=NAME)
    yield process
    process.stop()


def _key(header) -> tuple[int, int]:
    return (header.stamp.sec, header.stamp.nanosec)


def test_scan_and_obstacles_arrive_with_every_objects_message_at_30_hz(nav2_node, scenes):
    with rclpy_session(lambda: rclpy.create_node("nav2_client")) as node:
        received, sent = _play(node, nav2_node, scenes)
    objects = {_key(m.header) for _, m in received["objects"]}
    assert len(objects) >= 10, nav2_node.output()[-3000:]
    assert objects <= sent
    for topic in ("drivable/scan", "drivable/obstacles"):
        msgs = [m for _, m in received[topic]]
        stamps = [_key(m.header) for m in msgs]
        assert {m.header.frame_id for m in msgs} == {"base_link"}, topic
        # One per processed frame, with that frame's camera stamp (the reliable depth-1 output
        # queue may lose one under load).
        assert set(stamps) <= objects and len(stamps) == len(set(stamps)), topic
        assert len(stamps) >= len(objects) - 1, (topic, len(stamps), len(objects))
    fused = [m for _, m in received["drivable/grid_fused"]]
    assert {m.header.frame_id for m in fused} == {"odom"}
    assert {_key(m.header) for m in fused} <= objects and len(fused) >= len(objects) - 2
    scan = received["drivable/scan"][-1][1]
    ranges = np.asarray(scan.ranges)
    assert len(ranges) == round((scan.angle_max - scan.angle_min) / scan.angle_increment) + 1
    assert np.isfinite(ranges).any() and np.isposinf(ranges).any()
    finite = ranges[np.isfinite(ranges)]
    assert np.all((finite >= scan.range_min) & (finite <= scan.range_max))
    cloud = received["drivable/obstacles"][-1][1]
    points = np.frombuffer(bytes(cloud.data), dtype=CLOUD_DTYPE, count=cloud.width)
    assert cloud.point_step == 16 and points.size > 0
    assert np.isfinite(points["x"]).all() and np.all(points["z"] == np.float32(0.1))
    assert np.all(np.hypot(points["x"], points["y"]) <= scan.range_max + 1e-3)
    things = [o for _, m in received["objects"] for o in m.objects if o.is_thing]
    placed = [o for o in things if np.isfinite(o.ground_x)]
    assert placed and all(o.ground_frame_id == "base_link" for o in things)
    for o in placed:
        assert o.ground_distance == pytest.approx(math.hypot(o.ground_x, o.ground_y))
        assert o.ground_bearing == pytest.approx(math.atan2(o.ground_y, o.ground_x))
    span = received["objects"][-1][0] - received["objects"][0][0]
    rate = {t: (len(v) - 1) / span for t, v in received.items()}
    print(f"30 Hz camera, default model: {len(sent)} frames sent, " + ", ".join(
        f"{t} {r:.1f} Hz" for t, r in rate.items()
    ))  # fmt: skip


def _play(node, process: NodeProcess, scenes):
    received = {topic: [] for topic in TOPICS}
    for topic, msg_type in TOPICS.items():
        node.create_subscription(
            msg_type, topic, lambda m, t=topic: received[t].append((time.monotonic(), m)), RELIABLE
        )
    images = node.create_publisher(Image, "image", RELIABLE)
    infos = node.create_publisher(CameraInfo, "camera_info", RELIABLE)
    odometry = node.create_publisher(Odometry, "odom", RELIABLE)
    ready = lambda: all(node.count_publishers(t) > 0 for t in TOPICS)  # noqa: E731
    assert spin_until(node, ready, 180.0), process.output()[-3000:]
    messages = [numpy_to_image(s.image, "rgb8") for s in scenes]
    cam = scenes[0].camera
    sent, start, i = set(), time.monotonic(), 0
    while time.monotonic() - start < SECONDS:
        now = node.get_clock().now()
        header = Header(stamp=now.to_msg(), frame_id="camera_optical")
        info = CameraInfo(header=header, width=cam.width, height=cam.height)
        info.distortion_model, info.d = "plumb_bob", [0.0] * 5
        info.k = [cam.fx, 0.0, cam.cx, 0.0, cam.fy, cam.cy, 0.0, 0.0, 1.0]
        infos.publish(info)
        odom = Odometry(header=Header(stamp=header.stamp, frame_id="odom"))
        odom.child_frame_id = "base_link"
        odom.pose.pose.position.x = i / RATE_HZ  # 1 m/s along x
        odom.pose.pose.orientation.z, odom.pose.pose.orientation.w = 0.0, 1.0
        odometry.publish(odom)
        msg = messages[i % len(messages)]
        msg.header = header
        images.publish(msg)
        sent.add(_key(header))
        i += 1
        spin_until(node, lambda: False, max(0.0, start + i / RATE_HZ - time.monotonic()))
    spin_until(node, lambda: False, 3.0)  # the frames in flight
    return received, sent


def test_scan_and_obstacles_are_computed_only_while_subscribed(ros_node, tmp_path):
    from rclpy.lifecycle import TransitionCallbackReturn
    from tiny_models import save_tiny_checkpoints

    from segmentation_ros.ros.node import SegmentationNode

    checkpoint = save_tiny_checkpoints(tmp_path, input_size=(64, 64))["panoptic"]
    overrides = {"autostart": False, "checkpoint": str(checkpoint), "backend": "torch"}
    node = SegmentationNode(
        "on_demand_under_test",
        parameter_overrides=[Parameter(k, value=v) for k, v in overrides.items()],
    )
    try:
        assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
        assert not node._request().scan and not node._request().obstacles
        scan = ros_node.create_subscription(LaserScan, "drivable/scan", lambda m: None, 1)
        assert spin_until(ros_node, lambda: node._request().scan, 10.0)
        assert not node._request().obstacles and not node._request().grid_fused
        cloud = ros_node.create_subscription(PointCloud2, "drivable/obstacles", lambda m: None, 1)
        assert spin_until(ros_node, lambda: node._request().obstacles, 10.0)
        ros_node.destroy_subscription(scan)
        ros_node.destroy_subscription(cloud)
        assert spin_until(
            ros_node, lambda: not (node._request().scan or node._request().obstacles), 10.0
        )
    finally:
        node.destroy_node()


def test_odometry_buffer_interpolates_the_pose_at_an_image_stamp():
    from segmentation_ros.drivable import PlanarPose
    from segmentation_ros.ros.odometry import OdometryBuffer, planar_pose

    buffer = OdometryBuffer(max_extrapolation_ns=100_000_000)
    msg = Odometry(header=Header(frame_id="odom"))
    msg.header.stamp.sec = 10
    # A quaternion for yaw 3.0 rad: (0, 0, sin(1.5), cos(1.5)).
    msg.pose.pose.orientation.z, msg.pose.pose.orientation.w = math.sin(1.5), math.cos(1.5)
    stamp, pose = planar_pose(msg)
    assert stamp == 10 * 10**9 and pose.yaw == pytest.approx(3.0)
    assert buffer.add(stamp, pose)
    assert buffer.add(stamp + 10**9, PlanarPose(2.0, 0.0, -3.0, "odom"))  # across +-pi
    mid = buffer.pose_at(stamp + 5 * 10**8)
    assert (mid.x, mid.frame_id) == (1.0, "odom")
    assert math.remainder(mid.yaw - math.pi, math.tau) == pytest.approx(0.0, abs=1e-9)
    assert buffer.pose_at(stamp - 1) is None  # before the buffer
    assert buffer.pose_at(stamp + 10**9 + 50_000_000) is not None
    assert buffer.pose_at(stamp + 2 * 10**9) is None  # too far past the newest
    assert not buffer.add(stamp, pose) and buffer.dropped == 1  # out of order
