"""Segments of one image (thing instances and stuff regions) and their id map: the one result
every model family's postprocess produces, the pipeline returns and the node publishes.

Conventions (stated once):
- Segment ids are 1..N within one image; id 0 in an id map is void (no segment).
- Class ids index the model's `ClassTable`: for a panoptic model stuff classes 0..S-1, then thing
  classes S..S+T-1 (the semantic head's channel order); for an instance-only model the things.
- `VOID` is the semantic-map value of pixels no segment covers (uint8 maps; 65535 in uint16
  maps of models with 255 classes or more, see `void_label`).
- Arrays are torch tensors on the producer's device (postprocess) or numpy arrays (`numpy()`,
  what the pipeline returns); every method works on both.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

__all__ = [
    "VOID",
    "PanopticResult",
    "SegmentGeometry",
    "Segments",
    "segment_geometry",
    "void_label",
]

#: `semantic` value of pixels no segment covers (uint8 maps; 65535 for uint16 maps).
VOID = 255


def void_label(num_classes: int) -> int:
    """The void value of a semantic map of `num_classes` classes (uint8 below 255 classes)."""
    return VOID if num_classes < 255 else 65535


@dataclass
class Segments:
    """Struct of arrays, one entry per segment (thing instance or stuff region), N segments.

    ids:         [N] int32, the segment's value in the id map (>= 1).
    class_ids:   [N] int64, index into the model's class table (`category_ids` in COCO terms).
    is_thing:    [N] bool.
    scores:      [N] float32, detection score (things) or mean class probability (stuff).
    mask_scores: [N] float32, YOLACT++ mask-IoU score; default (and without one): `scores`.
    boxes:       [N, 4] float32 (x1, y1, x2, y2) image pixels: the detection box of a detected
                 thing; NaN where there is none (stuff, PCV things) until the pipeline fills in
                 the pixel bounds. Default: NaN.
    areas:       [N] int64 pixel counts in the id map; default -1 (not counted).
    keypoints:   [N, K, 3] float32 (x, y, score) image pixels (`structures.keypoints`) of a
                 detected thing of a keypoint class; NaN rows elsewhere. Default: K = 0.
    """

    ids: Any
    class_ids: Any
    is_thing: Any
    scores: Any
    mask_scores: Any = None
    boxes: Any = None
    areas: Any = None
    keypoints: Any = None

    def __post_init__(self) -> None:
        n = len(self)
        if self.mask_scores is None:
            scores = self.scores
            self.mask_scores = scores.clone() if isinstance(scores, torch.Tensor) else scores.copy()
        if self.boxes is None:
            self.boxes = _full_like(self.scores, (n, 4), float("nan"), "float32")
        if self.areas is None:
            self.areas = _full_like(self.scores, (n,), -1, "int64")
        if self.keypoints is None:
            self.keypoints = _full_like(self.scores, (n, 0, 3), float("nan"), "float32")
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if value.shape[0] != n:
                raise ValueError(f"Segments.{f.name} has {value.shape[0]} entries, ids has {n}")

    def __len__(self) -> int:
        return int(self.ids.shape[0])

    def __getitem__(self, item) -> Segments:
        """Select segments (bool mask [N], index array or slice) in the index's order."""
        return Segments(*(getattr(self, f.name)[item] for f in dataclasses.fields(self)))

    @property
    def category_ids(self) -> Any:
        """`class_ids` under COCO-panoptic's name (what `panoptic.pq` and `coco_io` read)."""
        return self.class_ids

    def to(self, device: torch.device | str) -> Segments:
        """The segments' tensors on `device` (torch only)."""
        return Segments(*(getattr(self, f.name).to(device) for f in dataclasses.fields(self)))

    def numpy(self) -> Segments:
        """The segments as numpy arrays (dtypes of the class docstring)."""
        dtypes = {"ids": np.int32, "class_ids": np.int64, "is_thing": bool, "areas": np.int64}
        out = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, torch.Tensor):
                value = value.detach().cpu().numpy()
            out[f.name] = np.asarray(value, dtype=dtypes.get(f.name, np.float32))
        return Segments(**out)

    @staticmethod
    def empty(device: torch.device | str | None = None) -> Segments:
        """No segments (torch tensors on `device`)."""
        return Segments(
            ids=torch.zeros(0, dtype=torch.int32, device=device),
            class_ids=torch.zeros(0, dtype=torch.int64, device=device),
            is_thing=torch.zeros(0, dtype=torch.bool, device=device),
            scores=torch.zeros(0, dtype=torch.float32, device=device),
            areas=torch.zeros(0, dtype=torch.int64, device=device),
        )


