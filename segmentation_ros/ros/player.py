"""A small camera player: publishes `image` (sensor_msgs/Image, rgb8) and `camera_info`
(sensor_msgs/CameraInfo) at a fixed rate from the synthetic world, a rosbag2 or a video file.

    python -m segmentation_ros.ros.player [--input BAG_OR_VIDEO] [--rate 30] [--frames 150]

Sources (each an iterable of `SourceFrame`, no rclpy needed):
- `SyntheticSource`: `generate_scene(seed)` for seeds start, start+1, ...; a small loop of frames
  is rendered up front (about 0.2 s per 640x480 frame here) and cycled, so rendering never limits
  the rate. Its `mounting` (camera height and pitch of the first scene) is what the segmentation
  node's `camera_height` / `camera_pitch` should be set to; every scene has its own camera, so the
  ground projection is exact for the first scene of the loop and approximate for the others.
- `BagSource`: a rosbag2 (sqlite3 or MCAP, read with `rosbags`): a sensor_msgs/Image or
  CompressedImage topic (the first one found unless named), and the latest CameraInfo of the bag
  where it has one (the bag's first CameraInfo for images before it).
- `SequenceSource` (`ros.sequence_source`): a synthetic camera sequence (a folder written by
  `segmentation-ros-generate --sequence`, or a world seed rendered up front), with odometry.
- `VideoSource`: any file OpenCV's VideoCapture opens; intrinsics are assumed (pinhole, centred
  principal point, `hfov_deg` horizontal field of view, no distortion).

Published messages carry stamp = now (the player's clock) and frame_id `frame_id`
("camera_optical_frame" by default); images are rgb8, whatever the source's encoding was.
CameraInfo: K from the source, D zeros unless the bag says otherwise, distortion model plumb_bob.
Frames with odometry also publish `odom` (nav_msgs/Odometry, frame "odom", child "base_link")
with the image's stamp.
"""

from __future__ import annotations

import argparse
import itertools
import math
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

FRAME_ID = "camera_optical_frame"
IMAGE_TYPES = ("sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage")
CAMERA_INFO_TYPE = "sensor_msgs/msg/CameraInfo"
VIDEO_SUFFIXES = (".avi", ".mp4", ".mkv", ".mov", ".webm", ".m4v", ".mpg", ".mpeg")


@dataclass(frozen=True)
class Intrinsics:
    """What a CameraInfo carries: K [3, 3] float64 (pixels), D distortion coefficients,
    the distortion model and the image size in pixels."""

    K: np.ndarray
    width: int
    height: int
    D: tuple[float, ...] = (0.0, 0.0, 0.0, 0.0, 0.0)
    distortion_model: str = "plumb_bob"

    @staticmethod
    def from_fov(width: int, height: int, hfov_deg: float) -> Intrinsics:
        """Square pixels, principal point at the image centre ((W-1)/2, (H-1)/2)."""
        if not 1.0 <= hfov_deg <= 170.0:
            raise ValueError(f"hfov_deg must be in [1, 170] degrees, got {hfov_deg}")
        f = (width / 2) / math.tan(math.radians(hfov_deg) / 2)
        K = np.array([[f, 0.0, (width - 1) / 2], [0.0, f, (height - 1) / 2], [0.0, 0.0, 1.0]])
        return Intrinsics(K, width, height)


@dataclass(frozen=True)
class FrameOdometry:
    """The robot's odometry at a frame: base_link pose (x, y m, yaw rad) in `odom` and its
    twist in base_link (vx, vy m/s, yaw rate rad/s); planar (z, roll, pitch = 0)."""

    pose: tuple[float, float, float]
    twist: tuple[float, float, float]


@dataclass(frozen=True)
class SourceFrame:
    """One frame to publish: rgb [H, W, 3] uint8 RGB, its camera (None: no camera_info) and
    the odometry at that frame (None: no odom message)."""

    rgb: np.ndarray
    camera: Intrinsics | None
    odometry: FrameOdometry | None = None


@dataclass(frozen=True)
class Mounting:
    """Camera above the ground: height (m) and downward pitch (rad), as the node's parameters."""

    camera_height: float
    camera_pitch: float


