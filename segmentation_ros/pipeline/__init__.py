"""One frame, end to end, without ROS: RGB image -> preprocess -> backend.infer -> the model
family's postprocess -> dense maps, drivable mask and grid -> a typed `FrameResult`.

    pipeline = SegmentationPipeline.from_checkpoint("model.pt", backend="onnxruntime")
    result = pipeline.process(rgb, OutputRequest.all(), FrameSettings(), camera=camera_model)
    result.segments.scores, result.id_map, result.semantic, result.grid, result.timings

Modules: `settings` (FrameSettings, OutputRequest), `results` (FrameResult, Timings, the segment
vocabulary of `segmentation_ros.structures`), `loading` (load_model), `pipeline` (the class),
`dense` (semantic / confidence / drivable / grid / geometry outputs); ground geometry is in
`segmentation_ros.drivable.ground`.

Conventions (those of `segmentation_ros.structures`):
- Images are [H, W, 3] uint8 RGB. Pixel (u, v) covers [u, u+1) x [v, v+1).
- Class ids index the model's class table (`ClassMeta` = `structures.ClassTable`): for an
  instance-only YOLACT the thing classes; for a panoptic model the stuff classes (0..S-1) then
  the thing classes (S..S+T-1).
- Segments (things and stuff regions) never overlap: `id_map` holds each pixel's segment id
  1..N (0 = none). For an instance-only YOLACT, overlapping masks are resolved by score (the
  higher score keeps the pixel) and instances left with no pixel are dropped.
- `semantic` holds each pixel's class id, `VOID` where no segment covers it; `confidence` the
  score of the segment covering it (0 elsewhere); `drivable` the drivable surface (bool).
- `class_filter` keeps only the named classes in `segments`, `id_map` and the object geometry;
  `semantic`, `confidence`, `drivable` and `grid` always describe the whole scene (a filtered-out
  person is still an obstacle).
- The grid is a `drivable` occupancy grid (int8: 0 free, 100 occupied, -1 unknown) in
  `FrameSettings.grid` (see `segmentation_ros.drivable.projection`); it needs a `CameraModel`.
- `scan` and `obstacles` (`segmentation_ros.drivable.scan`) describe the whole scene like the
  grid; `grid_fused` also needs the robot's pose in the odometry frame (`process(pose=...)`,
  a `drivable.fusion.PlanarPose`) and keeps the last frames (`drivable.fusion`).

Only what `OutputRequest` asks for is computed (the node asks for the topics somebody
subscribes to). Nothing here imports rclpy.
"""

from pathlib import Path

from .loading import (
    LoadedModel,
    calibration_batches,
    load_model,
    resolve_checkpoint,
)
from .pipeline import SegmentationPipeline
from .results import (
    VOID,
    ClassMeta,
    FrameResult,
    SegmentGeometry,
    Segments,
    Timings,
    renumber,
    segment_geometry,
)
from .settings import FrameSettings, OutputRequest

#: The embedded default model (trained by the project; absent until it is). `load_model` reads
#: it here at call time, so pointing it elsewhere (tools, tests) is followed.
DEFAULT_CHECKPOINT = Path(__file__).resolve().parent.parent / "weights" / "default.pt"


__all__ = [
    "DEFAULT_CHECKPOINT",
    "VOID",
    "ClassMeta",
    "FrameResult",
    "FrameSettings",
    "LoadedModel",
    "OutputRequest",
    "SegmentGeometry",
    "SegmentationPipeline",
    "Segments",
    "Timings",
    "calibration_batches",
    "load_model",
    "renumber",
    "resolve_checkpoint",
    "segment_geometry",
]
