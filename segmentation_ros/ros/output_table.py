"""The node's per-frame outputs, declared once (`OUTPUTS`): everything else derives from it.

Each `Output` names its topic, message type, the `publish_*` parameter that enables it, the
`pipeline.OutputRequest` field(s) the pipeline must compute for it, its builder (in `outputs`),
the frame its header carries and whether it is computed only while somebody subscribes. The
node's parameters (`params`), publishers, `OutputRequest` and messages (`iter_messages`), the
demo's recorder and the tests read this table.

To add an output: write its builder in `outputs.py` (a `FrameResult` part -> message), add one
`Output` row below (in publish order), and, if the pipeline must compute something new for it, a
field in `OutputRequest`. The parameter, the publisher and the subscriber check follow.

Torch-free (the parameters import it): the pipeline's types are imported where they are used.

`class_info` (the class table, latched, published on activate and when `drivable_classes`
changes) is not per frame: `CLASS_INFO_TOPIC` and `CLASS_INFO_TYPE` name it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from nav_msgs.msg import OccupancyGrid
from sensor_msgs.msg import Image, LaserScan, PointCloud2
from std_msgs.msg import Header
from visualization_msgs.msg import MarkerArray

from segmentation_ros.msg import ClassInfoArray, SegmentationResult
from segmentation_ros.ros import ground_outputs as G
from segmentation_ros.ros import outputs as O

if TYPE_CHECKING:
    from segmentation_ros.pipeline import FrameResult, OutputRequest


@dataclass(frozen=True)
class Built:
    """What a builder gets: the frame's result, its RGB image [H, W, 3] uint8, the camera
    image's header, the output context and the arrival time (time.monotonic(), seconds)."""

    result: FrameResult
    rgb: np.ndarray
    header: Header
    context: O.OutputContext
    arrival: float

    def header_in(self, frame: str) -> Header:
        """The camera header, or (frame "grid") its stamp in the grid frame, or (frame "odom")
        its stamp in the odometry frame of the fused grid."""
        if frame == "grid":
            return Header(stamp=self.header.stamp, frame_id=self.context.grid_frame)
        if frame == "odom":
            fused = self.result.grid_fused
            frame_id = fused[0].frame_id if fused is not None else ""
            return Header(stamp=self.header.stamp, frame_id=frame_id)
        return self.header


@dataclass(frozen=True)
class Output:
    """One per-frame output of the node.

    topic: relative (remappable) topic name. msg_type: the ROS message class.
    parameter: the bool parameter (default true) that creates its publisher on configure.
    request: the `OutputRequest` fields the pipeline computes for it.
    build: (frame parts, header) -> message, or None when the result lacks the part (no camera
        yet, no drivable classes; `result.notes` says why).
    frame: "camera" (the image's header), "grid" (its stamp in `grid_frame_id`) or "odom" (its
        stamp in the odometry frame).
    on_demand: computed only while the topic has a subscriber (else every frame).
    needs_camera: published only once a CameraInfo arrived (ground projection).
    content: what the message holds (parameter descriptions, docs).
    """

    topic: str
    msg_type: type
    parameter: str
    request: tuple[str, ...]
    build: Callable[[Built, Header], object | None]
    content: str
    frame: str = "camera"
    on_demand: bool = True
    needs_camera: bool = False

    @property
    def type_name(self) -> str:
        return type_name(self.msg_type)


def type_name(msg_type: type) -> str:
    """A message class's type as rosidl writes it, e.g. sensor_msgs/msg/Image."""
    return f"{msg_type.__module__.split('.')[0]}/msg/{msg_type.__name__}"


def _objects(f: Built, header: Header):
    msg = O.objects_msg(f.result, header, f.context, total_ms=0.0)
    msg.total_ms = float((time.monotonic() - f.arrival) * 1e3)  # arrival -> built
    return msg


def _markers(f: Built, header: Header):
    return None if f.result.ground_xy is None else O.markers_msg(f.result, header, f.context)


def _grid(f: Built, header: Header):
    return None if f.result.grid is None else O.grid_msg(f.result, header, f.context.grid)


def _scan(f: Built, header: Header):
    return None if f.result.scan is None else G.scan_msg(f.result.scan, header)


def _obstacles(f: Built, header: Header):
    return None if f.result.obstacles is None else G.obstacles_msg(f.result.obstacles, header)


def _grid_fused(f: Built, header: Header):
    if f.result.grid_fused is None:
        return None
    geometry, grid = f.result.grid_fused
    return G.occupancy_msg(grid, geometry, header)


