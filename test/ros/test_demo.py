"""The one-command demo end to end (node process, player, MCAP recording, pictures, summary),
and the player alone: its sources (synthetic world, an MCAP rosbag2, an MJPG video) and the
player node publishing over DDS."""

import json
import os
import subprocess
import sys
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, Image

from segmentation_ros.ros import demo, demo_record
from segmentation_ros.ros.image_codec import to_rgb8
from segmentation_ros.ros.player import (
    BagSource,
    SyntheticSource,
    VideoSource,
    make_player,
    open_source,
)

from .harness import REPO

W, H = 64, 48
K = (50.0, 0.0, 31.5, 0.0, 50.0, 23.5, 0.0, 0.0, 1.0)


def _frames(n: int) -> list[np.ndarray]:
    """Distinct, JPEG-robust frames: a block of colour whose position moves with the index."""
    frames = []
    for i in range(n):
        rgb = np.zeros((H, W, 3), np.uint8)
        rgb[:, :] = (20, 40, 60)
        rgb[8:24, 4 + 8 * i : 20 + 8 * i] = (250, 30 * i, 10)
        frames.append(rgb)
    return frames


def write_bag(path, frames, *, compressed_from: int = 2) -> None:
    """An MCAP rosbag2: /cam/info (one CameraInfo), then /cam/image (rgb8 Image) frames; a
    second image topic /cam/jpeg with CompressedImage frames from index `compressed_from`."""
    from rosbags.rosbag2 import StoragePlugin, Writer
    from rosbags.typesys import Stores, get_typestore

    store = get_typestore(Stores.ROS2_KILTED)
    T = store.types
    header = T["std_msgs/msg/Header"](stamp=T["builtin_interfaces/msg/Time"](1, 0), frame_id="c")
    roi = T["sensor_msgs/msg/RegionOfInterest"](0, 0, 0, 0, False)
    info = T["sensor_msgs/msg/CameraInfo"](
        header, H, W, "plumb_bob", np.zeros(5), np.array(K), np.eye(3).ravel(),
        np.zeros(12), 0, 0, roi,
    )  # fmt: skip
    with Writer(path, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        c_info = writer.add_connection("/cam/info", "sensor_msgs/msg/CameraInfo", typestore=store)
        c_image = writer.add_connection("/cam/image", "sensor_msgs/msg/Image", typestore=store)
        c_jpeg = writer.add_connection(
            "/cam/jpeg", "sensor_msgs/msg/CompressedImage", typestore=store
        )
        writer.write(c_info, 1, store.serialize_cdr(info, "sensor_msgs/msg/CameraInfo"))
        for i, rgb in enumerate(frames):
            image = T["sensor_msgs/msg/Image"](header, H, W, "rgb8", 0, W * 3, rgb.reshape(-1))
            writer.write(c_image, 10 + i, store.serialize_cdr(image, "sensor_msgs/msg/Image"))
            if i >= compressed_from:
                ok, png = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
                jpeg = T["sensor_msgs/msg/CompressedImage"](header, "png", png.reshape(-1))
                data = store.serialize_cdr(jpeg, "sensor_msgs/msg/CompressedImage")
                writer.write(c_jpeg, 10 + i, data)


def write_video(path, frames) -> None:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (W, H))
    assert writer.isOpened()
    for rgb in frames:
        writer.write(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    writer.release()


# -- sources -------------------------------------------------------------------------------------


def test_bag_source_reads_images_and_camera_info(tmp_path):
    frames = _frames(4)
    write_bag(tmp_path / "bag", frames)
    source = open_source(tmp_path / "bag")
    assert isinstance(source, BagSource)
    assert (source.image_topic, source.info_topic, source.num_frames) == (
        "/cam/image",
        "/cam/info",
        4,
    )
    got = list(source)
    assert len(got) == 4
    for sent, frame in zip(frames, got):
        np.testing.assert_array_equal(frame.rgb, sent)
        np.testing.assert_array_equal(frame.camera.K.ravel(), K)
        assert (frame.camera.width, frame.camera.height) == (W, H)
    compressed = list(BagSource(tmp_path / "bag", image_topic="/cam/jpeg"))
    assert len(compressed) == 2
    np.testing.assert_array_equal(compressed[-1].rgb, frames[-1])


def test_bag_source_errors_name_what_to_fix(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        BagSource(tmp_path / "missing.mcap")
    write_bag(tmp_path / "bag", _frames(1))
    with pytest.raises(ValueError, match="/nope.*it has /cam/info"):
        BagSource(tmp_path / "bag", image_topic="/nope")


def test_video_source_reads_mjpg_avi(tmp_path):
    frames = _frames(5)
    write_video(tmp_path / "clip.avi", frames)
    source = open_source(tmp_path / "clip.avi", hfov_deg=90.0)
    assert isinstance(source, VideoSource)
    got = list(source)
    assert len(got) == 5
    for sent, frame in zip(frames, got):
        assert frame.rgb.shape == (H, W, 3)
        assert np.abs(frame.rgb.astype(int) - sent).mean() < 8  # MJPG is lossy
    K_video = got[0].camera.K
    assert K_video[0, 0] == pytest.approx(W / 2)  # 90 degrees: f = W / 2
    assert (K_video[0, 2], K_video[1, 2]) == ((W - 1) / 2, (H - 1) / 2)


def test_synthetic_source_loops_and_knows_its_mounting():
    source = SyntheticSource(3, loop_frames=2, width=W, height=H)
    frames = [f for f, _ in zip(source, range(5))]
    assert frames[0] is frames[2] is frames[4] and frames[1] is frames[3]
    assert frames[0].rgb.shape == (H, W, 3) and frames[0].camera.width == W
    assert source.mounting.camera_height > 0 and 0 <= source.mounting.camera_pitch < 0.5


# -- the player node over DDS --------------------------------------------------------------------


@pytest.mark.ros
def test_player_publishes_a_bag_at_its_rate(ros_node, tmp_path):
    frames = _frames(3)
    write_bag(tmp_path / "bag", frames)
    reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
    images, infos = [], []
    ros_node.create_subscription(Image, "image", images.append, reliable)
    ros_node.create_subscription(CameraInfo, "camera_info", infos.append, reliable)
    player = make_player(BagSource(tmp_path / "bag"), rate_hz=20.0, max_frames=5)
    executor = SingleThreadedExecutor()
    executor.add_node(ros_node)
    executor.add_node(player)
    try:
        assert _spin(executor, lambda: player.image_pub.get_subscription_count() > 0, 10.0)
        player.start()
        assert _spin(executor, lambda: player.done and len(images) >= 3, 10.0)
        _spin(executor, lambda: False, 0.3)
    finally:
        executor.remove_node(player)
        player.destroy_node()
        executor.shutdown()
    assert player.published == 3  # the bag ends before max_frames
    assert len(images) == 3 and len(infos) == 3
    for sent, msg in zip(frames, images):
        assert (msg.encoding, msg.header.frame_id) == ("rgb8", "camera_optical_frame")
        np.testing.assert_array_equal(to_rgb8(msg), sent)
    assert tuple(infos[0].k) == K and infos[0].distortion_model == "plumb_bob"
    assert infos[0].header.stamp == images[0].header.stamp
    stamps = [m.header.stamp.sec + m.header.stamp.nanosec * 1e-9 for m in images]
    assert all(b > a for a, b in zip(stamps, stamps[1:]))


def _spin(executor, predicate, timeout):
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not predicate():
        executor.spin_once(timeout_sec=0.05)
    return predicate()


# -- pictures and errors -------------------------------------------------------------------------


def test_grid_picture_orientation():
    """Forward (grid x) is up, left (grid y) is on the left; robot red at grid (0, 0)."""
    width, height = 4, 2  # 4 cells along x, 2 along y, origin (0, -0.1): robot at the bottom
    data = np.full((height, width), -1, np.int8)
    data[0, 3] = 100  # far forward, right (y < 0)
    data[1, 3] = 0  # far forward, left
    info = SimpleNamespace(
        width=width,
        height=height,
        resolution=0.1,
        origin=SimpleNamespace(position=SimpleNamespace(x=0.0, y=-0.1)),
    )
    picture = demo_record.grid_picture(SimpleNamespace(info=info, data=data.ravel()), size=40)
    assert picture.shape == (40, 20, 3)  # scale 10: 4 x-cells tall, 2 y-cells wide
    assert tuple(picture[2, 15]) == (0, 0, 0)  # top right: occupied
    assert tuple(picture[2, 5]) == (255, 255, 255)  # top left: free
    assert tuple(picture[20, 5]) == (128, 128, 128)  # unknown
    assert tuple(picture[38, 10]) == (255, 0, 0)  # the robot, bottom centre


def test_missing_checkpoint_names_the_option(tmp_path, capsys, monkeypatch):
    assert demo.main(["--checkpoint", str(tmp_path / "none.pt"), "--out", str(tmp_path)]) == 2
    assert "--checkpoint" in capsys.readouterr().err
    import segmentation_ros.pipeline as pipeline

    monkeypatch.setattr(pipeline, "DEFAULT_CHECKPOINT", tmp_path / "default.pt")
    assert demo.main(["--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "--checkpoint" in err and "default.pt" in err


# -- the demo end to end -------------------------------------------------------------------------


@pytest.mark.ros
def test_demo_end_to_end(tmp_path):
    from rosbags.rosbag2 import Reader
    from tiny_models import save_tiny_checkpoints

    checkpoint = save_tiny_checkpoints(tmp_path)["panoptic"]
    out = tmp_path / "out"
    args = ["--checkpoint", str(checkpoint), "--frames", "20", "--rate", "10", "--out", str(out)]
    args += ["--width", "320", "--height", "240", "--loop-frames", "3", "--drain", "1.0"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ["PYTHONPATH"]])}
    run = subprocess.run(
        [sys.executable, "-m", "segmentation_ros.ros.demo", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    node_log = (out / "node.log").read_text() if (out / "node.log").exists() else ""
    assert run.returncode == 0, f"{run.stdout}\n{run.stderr}\n{node_log}"
    assert "latency:" in run.stdout and "frames out:" in run.stdout

    summary = json.loads((out / "summary.json").read_text())
    assert summary["frames_in"] == 20 and summary["node_frames_in"] > 0
    assert 0 < summary["frames_out"] <= 20
    assert 0 < summary["latency_p50_ms"] <= summary["latency_p95_ms"] < 10_000
    assert summary["output_fps"] > 0
    assert summary["drops_total"] == sum(summary["drops"].values())

    assert list((out / "bag").glob("*.mcap")), "the bag is not MCAP"
    with Reader(out / "bag") as reader:
        counts = {c.topic: c.msgcount for c in reader.connections}
        for topic in ("/objects", "/overlay", "/drivable/grid", "/instances", "/class_info"):
            assert counts[topic] > 0, counts
        assert counts["/objects"] == summary["frames_out"]
        store = demo_record.output_typestore()
        objects = [c for c in reader.connections if c.topic == "/objects"]
        _, _, raw = next(reader.messages(connections=objects))
        result = store.deserialize_cdr(raw, "segmentation_ros/msg/SegmentationResult")
        assert result.model_name == "panoptic_yolact_mobilenetv3"
        assert (result.image_width, result.image_height) == (320, 240)
        assert result.header.frame_id == "camera_optical_frame"
        info = [c for c in reader.connections if c.topic == "/class_info"]
        _, _, raw = next(reader.messages(connections=info))
        classes = store.deserialize_cdr(raw, "segmentation_ros/msg/ClassInfoArray")
        assert [c.name for c in classes.classes][:3] == ["road", "grass", "sky"]

    strip = cv2.imread(str(out / "strip.png"))
    grid = cv2.imread(str(out / "grid.png"))
    assert strip is not None and strip.shape[0] == 240 and strip.shape[1] > 320
    assert grid is not None and grid.shape[2] == 3
