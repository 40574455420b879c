"""Track ids over frames and ground-plane motion of tracked objects (library layer: numpy, the
`trackers` and `filterpy` libraries; never rclpy or the pipeline)."""

from segmentation_ros.tracking.motion import (
    LABEL_CONTACT_INSET_PX,
    GroundMotion,
    MotionParams,
    MotionResult,
    base_to_odom,
    box_contacts,
    cut_by_border,
    detector_bottoms,
)
from segmentation_ros.tracking.reassociate import ReassociationParams, TrackReassociation
from segmentation_ros.tracking.tracker import ObjectTracker, TrackerParams

__all__ = [
    "LABEL_CONTACT_INSET_PX",
    "GroundMotion",
    "MotionParams",
    "MotionResult",
    "ObjectTracker",
    "ReassociationParams",
    "TrackReassociation",
    "TrackerParams",
    "base_to_odom",
    "box_contacts",
    "cut_by_border",
    "detector_bottoms",
]
