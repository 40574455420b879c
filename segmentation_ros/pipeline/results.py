"""What one frame gives: `FrameResult` (segments, id map, dense maps, geometry, timings).

The segment vocabulary (`Segments`, `SegmentGeometry`, `segment_geometry`, `VOID`, the class
table) is the library's, `segmentation_ros.structures`; it is re-exported here because the
results are made of it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from segmentation_ros.structures import (
    VOID,
    ClassTable,
    SegmentGeometry,
    Segments,
    segment_geometry,
)

__all__ = [
    "VOID",
    "ClassMeta",
    "FrameResult",
    "SegmentGeometry",
    "Segments",
    "Timings",
    "renumber",
    "segment_geometry",
]

#: The class table of a model's results (the library's `ClassTable`, under its former name).
ClassMeta = ClassTable


@dataclass
class Timings:
    """Milliseconds spent per stage of one frame."""

    preprocess_ms: float = 0.0
    inference_ms: float = 0.0
    postprocess_ms: float = 0.0
    outputs_ms: float = 0.0

    @property
    def total_ms(self) -> float:
        return self.preprocess_ms + self.inference_ms + self.postprocess_ms + self.outputs_ms


@dataclass
class FrameResult:
    """One frame's segmentation (see `segmentation_ros.pipeline` for the conventions).

    image_size: (H, W). segments: in decreasing score order, ids 1..N (numpy).
    id_map: [H, W] int32 segment ids (0 = none).
    geometry: per-segment rois / centroids / areas (computed for objects, markers, overlay).
    semantic: [H, W] uint8 class ids (uint16 for models with 255 classes or more), VOID / 65535
        where no segment is. confidence: [H, W] float32 in [0, 1]. drivable: [H, W] bool.
    grid: [grid.height, grid.width] int8 occupancy (0 free, 100 occupied, -1 unknown).
    ground_xy: [N, 2] float64 metres in the grid frame, where each thing touches the ground (the
        middle of its mask's lowest row, `drivable.ground.mask_ground_contacts`); NaN for stuff
        and above the horizon. ground_width: [N] metres, its box's bottom edge on the ground.
    keypoints_xyz: [N, K, 3] float64 metres in the grid frame, the things' keypoints on the
        upright plane through their ground point (`drivable.ground.upright_keypoints`); NaN
        where unknown; None without keypoints or camera.
    scan: the free-space `drivable.scan.Scan` (grid frame). obstacles: [K]
        `drivable.scan.POINT_DTYPE` obstacle points on the ground (grid frame).
    grid_fused: (geometry in the odometry frame, int8 grid) fused over the last frames.
    notes: why a requested part is missing (e.g. no drivable classes, no camera).
    """

    image_size: tuple[int, int]
    segments: Segments
    id_map: np.ndarray
    timings: Timings
    geometry: SegmentGeometry | None = None
    semantic: np.ndarray | None = None
    confidence: np.ndarray | None = None
    drivable: np.ndarray | None = None
    grid: np.ndarray | None = None
    ground_xy: np.ndarray | None = None
    ground_width: np.ndarray | None = None
    scan: Any = None
    keypoints_xyz: np.ndarray | None = None
    obstacles: np.ndarray | None = None
    grid_fused: tuple[Any, np.ndarray] | None = None
    notes: tuple[str, ...] = ()

    def mask_crop(self, index: int) -> np.ndarray:
        """Segment `index` (0-based) inside its roi: [h, w] bool (needs `geometry`)."""
        assert self.geometry is not None, "geometry was not requested"
        x, y, w, h = (int(v) for v in self.geometry.rois[index])
        return self.id_map[y : y + h, x : x + w] == self.segments.ids[index]


def renumber(
    id_map: np.ndarray, segments: Segments, keep: np.ndarray
) -> tuple[np.ndarray, Segments]:
    """Keep the segments where `keep` and that own pixels, order them by decreasing score and
    number them 1..N (their `areas` counted); pixels of dropped segments become 0. Numpy."""
    areas = np.bincount(id_map.ravel(), minlength=int(segments.ids.max(initial=0)) + 1)
    keep = keep & (areas[segments.ids] > 0)
    kept = np.flatnonzero(keep)
    kept = kept[np.argsort(-segments.scores[kept], kind="stable")]
    lut = np.zeros(areas.shape[0], dtype=np.int32)
    lut[segments.ids[kept]] = np.arange(1, kept.size + 1, dtype=np.int32)
    out = segments[kept]
    out.areas = areas[out.ids].astype(np.int64)
    out.ids = np.arange(1, kept.size + 1, dtype=np.int32)
    return lut[id_map], out
