"""Fast NMS (YOLACT) as the custom op `segros::fast_nms`, and the official box IoU.

Fast NMS (Bolya et al., YOLACT, sec. 3.5) works on groups (classes) of boxes that are already
sorted by descending score. Within a group it computes the pairwise IoU matrix, keeps only its
strict upper triangle (row i < column j: i scores at least as high as j) and keeps box j when
the largest IoU in column j is <= `iou_threshold`. Unlike greedy NMS, a box that is itself
suppressed still suppresses the boxes below it - that is the official semantics, kept here.

On top of the official op we add the "second threshold" that the official code leaves out
(`Detect.fast_nms(..., second_threshold=False)`): box j is also dropped unless
`scores[g, j] > score_threshold`. With `score_threshold=-inf` the op is exactly the official
one. Padding a group with `score = -inf` entries at its end is therefore harmless: they come
after every real box, so they suppress nothing that is kept, and they are never kept.

Parts, side by side (see STYLE.md, "a custom op has four parts"):
- `box_iou`: the official `jaccard` numerics (same operations in the same order, so the IoU of
  a pair is bit-identical whatever the batch it is computed in).
- `fast_nms_reference`: pure PyTorch implementation (the fallback and the test oracle).
- `torch.ops.segros.fast_nms` with its fake kernel, and `fast_nms`, the typed wrapper.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["box_iou", "fast_nms", "fast_nms_reference"]


def box_iou(boxes_a: Tensor, boxes_b: Tensor) -> Tensor:
    """Pairwise IoU with the official YOLACT `jaccard` numerics.

    boxes_a: [..., A, 4], boxes_b: [..., B, 4], (x1, y1, x2, y2) in any common unit (YOLACT
    uses coordinates relative to the image); leading dimensions must match.
    Returns [..., A, B] in the dtype of the inputs. Degenerate pairs (both boxes of zero area)
    give NaN, as in the official code.
    """
    max_xy = torch.min(boxes_a[..., :, None, 2:], boxes_b[..., None, :, 2:])
    min_xy = torch.max(boxes_a[..., :, None, :2], boxes_b[..., None, :, :2])
    inter_wh = torch.clamp(max_xy - min_xy, min=0)
    inter = inter_wh[..., 0] * inter_wh[..., 1]
    area_a = (boxes_a[..., 2] - boxes_a[..., 0]) * (boxes_a[..., 3] - boxes_a[..., 1])
    area_b = (boxes_b[..., 2] - boxes_b[..., 0]) * (boxes_b[..., 3] - boxes_b[..., 1])
    union = area_a[..., :, None] + area_b[..., None, :] - inter
    return inter / union


def fast_nms_reference(
    boxes: Tensor, scores: Tensor, iou_threshold: float, score_threshold: float
) -> Tensor:
    """Pure PyTorch Fast NMS; see `fast_nms` for the contract. Returns keep [G, D] bool."""
    groups, size = scores.shape
    if groups == 0 or size == 0:
        return torch.zeros((groups, size), dtype=torch.bool, device=scores.device)
    iou = box_iou(boxes, boxes).triu_(diagonal=1)
    iou_max = iou.max(dim=1).values
    return (iou_max <= iou_threshold) & (scores > score_threshold)


def _check_fast_nms_inputs(boxes: Tensor, scores: Tensor) -> None:
    torch._check(boxes.dim() == 3, lambda: f"boxes must be [G, D, 4], got {tuple(boxes.shape)}")
    torch._check(boxes.shape[-1] == 4, lambda: f"boxes must be [G, D, 4], got {tuple(boxes.shape)}")
    torch._check(scores.dim() == 2, lambda: f"scores must be [G, D], got {tuple(scores.shape)}")
    torch._check(
        boxes.shape[0] == scores.shape[0] and boxes.shape[1] == scores.shape[1],
        lambda: f"boxes {tuple(boxes.shape)} and scores {tuple(scores.shape)} disagree on G, D",
    )
    torch._check(
        boxes.dtype.is_floating_point and scores.dtype.is_floating_point,
        lambda: f"boxes and scores must be floating point, got {boxes.dtype}, {scores.dtype}",
    )
    torch._check(
        boxes.device == scores.device,
        lambda: f"boxes on {boxes.device} but scores on {scores.device}",
    )


@torch.library.custom_op("segros::fast_nms", mutates_args=())
def _fast_nms_op(
    boxes: Tensor, scores: Tensor, iou_threshold: float, score_threshold: float
) -> Tensor:
    # A fused Triton kernel (one program per group, IoU tile in registers) can be registered
    # for CUDA with `_fast_nms_op.register_kernel("cuda")`; the PyTorch path serves all devices.
    return fast_nms_reference(boxes, scores, iou_threshold, score_threshold)


@_fast_nms_op.register_fake
def _fast_nms_fake(
    boxes: Tensor, scores: Tensor, iou_threshold: float, score_threshold: float
) -> Tensor:
    _check_fast_nms_inputs(boxes, scores)
    return scores.new_empty(scores.shape, dtype=torch.bool)


# Export: Fast NMS runs in the postprocess, outside the exported network graph, so no ONNX
# translation is registered. Should it move into a graph, the translation goes here
# (`torch.onnx` custom translation table entry for `segros::fast_nms`, built from Min/Max/Triu/
# ReduceMax), and the TensorRT plugin (from the Triton kernel) is registered next to it.


def fast_nms(
    boxes: Tensor,
    scores: Tensor,
    *,
    iou_threshold: float = 0.5,
    score_threshold: float = -math.inf,
) -> Tensor:
    """Fast NMS within groups of boxes sorted by descending score.

    boxes:  [G, D, 4] float, (x1, y1, x2, y2), any unit common to all boxes (YOLACT: relative
            to the image). Group g (a class) holds D boxes sorted by descending `scores[g]`.
    scores: [G, D] float, sorted descending along D. Pad short groups with -inf at the end.
    iou_threshold: box j is suppressed when IoU(i, j) > iou_threshold for some i < j of its
        group (suppressed boxes still suppress, as in the official Fast NMS).
    score_threshold: box j is kept only if scores[g, j] > score_threshold (-inf: official op,
        no second threshold).
    Returns keep [G, D] bool on the device of the inputs.
    """
    if not isinstance(boxes, Tensor) or not isinstance(scores, Tensor):
        raise TypeError("boxes and scores must be tensors")
    if boxes.dim() != 3 or boxes.shape[-1] != 4:
        raise ValueError(f"boxes must be [G, D, 4], got {tuple(boxes.shape)}")
    if scores.shape != boxes.shape[:2]:
        raise ValueError(
            f"scores must be [G, D] = {tuple(boxes.shape[:2])}, got {tuple(scores.shape)}"
        )
    if not (boxes.dtype.is_floating_point and scores.dtype.is_floating_point):
        raise TypeError(f"boxes and scores must be floating point, got {boxes.dtype}")
    if not 0.0 <= iou_threshold <= 1.0:
        raise ValueError(f"iou_threshold must be in [0, 1], got {iou_threshold}")
    return torch.ops.segros.fast_nms(boxes, scores, float(iou_threshold), float(score_threshold))
