"""One training / evaluation sample, `PanopticSample`, and how one is built from an image, an id
map and its segments (`build_sample`): the semantic map, boxes and instance masks are derived.

Conventions (stated once, for every data set):
- image: [H, W, 3] uint8 RGB.
- Panoptic category ids are OUR contiguous ids (`segmentation_ros.panoptic.result`): stuff
  0..S-1, then things S..S+T-1; a thing instance's class is its 0-based thing index
  (category - S), the YOLACT class id.
- `VOID_LABEL` (255) marks void / ignored pixels in semantic maps (so at most 255 categories).
- id_map: [H, W] int32, segment ids renumbered densely 1..N in the order of `segments`, 0 = void.
- boxes: (x1, y1, x2, y2) float32 pixels, the tightest box of the instance's mask with pixel
  (u, v) covering [u, u+1) x [v, v+1): x1 = min column, x2 = max column + 1.
- Crowd thing segments (COCO `iscrowd`) are instances with `iscrowd` True; their pixels keep
  their category in the semantic map.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from segmentation_ros.panoptic.pq import SegmentsInfo, dense_index

VOID_LABEL = 255
"""Semantic-map value of void / ignored pixels (the `ignore_index` of the semantic loss)."""


# ---------------------------------------------------------------------------------------------
# The sample


@dataclass
class PanopticSample:
    """One annotated image (numpy arrays, see the module docstring for the conventions).

    image:        [H, W, 3] uint8 RGB.
    semantic:     [H, W] int64 panoptic category id per pixel, `VOID_LABEL` (255) = void.
    boxes:        [N, 4] float32 (x1, y1, x2, y2) pixels, tight around `masks`.
    classes:      [N] int64 thing class (0-based thing index = category - num_stuff).
    masks:        [N, H, W] bool instance masks (= id_map == instance_ids[n]).
    iscrowd:      [N] bool crowd regions (not trained as instances, see the losses).
    id_map:       [H, W] int32 segment id per pixel, 1..len(segments), 0 = void.
    segments:     `SegmentsInfo` of `id_map` (ids 1..M, category_ids ours, iscrowd), for PQ.
    instance_ids: [N] int64 segment id of each instance in `id_map`.
    num_stuff:    S, so that class = category - S.
    image_id:     the data set's image id (int or str).
    keypoints:    [M, K, 3] float32 (x, y, visibility) per segment of `segments`, COCO pixels
                  (`structures.keypoints`), visibility 0 (and x = y = 0) where unlabelled; None
                  for a data set without keypoints. keypoint_flip: their left-right permutation.
    """

    image: np.ndarray
    semantic: np.ndarray
    boxes: np.ndarray
    classes: np.ndarray
    masks: np.ndarray
    iscrowd: np.ndarray
    id_map: np.ndarray
    segments: SegmentsInfo
    instance_ids: np.ndarray
    num_stuff: int
    image_id: int | str = -1
    keypoints: np.ndarray | None = None
    keypoint_flip: tuple[int, ...] = ()

    def __len__(self) -> int:
        """Number of thing instances (crowd regions included)."""
        return int(self.classes.shape[0])

    @property
    def height(self) -> int:
        return int(self.image.shape[0])

    @property
    def width(self) -> int:
        return int(self.image.shape[1])


def build_sample(
    image: np.ndarray,
    id_map: np.ndarray,
    segments: SegmentsInfo,
    *,
    num_stuff: int,
    image_id: int | str = -1,
    keypoints: np.ndarray | None = None,
    keypoint_flip: tuple[int, ...] = (),
) -> PanopticSample:
    """A `PanopticSample` from an image and its panoptic annotation in OUR category ids.

    image: [H, W, 3] uint8 RGB. id_map: [H, W] integer segment ids (0 = void); every non-zero
    id must be in `segments` (ValueError otherwise). segments: ids >= 1 and our category ids
    (0 <= id < VOID_LABEL). Segments without pixels are dropped; the id map is renumbered
    1..M in the order of the kept segments; semantic map, instance masks and tight boxes are
    derived from it, so they agree by construction. keypoints: [len(segments), K, 3] per
    segment (kept with their segments), keypoint_flip their left-right permutation.
    """
    image = _check_image(image)
    id_map = np.asarray(id_map)
    if id_map.shape != image.shape[:2]:
        raise ValueError(
            f"image {image.shape[:2]} and panoptic id map {id_map.shape} differ in size"
        )
    if not np.issubdtype(id_map.dtype, np.integer):
        raise TypeError(f"id map must have an integer dtype, got {id_map.dtype}")
    cats = segments.category_ids
    if len(cats) and (cats.min() < 0 or cats.max() >= VOID_LABEL):
        raise ValueError(
            f"category ids must be in [0, {VOID_LABEL}) (ours, contiguous), got "
            f"{np.unique(cats).tolist()[:10]}"
        )
    # Dense index per pixel (0 = void, k + 1 = segments[k]); raises for unknown ids.
    index = dense_index(id_map, segments.ids, np.arange(1, len(segments) + 1), "the")
    area = np.bincount(index.ravel(), minlength=len(segments) + 1)[1:]
    kept = np.flatnonzero(area > 0)
    renumber = np.zeros(len(segments) + 1, np.int32)
    renumber[kept + 1] = np.arange(1, kept.size + 1, dtype=np.int32)
    new_map = renumber[index]
    new_segments = SegmentsInfo(
        np.arange(1, kept.size + 1, dtype=np.int64), cats[kept], segments.iscrowd[kept]
    )
    sample = _derive(image, new_map, new_segments, num_stuff, image_id)
    if keypoints is not None:
        keypoints = np.asarray(keypoints, dtype=np.float32)
        if keypoints.ndim != 3 or keypoints.shape[0] != len(segments) or keypoints.shape[2] != 3:
            raise ValueError(
                f"keypoints must be [{len(segments)} segments, K, 3], got {keypoints.shape}"
            )
        sample.keypoints, sample.keypoint_flip = keypoints[kept], tuple(keypoint_flip)
    return sample


def _derive(
    image: np.ndarray,
    id_map: np.ndarray,
    segments: SegmentsInfo,
    num_stuff: int,
    image_id: int | str,
) -> PanopticSample:
    """Semantic map, instances, masks and boxes of a dense id map (ids 1..M = segments)."""
    lut = np.full(len(segments) + 1, VOID_LABEL, np.int64)
    lut[1:] = segments.category_ids
    semantic = lut[id_map]
    is_thing = segments.category_ids >= num_stuff
    instance_ids = segments.ids[is_thing]
    boxes = segment_boxes(id_map, len(segments))[is_thing]
    masks = id_map[None, :, :] == instance_ids[:, None, None].astype(id_map.dtype)
    return PanopticSample(
        image=image,
        semantic=semantic,
        boxes=boxes,
        classes=(segments.category_ids[is_thing] - num_stuff).astype(np.int64),
        masks=masks,
        iscrowd=segments.iscrowd[is_thing].copy(),
        id_map=id_map.astype(np.int32, copy=False),
        segments=segments,
        instance_ids=instance_ids.astype(np.int64),
        num_stuff=int(num_stuff),
        image_id=image_id,
    )


def segment_boxes(id_map: np.ndarray, num_segments: int) -> np.ndarray:
    """Tight boxes [M, 4] float32 (x1, y1, x2 + 1, y2 + 1) of segments 1..M of a dense id map
    (one pass over the pixels; a segment without pixels gets (0, 0, 0, 0))."""
    h, w = id_map.shape
    in_row = np.zeros((num_segments + 1, h), bool)
    in_row[id_map, np.arange(h)[:, None]] = True
    in_col = np.zeros((num_segments + 1, w), bool)
    in_col[id_map, np.arange(w)[None, :]] = True
    in_row, in_col = in_row[1:], in_col[1:]
    present = in_row.any(1)
    y1 = in_row.argmax(1)
    y2 = h - in_row[:, ::-1].argmax(1)
    x1 = in_col.argmax(1)
    x2 = w - in_col[:, ::-1].argmax(1)
    boxes = np.stack([x1, y1, x2, y2], 1).astype(np.float32)
    boxes[~present] = 0
    return boxes


def _check_image(image: np.ndarray) -> np.ndarray:
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8:
        raise TypeError("image must be a uint8 numpy array [H, W, 3] RGB")
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image must be [H, W, 3] RGB, got shape {image.shape}")
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f"image is empty: shape {image.shape}")
    return image


def read_rgb_image(path: str | os.PathLike) -> np.ndarray:
    """Read an image file as [H, W, 3] uint8 RGB.

    Raises FileNotFoundError if it does not exist, ValueError if it is empty or cannot be
    decoded (a zero-byte or truncated file)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image {path} does not exist")
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None or bgr.size == 0:
        raise ValueError(f"cannot decode image {path} (empty or corrupt file?)")
    return np.ascontiguousarray(bgr[..., ::-1])
