"""Odometry for the node's time-aware outputs: the robot's planar pose at an image's stamp.

`OdometryBuffer` keeps the recent `nav_msgs/Odometry` poses (the pose of `child_frame_id`, the
robot frame, in `header.frame_id`, e.g. odom) and answers `pose_at(stamp)` by interpolating
between the two poses around the stamp (yaw along the shorter arc). A stamp newer than the
newest pose by more than `max_extrapolation_ns` or older than the buffer gets None: the output
that needs it is skipped, never built with a guessed pose. Planar: z, roll and pitch are ignored.

`subscribe_odometry(node, buffer)` subscribes a node to the relative topic `odom` (remap it,
e.g. `-r odom:=/wheel/odometry`). Shared by every output that needs the robot's motion.
"""

from __future__ import annotations

import bisect
import math
import threading

from segmentation_ros.drivable.fusion import PlanarPose

__all__ = ["ODOMETRY_TOPIC", "OdometryBuffer", "planar_pose", "subscribe_odometry"]

ODOMETRY_TOPIC = "odom"


def planar_pose(msg) -> tuple[int, PlanarPose]:
    """nav_msgs/Odometry -> (stamp ns, the robot's planar pose in the message's frame)."""
    p, q = msg.pose.pose.position, msg.pose.pose.orientation
    yaw = math.atan2(2.0 * (q.w * q.z + q.x * q.y), 1.0 - 2.0 * (q.y * q.y + q.z * q.z))
    stamp = int(msg.header.stamp.sec) * 1_000_000_000 + int(msg.header.stamp.nanosec)
    return stamp, PlanarPose(float(p.x), float(p.y), yaw, msg.header.frame_id or "odom")


class OdometryBuffer:
    """The last `capacity` poses by stamp (thread-safe: the executor adds, the worker reads).

    max_extrapolation_ns: how far past the newest pose a stamp may be and still get it.
    """

    def __init__(self, capacity: int = 400, max_extrapolation_ns: int = 200_000_000) -> None:
        self.capacity = int(capacity)
        self.max_extrapolation_ns = int(max_extrapolation_ns)
        self._lock = threading.Lock()
        self._stamps: list[int] = []
        self._poses: list[PlanarPose] = []
        self.dropped = 0  # messages refused (non-finite, or older than the newest)

    def __len__(self) -> int:
        return len(self._stamps)

    def clear(self) -> None:
        with self._lock:
            self._stamps, self._poses = [], []

    def add(self, stamp_ns: int, pose: PlanarPose) -> bool:
        """Append a pose; False (counted in `dropped`) for a non-finite one or a stamp not newer
        than the last. A new frame_id restarts the buffer."""
        if not all(math.isfinite(v) for v in (pose.x, pose.y, pose.yaw)):
            self.dropped += 1
            return False
        with self._lock:
            if self._poses and self._poses[-1].frame_id != pose.frame_id:
                self._stamps, self._poses = [], []
            if self._stamps and stamp_ns <= self._stamps[-1]:
                self.dropped += 1
                return False
            self._stamps.append(int(stamp_ns))
            self._poses.append(pose)
            if len(self._stamps) > self.capacity:
                del self._stamps[0], self._poses[0]
        return True

    def add_msg(self, msg) -> bool:
        """`add` a nav_msgs/Odometry (the subscription's callback)."""
        return self.add(*planar_pose(msg))

    def pose_at(self, stamp_ns: int) -> PlanarPose | None:
        """The pose at `stamp_ns`, interpolated between its neighbours; None when out of range."""
        with self._lock:
            stamps, poses = self._stamps, self._poses
            if not stamps:
                return None
            i = bisect.bisect_left(stamps, stamp_ns)
            if i < len(stamps) and stamps[i] == stamp_ns:
                return poses[i]
            if i == len(stamps):
                ok = stamp_ns - stamps[-1] <= self.max_extrapolation_ns
                return poses[-1] if ok else None
            if i == 0:
                return None
            t0, t1, a, b = stamps[i - 1], stamps[i], poses[i - 1], poses[i]
        f = (stamp_ns - t0) / (t1 - t0)
        turn = math.remainder(b.yaw - a.yaw, math.tau)
        return PlanarPose(
            a.x + f * (b.x - a.x), a.y + f * (b.y - a.y), a.yaw + f * turn, a.frame_id
        )


def subscribe_odometry(node, buffer: OdometryBuffer, qos=None):
    """Subscribe `node` to `odom` (nav_msgs/Odometry) into `buffer`; returns the subscription.
    Default QoS: best effort (it matches reliable and best-effort publishers alike), depth 50."""
    from nav_msgs.msg import Odometry
    from rclpy.qos import QoSProfile, ReliabilityPolicy

    if qos is None:
        qos = QoSProfile(depth=50, reliability=ReliabilityPolicy.BEST_EFFORT)
    return node.create_subscription(Odometry, ODOMETRY_TOPIC, buffer.add_msg, qos)
