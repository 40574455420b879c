"""The "logits" upsampling of UPSNet's fusion (`panoptic.fusion`, `upsample="logits"`): the
argmax of the panoptic logits upsampled bilinearly (align_corners=False) to the image, every
instance cropped to its box at image pixels, computed exactly but interpolated only near segment
borders and box edges; and the brute-force reference it is tested against.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

FINITE_LOW = -1.0e4  # stands for -inf where values are interpolated (logits mode)
_CROPPED = -1.0e6  # interpolated logit of a candidate cropped away (below any finite one)


def box_masks(boxes: Tensor, grid: tuple[int, int], image_size: tuple[int, int]) -> Tensor:
    """[N, gh, gw] bool: grid pixel centres (in image pixels) inside each box."""
    gh, gw = grid
    height, width = image_size
    ys = (torch.arange(gh, device=boxes.device, dtype=torch.float32) + 0.5) * (height / gh)
    xs = (torch.arange(gw, device=boxes.device, dtype=torch.float32) + 0.5) * (width / gw)
    in_y = (ys[None, :] >= boxes[:, 1:2]) & (ys[None, :] < boxes[:, 3:4])  # [N, gh]
    in_x = (xs[None, :] >= boxes[:, 0:1]) & (xs[None, :] < boxes[:, 2:3])  # [N, gw]
    return in_y[:, :, None] & in_x[:, None, :]


def _cell_runs(out_size: int, in_size: int, device: torch.device) -> tuple[Tensor, ...]:
    """Bilinear sampling (align_corners=False) along one axis, grouped by cell.

    Output pixel p samples at src = (p + 0.5) * in / out - 0.5 between fusion pixels
    i = floor(src) and i + 1 (both clamped to [0, in - 1]) with weight src - i on the second;
    cell i + 1 in [0, in] is the run of output pixels sharing i (cells 0 and `in` are the
    clamped borders, where both taps are the same pixel). Returns first tap [out] int64
    (PyTorch's, clamped), weight [out] float32, run start [in + 1] and run length [in + 1].
    """
    src = (torch.arange(out_size, device=device, dtype=torch.float64) + 0.5) * (in_size / out_size)
    i = (src - 0.5).floor().long()
    weight = (src - 0.5 - i).float()
    count = torch.bincount(i + 1, minlength=in_size + 1)
    start = torch.cumsum(count, 0) - count
    return i.clamp(min=0), weight, start, count


def upsampled_argmax(
    logits: Tensor,
    labels: Tensor,
    boxes: Tensor,
    num_stuff: int,
    image_size: tuple[int, int],
) -> Tensor:
    """[H, W] argmax of the bilinearly upsampled panoptic logits with every instance channel
    cropped to its box at image pixels: equal to `argmax_full_resolution` (up to rounding at
    exact ties) but interpolates only near coarse borders and box edges.

    Work is organised by cell: the image pixels whose bilinear samples mix the same 2 x 2 fusion
    pixels (a ~stride x stride block, see `_cell_runs`). If those fusion pixels share the coarse
    argmax k, every sample in the cell has argmax k (a convex combination of vectors whose
    largest entry is entry k has its largest entry at k), unless k is an instance whose box does
    not hold the whole cell. Only the other cells are interpolated, and in them only the channels
    that can win (see `_candidates`).
    """
    num_channels, h, w = logits.shape
    height, width = image_size
    num_inst = int(boxes.shape[0])
    device = logits.device
    y0, wy, row_start, row_count = _cell_runs(height, h, device)
    x0, wx, col_start, col_count = _cell_runs(width, w, device)
    out = labels.index_select(0, y0).index_select(1, x0)

    # Cell (a, b) mixes fusion rows a - 1, a and cols b - 1, b (clamped): [h + 1, w + 1].
    pad_rows = torch.arange(-1, h + 1, device=device).clamp(0, h - 1)
    pad_cols = torch.arange(-1, w + 1, device=device).clamp(0, w - 1)
    lp = labels.index_select(0, pad_rows).index_select(1, pad_cols)
    cell_label = lp[:-1, :-1]
    settled = (cell_label == lp[1:, :-1]) & (cell_label == lp[:-1, 1:]) & (cell_label == lp[1:, 1:])
    if num_inst:
        inst = cell_label - num_stuff
        b = boxes[inst.clamp(0, num_inst - 1)]  # [h + 1, w + 1, 4]
        top = (row_start + 0.5)[:, None]
        bottom = (row_start + row_count - 0.5)[:, None]
        left = (col_start + 0.5)[None, :]
        right = (col_start + col_count - 0.5)[None, :]
        holds = (
            (left >= b[..., 0]) & (right < b[..., 2]) & (top >= b[..., 1]) & (bottom < b[..., 3])
        )
        settled &= holds | (inst < 0) | (inst >= num_inst)
    settled |= (row_count == 0)[:, None] | (col_count == 0)[None, :]
    ci, cj = (~settled).nonzero(as_tuple=True)
    if ci.numel() == 0:
        return out

    rows = ((ci - 1).clamp(min=0), ci.clamp(max=h - 1))
    cols = ((cj - 1).clamp(min=0), cj.clamp(max=w - 1))
    chan, values = _candidates(logits, rows, cols, num_stuff, num_inst)  # [M, P], [M, 4, P]
    values = values.masked_fill((chan == num_channels)[:, None, :], _CROPPED)  # padding

    # Pixel blocks of the cells, padded to the longest run: rows rr [M, R], cols cc [M, Q].
    rr = row_start[ci, None] + torch.arange(int(row_count.max()), device=device)
    cc = col_start[cj, None] + torch.arange(int(col_count.max()), device=device)
    r_ok = rr < (row_start + row_count)[ci, None]
    c_ok = cc < (col_start + col_count)[cj, None]
    rr, cc = rr.clamp(max=height - 1), cc.clamp(max=width - 1)
    lx = wx[cc][:, None, :]  # [M, 1, Q]
    top = torch.lerp(values[:, 0, :, None], values[:, 1, :, None], lx)  # [M, P, Q]
    bottom = torch.lerp(values[:, 2, :, None], values[:, 3, :, None], lx)
    row_out = None
    if num_inst:
        inst = chan - num_stuff
        is_inst = ((inst >= 0) & (inst < num_inst))[..., None]
        b = boxes[inst.clamp(0, num_inst - 1)]  # [M, P, 4]
        py, px = (rr + 0.5)[:, None, :], (cc + 0.5)[:, None, :]
        col_out = is_inst & ((px < b[..., 0:1]) | (px >= b[..., 2:3]))  # [M, P, Q]
        row_out = is_inst & ((py < b[..., 1:2]) | (py >= b[..., 3:4]))  # [M, P, R]
        top = top.masked_fill(col_out, _CROPPED)
        bottom = bottom.masked_fill(col_out, _CROPPED)
    ly = wy[rr][:, None, :, None]  # [M, 1, R, 1]
    v = torch.lerp(top[:, :, None, :], bottom[:, :, None, :], ly)  # [M, P, R, Q]
    if row_out is not None:
        v.masked_fill_(row_out[..., None], _CROPPED)
    best = v.max(1).indices  # [M, R, Q] (max(dim) is much faster than argmax(dim) here)
    winner = torch.gather(chan, 1, best.flatten(1)).view(best.shape)
    # Write the winners; padding positions of the blocks go to a spare last element.
    flat = (rr * width)[:, :, None] + cc[:, None, :]
    flat = torch.where(r_ok[:, :, None] & c_ok[:, None, :], flat, height * width)
    spare = out.new_zeros(1)
    out_flat = torch.cat([out.flatten(), spare]).index_put_((flat.flatten(),), winner.flatten())
    out = out_flat[:-1].view(height, width)
    return out


def _candidates(
    logits: Tensor,
    rows: tuple[Tensor, Tensor],
    cols: tuple[Tensor, Tensor],
    num_stuff: int,
    num_inst: int,
) -> tuple[Tensor, Tensor]:
    """Channels that can win somewhere in the cells with fusion rows `rows` and cols `cols`
    ([M] each), and their 2 x 2 support values.

    An interpolated value of channel m in the cell is at most its largest support value; the
    winner's value is at least max over the non-instance channels k (never cropped) of k's
    smallest support value. Channels whose largest support value is below that bound cannot win.
    Returns chan [M, P] int64 in increasing order (so that ties go to the lower channel, as with
    a full argmax), padded with C, and values [M, 4, P] at corners (r0, c0), (r0, c1), (r1, c0),
    (r1, c1).
    """
    num_channels, h, w = logits.shape
    table = logits.clamp_min(FINITE_LOW).permute(1, 2, 0).reshape(h * w, num_channels)
    (r0, r1), (c0, c1) = rows, cols
    support = torch.stack(
        [table[r0 * w + c0], table[r0 * w + c1], table[r1 * w + c0], table[r1 * w + c1]], 1
    )  # [M, 4, C]
    upper = support.amax(1)
    never_cropped = torch.ones(num_channels, dtype=torch.bool, device=logits.device)
    never_cropped[num_stuff : num_stuff + num_inst] = False
    # A void or unknown channel always exists when S = 0 (see `_panoptic_logits`).
    lower = support.amin(1)[:, never_cropped].amax(1, keepdim=True)
    candidate = upper >= lower
    slot = torch.cumsum(candidate, 1) - 1  # position of each candidate in its cell's list
    num_cand = int(slot[:, -1].max()) + 1
    # Non-candidates are all written to a spare last column, dropped afterwards.
    chan = torch.full((upper.shape[0], num_cand + 1), num_channels, device=logits.device)
    index = torch.arange(num_channels, device=logits.device).expand_as(candidate)
    chan.scatter_(1, torch.where(candidate, slot, num_cand), index)
    chan = chan[:, :num_cand]
    values = torch.gather(
        support, 2, chan.clamp(max=num_channels - 1)[:, None, :].expand(-1, 4, -1)
    )
    return chan, values


def argmax_full_resolution(
    logits: Tensor,
    boxes: Tensor,
    num_stuff: int,
    num_inst: int,
    image_size: tuple[int, int],
) -> Tensor:
    """Reference for `upsampled_argmax`: upsample every channel, crop, argmax (slow)."""
    finite = logits.clamp_min(FINITE_LOW)
    up = F.interpolate(finite[None], size=image_size, mode="bilinear", align_corners=False)[0]
    if num_inst:
        inside = box_masks(boxes, image_size, image_size)
        inst = up[num_stuff : num_stuff + num_inst]
        up[num_stuff : num_stuff + num_inst] = torch.where(inside, inst, float("-inf"))
    return up.argmax(0)
