"""The player with odometry over DDS: Image + CameraInfo + nav_msgs/Odometry from a synthetic
sequence; the published pose and intrinsics put the world's agents where the annotation has
them, and each odometry message comes with the image rendered at that pose."""

import math

import numpy as np
import pytest
from nav_msgs.msg import Odometry
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, Image

from segmentation_ros.data.sequence_io import SequenceData
from segmentation_ros.drivable.camera import MountPose
from segmentation_ros.ros.image_codec import to_rgb8
from segmentation_ros.ros.player import make_player, open_source
from segmentation_ros.ros.sequence_source import SequenceSource, pose_from_msg
from segmentation_ros.tools.generate import main as generate_main

from .test_demo import _spin

N = 8


@pytest.fixture(scope="module")
def sequence(tmp_path_factory):
    out = tmp_path_factory.mktemp("seq")
    args = [
        "--sequence",
        "--num",
        "1",
        "--seed-start",
        "61",
        "--frames",
        str(N),
        "--kind",
        "drive",
        "--width",
        "320",
        "--height",
        "240",
        "--format",
        "png",
        "--out",
        str(out),
    ]
    assert generate_main(args) == 0
    return out / "00000061"


def _key(stamp):
    return (stamp.sec, stamp.nanosec)


@pytest.mark.ros
def test_published_odometry_matches_the_rendered_camera(ros_node, sequence):
    seq = SequenceData.open(sequence)
    source = open_source(sequence)
    assert isinstance(source, SequenceSource) and source.rate == seq.rate
    reliable = QoSProfile(depth=20, reliability=ReliabilityPolicy.RELIABLE)
    images, infos, odoms = {}, {}, []
    ros_node.create_subscription(
        Image, "image", lambda m: images.update({_key(m.header.stamp): m}), reliable
    )
    ros_node.create_subscription(
        CameraInfo, "camera_info", lambda m: infos.update({_key(m.header.stamp): m}), reliable
    )
    ros_node.create_subscription(Odometry, "odom", odoms.append, reliable)
    player = make_player(source, rate_hz=source.rate, max_frames=N)
    executor = SingleThreadedExecutor()
    executor.add_node(ros_node)
    executor.add_node(player)
    try:
        assert _spin(executor, lambda: player.image_pub.get_subscription_count() > 0, 10.0)
        player.start()
        assert _spin(executor, lambda: player.done and len(odoms) >= N - 1, 20.0)
        _spin(executor, lambda: False, 0.3)
    finally:
        executor.remove_node(player)
        player.destroy_node()
        executor.shutdown()
    assert len(odoms) >= N - 1
    poses = np.array([seq.frame(k)["pose"] for k in range(len(seq))])
    agents = seq.meta["agents"]
    checked = inside = 0
    for odom in odoms:
        assert (odom.header.frame_id, odom.child_frame_id) == ("odom", "base_link")
        pose = pose_from_msg(odom)
        k = int(np.argmin(np.abs(poses - pose).sum(1)))
        assert np.allclose(poses[k], pose, atol=1e-6)
        image, info = images[_key(odom.header.stamp)], infos[_key(odom.header.stamp)]
        np.testing.assert_array_equal(to_rgb8(image), seq.image(k))  # the image of that pose
        K = np.asarray(info.k).reshape(3, 3)
        cam = seq.meta["camera"]
        T = MountPose(height=cam["camera_height"], pitch=cam["pitch"]).matrix()
        t = seq.frame(k)["stamp"]
        for s in seq.frame(k)["segments"]:
            if not s["track_id"] or s["area"] < 200:
                continue
            a = next(a for a in agents if a["id"] == s["track_id"])
            world = np.array([a["x0"] + a["vx"] * t, a["y0"] + a["vy"] * t])
            # odom -> base_link with the published pose, base_link -> optical, then K
            c, sn = math.cos(pose[2]), math.sin(pose[2])
            d = world - pose[:2]
            base = np.array([c * d[0] + sn * d[1], -sn * d[0] + c * d[1], 0.0])
            optical = T[:3, :3].T @ (base - T[:3, 3])
            u, v, w = K @ optical
            x, y, bw, bh = s["bbox"]
            checked += 1
            inside += bool(x - 3 <= u / w <= x + bw + 3 and y <= v / w <= y + bh + 3)
    assert checked >= 2 * N
    assert inside >= 0.85 * checked, (inside, checked)


def test_sequence_source_renders_with_odometry():
    src = SequenceSource.render(3, frames=3, width=160, height=120)
    frames = list(src)
    assert len(frames) == 3 and all(f.odometry is not None for f in frames)
    assert frames[2].odometry.pose[0] > frames[0].odometry.pose[0]  # it drives forward
    assert src.mounting.camera_height > 0
