"""A `pipeline.FrameResult` -> the node's messages, one function per topic (which topic uses
which, and in which frame: `output_table.OUTPUTS`).

Every builder takes the header its message carries: the camera image's (stamp and frame_id), or
its stamp in the grid frame for outputs that lie on the ground. Images are built from arrays
with one copy (`image_codec.numpy_to_image`); no per-pixel Python.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from std_msgs.msg import Header

from segmentation_ros.drivable import DrivabilityTable, GridGeometry
from segmentation_ros.ros.ground_outputs import occupancy_msg
from segmentation_ros.ros.image_codec import numpy_to_image
from segmentation_ros.ros.messages import make_class_info, make_object, make_result
from segmentation_ros.ros.visualization import (
    class_palette,
    draw_keypoints,
    draw_overlay,
    make_markers,
)
from segmentation_ros.structures import ClassTable
from segmentation_ros.structures.keypoints import skeleton_of

if TYPE_CHECKING:  # torch-free at run time: the output table and the parameters import this
    from segmentation_ros.pipeline import FrameResult


def class_table(classes: ClassTable, drivability: DrivabilityTable | str) -> ClassTable:
    """The model's class table with palette colours and drivable flags (all False when the
    model has no drivable classes)."""
    n = len(classes)
    drivable = drivability.drivable if isinstance(drivability, DrivabilityTable) else (False,) * n
    return dataclasses.replace(classes, colors=class_palette(n), drivable=drivable)


@dataclass(frozen=True)
class OutputContext:
    """What the messages need beside the result.

    table: the class table (names, colours). model_name: registry name.
    grid: the grid layout; grid_frame: its frame_id. confidence_encoding: mono8 or 32FC1.
    overlay_alpha: tint opacity. keypoint_names: the model's keypoints (() without).
    """

    table: ClassTable
    model_name: str
    grid: GridGeometry
    grid_frame: str
    confidence_encoding: str = "mono8"
    overlay_alpha: float = 0.5
    keypoint_names: tuple[str, ...] = ()


def class_info_msg(context: OutputContext, header: Header):
    return make_class_info(context.table, model_name=context.model_name, header=header)


def objects_msg(result: FrameResult, header: Header, context: OutputContext, *, total_ms: float):
    """SegmentationResult: every segment, in decreasing score order (needs `geometry`)."""
    assert result.geometry is not None, "objects need the segment geometry"
    seg, geometry, names = result.segments, result.geometry, context.table.names
    ground = result.ground_xy if result.ground_xy is not None else np.full((len(seg), 2), np.nan)
    keypoints = seg.keypoints if len(context.keypoint_names) else None
    objects = [
        make_object(
            instance_id=int(seg.ids[i]),
            class_id=int(seg.class_ids[i]),
            class_label=names[int(seg.class_ids[i])],
            is_thing=bool(seg.is_thing[i]),
            score=float(seg.scores[i]),
            mask_score=float(seg.mask_scores[i]),
            roi_xywh=geometry.rois[i],
            mask=result.mask_crop(i),
            centroid_xy=geometry.centroids[i],
            area=int(geometry.areas[i]),
            ground_xy=ground[i],
            ground_frame_id=context.grid_frame,
            keypoints=None if keypoints is None else keypoints[i],
            keypoint_names=context.keypoint_names,
        )
        for i in range(len(seg))
    ]
    height, width = result.image_size
    return make_result(
        header=header,
        image_height=height,
        image_width=width,
        model_name=context.model_name,
        objects=objects,
        inference_ms=result.timings.inference_ms,
        total_ms=total_ms,
    )


def instances_msg(result: FrameResult, header: Header):
    """mono16 segment ids (values above 65535 saturate; a frame never has that many)."""
    ids = np.minimum(result.id_map, 65535).astype(np.uint16)
    return numpy_to_image(ids, "mono16", header=header)


def semantic_msg(result: FrameResult, header: Header):
    assert result.semantic is not None
    encoding = "mono8" if result.semantic.dtype == np.uint8 else "mono16"
    return numpy_to_image(result.semantic, encoding, header=header)


def confidence_msg(result: FrameResult, header: Header, encoding: str = "mono8"):
    """mono8: round(score * 255); 32FC1: the score."""
    assert result.confidence is not None
    if encoding == "32FC1":
        return numpy_to_image(result.confidence.astype(np.float32, copy=False), "32FC1", header)
    scaled = np.rint(np.clip(result.confidence, 0.0, 1.0) * 255.0).astype(np.uint8)
    return numpy_to_image(scaled, "mono8", header=header)


def drivable_mask_msg(result: FrameResult, header: Header):
    assert result.drivable is not None
    return numpy_to_image(result.drivable.view(np.uint8) * np.uint8(255), "mono8", header=header)


def grid_msg(result: FrameResult, header: Header, geometry: GridGeometry):
    """OccupancyGrid in `header.frame_id` (the grid frame), origin at the corner of cell 0."""
    assert result.grid is not None
    return occupancy_msg(result.grid, geometry, header)


def segment_labels(result: FrameResult, names) -> list[str]:
    """'label score' of every segment."""
    seg = result.segments
    return [f"{names[int(c)]} {s:.2f}" for c, s in zip(seg.class_ids, seg.scores)]


def overlay_msg(rgb: np.ndarray, result: FrameResult, header: Header, context: OutputContext):
    """rgb8: every segment tinted in its class colour, thing boxes labelled."""
    seg = result.segments
    colors = context.table.colors[seg.class_ids] if len(seg) else np.zeros((0, 3), np.uint8)
    labels = segment_labels(result, context.table.names)
    things = np.flatnonzero(seg.is_thing)
    image = draw_overlay(
        rgb,
        result.id_map,
        colors,
        boxes=seg.boxes[things],
        labels=[labels[i] for i in things],
        alpha=context.overlay_alpha,
    )
    if len(context.keypoint_names):
        draw_keypoints(image, seg.keypoints, skeleton_of(context.keypoint_names))
    return numpy_to_image(image, "rgb8", header=header)


def markers_msg(result: FrameResult, header: Header, context: OutputContext):
    """MarkerArray of the things on the ground, in the grid frame (`header.frame_id`)."""
    assert result.ground_xy is not None and result.ground_width is not None
    seg = result.segments
    return make_markers(
        header=header,
        ground_xy=result.ground_xy,
        ground_width=result.ground_width,
        labels=segment_labels(result, context.table.names),
        colors=context.table.colors[seg.class_ids] if len(seg) else np.zeros((0, 3), np.uint8),
        ids=seg.ids,
        keypoints_xyz=result.keypoints_xyz,
        skeleton=skeleton_of(context.keypoint_names),
    )
