"""The result vocabulary of the library, torch and numpy, no ROS:

- `Instances` / `CompactMasks` (`structures.instances`): a detector's detections of one image.
- `Segments` / `PanopticResult` (`structures.segments`): non-overlapping segments and their id
  map, what every model family's postprocess returns; `segment_geometry` their rois, centroids
  and areas; `VOID` the void value of semantic maps.
- `KeypointSet` / `SYNTHETIC_KEYPOINTS` (`structures.keypoints`): keypoint names, OKS sigmas,
  skeleton, flip.
- `ClassTable` (`structures.classes`): a model's classes (names, thing / stuff, colours,
  drivable).

Names are loaded when first used (PEP 562), so that torch-free code (the node's parameters, the
message conversions) can take `ClassTable` without importing torch through `Instances`.
"""

import importlib

_MODULE_OF = {
    "ClassTable": "classes",
    "CompactMasks": "instances",
    "Instances": "instances",
    "KeypointSet": "keypoints",
    "SYNTHETIC_KEYPOINTS": "keypoints",
    "VOID": "segments",
    "PanopticResult": "segments",
    "SegmentGeometry": "segments",
    "Segments": "segments",
    "segment_geometry": "segments",
    "void_label": "segments",
}

__all__ = sorted(_MODULE_OF)


def __getattr__(name: str):
    if name not in _MODULE_OF:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_MODULE_OF[name]}", __name__), name)
