"""What a frame is processed with (`FrameSettings`) and what is computed (`OutputRequest`)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from segmentation_ros.drivable import GridGeometry, MountPose
from segmentation_ros.models.family import PostprocessSettings

__all__ = ["FrameSettings", "OutputRequest"]


@dataclass(frozen=True)
class FrameSettings(PostprocessSettings):
    """Per-frame settings (all may change between frames).

    score_threshold, nms_threshold, mask_threshold, max_detections, nms: the postprocess's
        (`models.family.PostprocessSettings`).
    class_filter: class names kept in `segments` / `id_map`; empty keeps all.
    drivable_classes: names of the drivable surface classes (matching rules in
        `drivable.classes`); empty: `DEFAULT_DRIVABLE_NAMES`.
    mount: the camera's pose on the robot; grid: the occupancy grid layout (robot frame).
    grid_stride, grid_max_range (m, None: no limit), occupied_fraction: see `GroundProjector`.
    scan_angle_increment (rad), scan_range_max (m): the `drivable/scan` beams
        (`drivable.scan`); obstacle_height: z of the `drivable/obstacles` points (m).
    fused_frames, fused_size (m): the odometry-frame grid (`drivable.fusion.RollingGridFusion`).
    """

    class_filter: tuple[str, ...] = ()
    drivable_classes: tuple[str, ...] = ()
    mount: MountPose = MountPose(height=0.5, pitch=0.2)
    grid: GridGeometry = GridGeometry(resolution=0.05, width=200, height=200, origin_y=-5.0)
    grid_stride: int = 2
    grid_max_range: float | None = None
    occupied_fraction: float = 0.5
    scan_angle_increment: float = 0.0087266  # 0.5 degree
    scan_range_max: float = 20.0
    obstacle_height: float = 0.1
    fused_frames: int = 10
    fused_size: float = 20.0


@dataclass(frozen=True)
class OutputRequest:
    """Which parts of a `FrameResult` to compute (segments and id_map always are)."""

    objects: bool = False
    instances: bool = False
    semantic: bool = False
    confidence: bool = False
    drivable_mask: bool = False
    grid: bool = False
    overlay: bool = False
    markers: bool = False  # ground positions of the things (needs a camera)
    scan: bool = False  # free-space scan on the ground (needs a camera)
    obstacles: bool = False  # obstacle points on the ground (needs a camera)
    grid_fused: bool = False  # grid fused over frames in the odometry frame (needs a pose)

    @classmethod
    def all(cls) -> OutputRequest:
        return cls(**{f.name: True for f in dataclasses.fields(cls)})

    @property
    def any(self) -> bool:
        return any(dataclasses.astuple(self))

    @property
    def needs_semantic(self) -> bool:
        return self.semantic or self.needs_drivable

    @property
    def needs_drivable(self) -> bool:
        return self.drivable_mask or self.grid or self.scan or self.obstacles or self.grid_fused

    @property
    def needs_geometry(self) -> bool:
        return self.objects or self.markers or self.overlay
