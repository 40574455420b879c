"""Triton kernel for `segros::fast_nms` (see `segmentation_ros.ops.fast_nms` for the contract).

One program per (group g, block of BLOCK_J columns j). It loads the boxes of its columns once,
then walks the rows i < j of the group in tiles of BLOCK_I, computes the [BLOCK_I, BLOCK_J]
IoU tile in registers and folds it into a running column maximum; keep[g, j] is then
`max <= iou_threshold and scores[g, j] > score_threshold`. Column blocks rather than one
program per group: the IoU matrix of a group (D = 200 candidates per class in YOLACT) is too
large for one program's registers, and G x ceil(D / BLOCK_J) programs fill the GPU better;
each program reads only the rows above its columns (the strict upper triangle).

Numerics, bit for bit those of the reference (`box_iou` + `triu_` + `max`):
- the IoU is computed with `box_iou`'s operations in the same order; float16 / bfloat16
  inputs are computed in float32 and rounded to the input dtype after every add, subtract,
  multiply and divide, which equals PyTorch's per-operation rounding (float32 has more than
  twice their precision, so the double rounding is innocuous); float64 is computed in float64;
- the division is the IEEE one (`div_rn`: Triton's fp32 `/` may be approximate on NVIDIA)
  and the launch disables fp contraction (no fused multiply-add of area + area);
- min / max / clamp propagate NaN like `torch.min` / `torch.max` / `torch.clamp`; a NaN IoU
  (two degenerate boxes: 0 / 0) makes the column maximum NaN, so the box is suppressed, as
  `torch.max` does; the lower triangle and the diagonal count as 0 (the `triu_` zeros);
- the thresholds are rounded to the dtype of the tensor they are compared with, as PyTorch
  does for a Python scalar.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor

from segmentation_ros.ops.fast_nms import _check_fast_nms_inputs
from segmentation_ros.ops.triton._device import device_guard
from segmentation_ros.ops.triton._dtypes import TL_DTYPES

__all__ = ["fast_nms_triton"]

# Columns per program and rows per tile (powers of two; the tile is BLOCK_I x BLOCK_J).
BLOCK_J = 64
BLOCK_I = 32


@triton.jit
def _rounded(x, DTYPE: tl.constexpr, COMPUTE: tl.constexpr):
    # Round a compute-dtype value to the input dtype, to nearest even (a no-op when the
    # dtypes are the same).
    if DTYPE == tl.bfloat16:
        # By hand, as PyTorch does: Triton's interpreter truncates float32 -> bfloat16 casts.
        bits = x.to(tl.uint32, bitcast=True)
        bits = ((bits + (0x7FFF + ((bits >> 16) & 1))) >> 16) << 16
        x = tl.where(x != x, x, bits.to(tl.float32, bitcast=True))
    elif DTYPE != COMPUTE:
        x = x.to(DTYPE).to(COMPUTE)
    return x


@triton.jit
def _min(a, b):
    return tl.minimum(a, b, propagate_nan=tl.PropagateNan.ALL)


@triton.jit
def _max(a, b):
    return tl.maximum(a, b, propagate_nan=tl.PropagateNan.ALL)


@triton.jit
def _load_boxes(ptr, stride_c, ok, DTYPE: tl.constexpr, COMPUTE: tl.constexpr):
    """x1, y1, x2, y2 and area (box_iou's operations, rounded as the input dtype) of a block."""
    x1 = tl.load(ptr, mask=ok, other=0.0).to(COMPUTE)
    y1 = tl.load(ptr + stride_c, mask=ok, other=0.0).to(COMPUTE)
    x2 = tl.load(ptr + 2 * stride_c, mask=ok, other=0.0).to(COMPUTE)
    y2 = tl.load(ptr + 3 * stride_c, mask=ok, other=0.0).to(COMPUTE)
    width, height = _rounded(x2 - x1, DTYPE, COMPUTE), _rounded(y2 - y1, DTYPE, COMPUTE)
    return x1, y1, x2, y2, _rounded(width * height, DTYPE, COMPUTE)


@triton.jit
def _fast_nms_kernel(
    boxes_ptr,
    scores_ptr,
    thresholds_ptr,  # float64 [2]: iou threshold, score threshold (already rounded)
    keep_ptr,  # uint8 [G, D], contiguous
    size,  # D
    stride_bg,
    stride_bd,
    stride_bc,
    stride_sg,
    stride_sd,
    DTYPE: tl.constexpr,  # dtype of the boxes
    COMPUTE: tl.constexpr,  # float32, or float64 for float64 boxes
    BLOCK_I: tl.constexpr,
    BLOCK_J: tl.constexpr,
):
    g = tl.program_id(0).to(tl.int64)
    j_start = tl.program_id(1) * BLOCK_J
    j = j_start + tl.arange(0, BLOCK_J)
    j_ok = j < size
    col = boxes_ptr + g * stride_bg + j.to(tl.int64) * stride_bd
    bx1, by1, bx2, by2, area_b = _load_boxes(col, stride_bc, j_ok, DTYPE, COMPUTE)

    col_max = tl.zeros([BLOCK_J], dtype=COMPUTE)  # the triu_ zeros
    col_nan = tl.zeros([BLOCK_J], dtype=tl.int32)
    # Rows i < j for the columns of this block: 0 .. min(j_start + BLOCK_J, D) - 2.
    for i_start in range(0, tl.minimum(j_start + BLOCK_J, size) - 1, BLOCK_I):
        i = i_start + tl.arange(0, BLOCK_I)
        i_ok = i < size
        row = boxes_ptr + g * stride_bg + i.to(tl.int64) * stride_bd
        ax1, ay1, ax2, ay2, area_a = _load_boxes(row, stride_bc, i_ok, DTYPE, COMPUTE)
        # box_iou, same operations in the same order.
        max_x = _min(ax2[:, None], bx2[None, :])
        max_y = _min(ay2[:, None], by2[None, :])
        min_x = _max(ax1[:, None], bx1[None, :])
        min_y = _max(ay1[:, None], by1[None, :])
        inter_w = _max(_rounded(max_x - min_x, DTYPE, COMPUTE), 0.0)
        inter_h = _max(_rounded(max_y - min_y, DTYPE, COMPUTE), 0.0)
        inter = _rounded(inter_w * inter_h, DTYPE, COMPUTE)
        union = _rounded(area_a[:, None] + area_b[None, :], DTYPE, COMPUTE)
        union = _rounded(union - inter, DTYPE, COMPUTE)
        if COMPUTE == tl.float64:
            iou = inter / union  # IEEE division for float64
        else:
            iou = tl.math.div_rn(inter, union)
        iou = _rounded(iou, DTYPE, COMPUTE)

        upper = (i[:, None] < j[None, :]) & i_ok[:, None]
        is_nan = upper & (iou != iou)
        col_nan = tl.maximum(col_nan, tl.max(is_nan.to(tl.int32), axis=0))
        col_max = tl.maximum(col_max, tl.max(tl.where(upper & (iou == iou), iou, 0.0), axis=0))

    iou_threshold = tl.load(thresholds_ptr)
    score_threshold = tl.load(thresholds_ptr + 1)
    score = tl.load(scores_ptr + g * stride_sg + j.to(tl.int64) * stride_sd, mask=j_ok, other=0.0)
    keep = (
        (col_nan == 0)
        & (col_max.to(tl.float64) <= iou_threshold)
        & (score.to(tl.float64) > score_threshold)
    )
    tl.store(keep_ptr + g * size + j, keep.to(tl.uint8), mask=j_ok)


def fast_nms_triton(
    boxes: Tensor, scores: Tensor, iou_threshold: float, score_threshold: float
) -> Tensor:
    """`segros::fast_nms` on the GPU: same contract and bit-identical result as
    `fast_nms_reference`. boxes [G, D, 4], scores [G, D] (any float dtypes, any strides).
    Returns keep [G, D] bool on the device of the inputs."""
    _check_fast_nms_inputs(boxes, scores)
    groups, size = scores.shape
    if groups == 0 or size == 0:
        return torch.zeros((groups, size), dtype=torch.bool, device=scores.device)
    # PyTorch compares a tensor with a Python scalar after casting the scalar to the tensor's
    # dtype; both thresholds travel as float64, exact for every dtype.
    thresholds = torch.stack(
        [
            torch.tensor(iou_threshold, dtype=torch.float64).to(boxes.dtype).double(),
            torch.tensor(score_threshold, dtype=torch.float64).to(scores.dtype).double(),
        ]
    ).to(scores.device)
    keep = torch.empty((groups, size), dtype=torch.uint8, device=scores.device)
    compute = tl.float64 if boxes.dtype == torch.float64 else tl.float32
    grid = (groups, triton.cdiv(size, BLOCK_J))
    with device_guard(scores):
        _fast_nms_kernel[grid](
            boxes,
            scores,
            thresholds,
            keep,
            size,
            *boxes.stride(),
            *scores.stride(),
            DTYPE=TL_DTYPES[boxes.dtype],
            COMPUTE=compute,
            BLOCK_I=BLOCK_I,
            BLOCK_J=BLOCK_J,
            enable_fp_fusion=False,
        )
    return keep.view(torch.bool)
