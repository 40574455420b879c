"""The segmentation node's parameters: one table (`PARAMETERS`) that declares them, validates
values, documents them and tells which ones may change while the node runs.

- Every parameter has a type (from its default), a description, and a range or a list of
  choices where that applies; `check_value` validates a value against its spec without ROS (the
  launch-config tests use it on the YAML files) and the node's set-parameters callback uses it.
- `dynamic` parameters (thresholds, filters, extrinsics, grid, overlay) take effect on the next
  frame. The others are read on configure: changing them is refused while the node is configured
  or active (clean it up first), so a value that is set is a value that is used.
- `NodeSettings` is the typed, validated snapshot the node works with (`settings_from_values`).

Units: lengths in metres, angles in radians, times in milliseconds unless the name says otherwise.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from segmentation_ros.runtime.names import BACKENDS, PRECISIONS

IMAGE_TRANSPORTS = ("raw", "compressed")
RELIABILITIES = ("best_effort", "reliable")
CONFIDENCE_ENCODINGS = ("mono8", "32FC1")

#: Output topics (relative names) and the parameter that enables each.
OUTPUT_TOPICS: dict[str, str] = {
    "publish_objects": "objects",
    "publish_instances": "instances",
    "publish_semantic": "semantic",
    "publish_confidence": "confidence",
    "publish_drivable_mask": "drivable/mask",
    "publish_drivable_grid": "drivable/grid",
    "publish_overlay": "overlay",
    "publish_markers": "markers",
}


@dataclass(frozen=True)
class ParamSpec:
    """One parameter.

    default: its value when not overridden; also fixes its type (bool, int, float, str or
        list[str] for a string array).
    bounds: inclusive (low, high) for numbers. choices: allowed strings.
    dynamic: may change while the node is configured or active.
    """

    name: str
    default: Any
    description: str
    bounds: tuple[float, float] | None = None
    choices: tuple[str, ...] = field(default=(), kw_only=True)
    dynamic: bool = field(default=False, kw_only=True)

    @property
    def type_name(self) -> str:
        return _type_name(self.default)


def _type_name(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "str"
    if isinstance(value, list | tuple) and all(isinstance(v, str) for v in value):
        return "str[]"
    return type(value).__name__


_PI = round(math.pi, 6)
_SPECS = (
    # Lifecycle and model ---------------------------------------------------------------------
    ParamSpec("autostart", True, "configure and activate right after start-up"),
    ParamSpec(
        "model",
        "",
        "registry name of the model (e.g. yolact_resnet50, panoptic_yolact_mobilenetv3); empty: "
        "the one the checkpoint names. Needed for official YOLACT weights, which carry no config",
    ),
    ParamSpec(
        "checkpoint",
        "",
        "path of the weights: our checkpoint (.pt, carries its config) or official YOLACT .pth; "
        "empty: the embedded default model segmentation_ros/weights/default.pt",
    ),
    ParamSpec(
        "backend",
        "torch",
        "inference backend: torch (eager), torch_compile (inductor; CUDA graphs on GPU), "
        "onnxruntime, tensorrt (GPU with TensorRT)",
        choices=BACKENDS,
    ),
    ParamSpec(
        "precision",
        "fp32",
        "inference precision; which backend supports which: segmentation_ros/runtime/backends.py "
        "(int8 needs tensorrt and `calibration_data`)",
        choices=PRECISIONS,
    ),
    ParamSpec(
        "engine_path",
        "",
        "prebuilt ONNX file (onnxruntime) or TensorRT engine (segmentation-ros-compile), checked "
        "against its manifest; empty: the engine cache",
    ),
    ParamSpec(
        "engine_cache_dir",
        "",
        "where ONNX files and engines are cached; empty: ~/.cache/segmentation_ros/engines",
    ),
    ParamSpec(
        "build_engine",
        True,
        "build a missing or stale ONNX file / engine on configure; false: fail configure instead "
        "(robots: build ahead of time with segmentation-ros-compile)",
    ),
    ParamSpec(
        "calibration_data",
        "",
        "images for int8 calibration (synthetic:DIR, coco-panoptic:..., as the tools take)",
    ),
    ParamSpec("device", "cpu", "torch device of the model: cpu, cuda, cuda:1, ..."),
    ParamSpec(
        "num_threads", 0, "CPU threads for inference (torch and ONNX Runtime); 0: library default",
        bounds=(0, 256),
    ),
    ParamSpec(
        "input_width", 0, "network input width in pixels; 0: the model's own", bounds=(0, 4096)
    ),
    ParamSpec(
        "input_height", 0, "network input height in pixels; 0: the model's own", bounds=(0, 4096)
    ),
    # Detection (run time) ----------------------------------------------------------------------
    ParamSpec(
        "score_threshold", 0.3, "objects with a lower score are dropped", (0.0, 1.0), dynamic=True
    ),
    ParamSpec(
        "mask_threshold", 0.5, "mask probability above which a pixel belongs to an object",
        (0.01, 0.99), dynamic=True,
    ),
    ParamSpec(
        "nms_threshold", 0.5, "box IoU above which non-maximum suppression drops the lower score",
        (0.0, 1.0), dynamic=True,
    ),
    ParamSpec(
        "max_detections", 50, "at most this many objects per frame (highest scores first)",
        (1, 1000), dynamic=True,
    ),
    ParamSpec(
        "class_filter", [], "class names to publish as objects; empty: all classes",
        dynamic=True,
    ),
    ParamSpec(
        "drivable_classes",
        [],
        "names of the surface classes a robot may drive on (matching rules: "
        "segmentation_ros.drivable.classes); empty: the built-in road / floor / path names",
        dynamic=True,
    ),
    # Camera mounting (camera body frame in the grid frame) ----------------------------------
    ParamSpec(
        "camera_height", 0.5, "camera centre above the ground (m)", (0.01, 100.0), dynamic=True
    ),
    ParamSpec("camera_pitch", 0.2, "downward tilt of the camera (rad)", (-_PI, _PI), dynamic=True),
    ParamSpec("camera_roll", 0.0, "roll about the optical axis (rad)", (-_PI, _PI), dynamic=True),
    ParamSpec("camera_yaw", 0.0, "left turn of the camera (rad)", (-_PI, _PI), dynamic=True),
    ParamSpec("camera_x", 0.0, "camera position forward of the grid frame (m)", (-100.0, 100.0),
              dynamic=True),  # fmt: skip
    ParamSpec("camera_y", 0.0, "camera position left of the grid frame (m)", (-100.0, 100.0),
              dynamic=True),  # fmt: skip
    # Occupancy grid (nav_msgs/OccupancyGrid, in grid_frame_id) ------------------------------
    ParamSpec("grid_resolution", 0.05, "cell size (m)", (0.005, 10.0), dynamic=True),
    # At most 1000 x 1000 cells: measured here (shared CPU), building the lookup for 1000^2 takes
    # 0.5 s and adds 16 ms a frame; 2000^2 2.4 s and 60 ms; 4000^2 stalled a node for 7.8 s.
    ParamSpec("grid_width", 200, "cells along the grid frame's x", (1, 1000), dynamic=True),
    ParamSpec("grid_height", 200, "cells along the grid frame's y", (1, 1000), dynamic=True),
    ParamSpec(
        "grid_origin_x", 0.0, "x of the corner of cell (0, 0) (m)", (-1000.0, 1000.0), dynamic=True
    ),
    ParamSpec(
        "grid_origin_y", -5.0, "y of the corner of cell (0, 0) (m)", (-1000.0, 1000.0), dynamic=True
    ),
    ParamSpec(
        "grid_frame_id", "base_link", "robot frame of the grid and markers (z = 0 is the ground)",
        dynamic=True,
    ),
    ParamSpec(
        "grid_stride", 2, "project every n-th pixel of the drivable mask", (1, 16), dynamic=True
    ),
    ParamSpec(
        "grid_max_range", 0.0, "ground points farther than this are unknown (m); 0: no limit",
        (0.0, 1000.0), dynamic=True,
    ),
    ParamSpec(
        "grid_occupied_fraction", 0.5, "a cell is occupied when this fraction of its samples "
        "is not drivable", (0.01, 1.0), dynamic=True,
    ),
    # Input -------------------------------------------------------------------------------------
    ParamSpec(
        "image_transport", "raw", "raw: sensor_msgs/Image on `image`; compressed: "
        "sensor_msgs/CompressedImage on `image/compressed`", choices=IMAGE_TRANSPORTS,
    ),
    ParamSpec(
        "input_reliability", "best_effort", "QoS reliability of the image and camera_info "
        "subscriptions (depth 1)", choices=RELIABILITIES,
    ),
    ParamSpec(
        "max_image_age_ms", 500.0, "frames whose stamp is older than this when inference starts "
        "are dropped (stale); 0: never", (0.0, 60000.0), dynamic=True,
    ),
    # 2048: every output of a 2048^2 frame takes 0.25-0.5 s on one CPU thread, a 4096^2 one
    # 1.7-3 s (and more memory than a shared-memory segment holds); raise it knowingly.
    ParamSpec(
        "max_image_side", 2048, "images wider or taller than this are dropped (too_large; a "
        "compressed image by the size its header declares, before decoding)", (16, 16384),
        dynamic=True,
    ),
    # Outputs -------------------------------------------------------------------------------
    *(
        ParamSpec(name, True, f"publish `{topic}`")
        for name, topic in OUTPUT_TOPICS.items()
    ),
    ParamSpec(
        "confidence_encoding", "mono8", "`confidence` image: mono8 (score * 255) or 32FC1",
        choices=CONFIDENCE_ENCODINGS, dynamic=True,
    ),
    ParamSpec("overlay_alpha", 0.5, "mask opacity in `overlay`", (0.0, 1.0), dynamic=True),
    ParamSpec(
        "diagnostics_period", 1.0, "seconds between /diagnostics messages", (0.1, 60.0)
    ),
)  # fmt: skip

PARAMETERS: dict[str, ParamSpec] = {spec.name: spec for spec in _SPECS}


def check_value(name: str, value: Any) -> str | None:
    """None when `value` is valid for parameter `name`, else the reason (what to fix)."""
    spec = PARAMETERS.get(name)
    if spec is None:
        return f"unknown parameter {name!r}; known: {', '.join(sorted(PARAMETERS))}"
    expected = spec.type_name
    got = _type_name(value)
    if expected == "float" and got == "int":
        value, got = float(value), "float"
    if got != expected:
        return f"{name} must be of type {expected}, got {value!r} ({got})"
    if expected in ("int", "float"):
        if not math.isfinite(value):
            return f"{name} must be finite, got {value}"
        low, high = spec.bounds if spec.bounds is not None else (-math.inf, math.inf)
        if not low <= value <= high:
            return f"{name} must be in [{low}, {high}], got {value}"
    if spec.choices and value not in spec.choices:
        return f"{name} must be one of {', '.join(spec.choices)}, got {value!r}"
    if expected == "str[]" and any(not v.strip() for v in value):
        return f"{name} must not contain empty names, got {list(value)}"
    return None


@dataclass(frozen=True)
class NodeSettings:
    """All parameter values, validated (field names = parameter names)."""

    autostart: bool
    model: str
    checkpoint: str
    backend: str
    precision: str
    engine_path: str
    engine_cache_dir: str
    build_engine: bool
    calibration_data: str
    device: str
    num_threads: int
    input_width: int
    input_height: int
    score_threshold: float
    mask_threshold: float
    nms_threshold: float
    max_detections: int
    class_filter: tuple[str, ...]
    drivable_classes: tuple[str, ...]
    camera_height: float
    camera_pitch: float
    camera_roll: float
    camera_yaw: float
    camera_x: float
    camera_y: float
    grid_resolution: float
    grid_width: int
    grid_height: int
    grid_origin_x: float
    grid_origin_y: float
    grid_frame_id: str
    grid_stride: int
    grid_max_range: float
    grid_occupied_fraction: float
    image_transport: str
    input_reliability: str
    max_image_age_ms: float
    max_image_side: int
    publish_objects: bool
    publish_instances: bool
    publish_semantic: bool
    publish_confidence: bool
    publish_drivable_mask: bool
    publish_drivable_grid: bool
    publish_overlay: bool
    publish_markers: bool
    confidence_encoding: str
    overlay_alpha: float
    diagnostics_period: float

    @property
    def input_size(self) -> tuple[int, int] | None:
        """(height, width) of the network input, or None for the model's own."""
        if self.input_width and self.input_height:
            return (self.input_height, self.input_width)
        return None

    def enabled_outputs(self) -> tuple[str, ...]:
        """Relative topic names of the enabled outputs."""
        return tuple(topic for name, topic in OUTPUT_TOPICS.items() if getattr(self, name))

    def replace(self, values: Mapping[str, Any]) -> NodeSettings:
        """A copy with `values` (validated) applied."""
        return settings_from_values({**dataclasses.asdict(self), **values})


