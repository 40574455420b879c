"""Our messages (msg/*.msg) from numpy arrays and back.

Masks travel cropped to their ROI as mono8 bytes (255 inside, 0 outside), row-major, no padding;
see msg/SegmentedObject.msg. All payloads are built with bytes, never per-element Python loops.
Pixel coordinates: x right, y down, in the camera image of the message header.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from sensor_msgs.msg import RegionOfInterest

from segmentation_ros.msg import ClassInfo, ClassInfoArray, SegmentationResult, SegmentedObject
from segmentation_ros.ros.image_codec import to_uint8_array
from segmentation_ros.structures import ClassTable  # the library's class table, carried here


def encode_mask(mask: np.ndarray):
    """[h, w] bool / 0-1 array (the mask inside its ROI) -> the message's mono8 payload."""
    return to_uint8_array(np.asarray(mask, dtype=bool).view(np.uint8) * np.uint8(255))


def decode_mask(obj: SegmentedObject) -> np.ndarray:
    """The object's mask inside its ROI: [roi.height, roi.width] bool."""
    h, w = int(obj.roi.height), int(obj.roi.width)
    data = np.frombuffer(obj.mask, dtype=np.uint8)
    if data.size != h * w:
        raise ValueError(f"mask: {data.size} bytes, but roi is {w}x{h} = {w * h}")
    return data.reshape(h, w) != 0


def decode_mask_full(obj: SegmentedObject, image_height: int, image_width: int) -> np.ndarray:
    """The object's mask placed in the full image: [image_height, image_width] bool."""
    full = np.zeros((image_height, image_width), dtype=bool)
    x, y = int(obj.roi.x_offset), int(obj.roi.y_offset)
    crop = decode_mask(obj)
    full[y : y + crop.shape[0], x : x + crop.shape[1]] = crop
    return full


def make_object(
    *,
    instance_id: int,
    class_id: int,
    class_label: str,
    is_thing: bool,
    score: float,
    mask_score: float,
    roi_xywh: Sequence[int],
    mask: np.ndarray,
    centroid_xy: Sequence[float],
    area: int,
    ground_xy: Sequence[float] = (math.nan, math.nan),
    ground_frame_id: str = "",
    keypoints: np.ndarray | None = None,
    keypoint_names: Sequence[str] = (),
) -> SegmentedObject:
    """One SegmentedObject; `mask` is [h, w] bool covering `roi_xywh` = (x, y, w, h) pixels;
    `ground_xy` its ground contact point (m, NaN: none) in `ground_frame_id`; `keypoints`
    [K, 3] float (x, y, score) image pixels named `keypoint_names` (None or NaN: none)."""
    x, y, w, h = (int(v) for v in roi_xywh)
    if mask.shape != (h, w):
        raise ValueError(f"mask shape {mask.shape} does not match the roi {w}x{h}")
    obj = SegmentedObject(
        instance_id=int(instance_id),
        class_id=int(class_id),
        class_label=class_label,
        is_thing=bool(is_thing),
        score=float(score),
        mask_score=float(mask_score),
        roi=RegionOfInterest(x_offset=x, y_offset=y, width=w, height=h),
        centroid_x=float(centroid_xy[0]),
        centroid_y=float(centroid_xy[1]),
        area=int(area),
    )
    gx, gy = float(ground_xy[0]), float(ground_xy[1])
    obj.ground_frame_id = ground_frame_id
    obj.ground_x, obj.ground_y = gx, gy
    obj.ground_distance, obj.ground_bearing = math.hypot(gx, gy), math.atan2(gy, gx)
    obj.mask = encode_mask(mask)
    if keypoints is not None and np.isfinite(keypoints).all():
        kp = np.asarray(keypoints, dtype=np.float32).reshape(-1, 3)
        if len(kp) != len(keypoint_names):
            raise ValueError(f"{len(kp)} keypoints but {len(keypoint_names)} keypoint names")
        obj.keypoint_names = [str(n) for n in keypoint_names]
        obj.keypoint_x, obj.keypoint_y, obj.keypoint_score = (kp[:, i].tolist() for i in range(3))
    # Tracking fields (msg: NaN when unknown); `ros.tracking_glue` fills them in.
    obj.track_x = obj.track_y = obj.track_velocity_x = obj.track_velocity_y = math.nan
    obj.track_position_covariance = obj.track_velocity_covariance = [math.nan] * 4
    return obj


