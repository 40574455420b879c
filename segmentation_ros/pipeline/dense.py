"""The outputs of a frame beyond its segments: semantic and confidence maps, the drivable mask
and grid, the class filter, object geometry and ground positions. Numpy only; one
`DenseOutputs` per model (it caches the drivability of class lists and the ground projectors).
"""

from __future__ import annotations

import numpy as np

from segmentation_ros.drivable import (
    DEFAULT_DRIVABLE_NAMES,
    CameraModel,
    DrivabilityTable,
    ProjectorCache,
    drivable_mask,
)
from segmentation_ros.drivable.fusion import PlanarPose, RollingGridFusion
from segmentation_ros.drivable.ground import (
    ground_contacts,
    mask_ground_contacts,
    upright_keypoints,
)
from segmentation_ros.drivable.scan import ScanProjector, obstacle_points
from segmentation_ros.structures import ClassTable, Segments, segment_geometry, void_label

from .results import FrameResult, Timings, renumber
from .settings import FrameSettings, OutputRequest

__all__ = ["DenseOutputs"]


class DenseOutputs:
    """Segments of one frame -> a `FrameResult` with what `OutputRequest` asks for.

    classes: the model's class table. model_name: named in the notes.
    """

    def __init__(self, classes: ClassTable, model_name: str) -> None:
        self.classes = classes
        self.model_name = model_name
        self.void = void_label(len(classes))
        self._projectors = ProjectorCache(stride=2)
        self._drivability: dict[tuple[str, ...], DrivabilityTable | str] = {}
        self._scans: tuple[object, tuple, ScanProjector] | None = None
        self._fusion: tuple[tuple, RollingGridFusion] | None = None

    def drivability(self, drivable_classes: tuple[str, ...] = ()) -> DrivabilityTable | str:
        """The drivability of the model's classes, or the reason there is none (a model without
        surface classes, or names that match none of them)."""
        key = tuple(drivable_classes)
        if key not in self._drivability:
            classes = self.classes
            try:
                self._drivability[key] = DrivabilityTable.from_names(
                    classes.names, classes.is_thing, key or DEFAULT_DRIVABLE_NAMES
                )
            except ValueError as error:
                why = "it has no stuff (surface) classes" if not classes.num_stuff else str(error)
                self._drivability[key] = f"no drivable mask for model {self.model_name}: {why}"
        return self._drivability[key]

    def __call__(
        self,
        id_map: np.ndarray,
        segments: Segments,
        request: OutputRequest,
        settings: FrameSettings,
        camera: CameraModel | None,
        pose: PlanarPose | None = None,
    ) -> FrameResult:
        """id_map [H, W] int32 and its segments (numpy, ids 1..N by decreasing score) -> the
        result. semantic, confidence, drivable, grid, scan and obstacles describe the whole scene;
        the class filter then applies to segments, id map and geometry. `pose`: the robot's in
        the odometry frame at the image's time (for `grid_fused`)."""
        notes: list[str] = []
        result = FrameResult(id_map.shape, segments, id_map, Timings())
        if request.needs_semantic or request.confidence:
            result.semantic = self._semantic(id_map, segments)
        if request.confidence:
            result.confidence = np.concatenate([[0.0], segments.scores]).astype(np.float32)[id_map]
        if request.needs_drivable:
            result.drivable = self._drivable(result, settings, notes)
        if request.grid:
            result.grid = self._grid(result, settings, camera, notes)
        if request.scan or request.obstacles:
            self._scan(result, segments, request, settings, camera, notes)
        if request.grid_fused:
            result.grid_fused = self._fused(result, settings, camera, pose, notes)
        if settings.class_filter:
            keep = np.isin(segments.class_ids, self.classes.ids_of(settings.class_filter))
            result.id_map, result.segments = renumber(id_map, segments, keep)
        if request.needs_geometry:
            result.geometry = segment_geometry(result.id_map, len(result.segments))
            boxes = result.segments.boxes
            unknown = np.isnan(boxes).any(axis=1)  # stuff, PCV things: their pixel bounds
            boxes[unknown] = result.geometry.boxes[unknown]
        if request.markers or request.objects:
            self._ground(result, settings, camera, notes)
        result.notes = tuple(notes)
        return result

    def _semantic(self, id_map: np.ndarray, segments: Segments) -> np.ndarray:
        dtype = np.uint8 if self.void == 255 else np.uint16
        return np.concatenate([[self.void], segments.class_ids]).astype(dtype)[id_map]

    def _drivable(self, result: FrameResult, settings: FrameSettings, notes: list[str]):
        table = self.drivability(settings.drivable_classes)
        if isinstance(table, str):
            notes.append(table)
            return None
        thing = np.concatenate([[False], result.segments.is_thing])[result.id_map]
        return drivable_mask(result.semantic, table, thing, void_label=self.void)

    def _grid(self, result, settings: FrameSettings, camera: CameraModel | None, notes):
        if result.drivable is None:
            return None
        if camera is None:
            notes.append("no drivable grid: no camera_info received yet")
            return None
        projector = self._projector(camera, result.image_size, settings)
        known = result.semantic != self.void
        return projector.project(
            result.drivable, known, occupied_fraction=settings.occupied_fraction
        )

    def _projector(self, camera: CameraModel, image_size: tuple[int, int], settings):
        height, width = image_size
        if (camera.width, camera.height) != (width, height):
            camera = camera.resized(width, height)
        cache = self._projectors
        if (cache.stride, cache.max_range) != (settings.grid_stride, settings.grid_max_range):
            self._projectors = cache = ProjectorCache(
                stride=settings.grid_stride, max_range=settings.grid_max_range
            )
        return cache.get(camera, settings.mount, settings.grid)

    def _ground(self, result, settings: FrameSettings, camera: CameraModel | None, notes) -> None:
        if camera is None:
            notes.append("no object markers: no camera_info received yet")
            return
        assert result.geometry is not None
        rois = result.geometry.rois
        _, width = ground_contacts(camera, settings.mount, rois, result.image_size)
        contact = mask_ground_contacts(
            camera, settings.mount, result.id_map, result.segments.ids, rois
        )
        result.ground_xy = np.where(result.segments.is_thing[:, None], contact, np.nan)
        result.ground_width = width
        if result.segments.keypoints.shape[1]:
            result.keypoints_xyz = upright_keypoints(
                camera, settings.mount, result.segments.keypoints, result.ground_xy,
                result.image_size,
            )  # fmt: skip

    def _scan(self, result, segments, request, settings: FrameSettings, camera, notes) -> None:
        """The free-space scan and (if asked) the obstacle points, before the class filter."""
        if result.drivable is None:
            return
        if camera is None:
            notes.append("no drivable scan: no camera_info received yet")
            return
        projector = self._projector(camera, result.image_size, settings)
        key = (settings.scan_angle_increment, settings.scan_range_max)
        if self._scans is None or self._scans[0] is not projector or self._scans[1] != key:
            scans = ScanProjector(
                projector.ray_ground,
                projector.ray_pixels,
                angle_increment=settings.scan_angle_increment,
                range_max=settings.scan_range_max,
            )
            self._scans = (projector, key, scans)
        result.scan = self._scans[2].scan(result.drivable, result.semantic != self.void)
        if request.obstacles:
            result.obstacles = obstacle_points(
                result.scan,
                projector.camera,
                settings.mount,
                result.id_map,
                segments.class_ids,
                segments.is_thing,
                height=settings.obstacle_height,
                column_stride=settings.grid_stride,
            )

    def _fused(self, result, settings: FrameSettings, camera, pose, notes):
        """(geometry, grid) fused over the last frames in the pose's frame, or None."""
        if result.drivable is None:
            return None
        if camera is None or pose is None:
            why = "no camera_info received yet" if camera is None else "no odometry"
            notes.append(f"no fused grid: {why}")
            return None
        projector = self._projector(camera, result.image_size, settings)
        key = (settings.grid.resolution, settings.fused_size, settings.fused_frames)
        if self._fusion is None or self._fusion[0] != key:
            self._fusion = (key, RollingGridFusion(*key))
        fusion = self._fusion[1]
        fusion.add(projector, result.drivable, result.semantic != self.void, pose)
        return fusion.geometry, fusion.grid(occupied_fraction=settings.occupied_fraction)
