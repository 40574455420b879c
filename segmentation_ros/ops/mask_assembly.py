"""YOLACT mask assembly (`segros::assemble_masks`) and mask upsampling restricted to regions.

Assembly (official `postprocess`): masks = sigmoid(P @ C^T) with prototypes P [Hp, Wp, k] and
coefficients C [N, k], then "crop": every pixel outside the detection's box (grown by `padding`
prototype pixels, official padding = 1) is set to 0. The box -> pixel rule is the official
`sanitize_coordinates(cast=False)` + `crop`: with x1r <= x2r the relative box,
    x1 = max(x1r * Wp - padding, 0),  x2 = min(x2r * Wp + padding, Wp)   (floats)
and prototype column u (pixel centre not used) is inside when x1 <= u < x2; rows likewise.
We compute C @ P^T directly in the [N, Hp * Wp] layout (the official [Hp * Wp, N] layout then
needs a transposing copy that costs more than the matmul); the BLAS may round these sums
differently in the last bit. Sigmoid and crop are exact equivalents of the official ones.

Upsampling (`render_masks`): the official postprocess upsamples every mask to the image size
(`F.interpolate(bilinear, align_corners=False)`) and thresholds it (> 0.5). `render_masks`
gives the same binary masks, but computes only the output pixels that can exceed the
threshold: those whose bilinear sources include a prototype pixel above it. It reproduces
PyTorch's CPU bilinear kernel arithmetic (source index `scale * (dst + 0.5) - 0.5` and the
blend `t0 * w0 + t1 * w1`, both evaluated with a fused multiply-add as the AVX2/AVX512 builds
do), which makes its thresholded result bit-identical to thresholding `F.interpolate`
whenever PyTorch runs its generic NCHW kernel (output height + width > 128, and not exactly
3 masks with 1 thread). In the other cases (and on CUDA, whose kernel is not bit-checked here)
a probability may differ in its last bit, which changes a pixel only when it lies within
~1e-7 of the threshold.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

__all__ = [
    "RenderedMasks",
    "assemble_masks",
    "assemble_masks_reference",
    "bilinear_source_indices",
    "crop_bounds",
    "crop_windows",
    "render_masks",
]


# ----------------------------------------------------------------------------------------------
# Crop and assembly


def crop_bounds(
    boxes: Tensor, height: int, width: int, padding: int = 1
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Official crop bounds (x1, x2, y1, y2), floats in prototype pixels, each [N].

    boxes: [N, 4] relative (x1, y1, x2, y2), unclamped (the decoded boxes). A pixel (u, v) is
    inside when x1 <= u < x2 and y1 <= v < y2.
    """
    x1, x2 = _sanitize(boxes[:, 0], boxes[:, 2], width, padding)
    y1, y2 = _sanitize(boxes[:, 1], boxes[:, 3], height, padding)
    return x1, x2, y1, y2


def _sanitize(a: Tensor, b: Tensor, size: int, padding: int) -> tuple[Tensor, Tensor]:
    # Official sanitize_coordinates(cast=False): scale, order, pad, clamp (one side each).
    a = a * size
    b = b * size
    lo = torch.clamp(torch.min(a, b) - padding, min=0)
    hi = torch.clamp(torch.max(a, b) + padding, max=size)
    return lo, hi


def crop_windows(boxes: Tensor, height: int, width: int, padding: int = 1) -> tuple[Tensor, Tensor]:
    """Official crop windows as separable indicators: rows [N, Hp] and cols [N, Wp] bool.

    A pixel (u, v) of mask n is kept when `rows[n, v] and cols[n, u]` (see `crop_bounds`).
    """
    x1, x2, y1, y2 = crop_bounds(boxes, height, width, padding)
    cols = torch.arange(width, device=boxes.device, dtype=x1.dtype)
    rows = torch.arange(height, device=boxes.device, dtype=y1.dtype)
    col_in = (cols >= x1[:, None]) & (cols < x2[:, None])
    row_in = (rows >= y1[:, None]) & (rows < y2[:, None])
    return row_in, col_in


