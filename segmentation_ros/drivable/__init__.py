"""Drivable surface: class -> drivability, drivable mask, ground-plane projection, occupancy grid.

Pure numpy (+ OpenCV for undistortion); never imports rclpy or torch. Frame conventions are in
`camera`, grid conventions and the mixed-cell rule in `projection`.

Per frame, in a node::

    table = DrivabilityTable.from_panoptic(stuff_names, thing_names)        # once
    cache = ProjectorCache(stride=2)                                         # once
    camera = CameraModel(K=info.k, D=info.d, width=info.width, height=info.height,
                         distortion_model=info.distortion_model)
    projector = cache.get(camera, camera_to_base, geometry)   # rebuilt only on change
    grid = projector.project_semantic(semantic_map, table, instance_mask)   # int8 [h, w]
"""

from .camera import CameraModel, MountPose, camera_to_base_matrix
from .classes import (
    DEFAULT_DRIVABLE_NAMES,
    GRASS_NAMES,
    DrivabilityTable,
    drivable_mask,
    known_mask,
    normalize_class_name,
)
from .fusion import GridFusion, PlanarPose, RollingGridFusion
from .ground import distance_bearing, ground_contacts, mask_ground_contacts, pixels_to_ground
from .projection import (
    FREE,
    OCCUPIED,
    UNKNOWN,
    GridGeometry,
    GroundProjector,
    ProjectorCache,
    occupancy_from_counts,
)
from .scan import POINT_DTYPE, Scan, ScanProjector, obstacle_points

__all__ = [
    "DEFAULT_DRIVABLE_NAMES",
    "FREE",
    "GRASS_NAMES",
    "OCCUPIED",
    "UNKNOWN",
    "CameraModel",
    "DrivabilityTable",
    "GridFusion",
    "GridGeometry",
    "GroundProjector",
    "MountPose",
    "ProjectorCache",
    "camera_to_base_matrix",
    "drivable_mask",
    "known_mask",
    "normalize_class_name",
    "occupancy_from_counts",
    "PlanarPose",
    "RollingGridFusion",
    "POINT_DTYPE",
    "Scan",
    "ScanProjector",
    "distance_bearing",
    "ground_contacts",
    "mask_ground_contacts",
    "obstacle_points",
    "pixels_to_ground",
]