def make_result(
    *,
    header,
    image_height: int,
    image_width: int,
    model_name: str,
    objects: Sequence[SegmentedObject],
    inference_ms: float,
    total_ms: float,
) -> SegmentationResult:
    """One frame's SegmentationResult; `header` is the camera image's header."""
    return SegmentationResult(
        header=header,
        image_width=int(image_width),
        image_height=int(image_height),
        model_name=model_name,
        objects=list(objects),
        inference_ms=float(inference_ms),
        total_ms=float(total_ms),
    )


@dataclass(frozen=True)
class ObjectArrays:
    """The objects of a SegmentationResult as arrays (struct of arrays), N objects.

    instance_ids [N] uint32, class_ids [N] int64, labels list[str], is_thing [N] bool,
    scores / mask_scores [N] float32, rois [N, 4] int64 (x, y, w, h), centroids [N, 2] float32
    (x, y), areas [N] int64, masks: list of [h, w] bool crops.
    """

    instance_ids: np.ndarray
    class_ids: np.ndarray
    labels: list[str]
    is_thing: np.ndarray
    scores: np.ndarray
    mask_scores: np.ndarray
    rois: np.ndarray
    centroids: np.ndarray
    areas: np.ndarray
    masks: list[np.ndarray]

    def __len__(self) -> int:
        return len(self.labels)

    def id_image(self, image_height: int, image_width: int) -> np.ndarray:
        """[H, W] uint16 instance-id image (0 = none); later objects overwrite earlier ones."""
        ids = np.zeros((image_height, image_width), dtype=np.uint16)
        for (x, y, w, h), crop, instance_id in zip(self.rois, self.masks, self.instance_ids):
            ids[y : y + h, x : x + w][crop] = instance_id
        return ids


def result_to_arrays(msg: SegmentationResult) -> ObjectArrays:
    objects = msg.objects
    return ObjectArrays(
        instance_ids=np.array([o.instance_id for o in objects], dtype=np.uint32),
        class_ids=np.array([o.class_id for o in objects], dtype=np.int64),
        labels=[o.class_label for o in objects],
        is_thing=np.array([o.is_thing for o in objects], dtype=bool),
        scores=np.array([o.score for o in objects], dtype=np.float32),
        mask_scores=np.array([o.mask_score for o in objects], dtype=np.float32),
        rois=np.array(
            [(o.roi.x_offset, o.roi.y_offset, o.roi.width, o.roi.height) for o in objects],
            dtype=np.int64,
        ).reshape(-1, 4),
        centroids=np.array([(o.centroid_x, o.centroid_y) for o in objects], np.float32).reshape(
            -1, 2
        ),
        areas=np.array([o.area for o in objects], dtype=np.int64),
        masks=[decode_mask(o) for o in objects],
    )


def make_class_info(table: ClassTable, *, model_name: str, header=None) -> ClassInfoArray:
    msg = ClassInfoArray(model_name=model_name)
    if header is not None:
        msg.header = header
    msg.classes = [
        ClassInfo(
            class_id=i,
            name=name,
            r=int(color[0]),
            g=int(color[1]),
            b=int(color[2]),
            is_thing=bool(thing),
            drivable=bool(drivable),
        )
        for i, (name, color, thing, drivable) in enumerate(
            zip(table.names, table.colors, table.is_thing, table.drivable)
        )
    ]
    return msg


def class_table_from_msg(msg: ClassInfoArray) -> ClassTable:
    classes = sorted(msg.classes, key=lambda c: c.class_id)
    if [c.class_id for c in classes] != list(range(len(classes))):
        raise ValueError("class_info: class ids must be 0..N-1 without gaps")
    return ClassTable(
        names=tuple(c.name for c in classes),
        colors=np.array([(c.r, c.g, c.b) for c in classes], dtype=np.uint8).reshape(-1, 3),
        is_thing=np.array([c.is_thing for c in classes], dtype=bool),
        drivable=np.array([c.drivable for c in classes], dtype=bool),
    )