def assemble_masks_reference(
    proto: Tensor, coef: Tensor, boxes: Tensor | None, padding: int
) -> Tensor:
    """Pure PyTorch assembly -> [N, Hp, Wp]: the official operations (matmul, sigmoid, multiply
    by the crop indicator), computed in the [N, Hp, Wp] layout directly. The official code
    multiplies [Hp * Wp, k] by [k, N] and permutes; we multiply [N, k] by [k, Hp * Wp], which
    is the same sum of k products per pixel, possibly rounded differently by the BLAS in the
    last bit (measured: <= 2e-6 in a logit). Sigmoid and crop are then exact equivalents.
    """
    height, width, k = proto.shape
    masks = torch.mm(coef, proto.reshape(height * width, k).t()).view(coef.shape[0], height, width)
    masks = masks.sigmoid_()
    if boxes is not None:
        row_in, col_in = crop_windows(boxes, height, width, padding)
        masks = masks.mul_(row_in[:, :, None].to(masks.dtype)).mul_(
            col_in[:, None, :].to(masks.dtype)
        )
    return masks


def _check_assembly_inputs(proto: Tensor, coef: Tensor, boxes: Tensor | None) -> None:
    torch._check(proto.dim() == 3, lambda: f"proto must be [Hp, Wp, k], got {tuple(proto.shape)}")
    torch._check(coef.dim() == 2, lambda: f"coef must be [N, k], got {tuple(coef.shape)}")
    torch._check(
        proto.shape[2] == coef.shape[1],
        lambda: f"proto has k={proto.shape[2]} prototypes but coef has {coef.shape[1]}",
    )
    torch._check(
        proto.dtype == coef.dtype and proto.dtype.is_floating_point,
        lambda: f"proto and coef must share a floating dtype, got {proto.dtype}, {coef.dtype}",
    )
    if boxes is not None:
        torch._check(
            boxes.dim() == 2 and boxes.shape[1] == 4 and boxes.shape[0] == coef.shape[0],
            lambda: f"boxes must be [N, 4] with N={coef.shape[0]}, got {tuple(boxes.shape)}",
        )


@torch.library.custom_op("segros::assemble_masks", mutates_args=())
def _assemble_masks_op(proto: Tensor, coef: Tensor, boxes: Tensor | None, padding: int) -> Tensor:
    # A fused Triton kernel (matmul + sigmoid + crop, writing only the crop window) can be
    # registered for CUDA with `_assemble_masks_op.register_kernel("cuda")`.
    return assemble_masks_reference(proto, coef, boxes, padding)


@_assemble_masks_op.register_fake
def _assemble_masks_fake(proto: Tensor, coef: Tensor, boxes: Tensor | None, padding: int) -> Tensor:
    _check_assembly_inputs(proto, coef, boxes)
    return proto.new_empty((coef.shape[0], proto.shape[0], proto.shape[1]))


# Export: mask assembly runs in the postprocess, outside the exported network graph, so no ONNX
# translation is registered. If it moves into a graph, its translation (MatMul, Sigmoid and a
# Less/GreaterOrEqual crop window) goes here, and the TensorRT plugin built from the Triton
# kernel is registered next to it.


def assemble_masks(
    proto: Tensor, coef: Tensor, boxes: Tensor | None = None, *, padding: int = 1
) -> Tensor:
    """Assemble YOLACT masks: sigmoid(proto @ coef^T), cropped to the boxes.

    proto:   [Hp, Wp, k] float prototypes (channels last, after ReLU).
    coef:    [N, k] mask coefficients (after tanh), same dtype as proto.
    boxes:   [N, 4] relative (x1, y1, x2, y2) decoded boxes (not clamped), or None: no crop.
    padding: crop margin in prototype pixels (official: 1).
    Returns [N, Hp, Wp] probabilities, zero outside each crop window; device of the inputs.
    """
    if proto.dim() != 3:
        raise ValueError(f"proto must be [Hp, Wp, k], got {tuple(proto.shape)}")
    if coef.dim() != 2 or coef.shape[1] != proto.shape[2]:
        raise ValueError(f"coef must be [N, k={proto.shape[2]}], got {tuple(coef.shape)}")
    if not proto.dtype.is_floating_point or coef.dtype != proto.dtype:
        raise TypeError(
            f"proto and coef must share a floating dtype, got {proto.dtype}, {coef.dtype}"
        )
    if boxes is not None and (boxes.dim() != 2 or boxes.shape != (coef.shape[0], 4)):
        raise ValueError(f"boxes must be [N={coef.shape[0]}, 4], got {tuple(boxes.shape)}")
    if padding < 0:
        raise ValueError(f"padding must be >= 0, got {padding}")
    if boxes is not None:
        boxes = boxes.to(proto.dtype)
    return torch.ops.segros.assemble_masks(proto, coef, boxes, int(padding))