def settings_from_values(values: Mapping[str, Any]) -> NodeSettings:
    """Validate every parameter value and build the settings; missing ones take the default.

    Raises ValueError naming every invalid value (and the half-given input size).
    """
    merged = {name: values.get(name, spec.default) for name, spec in PARAMETERS.items()}
    errors = [e for name, v in merged.items() if (e := check_value(name, v)) is not None]
    if bool(merged["input_width"]) != bool(merged["input_height"]):
        errors.append("input_width and input_height must both be 0 or both be set")
    if errors:
        raise ValueError("; ".join(errors))
    for name, spec in PARAMETERS.items():
        if spec.type_name == "float":
            merged[name] = float(merged[name])
        elif spec.type_name == "str[]":
            merged[name] = tuple(merged[name])
    return NodeSettings(**merged)


def declare_parameters(node) -> None:
    """Declare every parameter on an rclpy node, with description, type and range."""
    from rcl_interfaces.msg import (
        FloatingPointRange,
        IntegerRange,
        ParameterDescriptor,
    )
    from rclpy.parameter import Parameter

    for spec in PARAMETERS.values():
        descriptor = ParameterDescriptor(description=spec.description)
        if spec.choices:
            descriptor.additional_constraints = "one of: " + ", ".join(spec.choices)
        if not spec.dynamic:
            descriptor.additional_constraints = (
                descriptor.additional_constraints + "; "
                if descriptor.additional_constraints
                else ""
            ) + "read on configure"
        if spec.bounds is not None and spec.type_name == "int":
            low, high = (int(b) for b in spec.bounds)
            descriptor.integer_range = [IntegerRange(from_value=low, to_value=high, step=0)]
        elif spec.bounds is not None:
            low, high = (float(b) for b in spec.bounds)
            descriptor.floating_point_range = [
                FloatingPointRange(from_value=low, to_value=high, step=0.0)
            ]
        if spec.type_name == "str[]":
            # An empty list has no element type: declare the type, then set the default.
            parameter = node.declare_parameter(spec.name, Parameter.Type.STRING_ARRAY, descriptor)
            if parameter.type_ == Parameter.Type.NOT_SET:
                node.set_parameters(
                    [Parameter(spec.name, Parameter.Type.STRING_ARRAY, list(spec.default))]
                )
        else:
            node.declare_parameter(spec.name, spec.default, descriptor)


