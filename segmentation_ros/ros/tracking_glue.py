"""Tracking in the node: track ids, ground position and velocity on the `objects` message and
velocity arrows on `markers` (`segmentation_ros.tracking` underneath).

Parameters (declared here, read on configure): `tracking_enabled`, `tracking_high_score`,
`tracking_new_track_score`, `tracking_match_iou`, `tracking_max_age` (s), `tracking_min_hits`,
`tracking_contact_inset_px`, `tracking_border_margin_px` (`tracking.MotionParams`' fields),
`tracking_reassociate` (carry a lost track's id to a new track its ground filter predicts:
`tracking.reassociate`; needs odometry and the camera model).
The robot's pose at each image's stamp comes from the node's one odometry subscription
(`ros.odometry.OdometryBuffer`, topic `odom`): interpolated, None when the stamp is outside what
odometry covers. Its child frame is assumed to be the grid frame (`grid_frame_id`, base_link) in
which the camera is mounted.
"""

from __future__ import annotations

import math

import numpy as np

from segmentation_ros.tracking import (
    GroundMotion,
    MotionParams,
    ObjectTracker,
    ReassociationParams,
    TrackerParams,
    TrackReassociation,
    box_contacts,
    detector_bottoms,
)

ARROW_SECONDS = 1.0  # an arrow shows where the object will be in this time

#: name -> (default, description, (low, high) or None)
PARAMETERS = {
    "tracking_enabled": (True, "give objects track ids, ground positions and velocities", None),
    "tracking_high_score": (0.5, "detections at or above it are associated first", (0.0, 1.0)),
    "tracking_new_track_score": (
        0.5,
        "minimum score of a detection that starts a track",
        (0.0, 1.0),
    ),
    "tracking_match_iou": (
        0.2,
        "minimum IoU of a track's predicted box and a detection",
        (0.0, 1.0),
    ),
    "tracking_max_age": (
        TrackerParams.max_age_s,
        "seconds a track survives without detections",
        (0.0, 60.0),
    ),
    "tracking_min_hits": (2, "matched frames before a track gets an id", (1, 100)),
    "tracking_contact_inset_px": (
        MotionParams.contact_inset_px,
        "pixels above the detector box's bottom edge where the object touches the ground",
        (-5.0, 5.0),
    ),
    "tracking_border_margin_px": (
        MotionParams.border_margin_px,
        "a box this close to the image's border (px) is cut by it: no ground contact",
        (0.0, 50.0),
    ),
    "tracking_reassociate": (
        True,
        "a new track takes the id of a lost one whose ground filter gates it (occlusions)",
        None,
    ),
}


def declare_tracking_parameters(node) -> None:
    from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor

    for name, (default, text, bounds) in PARAMETERS.items():
        d = ParameterDescriptor(description=text, read_only=False)
        if bounds is not None and isinstance(default, float):
            d.floating_point_range = [FloatingPointRange(from_value=bounds[0], to_value=bounds[1])]
        elif bounds is not None:
            d.integer_range = [IntegerRange(from_value=bounds[0], to_value=bounds[1], step=1)]
        node.declare_parameter(name, default, d)


def _stamp_s(stamp) -> float:
    return stamp.sec + stamp.nanosec * 1e-9