class SyntheticSource:
    """Frames of the synthetic world, `loop_frames` seeds from `start_seed`, rendered up front
    and cycled forever (see the module docstring)."""

    def __init__(
        self, start_seed: int = 0, *, loop_frames: int = 10, width: int = 640, height: int = 480
    ):
        from segmentation_ros.data.synthetic import generate_scene

        if loop_frames < 1:
            raise ValueError(f"loop_frames must be >= 1, got {loop_frames}")
        scenes = [
            generate_scene(seed, width=width, height=height)
            for seed in range(start_seed, start_seed + loop_frames)
        ]
        self.frames = [
            SourceFrame(s.image, Intrinsics(s.camera.K, s.camera.width, s.camera.height))
            for s in scenes
        ]
        first = scenes[0].camera
        self.mounting = Mounting(first.camera_height, first.pitch)

    def __iter__(self) -> Iterator[SourceFrame]:
        return itertools.cycle(self.frames)


class BagSource:
    """Images (and CameraInfo) of a rosbag2 folder or file, in recording order.

    image_topic / info_topic: topic names; None: the first Image or CompressedImage topic, and
    the first CameraInfo topic (none: frames have no camera).
    """

    def __init__(self, path: str | Path, *, image_topic: str | None = None, info_topic=None):
        from rosbags.highlevel import AnyReader
        from rosbags.typesys import Stores, get_typestore

        self.path = Path(path)
        if not self.path.exists():
            raise FileNotFoundError(f"bag {str(self.path)!r} does not exist")
        self._reader_type = AnyReader
        self._typestore = get_typestore(Stores.ROS2_KILTED)
        with self._open() as reader:
            self.image_connection = _pick(reader.connections, IMAGE_TYPES, image_topic, self.path)
            try:
                info = _pick(reader.connections, (CAMERA_INFO_TYPE,), info_topic, self.path)
            except ValueError:
                if info_topic:
                    raise
                info = None
            self.image_topic = self.image_connection.topic
            self.info_topic = info.topic if info is not None else None
            self.num_frames = self.image_connection.msgcount
            self._first_camera = None
            if info is not None:
                for connection, _, raw in reader.messages(
                    [c for c in reader.connections if c.topic == self.info_topic]
                ):
                    self._first_camera = _intrinsics(reader.deserialize(raw, connection.msgtype))
                    break

    def _open(self):
        """An AnyReader over the bag, opened by `with`."""
        return self._reader_type([self.path], default_typestore=self._typestore)

    def __iter__(self) -> Iterator[SourceFrame]:
        from segmentation_ros.ros.image_codec import compressed_to_numpy, to_rgb8

        topics = {self.image_topic, self.info_topic} - {None}
        camera = self._first_camera
        with self._open() as reader:
            wanted = [c for c in reader.connections if c.topic in topics]
            for connection, _, raw in reader.messages(wanted):
                msg = reader.deserialize(raw, connection.msgtype)
                if connection.msgtype == CAMERA_INFO_TYPE:
                    camera = _intrinsics(msg)
                elif connection.msgtype.endswith("CompressedImage"):
                    yield SourceFrame(compressed_to_numpy(msg, "rgb8"), camera)
                else:
                    yield SourceFrame(to_rgb8(msg), camera)


def _pick(connections, msgtypes: tuple[str, ...], topic: str | None, path: Path):
    found = [
        c for c in connections if c.msgtype in msgtypes and (topic is None or c.topic == topic)
    ]
    if not found:
        have = ", ".join(f"{c.topic} ({c.msgtype})" for c in connections) or "no topics"
        wanted = f"topic {topic!r} of type " if topic else "a topic of type "
        raise ValueError(f"bag {str(path)!r} has no {wanted}{' or '.join(msgtypes)}; it has {have}")
    return found[0]


def _intrinsics(info) -> Intrinsics:
    """rosbags' CameraInfo -> Intrinsics (an empty distortion model is plumb_bob)."""
    D = tuple(float(v) for v in info.d) or (0.0,) * 5
    return Intrinsics(
        np.asarray(info.k, dtype=np.float64).reshape(3, 3),
        int(info.width),
        int(info.height),
        D,
        info.distortion_model or "plumb_bob",
    )


