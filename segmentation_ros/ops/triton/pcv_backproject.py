"""Triton kernel for `segros::pcv_backproject` (see `segmentation_ros.ops.pcv_voting`).

Back-projection ("query filter"): pixel p gets the peak-region label with the most pixels in
the cell p voted for, ties to the lowest label, 0 when p abstains or the cell holds no region
pixel. The reference goes from region pixels to voters (sparse); a GPU prefers the dense,
gather-only direction: one program per block of BLOCK pixels p, each
- reads its vote k (abstain, or any value outside 0..16: the pixel gets 0) and the geometry of
  cell k (centre offset and block size) from a [17, 3] table built from
  `VoteConfig(inner_size, outer_size).cell_geometry()`;
- gathers the labels of the cell's pixels into a [BLOCK, SLOTS] tile: slot s is position
  (s // S - S // 2, s % S - S // 2) of an S x S window (S = outer_size, the largest block);
  slots outside the cell's own block or outside the image read 0 (they count for nothing);
- counts, for every slot, how many slots hold the same label (S^2 passes comparing the tile
  with one gathered column: O(S^4) compares per pixel, 81 x 16 for the default S = 3);
- takes the largest count and, among the slots reaching it, the smallest label.
No atomics and no scratch memory; the result is exactly the reference's (integers).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor

from segmentation_ros.ops.pcv_voting import VoteConfig, _check_backproject
from segmentation_ros.ops.triton._device import device_guard

__all__ = ["pcv_backproject_triton"]

# Pixels per program.
BLOCK = 128

_NO_LABEL = tl.constexpr(2**63 - 1)  # larger than every label, for the min over tied slots


@triton.jit
def _pcv_backproject_kernel(
    cells_ptr,  # int64 [B, H, W]
    regions_ptr,  # int64 [B, H, W]
    geometry_ptr,  # int32 [NUM_CELLS, 3]: centre dy, centre dx, block size; contiguous
    out_ptr,  # int64 [B, H, W], contiguous
    num_pixels,  # B * H * W
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

    # count[p, s] = slots of p's cell holding label[p, s].
    count = tl.zeros([BLOCK, SLOTS], dtype=tl.int32)
    for t in range(SIZE * SIZE):
        ty = t // SIZE - SIZE // 2
        tx = t % SIZE - SIZE // 2
        ty_p = cy + ty
        tx_p = cx + tx
        ok_t = voted & (tl.abs(ty) <= half) & (tl.abs(tx) <= half)
        ok_t = ok_t & (ty_p >= 0) & (ty_p < height) & (tx_p >= 0) & (tx_p < width)
        label_t = tl.load(region_base + ty_p * stride_rh + tx_p * stride_rw, mask=ok_t, other=0)
        count += (label == label_t[:, None]).to(tl.int32)
    count = tl.where(label > 0, count, 0)

    best = tl.max(count, axis=1)
    tied = (count == best[:, None]) & (label > 0)
    winner = tl.min(tl.where(tied, label, _NO_LABEL), axis=1)
    tl.store(out_ptr + p, tl.where(best > 0, winner, 0), mask=p_ok)


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
    _, height, width = cells.shape
    grid = (triton.cdiv(out.numel(), BLOCK),)
    with device_guard(cells):
        _pcv_backproject_kernel[grid](
            cells,
            regions,
            geometry,
            out,
            out.numel(),
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
