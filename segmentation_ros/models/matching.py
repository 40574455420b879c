"""Prior matching and box encoding for YOLACT training, as the official dbolya/yolact
`layers/box_utils.py` (`match`, `encode`, `jaccard`), vectorised over priors.

Frames: priors are (cx, cy, w, h) and ground-truth boxes (x1, y1, x2, y2), both relative to the
network input ([0, 1] = the input's width / height). Encoded offsets use the SSD variances
(0.1, 0.2):
    dx = (gx - px) / (0.1 * pw),  dy = (gy - py) / (0.1 * ph),
    dw = log(gw / pw) / 0.2,      dh = log(gh / ph) / 0.2,
the inverse of `segmentation_ros.postprocess.decode.decode_boxes`.

Matching rules (official):
- IoU of every ground truth with every prior (priors in point form);
- each prior takes the ground truth of highest IoU;
- then, ground truth by ground truth in order, its best prior is forced to it (IoU set to 2 so
  it is never thresholded; the prior's column is zeroed so that later ground truths pick
  another one);
- label: IoU >= pos_threshold -> class + 1; neg_threshold <= IoU < pos_threshold -> -1
  (neutral, ignored); IoU < neg_threshold -> 0 (background);
- crowd boxes: a prior that is not positive and covers a crowd box with
  intersection / prior area > crowd_iou_threshold becomes neutral (COCO crowd regions are
  neither objects nor background).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

__all__ = [
    "VARIANCES",
    "MatchResult",
    "box_iou",
    "center_size",
    "decode",
    "encode",
    "match_priors",
    "point_form",
]

VARIANCES = (0.1, 0.2)


def point_form(boxes: Tensor) -> Tensor:
    """(cx, cy, w, h) [..., 4] -> (x1, y1, x2, y2)."""
    return torch.cat([boxes[..., :2] - boxes[..., 2:] / 2, boxes[..., :2] + boxes[..., 2:] / 2], -1)


def center_size(boxes: Tensor) -> Tensor:
    """(x1, y1, x2, y2) [..., 4] -> (cx, cy, w, h)."""
    return torch.cat([(boxes[..., 2:] + boxes[..., :2]) / 2, boxes[..., 2:] - boxes[..., :2]], -1)


def box_iou(boxes_a: Tensor, boxes_b: Tensor, *, over_a: bool = False) -> Tensor:
    """[A, 4] x [B, 4] (x1, y1, x2, y2) -> [A, B] intersection over union (official `jaccard`),
    or intersection over the area of `boxes_a` when `over_a` (official `iscrowd=True`)."""
    top_left = torch.max(boxes_a[:, None, :2], boxes_b[None, :, :2])
    bottom_right = torch.min(boxes_a[:, None, 2:], boxes_b[None, :, 2:])
    inter = (bottom_right - top_left).clamp(min=0).prod(-1)
    area_a = ((boxes_a[:, 2] - boxes_a[:, 0]) * (boxes_a[:, 3] - boxes_a[:, 1]))[:, None]
    if over_a:
        return inter / area_a
    area_b = ((boxes_b[:, 2] - boxes_b[:, 0]) * (boxes_b[:, 3] - boxes_b[:, 1]))[None, :]
    return inter / (area_a + area_b - inter)


def encode(matched: Tensor, priors: Tensor, variances: tuple[float, float] = VARIANCES) -> Tensor:
    """Offsets [A, 4] of boxes `matched` [A, 4] (x1, y1, x2, y2) against `priors` [A, 4]
    (cx, cy, w, h), both relative (official `encode`; see the module docstring)."""
    centre = (matched[:, :2] + matched[:, 2:]) / 2 - priors[:, :2]
    centre = centre / (variances[0] * priors[:, 2:])
    size = torch.log((matched[:, 2:] - matched[:, :2]) / priors[:, 2:]) / variances[1]
    return torch.cat([centre, size], 1)


def decode(loc: Tensor, priors: Tensor, variances: tuple[float, float] = VARIANCES) -> Tensor:
    """Inverse of `encode`: offsets [A, 4] -> boxes (x1, y1, x2, y2) relative [A, 4]."""
    centre = priors[:, :2] + loc[:, :2] * variances[0] * priors[:, 2:]
    size = priors[:, 2:] * torch.exp(loc[:, 2:] * variances[1])
    return torch.cat([centre - size / 2, centre + size / 2], 1)


class MatchResult(NamedTuple):
    """Per-prior training targets of one image.

    labels:     [A] int64: c + 1 for thing class c (positive), 0 background, -1 neutral.
    gt_index:   [A] int64 index of the ground truth each prior is matched to (meaningful
                for positives; 0 when there is no ground truth).
    loc_target: [A, 4] float32 encoded offsets of that ground truth (zeros without one).
    """

    labels: Tensor
    gt_index: Tensor
    loc_target: Tensor


def match_priors(
    gt_boxes: Tensor,
    gt_classes: Tensor,
    priors: Tensor,
    *,
    crowd_boxes: Tensor | None = None,
    pos_threshold: float = 0.5,
    neg_threshold: float = 0.4,
    crowd_iou_threshold: float = 0.7,
    variances: tuple[float, float] = VARIANCES,
) -> MatchResult:
    """Match priors to ground truth (official `match`; rules in the module docstring).

    gt_boxes:    [N, 4] (x1, y1, x2, y2) relative to the network input, non-crowd.
    gt_classes:  [N] int64 thing classes (0-based).
    priors:      [A, 4] (cx, cy, w, h) relative.
    crowd_boxes: [M, 4] (x1, y1, x2, y2) relative crowd regions, or None.
    Returns a `MatchResult` on the priors' device. N = 0 gives all background (crowd neutral).
    The only Python loop is over the N ground truths (the official forced-best-prior pass).
    """
    num_priors = priors.shape[0]
    device = priors.device
    prior_boxes = point_form(priors)
    if gt_boxes.shape[0] == 0:
        labels = torch.zeros(num_priors, dtype=torch.int64, device=device)
        gt_index = torch.zeros(num_priors, dtype=torch.int64, device=device)
        loc_target = torch.zeros(num_priors, 4, dtype=priors.dtype, device=device)
    else:
        overlaps = box_iou(gt_boxes, prior_boxes)  # [N, A]
        best_overlap, gt_index = overlaps.max(0)
        for j in range(overlaps.shape[0]):
            i = overlaps[j].argmax()
            overlaps[:, i] = 0
            best_overlap[i] = 2
            gt_index[i] = j
        labels = gt_classes[gt_index].long() + 1
        labels = torch.where(best_overlap < pos_threshold, -1, labels)
        labels = torch.where(best_overlap < neg_threshold, 0, labels)
        loc_target = encode(gt_boxes[gt_index], priors, variances)
    if crowd_boxes is not None and crowd_boxes.shape[0] and crowd_iou_threshold < 1:
        crowd_cover = box_iou(prior_boxes, crowd_boxes, over_a=True).amax(1)
        labels = torch.where((labels <= 0) & (crowd_cover > crowd_iou_threshold), -1, labels)
    return MatchResult(labels, gt_index, loc_target)