def _full_like(reference: Any, shape: tuple[int, ...], value: float, dtype: str) -> Any:
    if isinstance(reference, torch.Tensor):
        return torch.full(shape, value, dtype=getattr(torch, dtype), device=reference.device)
    return np.full(shape, value, dtype=dtype)


@dataclass
class PanopticResult:
    """One image's segmentation: every pixel belongs to at most one segment.

    id_map:     [H, W] int32 segment id per pixel (0 = void), at the image's resolution.
    segments:   the segments of `id_map`.
    detections: [N] int64, per segment the index of the input detection it came from (-1 for
                stuff); None when the producer had no detections (PCV).
    """

    id_map: Any
    segments: Segments
    detections: Any = None

    def semantic_map(self, void_label: int = VOID) -> torch.Tensor:
        """[H, W] int64 class id per pixel (torch results); void pixels get `void_label`."""
        size = int(self.id_map.max().item()) + 1 if self.id_map.numel() else 1
        lut = torch.full((size,), void_label, dtype=torch.int64, device=self.id_map.device)
        lut[self.segments.ids.long()] = self.segments.class_ids
        return lut[self.id_map.long()]

    def to(self, device: torch.device | str) -> PanopticResult:
        detections = None if self.detections is None else self.detections.to(device)
        return PanopticResult(self.id_map.to(device), self.segments.to(device), detections)

    def numpy(self) -> PanopticResult:
        id_map, detections = _numpy(self.id_map), _numpy(self.detections)
        return PanopticResult(
            id_map.astype(np.int32, copy=False),
            self.segments.numpy(),
            None if detections is None else detections.astype(np.int64, copy=False),
        )


def _numpy(value: Any) -> Any:
    return value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else value


@dataclass
class SegmentGeometry:
    """Where each segment's pixels lie in an id map, N segments.

    rois: [N, 4] int64 (x, y, w, h), the tight pixel box; centroids: [N, 2] float32 (x, y), mean
    of the pixel centres (u + 0.5, v + 0.5); areas: [N] int64 pixel counts.
    """

    rois: np.ndarray
    centroids: np.ndarray
    areas: np.ndarray

    @property
    def boxes(self) -> np.ndarray:
        """[N, 4] float32 (x1, y1, x2, y2) pixel bounds of the rois."""
        rois = self.rois.astype(np.float32)
        return np.concatenate([rois[:, :2], rois[:, :2] + rois[:, 2:]], axis=1)


def segment_geometry(id_map: np.ndarray, num_segments: int) -> SegmentGeometry:
    """Tight rois, centroids and areas of segments 1..num_segments of an id map [H, W].

    Two integer bincounts over the pixels give per-segment pixel counts per column and per row;
    everything follows from those [N, W] and [N, H] tables. Segments without pixels get a zero
    roi and a NaN centroid; ids above num_segments are ignored.
    """
    height, width = id_map.shape
    n = num_segments + 1
    ids = id_map.astype(np.intp, copy=False)
    per_col = np.bincount((ids * width + np.arange(width)).ravel(), minlength=n * width)
    per_row = np.bincount((ids * height + np.arange(height)[:, None]).ravel(), minlength=n * height)
    per_col = per_col[: n * width].reshape(n, width)[1:]
    per_row = per_row[: n * height].reshape(n, height)[1:]
    areas = per_col.sum(axis=1)
    cols, rows = per_col > 0, per_row > 0
    x0, y0 = cols.argmax(axis=1), rows.argmax(axis=1)
    x1 = width - cols[:, ::-1].argmax(axis=1)
    y1 = height - rows[:, ::-1].argmax(axis=1)
    present = areas > 0
    rois = np.where(present[:, None], np.stack([x0, y0, x1 - x0, y1 - y0], axis=1), 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        cx = per_col @ (np.arange(width) + 0.5) / areas
        cy = per_row @ (np.arange(height) + 0.5) / areas
    return SegmentGeometry(
        rois=rois.astype(np.int64),
        centroids=np.stack([cx, cy], axis=1).astype(np.float32),
        areas=areas.astype(np.int64),
    )
