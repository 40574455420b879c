"""The segmentation node's parameters: one table (`PARAMETERS`) that declares them, validates
values, documents them and tells which ones may change while the node runs.

- Every parameter has a type (from its default), a description, and a range or a list of
  choices where that applies; `check_value` validates a value against its spec without a running
  node (the launch-config tests use it on the YAML files) and the node's set-parameters callback
  uses it.
- Defaults are written once: the per-frame parameters mirror `pipeline.FrameSettings` and take
  their defaults from its fields (`ParamSpec.frame` names the field), the backend's is
  `runtime.names.DEFAULT_BACKEND`, and the `publish_*` parameters come from the output table
  (`output_table.OUTPUTS`). A bare node therefore runs what config/default.yaml runs.
- Importing this module does not import torch (launch tools and parsers use it): the pipeline
  module, which does, is imported when a per-frame default or a `NodeSettings` is first needed.
- `dynamic` parameters (thresholds, filters, extrinsics, grid, overlay) take effect on the next
  frame. The others are read on configure: changing them is refused while the node is configured
  or active (clean it up first), so a value that is set is a value that is used.
- `NodeSettings` is the typed, validated, frozen snapshot the node works with
  (`settings_from_values`); its `frame` is the pipeline's `FrameSettings`.

Units: lengths in metres, angles in radians, times in milliseconds unless the name says otherwise.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from segmentation_ros.ros.output_table import OUTPUTS
from segmentation_ros.runtime.names import (
    BACKENDS,
    DEFAULT_BACKEND,
    DEFAULT_PRECISION,
    PRECISION_CHOICES,
)

if TYPE_CHECKING:
    from segmentation_ros.pipeline import FrameSettings

IMAGE_TRANSPORTS = ("raw", "compressed")
RELIABILITIES = ("best_effort", "reliable")
CONFIDENCE_ENCODINGS = ("mono8", "32FC1")


@dataclass(frozen=True)
class ParamSpec:
    """One parameter.

    default: its value when not overridden; also fixes its type (bool, int, float, str or
        list[str] for a string array). Given for all but the per-frame parameters, whose
        default is their `FrameSettings` field's.
    bounds: inclusive (low, high) for numbers. choices: allowed strings.
    dynamic: may change while the node is configured or active.
    frame: the `FrameSettings` field it sets (dotted, e.g. "mount.height"); empty for the
        others. A field whose value may be None (no limit) takes 0 for None.
    """

    name: str
    given_default: Any
    description: str
    bounds: tuple[float, float] | None = None
    choices: tuple[str, ...] = field(default=(), kw_only=True)
    dynamic: bool = field(default=False, kw_only=True)
    frame: str = field(default="", kw_only=True)

    @property
    def default(self) -> Any:
        if not self.frame:
            return self.given_default
        value = _frame_field(_frame_defaults(), self.frame)
        return 0.0 if value is None else value

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


@functools.cache
def _frame_defaults() -> FrameSettings:
    from segmentation_ros.pipeline import FrameSettings

    return FrameSettings()


def _frame_field(settings: FrameSettings, path: str) -> Any:
    for name in path.split("."):
        settings = getattr(settings, name)
    return settings


def _mirror(name: str, path: str, description: str, bounds=None, **kwargs) -> ParamSpec:
    """A per-frame (dynamic) parameter for `FrameSettings` field `path`, defaulting to it."""
    return ParamSpec(name, None, description, bounds, frame=path, dynamic=True, **kwargs)


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
        DEFAULT_BACKEND,
        "inference backend: auto (the fastest that runs here: openvino, else onnxruntime, on a "
        "CPU; tensorrt, else torch_compile on CUDA), torch (eager), torch_compile (inductor; "
        "CUDA graphs on GPU), onnxruntime, openvino (CPU), tensorrt (GPU with TensorRT)",
        choices=BACKENDS,
    ),
    ParamSpec(
        "precision",
        DEFAULT_PRECISION,
        "inference precision: auto (bf16 with openvino on a CPU with bf16 instructions, else "
        "fp32), fp32, fp16, bf16, int8 (needs `calibration_data`); which backend supports "
        "which: segmentation_ros/runtime/backends.py",
        choices=PRECISION_CHOICES,
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
    _mirror("score_threshold", "score_threshold", "objects with a lower score are dropped",
            (0.0, 1.0)),
    _mirror("mask_threshold", "mask_threshold",
            "mask probability above which a pixel belongs to an object", (0.01, 0.99)),
    _mirror("nms_threshold", "nms_threshold",
            "box IoU above which non-maximum suppression drops the lower score", (0.0, 1.0)),
    _mirror("max_detections", "max_detections",
            "at most this many objects per frame (highest scores first)", (1, 1000)),
    _mirror("class_filter", "class_filter",
            "class names to publish as objects; empty: all classes"),
    _mirror("drivable_classes", "drivable_classes",
            "names of the surface classes a robot may drive on (matching rules: "
            "segmentation_ros.drivable.classes); empty: the built-in road / floor / path names"),
    # Camera mounting (camera body frame in the grid frame) ----------------------------------
    _mirror("camera_height", "mount.height", "camera centre above the ground (m)",
            (0.01, 100.0)),
    _mirror("camera_pitch", "mount.pitch", "downward tilt of the camera (rad)", (-_PI, _PI)),
    _mirror("camera_roll", "mount.roll", "roll about the optical axis (rad)", (-_PI, _PI)),
    _mirror("camera_yaw", "mount.yaw", "left turn of the camera (rad)", (-_PI, _PI)),
    _mirror("camera_x", "mount.x", "camera position forward of the grid frame (m)",
            (-100.0, 100.0)),
    _mirror("camera_y", "mount.y", "camera position left of the grid frame (m)",
            (-100.0, 100.0)),
    # Occupancy grid (nav_msgs/OccupancyGrid, in grid_frame_id) ------------------------------
    _mirror("grid_resolution", "grid.resolution", "cell size (m)", (0.005, 10.0)),
    # At most 1000 x 1000 cells: measured here (shared CPU), building the lookup for 1000^2 takes
    # 0.5 s and adds 16 ms a frame; 2000^2 2.4 s and 60 ms; 4000^2 stalled a node for 7.8 s.
    _mirror("grid_width", "grid.width", "cells along the grid frame's x", (1, 1000)),
    _mirror("grid_height", "grid.height", "cells along the grid frame's y", (1, 1000)),
    _mirror("grid_origin_x", "grid.origin_x", "x of the corner of cell (0, 0) (m)",
            (-1000.0, 1000.0)),
    _mirror("grid_origin_y", "grid.origin_y", "y of the corner of cell (0, 0) (m)",
            (-1000.0, 1000.0)),
    _mirror("grid_frame_id", "grid.frame_id",
            "robot frame of the grid and markers (z = 0 is the ground)"),
    _mirror("grid_stride", "grid_stride", "project every n-th pixel of the drivable mask",
            (1, 16)),
    _mirror("grid_max_range", "grid_max_range",
            "ground points farther than this are unknown (m); 0: no limit", (0.0, 1000.0)),
    _mirror("grid_occupied_fraction", "occupied_fraction",
            "a cell is occupied when this fraction of its samples is not drivable", (0.01, 1.0)),
    # Nav2 inputs: scan, obstacle points, fused grid (issue 15) ---------------------------------
    _mirror("scan_angle_increment", "scan_angle_increment",
            "`drivable/scan` beam spacing (rad)", (0.0001, 0.5)),
    _mirror("scan_range_max", "scan_range_max",
            "`drivable/scan` and `drivable/obstacles` ignore ground farther than this (m)",
            (0.1, 1000.0)),
    _mirror("obstacle_height", "obstacle_height", "z of the `drivable/obstacles` points (m)",
            (-10.0, 10.0)),
    _mirror("fused_frames", "fused_frames", "frames summed into `drivable/grid_fused`", (1, 100)),
    _mirror("fused_size", "fused_size",
            "side of the square `drivable/grid_fused` window around the robot (m)", (1.0, 500.0)),
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
        ParamSpec(out.parameter, True, f"publish `{out.topic}` ({out.type_name}): {out.content}")
        for out in OUTPUTS
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
    """All parameter values, validated. Field names are parameter names, but for the per-frame
    parameters (`frame`, the pipeline's settings) and the `publish_*` ones (`outputs`)."""

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
    image_transport: str
    input_reliability: str
    max_image_age_ms: float
    max_image_side: int
    confidence_encoding: str
    overlay_alpha: float
    diagnostics_period: float
    frame: FrameSettings
    outputs: tuple[str, ...]  # topics of the enabled outputs, in `OUTPUTS` order

    @property
    def input_size(self) -> tuple[int, int] | None:
        """(height, width) of the network input, or None for the model's own."""
        if self.input_width and self.input_height:
            return (self.input_height, self.input_width)
        return None


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
    outputs = tuple(out.topic for out in OUTPUTS if merged.pop(out.parameter))
    frame = _frame_settings({n: merged.pop(n) for n, s in PARAMETERS.items() if s.frame})
    return NodeSettings(**merged, frame=frame, outputs=outputs)


def _frame_settings(values: Mapping[str, Any]) -> FrameSettings:
    """`FrameSettings` from the per-frame parameter values (validated)."""
    defaults = _frame_defaults()
    top: dict[str, Any] = {}
    nested: dict[str, dict[str, Any]] = {}
    for name, value in values.items():
        path = PARAMETERS[name].frame
        if _frame_field(defaults, path) is None and not value:
            value = None  # 0: no limit
        head, _, rest = path.partition(".")
        if rest:
            nested.setdefault(head, {})[rest] = value
        else:
            top[head] = value
    for head, fields in nested.items():
        top[head] = dataclasses.replace(getattr(defaults, head), **fields)
    return dataclasses.replace(defaults, **top)


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
