"""The result vocabulary of the library, torch and numpy, no ROS:

- `Instances` / `CompactMasks` (`structures.instances`): a detector's detections of one image.
- `Segments` / `PanopticResult` (`structures.segments`): non-overlapping segments and their id
  map, what every model family's postprocess returns; `segment_geometry` their rois, centroids
  and areas; `VOID` the void value of semantic maps.
- `ClassTable` (`structures.classes`): a model's classes (names, thing / stuff, colours,
  drivable).
"""

from .classes import ClassTable
from .instances import CompactMasks, Instances
from .segments import (
    VOID,
    PanopticResult,
    SegmentGeometry,
    Segments,
    segment_geometry,
    void_label,
)

__all__ = [
    "VOID",
    "ClassTable",
    "CompactMasks",
    "Instances",
    "PanopticResult",
    "SegmentGeometry",
    "Segments",
    "segment_geometry",
    "void_label",
]