class VideoSource:
    """Frames of a video file (cv2.VideoCapture), with assumed intrinsics (see module)."""

    def __init__(self, path: str | Path, *, hfov_deg: float = 70.0):
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"video {str(self.path)!r} does not exist")
        capture = cv2.VideoCapture(str(self.path))
        try:
            if not capture.isOpened():
                raise ValueError(f"OpenCV cannot open video {str(self.path)!r}")
            self.width = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH))
            self.height = int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
            self.num_frames = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
        finally:
            capture.release()
        self.camera = Intrinsics.from_fov(self.width, self.height, hfov_deg)

    def __iter__(self) -> Iterator[SourceFrame]:
        capture = cv2.VideoCapture(str(self.path))
        try:
            while True:
                ok, bgr = capture.read()
                if not ok:
                    return
                yield SourceFrame(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), self.camera)
        finally:
            capture.release()


def open_source(
    input_path: str | Path | None,
    *,
    start_seed: int = 0,
    loop_frames: int = 10,
    width: int = 640,
    height: int = 480,
    image_topic: str | None = None,
    hfov_deg: float = 70.0,
):
    """The source for `input_path`: None -> SyntheticSource; a video file (by suffix) ->
    VideoSource; a sequence folder (with sequence.json) -> SequenceSource; anything else (a
    rosbag2 folder, .mcap or .db3) -> BagSource."""
    if input_path is None:
        return SyntheticSource(start_seed, loop_frames=loop_frames, width=width, height=height)
    path = Path(input_path)
    if (path / "sequence.json").is_file():
        from segmentation_ros.ros.sequence_source import SequenceSource

        return SequenceSource(path)
    if path.suffix.lower() in VIDEO_SUFFIXES:
        return VideoSource(path, hfov_deg=hfov_deg)
    return BagSource(path, image_topic=image_topic)


def camera_info_msg(camera: Intrinsics, header):
    """sensor_msgs/CameraInfo for `camera` (R identity, P = [K | 0])."""
    from sensor_msgs.msg import CameraInfo

    msg = CameraInfo(header=header, width=camera.width, height=camera.height)
    msg.distortion_model = camera.distortion_model
    msg.d = [float(v) for v in camera.D]
    msg.k = [float(v) for v in camera.K.reshape(-1)]
    msg.r = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
    msg.p = [float(v) for v in np.hstack([camera.K, np.zeros((3, 1))]).reshape(-1)]
    return msg