class TrackingGlue:
    """Per node: the tracker, the ground filters and the odometry history."""

    def __init__(self, node, odometry) -> None:
        self.node = node
        declare_tracking_parameters(node)
        self._odometry = odometry  # ros.odometry.OdometryBuffer, filled by the node
        self.enabled = False
        self.tracker = self.motion = self.carry = None
        self._arrows: list = []

    def configure(self) -> None:
        """Read the parameters (ValueError when invalid) and start with no tracks."""
        value = {name: self.node.get_parameter(name).value for name in PARAMETERS}
        self.enabled = bool(value["tracking_enabled"])
        params = TrackerParams(
            high_score=float(value["tracking_high_score"]),
            new_track_score=float(value["tracking_new_track_score"]),
            match_iou=float(value["tracking_match_iou"]),
            max_age_s=float(value["tracking_max_age"]),
            min_hits=int(value["tracking_min_hits"]),
        )
        self.tracker = ObjectTracker(params)
        self.motion = GroundMotion(
            MotionParams(
                max_age_s=params.max_age_s,
                contact_inset_px=float(value["tracking_contact_inset_px"]),
                border_margin_px=float(value["tracking_border_margin_px"]),
            )
        )
        self.carry = None
        if value["tracking_reassociate"]:
            self.carry = TrackReassociation(ReassociationParams(max_age_s=params.max_age_s))

    def _pose_at(self, stamp) -> tuple[tuple[float, float, float] | None, str]:
        """((x, y, yaw), frame) of the robot at a header stamp, or (None, "")."""
        pose = self._odometry.pose_at(stamp.sec * 1_000_000_000 + stamp.nanosec)
        return ((pose.x, pose.y, pose.yaw), pose.frame_id) if pose is not None else (None, "")

    def annotate(self, msg, camera, mount, image_size: tuple[int, int], segments=None) -> None:
        """Fill the tracking fields of a SegmentationResult's objects in place.

        camera: the node's CameraModel (None: no ground positions); mount: the camera's
        MountPose in the grid frame; image_size: (H, W) of the image the objects refer to;
        segments: the frame's `Segments`, one per object in the objects' order: their detector
        boxes' bottom edges are what `tracking.box_contacts` projects; None: the rois'.
        """
        self._arrows = []
        if not self.enabled or self.tracker is None:
            return
        stamp = _stamp_s(msg.header.stamp)
        things = [o for o in msg.objects if o.is_thing]
        rois = np.array(
            [(o.roi.x_offset, o.roi.y_offset, o.roi.width, o.roi.height) for o in things],
            np.float64,
        ).reshape(-1, 4)
        boxes = np.concatenate([rois[:, :2], rois[:, :2] + rois[:, 2:]], 1)
        scores = np.array([o.score for o in things], np.float64)
        classes = [o.class_id for o in things]
        ids = self.tracker.update(boxes, scores, classes, stamp)
        pose, frame = self._pose_at(msg.header.stamp)
        est = None
        xy = gate = np.full((len(things), 2), np.nan)
        if camera is not None and pose is not None and len(things):
            bottoms = None if segments is None else detector_bottoms(segments)
            xy, gate = box_contacts(camera, mount, boxes, image_size, self.motion.params, bottoms)
        if self.carry is not None:
            ids = self.carry.update(ids, classes, xy, pose, stamp, self.motion, boxes, gate)
        if camera is not None and pose is not None and len(things):
            est = self.motion.update(ids, xy, pose, stamp, gate)
        for k, (obj, tid) in enumerate(zip(things, ids)):
            obj.track_id = int(tid)
            obj.track_frame_id = frame if est is not None else ""
            if est is not None and tid:
                obj.track_x, obj.track_y = (float(v) for v in est.position[k])
                obj.track_position_covariance = est.position_cov[k].ravel().tolist()
                if est.updates[k] < 2:
                    continue  # one contact: the filter's 0 m/s is its prior, not a measurement
                obj.track_velocity_x, obj.track_velocity_y = (float(v) for v in est.velocity[k])
                obj.track_velocity_covariance = est.velocity_cov[k].ravel().tolist()
                if np.isfinite(xy[k]).all():
                    self._arrows.append((int(tid), xy[k], _to_base(pose, est.velocity[k])))

    def reset(self) -> None:
        """Forget every track (a new camera stream, a re-configured node)."""
        if self.tracker is not None:
            self.tracker.reset()
            self.motion.reset()
            if self.carry is not None:
                self.carry.reset()
        self._arrows = []

    def add_markers(self, markers_msg) -> None:
        """Append, per tracked object on the ground (grid frame): its track id as text (ns
        "track_ids") and, when it moves, a velocity arrow from its ground contact to where it
        will be in ARROW_SECONDS (ns "velocity"); marker ids are the track ids."""
        from geometry_msgs.msg import Point
        from visualization_msgs.msg import Marker

        if not markers_msg.markers:
            return
        header = markers_msg.markers[0].header
        for tid, xy, v in self._arrows:
            text = Marker(header=header, ns="track_ids", id=tid, type=Marker.TEXT_VIEW_FACING)
            text.action = Marker.ADD
            text.pose.position = Point(x=float(xy[0]), y=float(xy[1]), z=1.0)
            text.pose.orientation.w = 1.0
            text.scale.z = 0.3
            text.color.r, text.color.g, text.color.b, text.color.a = 1.0, 0.85, 0.1, 1.0
            text.text = f"#{tid}"
            markers_msg.markers.append(text)
            if not np.isfinite(v).all() or math.hypot(*v) < 0.2:
                continue
            m = Marker(header=header, ns="velocity", id=tid, type=Marker.ARROW, action=Marker.ADD)
            start = Point(x=float(xy[0]), y=float(xy[1]), z=0.1)
            end = Point(
                x=float(xy[0] + v[0] * ARROW_SECONDS), y=float(xy[1] + v[1] * ARROW_SECONDS), z=0.1
            )
            m.points = [start, end]
            m.scale.x, m.scale.y, m.scale.z = 0.08, 0.2, 0.25
            m.color.r, m.color.g, m.color.b, m.color.a = 1.0, 0.85, 0.1, 0.95
            m.pose.orientation.w = 1.0
            markers_msg.markers.append(m)


def _to_base(pose, v_odom) -> np.ndarray:
    """An odom-frame velocity [2] in base_link (rotated by -yaw)."""
    c, s = math.cos(pose[2]), math.sin(pose[2])
    return np.array([c * v_odom[0] + s * v_odom[1], -s * v_odom[0] + c * v_odom[1]])