def read_settings(node) -> NodeSettings:
    """The node's current parameter values as validated settings (ValueError if invalid)."""
    return settings_from_values({name: node.get_parameter(name).value for name in PARAMETERS})


def frame_settings(settings: NodeSettings):
    """The pipeline's per-frame settings (`pipeline.FrameSettings`) from the node's."""
    from segmentation_ros.drivable import GridGeometry, MountPose
    from segmentation_ros.pipeline import FrameSettings

    return FrameSettings(
        score_threshold=settings.score_threshold,
        nms_threshold=settings.nms_threshold,
        mask_threshold=settings.mask_threshold,
        max_detections=settings.max_detections,
        class_filter=settings.class_filter,
        drivable_classes=settings.drivable_classes,
        mount=MountPose(
            height=settings.camera_height,
            pitch=settings.camera_pitch,
            roll=settings.camera_roll,
            yaw=settings.camera_yaw,
            x=settings.camera_x,
            y=settings.camera_y,
        ),
        grid=GridGeometry(
            resolution=settings.grid_resolution,
            width=settings.grid_width,
            height=settings.grid_height,
            origin_x=settings.grid_origin_x,
            origin_y=settings.grid_origin_y,
            frame_id=settings.grid_frame_id,
        ),
        grid_stride=settings.grid_stride,
        grid_max_range=settings.grid_max_range or None,
        occupied_fraction=settings.grid_occupied_fraction,
    )
