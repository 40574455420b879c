"""Triton kernel for `segros::assemble_masks` (see `segmentation_ros.ops.mask_assembly`).

masks[n, v, u] = sigmoid(sum_c coef[n, c] * proto[v, u, c]) * crop[n, v, u], written straight
in the [N, Hp, Wp] layout. One program per (block of BLOCK_N masks, block of BLOCK_P pixels of
the flattened Hp * Wp prototype plane): the logits are one `tl.dot` of the [BLOCK_N, k] slice
of `coef` with the [k, BLOCK_P] slice of `proto` (k in steps of BLOCK_K, usually one: YOLACT
has k = 32), then sigmoid and crop are applied in registers and the tile is stored once: the
matmul, sigmoid and crop of the reference, fused, with no [N, Hp * Wp] intermediate.
Blocking several masks per program reuses each prototype tile BLOCK_N times and gives `tl.dot`
its minimum 16 rows.

Crop: the launcher computes the official windows with the reference's own `crop_windows`
(same arithmetic, in the dtype of `boxes`) and passes each as an int32 interval (first row,
end row, first column, end column); the kernel multiplies by the indicator, as the reference
does (so a NaN logit stays NaN outside the window too).

Numerics: float32, float16 and bfloat16 inputs use an IEEE float32 dot (not TF32: the GPU's
FMA path; half inputs are upcast first, their products being exact in float32, and Triton's
interpreter mis-computes bfloat16 dots), then the logit of half inputs is rounded to the input
dtype (as PyTorch's half matmul does); float64 uses a float64 dot. The sums may round
differently from the reference's BLAS: a few 1e-7 absolute in float32 probabilities, one unit
in the last place for float16 / bfloat16 (the interpreter truncates float32 -> bfloat16
casts, the GPU rounds them to nearest).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor

from segmentation_ros.ops.mask_assembly import _check_assembly_inputs, crop_windows
from segmentation_ros.ops.triton._device import device_guard
from segmentation_ros.ops.triton._dtypes import TL_DTYPES

__all__ = ["assemble_masks_triton"]

# Masks per program (>= 16 for tl.dot), pixels per program, largest reduction step over k.
BLOCK_N = 16
BLOCK_P = 128
MAX_BLOCK_K = 64


@triton.jit
def _assemble_masks_kernel(
    proto_ptr,  # [Hp, Wp, k]
    coef_ptr,  # [N, k]
    windows_ptr,  # int32 [N, 4] (row start, row end, col start, col end), contiguous
    out_ptr,  # [N, Hp, Wp], contiguous
    num_masks,
    width,
    num_pixels,  # Hp * Wp
    depth,  # k
    stride_ph,
    stride_pw,
    stride_pk,
    stride_cn,
    stride_ck,
    DTYPE: tl.constexpr,  # dtype of proto / coef / out
    ACC: tl.constexpr,  # float32, or float64 for float64 inputs
    HAS_CROP: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_P: tl.constexpr,
    BLOCK_K: tl.constexpr,
):
    n = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
    p = tl.program_id(1).to(tl.int64) * BLOCK_P + tl.arange(0, BLOCK_P)
    n_ok = n < num_masks
    p_ok = p < num_pixels
    v = p // width
    u = p % width
    pixel = v * stride_ph + u * stride_pw  # [BLOCK_P] offsets into proto
    mask_row = n.to(tl.int64) * stride_cn  # [BLOCK_N] offsets into coef

    acc = tl.zeros([BLOCK_N, BLOCK_P], dtype=ACC)
    for k_start in range(0, depth, BLOCK_K):
        c = k_start + tl.arange(0, BLOCK_K)
        c_ok = c < depth
        a = tl.load(
            coef_ptr + mask_row[:, None] + c[None, :] * stride_ck,
            mask=n_ok[:, None] & c_ok[None, :],
            other=0.0,
        )
        b = tl.load(
            proto_ptr + pixel[None, :] + c[:, None] * stride_pk,
            mask=c_ok[:, None] & p_ok[None, :],
            other=0.0,
        )
        # float16 / bfloat16 products are exact in float32: upcasting first costs no accuracy
        # (and Triton's interpreter mis-computes bfloat16 dots, so this is the tested path).
        acc = tl.dot(a.to(ACC), b.to(ACC), acc, input_precision="ieee")
    if DTYPE != ACC:
        acc = acc.to(DTYPE).to(ACC)  # the reference's logits are in the input dtype
    prob = tl.sigmoid(acc)
    if HAS_CROP:
        window = windows_ptr + n.to(tl.int64) * 4
        r0 = tl.load(window, mask=n_ok, other=0)
        r1 = tl.load(window + 1, mask=n_ok, other=0)
        c0 = tl.load(window + 2, mask=n_ok, other=0)
        c1 = tl.load(window + 3, mask=n_ok, other=0)
        inside = (v[None, :] >= r0[:, None]) & (v[None, :] < r1[:, None])
        inside = inside & (u[None, :] >= c0[:, None]) & (u[None, :] < c1[:, None])
        prob = prob * inside.to(ACC)
    out = out_ptr + n.to(tl.int64)[:, None] * num_pixels + p[None, :]
    tl.store(out, prob.to(DTYPE), mask=n_ok[:, None] & p_ok[None, :])


def _window_bounds(indicator: Tensor) -> tuple[Tensor, Tensor]:
    """[N, S] bool intervals -> (start, end) int32 [N] each (0, 0 for an empty one)."""
    start = indicator.to(torch.uint8).argmax(dim=1)  # first True (0 if none)
    end = start + indicator.sum(dim=1)
    return start.to(torch.int32), end.to(torch.int32)


def assemble_masks_triton(
    proto: Tensor, coef: Tensor, boxes: Tensor | None, padding: int
) -> Tensor:
    """`segros::assemble_masks` on the GPU: same contract as `assemble_masks_reference`.

    proto [Hp, Wp, k], coef [N, k] (same float dtype, any strides), boxes [N, 4] relative
    (x1, y1, x2, y2) or None (no crop), padding in prototype pixels.
    Returns [N, Hp, Wp] in the dtype of proto, on its device.
    """
    _check_assembly_inputs(proto, coef, boxes)
    height, width, depth = proto.shape
    count = coef.shape[0]
    out = torch.empty((count, height, width), dtype=proto.dtype, device=proto.device)
    if out.numel() == 0:
        return out
    if boxes is not None:
        row_in, col_in = crop_windows(boxes, height, width, padding)
        windows = torch.stack([*_window_bounds(row_in), *_window_bounds(col_in)], dim=1)
    else:
        windows = torch.empty((0, 4), dtype=torch.int32, device=proto.device)  # unused
    block_k = min(MAX_BLOCK_K, max(16, triton.next_power_of_2(depth)))
    grid = (triton.cdiv(count, BLOCK_N), triton.cdiv(height * width, BLOCK_P))
    with device_guard(proto):
        _assemble_masks_kernel[grid](
            proto,
            coef,
            windows,
            out,
            count,
            width,
            height * width,
            depth,
            *proto.stride(),
            *coef.stride(),
            DTYPE=TL_DTYPES[proto.dtype],
            ACC=tl.float64 if proto.dtype == torch.float64 else tl.float32,
            HAS_CROP=boxes is not None,
            BLOCK_N=BLOCK_N,
            BLOCK_P=BLOCK_P,
            BLOCK_K=block_k,
        )
    return out
