"""Triton kernel for `segros::pcv_backproject` (see `segmentation_ros.ops.pcv_voting`).

Back-projection: pixel p is claimed by every peak region with a pixel in the cell p voted for
(the query filter, placed on that region pixel, names p's vote at p); p gets the claiming
region whose peak (`peak_centres`: centre of its bounding box) is nearest, ties to the lowest
label; 0 when p abstains or its cell holds no region pixel. The reference places the query
filter on region pixels (sparse); a GPU prefers the equivalent dense, gather-only direction:
one program per block of BLOCK pixels p, each
- reads its vote k (abstain, or any value outside 0..16: the pixel gets 0) and the geometry of
  cell k (centre offset and block size) from a [17, 3] table built from
  `VoteConfig(inner_size, outer_size).cell_geometry()`;
- gathers the labels of the cell's pixels into a [BLOCK, SLOTS] tile: slot s is position
  (s // S - S // 2, s % S - S // 2) of an S x S window (S = outer_size, the largest block);
  slots outside the cell's own block or outside the image read 0 (no region);
- gathers the peak of each slot's label and keeps the smallest key
  squared distance * (R + 1) + label.
No atomics and no scratch memory; the result is exactly the reference's (integers).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor

from segmentation_ros.ops.pcv_voting import VoteConfig, _check_backproject, peak_centres
from segmentation_ros.ops.triton._device import device_guard

__all__ = ["pcv_backproject_triton"]

# Pixels per program.
BLOCK = 128

_NO_KEY = tl.constexpr(2**63 - 1)  # larger than every key, for the min over the slots


@triton.jit
def _pcv_backproject_kernel(
    cells_ptr,  # int64 [B, H, W]
    regions_ptr,  # int64 [B, H, W]
    geometry_ptr,  # int32 [NUM_CELLS, 3]: centre dy, centre dx, block size; contiguous
    centres_ptr,  # int64 [B, R + 1, 2]: peak (y, x) of each label; contiguous
    out_ptr,  # int64 [B, H, W], contiguous
    num_pixels,  # B * H * W
    num_labels,  # R + 1
    height,
    width,
    stride_cb,
    stride_ch,
    stride_cw,
    stride_rb,
    stride_rh,
    stride_rw,
    NUM_CELLS: tl.constexpr,
    SIZE: tl.constexpr,  # outer_size: side of the largest cell block
    SLOTS: tl.constexpr,  # next power of two >= SIZE * SIZE
    BLOCK: tl.constexpr,
):
    p = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    p_ok = p < num_pixels
    x = p % width
    y = (p // width) % height
    b = p // (width * height)
    cell = tl.load(cells_ptr + b * stride_cb + y * stride_ch + x * stride_cw, mask=p_ok, other=-1)
    voted = p_ok & (cell >= 0) & (cell < NUM_CELLS)
    geometry = geometry_ptr + tl.where(voted, cell, 0) * 3
    cy = y + tl.load(geometry, mask=voted, other=0)  # cell centre
    cx = x + tl.load(geometry + 1, mask=voted, other=0)
    half = tl.load(geometry + 2, mask=voted, other=1) // 2
    region_base = regions_ptr + b * stride_rb

    # Labels of the cell's pixels, one slot per position of the SIZE x SIZE window.
    s = tl.arange(0, SLOTS)
    sy = s // SIZE - SIZE // 2
    sx = s % SIZE - SIZE // 2
    qy = cy[:, None] + sy[None, :]
    qx = cx[:, None] + sx[None, :]
    in_cell = (tl.abs(sy)[None, :] <= half[:, None]) & (tl.abs(sx)[None, :] <= half[:, None])
    ok = voted[:, None] & (s < SIZE * SIZE)[None, :] & in_cell
    ok = ok & (qy >= 0) & (qy < height) & (qx >= 0) & (qx < width)
    label = tl.load(region_base[:, None] + qy * stride_rh + qx * stride_rw, mask=ok, other=0)
    label = tl.where(label > 0, label, 0)  # 0 = no region (negative ids count as none)

    # Nearest peak among the labels in the cell, ties to the lowest label.
    centre = centres_ptr + (b[:, None] * num_labels + label) * 2
    has = label > 0
    py = tl.load(centre, mask=has, other=0)
    px = tl.load(centre + 1, mask=has, other=0)
    dy = y[:, None] - py
    dx = x[:, None] - px
    key = (dy * dy + dx * dx) * num_labels + label
    best = tl.min(tl.where(has, key, _NO_KEY), axis=1)
    tl.store(out_ptr + p, tl.where(best < _NO_KEY, best % num_labels, 0), mask=p_ok)


def pcv_backproject_triton(
    cells: Tensor, regions: Tensor, num_regions: int, inner_size: int, outer_size: int
) -> Tensor:
    """`segros::pcv_backproject` on the GPU: same contract and result as
    `pcv_backproject_reference`. cells, regions: [B, H, W] int64 (any strides); regions
    labels 0 (none) .. num_regions. Returns [B, H, W] int64 labels on the inputs' device."""
    _check_backproject(cells, regions, num_regions, inner_size, outer_size)
    config = VoteConfig(inner_size, outer_size)
    out = torch.zeros(cells.shape, dtype=torch.int64, device=cells.device)
    if out.numel() == 0 or num_regions == 0:
        return out
    geometry = torch.tensor(config.cell_geometry(), dtype=torch.int32).to(cells.device)
    centres = peak_centres(regions, num_regions).contiguous()
    _, height, width = cells.shape
    grid = (triton.cdiv(out.numel(), BLOCK),)
    with device_guard(cells):
        _pcv_backproject_kernel[grid](
            cells,
            regions,
            geometry,
            centres,
            out,
            out.numel(),
            num_regions + 1,
            height,
            width,
            *cells.stride(),
            *regions.stride(),
            NUM_CELLS=config.num_cells,
            SIZE=outer_size,
            SLOTS=triton.next_power_of_2(outer_size * outer_size),
            BLOCK=BLOCK,
        )
    return out
