"""Triton forward kernel of `segros::modulated_deform_conv2d` (DCNv2), for CUDA tensors.

`modulated_deform_conv2d_triton` has the signature and semantics of the op's implementation
(`segmentation_ros.ops.deform_conv._modulated_deform_conv2d_op`): layouts, sampling rule and
input checks are those of `deform_conv2d_reference`, the oracle its tests compare against.
Forward only: the op's registered autograd formula stays as it is.

Algorithm: modulated deformable im2col, then a grouped matmul (as DCNv2 and torchvision do).
1. `_modulated_im2col_kernel` writes the column buffer columns[b, c * K + k, l] (K = kh * kw
   kernel points, l = y * W_out + x) = mask[b, g * K + k, l] * bilinear(input[b, c], p), with
   p = (y * sh - ph + i * dh + dy, x * sw - pw + j * dw + dx) for kernel point k = i * kw + j,
   deformable group g = c // (C_in / dg), and (dy, dx) read from offset channels
   2 * (g * K + k) and 2 * (g * K + k) + 1. Bilinear as torchvision's kernel: zero when
   p is at or beyond one pixel outside the image (y <= -1, y >= H, x <= -1 or x >= W);
   otherwise the four neighbours weighted (1 - |dy|)(1 - |dx|), each one outside the image
   counting as zero. The modulation is folded into the four corner weights.
   Tiling: one program per (image b, deformable group g, kernel point k, block of BLOCK_L
   output pixels) along grid axis 0 (k fastest, so neighbouring programs gather from the same
   input pixels), times a block of BLOCK_C (<= 16) channels of group g along axis 1. A program loads
   its BLOCK_L offsets and masks once, computes the corner weights and addresses once, then
   gathers [BLOCK_C, BLOCK_L] values per corner and stores one [BLOCK_C, BLOCK_L] tile of
   columns, contiguous along l (coalesced). Input, offset and mask are read through their
   strides: non-contiguous tensors (channel slices, transposed views) are not copied.
2. torch.matmul of weight [groups, C_out / groups, C_in / groups * K] with the columns seen as
   [B, groups, C_in / groups * K, L] (cuBLAS, batched over images and groups), plus the bias,
   cast to the input's dtype.

Precision: sampling positions, bilinear weights, columns and the matmul are float32 for
float16 / bfloat16 / float32 inputs (float64 for float64 inputs); the output has the input's
dtype. The summation order differs from the reference: float32 agrees to about 1e-5 relative.

Memory: the column buffer holds C_in * kh * kw * H_out * W_out values (4 bytes in float32) per
image, plus the matmul result [C_out, L] per image. YOLACT++'s DCN layers (ResNet stages 3-5 at
550x550: 128 ch at 69x69, 256 at 35x35, 512 at 18x18, 3x3 kernels) need 22, 11 and 6 MB per
image, so the images are processed in chunks whose columns fit `COLUMN_BUDGET_BYTES` (256 MiB,
at least one image per chunk: a single image larger than the budget is processed alone). The
buffer is allocated once per call and reused across chunks; int64 addressing for image and
row offsets keeps large tensors correct.

Empty batches and zero output channels return an empty output without launching anything.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor

from segmentation_ros.ops.deform_conv import _check_inputs
from segmentation_ros.ops.triton._device import device_guard

# Upper bound on the column buffer of one chunk of images (at least one image is processed).
COLUMN_BUDGET_BYTES = 256 << 20
# Output pixels per program (axis 0) and largest channel block per program (axis 1); 4 warps.
# Compiled offline for sm_90 (float32): 128 registers a thread, no spills; a 32-channel block
# needs 251 (half the occupancy). Not yet timed on a GPU.
BLOCK_L = 128
MAX_BLOCK_C = 16


@triton.jit
def _modulated_im2col_kernel(
    input_ptr,
    offset_ptr,
    mask_ptr,
    columns_ptr,
    in_sb,
    in_sc,
    in_sh,
    in_sw,
    off_sb,
    off_sc,
    off_sh,
    off_sw,
    m_sb,
    m_sc,
    m_sh,
    m_sw,
    height,
    width,
    w_out,
    n_pixels,
    c_in,
    channels_per_dg,
    dg,
    kh_kw,
    kw,
    n_l_blocks,
    stride_h,
    stride_w,
    pad_h,
    pad_w,
    dil_h,
    dil_w,
    BLOCK_C: tl.constexpr,
    BLOCK_L: tl.constexpr,
):
    """columns[b, c * K + k, l] = mask * bilinear(input[b, c], sampling position), see the
    module docstring. Grid: (B * dg * n_l_blocks * K, cdiv(C_in / dg, BLOCK_C))."""
    acc_ty = columns_ptr.dtype.element_ty
    pid = tl.program_id(0)
    k = pid % kh_kw
    rest = pid // kh_kw
    l_block = rest % n_l_blocks
    rest = rest // n_l_blocks
    g = rest % dg
    b = (rest // dg).to(tl.int64)

    # Sampling positions of BLOCK_L output pixels for kernel point k of deformable group g.
    l = l_block * BLOCK_L + tl.arange(0, BLOCK_L)
    l_ok = l < n_pixels
    oy = l // w_out
    ox = l % w_out
    gk = g * kh_kw + k
    off_p = offset_ptr + b * off_sb + (2 * gk) * off_sc + oy * off_sh + ox * off_sw
    dy = tl.load(off_p, mask=l_ok, other=0.0).to(acc_ty)
    dx = tl.load(off_p + off_sc, mask=l_ok, other=0.0).to(acc_ty)
    mod_p = mask_ptr + b * m_sb + gk * m_sc + oy * m_sh + ox * m_sw
    modulation = tl.load(mod_p, mask=l_ok, other=0.0).to(acc_ty)
    y = (oy * stride_h - pad_h + (k // kw) * dil_h).to(acc_ty) + dy
    x = (ox * stride_w - pad_w + (k % kw) * dil_w).to(acc_ty) + dx

    # Bilinear corners (torchvision's rule): weights with the modulation folded in, addresses,
    # and which corners lie inside the image.
    inside = l_ok & (y > -1.0) & (y < height) & (x > -1.0) & (x < width)
    y_floor = tl.floor(y)
    x_floor = tl.floor(x)
    ly = y - y_floor
    lx = x - x_floor
    hy = 1.0 - ly
    hx = 1.0 - lx
    y0 = tl.where(inside, y_floor, 0.0).to(tl.int32)  # masked: no overflow for far samples
    x0 = tl.where(inside, x_floor, 0.0).to(tl.int32)
    y1 = y0 + 1
    x1 = x0 + 1
    top = inside & (y0 >= 0)
    bottom = inside & (y1 <= height - 1)
    left = x0 >= 0
    right = x1 <= width - 1
    ok00, ok01, ok10, ok11 = top & left, top & right, bottom & left, bottom & right
    w00 = hy * hx * modulation
    w01 = hy * lx * modulation
    w10 = ly * hx * modulation
    w11 = ly * lx * modulation
    s00 = y0 * in_sh + x0 * in_sw
    s01 = s00 + in_sw
    s10 = s00 + in_sh
    s11 = s10 + in_sw

    # Gather BLOCK_C channels of group g at the four corners.
    c = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    c_ok = c < channels_per_dg
    channel = (g * channels_per_dg + c).to(tl.int64)
    base = (input_ptr + b * in_sb + channel * in_sc)[:, None]
    c_ok2 = c_ok[:, None]
    v00 = tl.load(base + s00[None, :], mask=c_ok2 & ok00[None, :], other=0.0).to(acc_ty)
    v01 = tl.load(base + s01[None, :], mask=c_ok2 & ok01[None, :], other=0.0).to(acc_ty)
    v10 = tl.load(base + s10[None, :], mask=c_ok2 & ok10[None, :], other=0.0).to(acc_ty)
    v11 = tl.load(base + s11[None, :], mask=c_ok2 & ok11[None, :], other=0.0).to(acc_ty)
    value = v00 * w00[None, :] + v01 * w01[None, :] + v10 * w10[None, :] + v11 * w11[None, :]

    rows = (b * c_in + channel) * kh_kw + k
    col_p = columns_ptr + rows[:, None] * n_pixels + l[None, :]
    tl.store(col_p, value, mask=c_ok2 & l_ok[None, :])


def modulated_deform_conv2d_triton(
    input: Tensor,
    offset: Tensor,
    mask: Tensor,
    weight: Tensor,
    bias: Tensor | None,
    stride: list[int],
    padding: list[int],
    dilation: list[int],
    groups: int,
    deformable_groups: int,
) -> Tensor:
    """DCNv2 forward: Triton modulated im2col + grouped matmul (see the module docstring).

    Args and result as `segros::modulated_deform_conv2d` (layouts in
    segmentation_ros/ops/deform_conv.py): input [N, C_in, H, W]; offset
    [N, 2 * dg * kh * kw, H_out, W_out] as (dy, dx) pairs per kernel point; mask
    [N, dg * kh * kw, H_out, W_out]; weight [C_out, C_in / groups, kh, kw]; bias [C_out] or
    None; stride, padding, dilation: [rows, columns]. All on one CUDA device (or CPU tensors
    under TRITON_INTERPRET=1) with one floating dtype. Returns [N, C_out, H_out, W_out] in the
    input's dtype. Bad shapes raise RuntimeError with the fake kernel's messages.
    """
    h_out, w_out = _check_inputs(
        input, offset, mask, weight, bias, stride, padding, dilation, groups, deformable_groups
    )
    n, c_in, height, width = input.shape
    c_out, _, kh, kw = weight.shape
    out = input.new_empty(n, c_out, h_out, w_out)
    if out.numel() == 0:
        return out

    kh_kw, n_pixels = kh * kw, h_out * w_out
    acc_dtype = torch.float64 if input.dtype == torch.float64 else torch.float32
    kernels = weight.reshape(groups, c_out // groups, (c_in // groups) * kh_kw).to(acc_dtype)
    per_image = c_in * kh_kw * n_pixels
    chunk = n
    if per_image:
        chunk = max(1, min(n, COLUMN_BUDGET_BYTES // (per_image * kernels.element_size())))
    columns = torch.empty(chunk, c_in * kh_kw, n_pixels, dtype=acc_dtype, device=input.device)
    channels_per_dg = c_in // deformable_groups
    block_c = min(triton.next_power_of_2(max(channels_per_dg, 1)), MAX_BLOCK_C)
    block_l = min(triton.next_power_of_2(n_pixels), BLOCK_L)
    n_l_blocks = triton.cdiv(n_pixels, block_l)
    with device_guard(input):
        for start in range(0, n, chunk):
            stop = min(start + chunk, n)
            cols = columns[: stop - start]
            if per_image:
                x, off, mod = input[start:stop], offset[start:stop], mask[start:stop]
                grid = (
                    (stop - start) * deformable_groups * n_l_blocks * kh_kw,
                    triton.cdiv(channels_per_dg, block_c),
                )
                _modulated_im2col_kernel[grid](
                    x,
                    off,
                    mod,
                    cols,
                    *x.stride(),
                    *off.stride(),
                    *mod.stride(),
                    height,
                    width,
                    w_out,
                    n_pixels,
                    c_in,
                    channels_per_dg,
                    deformable_groups,
                    kh_kw,
                    kw,
                    n_l_blocks,
                    *stride,
                    *padding,
                    *dilation,
                    BLOCK_C=block_c,
                    BLOCK_L=block_l,
                )
            columns_per_group = cols.view(stop - start, groups, (c_in // groups) * kh_kw, n_pixels)
            result = torch.matmul(kernels, columns_per_group)
            if bias is not None:
                result += bias.to(acc_dtype).view(1, groups, c_out // groups, 1)
            out[start:stop] = result.view(stop - start, c_out, h_out, w_out)
    return out


__all__ = ["COLUMN_BUDGET_BYTES", "modulated_deform_conv2d_triton"]