# ----------------------------------------------------------------------------------------------
# Region-restricted bilinear upsampling + threshold


def bilinear_source_indices(
    out_size: int, in_size: int, device: torch.device | str | None = None
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Sources and weights of bilinear resampling (align_corners=False), PyTorch's numerics.

    Returns (i0, i1, w0, w1), each [out_size]: output index d reads inputs i0[d] and i1[d]
    (int64, non-decreasing in d) with float32 weights w0[d], w1[d]. The source coordinate
    `scale * (d + 0.5) - 0.5` is evaluated as a fused multiply-add (exact in float64, rounded
    once to float32) like the compiled CPU kernel.
    """
    if out_size == in_size:
        idx = torch.arange(out_size, device=device)
        ones = torch.ones(out_size, dtype=torch.float32, device=device)
        return idx, idx, ones, torch.zeros_like(ones)
    scale = torch.tensor(in_size, dtype=torch.float32) / torch.tensor(out_size, dtype=torch.float32)
    dst = torch.arange(out_size, dtype=torch.float64, device=device) + 0.5
    src = (dst * scale.double().item() - 0.5).to(torch.float32).clamp_(min=0)
    i0 = src.floor().long().clamp_(max=in_size - 1)
    w1 = (src - i0.to(torch.float32)).clamp_(0, 1)
    w0 = 1 - w1
    i1 = torch.where(i0 < in_size - 1, i0 + 1, i0)
    return i0, i1, w0, w1


def _fma_blend(a: Tensor, wa: Tensor, b: Tensor, wb: Tensor) -> Tensor:
    """float32 fma(a, wa, b * wb): a * wa is exact in float64, then one rounding to float32."""
    return torch.addcmul((b * wb).double(), a.double(), wa.double()).to(torch.float32)


class RenderedMasks(NamedTuple):
    """Binary masks at image resolution, one tight crop per mask.

    rois:      [N, 4] int64 (x, y, w, h) in image pixels, the tight box of the mask's pixels
               ((0, 0, 0, 0) for an empty mask).
    crops:     N bool tensors [h_i, w_i] (views, possibly not contiguous).
    crops_u8:  the same as uint8 0 / 255 views (empty list unless asked for).
    areas:     [N] int64 foreground pixel counts.
    centroids: [N, 2] float32 (x, y): mean of the pixel centres (u + 0.5, v + 0.5); NaN if empty.
    """

    rois: Tensor
    crops: list[Tensor]
    crops_u8: list[Tensor]
    areas: Tensor
    centroids: Tensor


# Bound on |float32 plain blend - kernel's fused blend| for values in [0, 1]: a few ulp of 1.
_AMBIGUITY = 4e-6


def render_masks(
    mask_probs: Tensor,
    image_size: tuple[int, int],
    threshold: float = 0.5,
    *,
    chunk_pixels: int = 1 << 18,
    uint8: bool = False,
) -> RenderedMasks:
    """Threshold the bilinear upsampling of masks to the image, computed only where needed.

    mask_probs: [N, Hp, Wp] float probabilities in [0, 1]; the prototype frame spans the image.
    image_size: (H, W) of the image.
    threshold: a pixel is foreground when its upsampled probability is > threshold.
    chunk_pixels: masks are processed in chunks (by decreasing region width, padded to the
        widest); a chunk takes the next mask while it stays under this many padded pixels
        (cache-sized) and wastes at most as many pixels on padding as it uses.
    uint8: also return the crops as uint8 0 / 255 (`crops_u8`).
    Equals `F.interpolate(mask_probs[None], (H, W), mode="bilinear") > threshold` (see the
    module docstring for when this is bit-exact), returned as tight crops.

    How: only output pixels whose bilinear sources meet a prototype pixel above the threshold
    are computed (a separable pass over the rows of all masks of a chunk at once). The blend
    is evaluated in plain float32; the few pixels within `_AMBIGUITY` of the threshold are
    recomputed with the kernel's exact fused arithmetic.
    """
    if mask_probs.dim() != 3:
        raise ValueError(f"mask_probs must be [N, Hp, Wp], got {tuple(mask_probs.shape)}")
    if not 0.0 < threshold < 1.0:
        raise ValueError(f"threshold must be in (0, 1), got {threshold}")
    height, width = (int(v) for v in image_size)
    if height < 1 or width < 1:
        raise ValueError(f"image_size must be (H, W) >= 1, got {tuple(image_size)}")
    device = mask_probs.device
    n, hp, wp = mask_probs.shape
    rois = torch.zeros((n, 4), dtype=torch.int64, device=device)
    areas = torch.zeros(n, dtype=torch.int64, device=device)
    centroids = torch.full((n, 2), float("nan"), dtype=torch.float32, device=device)
    crops = [torch.zeros((0, 0), dtype=torch.bool, device=device)] * n
    crops_u8 = [torch.zeros((0, 0), dtype=torch.uint8, device=device)] * n if uint8 else []
    if n == 0 or hp == 0 or wp == 0:
        return RenderedMasks(rois, crops, crops_u8, areas, centroids)

    probs = mask_probs.to(torch.float32).contiguous()
    ytab = _Table.build(height, hp, device)
    xtab = _Table.build(width, wp, device)

    # Prototype pixels that can lift an output pixel above the threshold: a convex blend of
    # values <= threshold - 2 * _AMBIGUITY stays below it whatever the rounding.
    floor = threshold - 2 * _AMBIGUITY
    row_any = probs.amax(dim=2) > floor
    # A column can pass only through a row that passes: reduce over those rows alone.
    det, row = row_any.nonzero(as_tuple=True)
    col_max = probs.new_full((n, wp), float("-inf"))
    col_max.scatter_reduce_(0, det[:, None].expand(-1, wp), probs[det, row], "amax")
    col_any = col_max > floor
    has = row_any.any(dim=1)
    # Output rows / columns whose two sources meet the extent (sources are non-decreasing).
    oy0 = torch.searchsorted(ytab.i1, _first_true(row_any))
    oy1 = torch.searchsorted(ytab.i0, hp - 1 - _first_true(row_any.flip(1)), right=True)
    ox0 = torch.searchsorted(xtab.i1, _first_true(col_any))
    ox1 = torch.searchsorted(xtab.i0, wp - 1 - _first_true(col_any.flip(1)), right=True)
    hr = torch.where(has, oy1 - oy0, 0)
    wr = torch.where(has, ox1 - ox0, 0)

    count = int(has.sum())
    order = torch.argsort(wr, descending=True, stable=True)[:count]
    for idx in _chunks(order, hr[order].tolist(), wr[order].tolist(), chunk_pixels):
        chunk = _Chunk(probs, idx, oy0[idx], ox0[idx], hr[idx], wr[idx], ytab, xtab)
        chunk.collect(chunk.threshold(threshold), rois, crops, crops_u8, areas, centroids)
    return RenderedMasks(rois, crops, crops_u8, areas, centroids)


class _Table(NamedTuple):
    """`bilinear_source_indices` of one axis, also stacked: index [S, 2], weight [S, 2]."""

    i0: Tensor
    i1: Tensor
    w0: Tensor
    w1: Tensor
    index: Tensor
    weight: Tensor

    @staticmethod
    def build(out_size: int, in_size: int, device: torch.device) -> _Table:
        i0, i1, w0, w1 = bilinear_source_indices(out_size, in_size, device)
        return _Table(i0, i1, w0, w1, torch.stack([i0, i1], 1), torch.stack([w0, w1], 1))


def _chunks(order: Tensor, heights: list[int], widths: list[int], limit: int) -> list[Tensor]:
    """Split `order` (masks by decreasing region width) into runs of at most `limit` pixels
    once padded to the run's first (widest) region, padding at most doubling the work."""
    runs, start, rows, pixels = [], 0, 0, 0
    for i, (h, w) in enumerate(zip(heights, widths)):
        padded = (rows + h) * widths[start]
        if i > start and (padded > limit or padded > 2 * (pixels + h * w) + limit // 8):
            runs.append(order[start:i])
            start, rows, pixels = i, 0, 0
        rows += h
        pixels += h * w
    if start < len(heights):
        runs.append(order[start:])
    return runs


def _first_true(flags: Tensor) -> Tensor:
    """Index of the first True along dim 1 (0 if none)."""
    return flags.to(torch.uint8).argmax(dim=1)


def _segment_sum(values: Tensor, segment: Tensor, num_segments: int) -> Tensor:
    return values.new_zeros((num_segments, *values.shape[1:])).index_add_(0, segment, values)


class _Chunk:
    """The regions of a few masks, flattened as rows of a common width Wr.

    Output row j belongs to mask `det[j]` (0..k-1 within the chunk), is image row `y[j]` and
    covers image columns `ox[det[j]] + [0, Wr)`, valid below `w[det[j]]`. The rows of mask d
    are `row_start[d] + [0, h[d])`.
    """

    def __init__(self, probs, idx, oy, ox, h, w, ytab: _Table, xtab: _Table) -> None:
        device = probs.device
        self.probs, self.idx, self.oy, self.ox, self.h, self.w = probs, idx, oy, ox, h, w
        self.ytab, self.xtab = ytab, xtab
        k = idx.shape[0]
        self.wr = int(w.max())
        self.det = torch.repeat_interleave(torch.arange(k, device=device), h)
        self.row_start = torch.cumsum(h, 0) - h
        self.local = torch.arange(self.det.shape[0], device=device) - self.row_start[self.det]
        self.y = oy[self.det] + self.local
        cols = torch.arange(self.wr, device=device)
        self.valid = cols < w[:, None]  # [k, Wr]
        self.x = (ox[:, None] + cols).clamp_(max=xtab.i0.shape[0] - 1)  # [k, Wr]

    def threshold(self, threshold: float) -> Tensor:
        """[R, Wr] bool: upsampled probability > threshold (False in padded columns)."""
        probs, det, device = self.probs, self.det, self.probs.device
        k, wr = self.idx.shape[0], self.wr
        hp, wp = probs.shape[1:]
        yidx, yw = self.ytab.index[self.y], self.ytab.weight[self.y]  # [R, 2]
        xt = self.xtab
        x0, x1, wx0, wx1 = xt.i0[self.x], xt.i1[self.x], xt.w0[self.x], xt.w1[self.x]  # [k, Wr]
        # Padded columns get zero weights: they blend to 0, never above the threshold.
        wx0, wx1 = wx0 * self.valid, wx1 * self.valid

        # Horizontal pass over the prototype rows each mask reads: [k, nr, Wr], nr the most
        # rows any mask of the chunk reads (masks that read fewer repeat their last row).
        first = yidx[self.row_start, 0]
        nrows = yidx[self.row_start + self.h - 1, 1] - first + 1
        nr = int(nrows.max())
        rows = (first[:, None] + torch.arange(nr, device=device)).clamp_(max=hp - 1)
        src = probs.view(-1, wp).index_select(0, (self.idx[:, None] * hp + rows).view(-1))
        src = src.view(k, nr, wp)
        horiz = torch.gather(src, 2, x0[:, None, :].expand(k, nr, wr)).mul_(wx0[:, None, :])
        right = torch.gather(src, 2, x1[:, None, :].expand(k, nr, wr))
        horiz = horiz.addcmul_(right, wx1[:, None, :]).view(k * nr, wr)

        # Vertical pass: whole rows of `horiz` (memcpy gathers), blended in plain float32.
        base = (torch.arange(k, device=device) * nr - first)[det]
        value = horiz.index_select(0, base + yidx[:, 0]).mul_(yw[:, :1])
        value.addcmul_(horiz.index_select(0, base + yidx[:, 1]), yw[:, 1:])
        value.sub_(threshold)
        binary = value > 0
        # The few pixels close to the threshold: the kernel's exact fused arithmetic.
        near = value.abs_()
        close_rows = (near.amin(dim=1) < _AMBIGUITY).nonzero().squeeze(1)
        if close_rows.numel():
            r, c = (near[close_rows] < _AMBIGUITY).nonzero(as_tuple=True)
            r = close_rows[r]
            keep = self.valid[det[r], c]
            r, c = r[keep], c[keep]
            binary[r, c] = self._exact(r, c) > threshold
        return binary

    def _exact(self, rows: Tensor, cols: Tensor) -> Tensor:
        d = self.det[rows]
        hp, wp = self.probs.shape[1:]
        flat = self.probs.view(-1)
        base = self.idx[d] * (hp * wp)
        y, x, yt, xt = self.y[rows], self.x[d, cols], self.ytab, self.xtab
        y0, y1, wy0, wy1 = yt.i0[y], yt.i1[y], yt.w0[y], yt.w1[y]
        x0, x1, wx0, wx1 = xt.i0[x], xt.i1[x], xt.w0[x], xt.w1[x]
        top = _fma_blend(flat[base + y0 * wp + x0], wx0, flat[base + y0 * wp + x1], wx1)
        bottom = _fma_blend(flat[base + y1 * wp + x0], wx0, flat[base + y1 * wp + x1], wx1)
        return _fma_blend(top, wy0, bottom, wy1)

    def collect(self, binary: Tensor, rois, crops, crops_u8, areas, centroids) -> None:
        """Tight rois, crop views, areas and centroids of the chunk's masks."""
        k, wr, det, device = self.idx.shape[0], self.wr, self.det, binary.device
        # Per row: pixel count, sum of columns, last column + 1, Wr - first column (int16
        # products and int32 sums are the cheap passes here; the last two are 0 in empty rows).
        bits = binary.to(torch.int16)
        cols1 = torch.arange(1, wr + 1, dtype=torch.int16, device=device)
        weighted = bits * cols1
        count = bits.sum(dim=1, dtype=torch.int32)
        col_sum = weighted.sum(dim=1, dtype=torch.int32) - count
        last1 = weighted.amax(dim=1)
        first_rev = (bits * cols1.flip(0)).amax(dim=1)

        # Per mask, with one reduction each: first row / column (amin), last row / column + 1
        # (amax); sums of counts and coordinates (float64: exact for any image size).
        hit = (count > 0)[:, None]
        big = torch.iinfo(torch.int64).max
        low = torch.stack([self.local, wr - first_rev.long()], dim=1)
        low = torch.full((k, 2), big, device=device).scatter_reduce_(
            0, det[:, None].expand(-1, 2), torch.where(hit, low, big), "amin"
        )
        high = torch.stack([self.local + 1, last1.long()], dim=1)
        high = torch.zeros((k, 2), dtype=torch.int64, device=device).scatter_reduce_(
            0, det[:, None].expand(-1, 2), torch.where(hit, high, 0), "amax"
        )
        count = count.double()
        row_x = col_sum.double() + count * (self.ox[det].double() + 0.5)
        row_y = count * (self.y.double() + 0.5)
        sums = _segment_sum(torch.stack([count, row_y, row_x], dim=1), det, k)
        area = sums[:, 0].long()
        nonempty = (area > 0)[:, None]
        low = torch.where(nonempty, low, 0)
        high = torch.where(nonempty, high, 0)

        roi = torch.stack([self.ox + low[:, 1], self.oy + low[:, 0]], dim=1)
        rois[self.idx] = torch.where(
            nonempty, torch.cat([roi, high - low], dim=1)[:, [0, 1, 3, 2]], 0
        )
        areas[self.idx] = area
        centroids[self.idx] = (sums[:, [2, 1]] / sums[:, :1]).float()
        # Crops as strided views of the chunk's buffer (fresh and contiguous: storage offset 0),
        # made with one `as_strided` call each (cheaper than slicing twice).
        offset = (self.row_start + low[:, 0]) * wr + low[:, 1]
        views = torch.cat([high - low, offset[:, None]], dim=1).tolist()
        stride = (wr, 1)
        for i, (h, w, start) in zip(self.idx.tolist(), views):
            crops[i] = binary.as_strided((h, w), stride, start)
        if crops_u8:
            as_u8 = binary.to(torch.uint8).mul_(255)
            for i, (h, w, start) in zip(self.idx.tolist(), views):
                crops_u8[i] = as_u8.as_strided((h, w), stride, start)