def _drivable_mask(f: Built, header: Header):
    return None if f.result.drivable is None else O.drivable_mask_msg(f.result, header)


def _semantic(f: Built, header: Header):
    return None if f.result.semantic is None else O.semantic_msg(f.result, header)


def _confidence(f: Built, header: Header):
    if f.result.confidence is None:
        return None
    return O.confidence_msg(f.result, header, f.context.confidence_encoding)


#: In publish order: `objects` first (what planners wait for), the overlay last.
OUTPUTS: tuple[Output, ...] = (
    Output("objects", SegmentationResult, "publish_objects", ("objects",), _objects,
           "every segment: class, scores, box, mask cropped to its roi"),
    Output("markers", MarkerArray, "publish_markers", ("markers",), _markers,
           "things on the ground (visualization_msgs)", frame="grid", needs_camera=True),
    Output("drivable/grid", OccupancyGrid, "publish_drivable_grid", ("grid",), _grid,
           "robot-centred grid: 0 free, 100 occupied, -1 unknown", frame="grid",
           needs_camera=True),
    # Nav2 inputs (issue 15) --------------------------------------------------------------------
    Output("drivable/scan", LaserScan, "publish_drivable_scan", ("scan",), _scan,
           "ground range to the first non-drivable point per bearing (+inf free)", frame="grid",
           needs_camera=True),
    Output("drivable/obstacles", PointCloud2, "publish_drivable_obstacles", ("obstacles",),
           _obstacles, "non-drivable boundary and object footprints: x y z class_id "
           "instance_id", frame="grid", needs_camera=True),
    Output("drivable/grid_fused", OccupancyGrid, "publish_drivable_grid_fused", ("grid_fused",),
           _grid_fused, "grid fused over the last frames in the odometry frame (needs `odom`)",
           frame="odom", needs_camera=True),
    Output("drivable/mask", Image, "publish_drivable_mask", ("drivable_mask",), _drivable_mask,
           "mono8: 255 drivable surface, 0 elsewhere"),
    Output("instances", Image, "publish_instances", ("instances",),
           lambda f, header: O.instances_msg(f.result, header),
           "mono16: segment id per pixel (0 none) = the object's instance_id"),
    Output("semantic", Image, "publish_semantic", ("semantic",), _semantic,
           "mono8 (mono16): class id per pixel, 255 (65535) void"),
    Output("confidence", Image, "publish_confidence", ("confidence",), _confidence,
           "mono8 / 32FC1: score of the pixel's segment (x 255 in mono8)"),
    Output("overlay", Image, "publish_overlay", ("overlay",),
           lambda f, header: O.overlay_msg(f.rgb, f.result, header, f.context),
           "rgb8: the image with masks, boxes and labels"),
)  # fmt: skip

#: The latched class table's topic and type.
CLASS_INFO_TOPIC, CLASS_INFO_TYPE = "class_info", ClassInfoArray

_BY_TOPIC = {output.topic: output for output in OUTPUTS}


def output(topic: str) -> Output:
    """The output published on `topic` (KeyError naming the known ones)."""
    try:
        return _BY_TOPIC[topic]
    except KeyError:
        raise KeyError(f"no output {topic!r}; outputs: {', '.join(_BY_TOPIC)}") from None


def request_for(wanted: Iterable[Output]) -> OutputRequest:
    """The `OutputRequest` that computes everything the `wanted` outputs need."""
    from segmentation_ros.pipeline import OutputRequest

    return OutputRequest(**{field: True for out in wanted for field in out.request})


def _check_table() -> None:
    for out in OUTPUTS:
        assert out.frame in ("camera", "grid", "odom") and out.request, out.topic
    assert len(_BY_TOPIC) == len(OUTPUTS) == len({o.parameter for o in OUTPUTS})


_check_table()


def iter_messages(
    result: FrameResult,
    rgb: np.ndarray,
    header: Header,
    request: OutputRequest,
    context: O.OutputContext,
    *,
    arrival: float,
) -> Iterator[tuple[str, object]]:
    """(relative topic name, message) for each requested output, in `OUTPUTS` order, built one
    at a time so that each can be published before the next is built. `objects`' total_ms
    counts from `arrival` (time.monotonic()) to when it is built. Parts the result lacks are
    left out."""
    parts = Built(result, rgb, header, context, arrival)
    for out in OUTPUTS:
        if all(getattr(request, field) for field in out.request):
            msg = out.build(parts, parts.header_in(out.frame))
            if msg is not None:
                yield out.topic, msg
