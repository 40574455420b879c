"""The player's source for synthetic camera sequences, with odometry (`nav_msgs/Odometry`).

`SequenceSource(path)` reads a folder written by `segmentation-ros-generate --sequence`;
`SequenceSource.render(seed, ...)` renders a world up front (about 0.2 s per 640x480 frame
here). Frames are played once, in order, at the sequence's own rate (`rate`); `mounting` is the
camera's height and pitch for the node's `camera_height` / `camera_pitch` (constant over a
sequence, so the ground projection is exact in every frame).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

from segmentation_ros.ros.player import FrameOdometry, Intrinsics, Mounting, SourceFrame

ODOM_FRAME = "odom"
BASE_FRAME = "base_link"


class SequenceSource:
    """Frames (image, CameraInfo, odometry) of one synthetic camera sequence."""

    def __init__(self, path: str | Path) -> None:
        from segmentation_ros.data.sequence_io import SequenceData

        self.data = SequenceData.open(path)
        meta = self.data.meta
        self.rate = float(meta["rate"])
        self.num_frames = len(self.data)
        self.camera = Intrinsics(self.data.K, int(meta["width"]), int(meta["height"]))
        self.mounting = Mounting(meta["camera"]["camera_height"], meta["camera"]["pitch"])
        self._rendered: list[SourceFrame] | None = None

    @classmethod
    def render(
        cls, seed: int, *, frames: int = 150, kind: str | None = "drive", width=640, height=480
    ) -> SequenceSource:
        """A sequence rendered in memory from `seed` (see `data.sequence_world.build_world`)."""
        from segmentation_ros.data.sequence_render import render_frame
        from segmentation_ros.data.sequence_world import build_world

        world = build_world(seed, kind=kind, num_frames=frames, width=width, height=height)
        self = cls.__new__(cls)
        self.data, self.rate, self.num_frames = None, world.rate, frames
        cam = world.camera
        self.camera = Intrinsics(cam.K, cam.width, cam.height)
        self.mounting = Mounting(cam.camera_height, cam.pitch)
        self._rendered = []
        for k in range(frames):
            f = render_frame(world, k)
            self._rendered.append(SourceFrame(f.image, self.camera, FrameOdometry(f.pose, f.twist)))
        return self

    def __iter__(self) -> Iterator[SourceFrame]:
        if self._rendered is not None:
            yield from self._rendered
            return
        for k in range(self.num_frames):
            f = self.data.frame(k)
            odom = FrameOdometry(tuple(f["pose"]), tuple(f["twist"]))
            yield SourceFrame(self.data.image(k), self.camera, odom)


def odometry_msg(odometry: FrameOdometry, stamp, *, frame_id=ODOM_FRAME, child=BASE_FRAME):
    """nav_msgs/Odometry: the planar pose (orientation a yaw quaternion) and the twist in the
    child frame; covariances stay zero (the synthetic odometry is exact)."""
    from nav_msgs.msg import Odometry

    x, y, yaw = (float(v) for v in odometry.pose)
    vx, vy, wz = (float(v) for v in odometry.twist)
    msg = Odometry()
    msg.header.stamp = stamp
    msg.header.frame_id = frame_id
    msg.child_frame_id = child
    msg.pose.pose.position.x, msg.pose.pose.position.y = x, y
    msg.pose.pose.orientation.z = math.sin(yaw / 2)
    msg.pose.pose.orientation.w = math.cos(yaw / 2)
    msg.twist.twist.linear.x, msg.twist.twist.linear.y = vx, vy
    msg.twist.twist.angular.z = wz
    return msg


def pose_from_msg(msg) -> tuple[float, float, float]:
    """(x, y, yaw) of a nav_msgs/Odometry (or geometry_msgs/Pose) message, yaw from the
    quaternion (planar: roll and pitch are ignored)."""
    pose = getattr(msg, "pose", msg)
    pose = getattr(pose, "pose", pose)
    q = pose.orientation
    yaw = math.atan2(2 * (q.w * q.z + q.x * q.y), 1 - 2 * (q.y * q.y + q.z * q.z))
    return float(pose.position.x), float(pose.position.y), yaw


__all__ = ["SequenceSource", "odometry_msg", "pose_from_msg"]