def _player_node_class():
    """PlayerNode is built on first use so that the sources above import without rclpy."""
    from rclpy.node import Node
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import CameraInfo, Image
    from std_msgs.msg import Header

    from segmentation_ros.ros.image_codec import numpy_to_image

    class PlayerNode(Node):
        """Publishes `image` and `camera_info` from `frames` at `rate_hz` (see the module).

        max_frames: stop after this many frames (0: when the source ends). `done` turns true when
        it stops; `on_done` (if given) is called then, from the executor. `published` counts the
        frames sent, `first_publish` / `last_publish` are the time.monotonic() of the first / last.
        Publishers are reliable, depth 1 (matching best-effort and reliable subscribers).
        """

        def __init__(
            self,
            frames: Iterable[SourceFrame],
            *,
            rate_hz: float = 30.0,
            max_frames: int = 0,
            frame_id: str = FRAME_ID,
            node_name: str = "player",
            on_done: Callable[[], None] | None = None,
            **kwargs,
        ):
            super().__init__(node_name, **kwargs)
            if not rate_hz > 0:
                raise ValueError(f"rate_hz must be > 0, got {rate_hz}")
            if max_frames < 0:
                raise ValueError(f"max_frames must be >= 0 (0: no limit), got {max_frames}")
            self._frames = iter(frames)
            self.max_frames, self.frame_id, self._on_done = max_frames, frame_id, on_done
            qos = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE)
            self.image_pub = self.create_publisher(Image, "image", qos)
            self.info_pub = self.create_publisher(CameraInfo, "camera_info", qos)
            self.odom_pub = None  # created with the first frame that has odometry
            self.published = 0
            self.first_publish = self.last_publish = 0.0  # time.monotonic() of the publications
            self.done = False
            self._timer = None
            self._period = 1.0 / rate_hz

        def start(self) -> None:
            """Start publishing (at construction nothing is sent, so that a caller can first
            wait for subscribers)."""
            if self._timer is None and not self.done:
                self._timer = self.create_timer(self._period, self._tick)

        def _tick(self) -> None:
            if self.max_frames and self.published >= self.max_frames:
                self._finish()
                return
            frame = next(self._frames, None)
            if frame is None:
                self._finish()
                return
            header = Header(stamp=self.get_clock().now().to_msg(), frame_id=self.frame_id)
            if frame.camera is not None:
                self.info_pub.publish(camera_info_msg(frame.camera, header))
            if frame.odometry is not None:
                self._publish_odometry(frame.odometry, header)
            self.image_pub.publish(numpy_to_image(np.ascontiguousarray(frame.rgb), "rgb8", header))
            self.published += 1
            self.last_publish = time.monotonic()
            if self.published == 1:
                self.first_publish = self.last_publish
            if self.max_frames and self.published >= self.max_frames:
                self._finish()

        def _publish_odometry(self, odometry: FrameOdometry, header) -> None:
            from nav_msgs.msg import Odometry

            from segmentation_ros.ros.sequence_source import odometry_msg

            if self.odom_pub is None:
                qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
                self.odom_pub = self.create_publisher(Odometry, "odom", qos)
            self.odom_pub.publish(odometry_msg(odometry, header.stamp))

        def _finish(self) -> None:
            if self._timer is not None:
                self._timer.cancel()
            if not self.done:
                self.done = True
                self.get_logger().info(f"played {self.published} frames")
                if self._on_done is not None:
                    self._on_done()

    return PlayerNode


def make_player(frames: Iterable[SourceFrame], **kwargs):
    """A PlayerNode (an rclpy Node; rclpy must be initialised) over `frames`; see its docstring."""
    return _player_node_class()(frames, **kwargs)


def add_source_arguments(parser: argparse.ArgumentParser) -> None:
    """The source options shared by the player and the demo."""
    parser.add_argument(
        "--input", help="rosbag2 (folder, .mcap or .db3) or video file; default: synthetic world"
    )
    parser.add_argument("--image-topic", help="image topic of the bag (default: the first one)")
    parser.add_argument("--seed", type=int, default=0, help="first seed of the synthetic world")
    parser.add_argument(
        "--loop-frames", type=int, default=10, help="synthetic frames rendered and cycled"
    )
    parser.add_argument("--width", type=int, default=640, help="synthetic image width (px)")
    parser.add_argument("--height", type=int, default=480, help="synthetic image height (px)")
    parser.add_argument(
        "--hfov", type=float, default=70.0, help="assumed horizontal field of view of a video (deg)"
    )
    parser.add_argument(
        "--rate", type=float, help="frames per second (default: a sequence's own rate, else 30)"
    )
    parser.add_argument("--frames", type=int, default=150, help="frames to play (0: all)")


def play_rate(args: argparse.Namespace, source) -> float:
    """--rate, else the source's own rate (a camera sequence: its odometry is in its time),
    else 30 Hz."""
    return float(args.rate or getattr(source, "rate", None) or 30.0)


def source_from_args(args: argparse.Namespace):
    return open_source(
        args.input,
        start_seed=args.seed,
        loop_frames=args.loop_frames,
        width=args.width,
        height=args.height,
        image_topic=args.image_topic,
        hfov_deg=args.hfov,
    )


def main(argv=None) -> int:
    """`python -m segmentation_ros.ros.player`: play a source, then exit."""
    import rclpy
    from rclpy.executors import ExternalShutdownException

    parser = argparse.ArgumentParser(prog="segmentation_ros.ros.player", description=__doc__)
    add_source_arguments(parser)
    args, ros_args = parser.parse_known_args(argv)
    try:
        source = source_from_args(args)
    except (FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    rclpy.init(args=ros_args)
    try:
        player = make_player(source, rate_hz=play_rate(args, source), max_frames=args.frames)
        player.start()
        while rclpy.ok() and not player.done:
            rclpy.spin_once(player, timeout_sec=0.1)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
