"""UPSNet's parameter-free panoptic head: semantic logits + instance masks -> `PanopticResult`.

Reference: Xiong et al., "UPSNet: A Unified Panoptic Segmentation Network", CVPR 2019, Sec. 3.3
(panoptic segmentation head) and the authors' code (uber-research/UPSNet,
`upsnet/models/resnet_upsnet.py`, `upsnet/operators/modules/unary_logits.py`).

Frames. The fusion runs in the frame of the semantic logits: `[S + T, h, w]` covering the whole
image (h x w is 1/4 or 1/8 of the network input; the image may have been resized to the network
input without keeping its aspect ratio, so the two axes scale independently). Boxes are
(x1, y1, x2, y2) float pixels of the image (H x W, `image_size`); a fusion pixel (u, v) belongs to
a box when its centre ((u + 0.5) * W / w, (v + 0.5) * H / h) lies in [x1, x2) x [y1, y2).

Panoptic logits (one channel per stuff class, per instance, and the unknown class):
    Z[s]       = X[s]                              s in 0..S-1           (stuff logits X_stuff)
    Z[S + i]   = X[S + c_i] + Y_i   inside box_i,  -inf outside          (instance i, class c_i)
    Z[S + N]   = max_t X[S + t] - max(0, max_{i : p in box_i} X[S + c_i])   (unknown, optional)
X = semantic logits, Y_i = instance i's mask logits. UPSNet pads both instance terms with 0
outside the box; we use -inf so that an instance can never claim a pixel outside its box (with 0
padding it does wherever every stuff logit is negative). The unknown logit is the paper's
`Z_unknown = max(X_thing) - max(X_mask)` with X_mask_i zero outside box_i (Sec. 3.3): a pixel
that the semantic head calls a thing but that no box of a matching class covers gets a high
unknown logit, i.e. a probable missed instance becomes void instead of being given to a stuff
class or to a neighbouring instance. The zero padding is kept here (max(0, ...)), also when no
instance is present (UPSNet's code uses -10 then). Argmax ties go to the lower channel (stuff,
then instances in input order).

With no stuff class and `unknown` off, a constant very low void channel stands in for the
unknown one, so that pixels no instance covers are void.

Resolution. `upsample="ids"` (default, fast) takes the argmax at the fusion resolution and
upsamples the id map to the image with nearest neighbour (pixel-centre aligned); segment borders
are then as coarse as the fusion grid. `upsample="logits"` is the argmax of the panoptic logits
upsampled bilinearly (align_corners=False) to the image, every instance cropped to its box at
image pixels (UPSNet fuses at the input resolution; the unknown channel is interpolated like the
others). It is computed exactly but only where needed: image pixels whose 2 x 2 fusion
neighbours share one coarse label keep it (see `_upsampled_argmax`); the rest, near segment
borders and box edges, are interpolated over the channels that can still win.

Post-rules (after the argmax, in image pixels): a thing segment with fewer than `min_thing_area`
pixels and a stuff segment with fewer than `min_stuff_area` pixels become void (id 0), as
UPSNet's `panoptic_stuff_area_limit` (4096 px at 800 x 1333 input). Unknown pixels are void.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from segmentation_ros.panoptic.result import PanopticResult, Segments
from segmentation_ros.structures import Instances

UPSAMPLE_MODES = ("ids", "logits")
_FINITE_LOW = -1.0e4  # stands for -inf where values are interpolated (logits mode)
_CROPPED = -1.0e6  # interpolated logit of a candidate cropped away (below any finite one)
_VOID_LOGIT = -5.0e3  # void channel when there is neither a stuff nor the unknown channel


def panoptic_fusion(
    semantic_logits: Tensor,
    boxes: Tensor,
    classes: Tensor,
    scores: Tensor,
    mask_logits: Tensor,
    *,
    num_stuff: int,
    image_size: tuple[int, int],
    unknown: bool = True,
    min_thing_area: int = 16,
    min_stuff_area: int = 1024,
    upsample: str = "ids",
) -> PanopticResult:
    """Fuse one image's semantic logits and instances into a panoptic segmentation.

    Args:
        semantic_logits: [S + T, h, w] float raw logits, stuff classes then thing classes.
        boxes: [N, 4] float (x1, y1, x2, y2) in pixels of the image (`image_size`).
        classes: [N] integer thing class index c in [0, T) (panoptic category S + c).
        scores: [N] float detection scores (copied to the thing segments).
        mask_logits: [N, h, w] float mask logits in the fusion frame (same h x w as the semantic
            logits, covering the whole image); values outside the box are ignored. Clamped to
            +-1e4.
        num_stuff: S, the number of stuff channels at the front of `semantic_logits`.
        image_size: (H, W) of the image the boxes refer to; the id map has this size.
        unknown: add UPSNet's unknown-class channel (see the module docstring); unknown pixels
            are void (id 0). False: every pixel goes to a stuff class or an instance.
        min_thing_area, min_stuff_area: segments smaller than this many image pixels become void.
        upsample: "ids" (argmax at h x w, nearest upsampling of the ids; fast) or "logits"
            (bilinear upsampling of the panoptic logits, argmax at H x W).

    Returns:
        PanopticResult with `id_map` [H, W] int32 (0 = void/unknown, segments 1..K) and its
        segments: stuff segments first in category order, then thing segments in input order.
        Stuff scores are the mean softmax probability (over the S + T semantic classes, at the
        fusion resolution) of the stuff class over the segment's pixels; thing scores are the
        detection scores. Outputs are on the device of `semantic_logits`.
    """
    _, h, w = _check_inputs(
        semantic_logits, boxes, classes, scores, mask_logits, num_stuff, image_size
    )
    if min_thing_area < 0 or min_stuff_area < 0:
        raise ValueError(
            f"min_thing_area and min_stuff_area must be >= 0, got {min_thing_area}, "
            f"{min_stuff_area}"
        )
    if upsample not in UPSAMPLE_MODES:
        raise ValueError(f"upsample must be one of {UPSAMPLE_MODES}, got {upsample!r}")

    height, width = int(image_size[0]), int(image_size[1])
    device = semantic_logits.device
    sem = semantic_logits.float()
    classes = classes.to(device=device, dtype=torch.long)
    boxes = boxes.to(device=device, dtype=torch.float32)
    parts = _logit_parts(sem, boxes, classes, mask_logits, num_stuff, (height, width), unknown)
    num_channels = sum(int(part.shape[0]) for part in parts)

    rows = _nearest_index(height, h, device)
    cols = _nearest_index(width, w, device)
    labels = _coarse_argmax(parts)  # [h, w] channel per fusion pixel
    if upsample == "ids":
        # Each fusion pixel stands for (image rows hitting it) x (image cols hitting it) pixels.
        weights = torch.bincount(rows, minlength=h)[:, None] * torch.bincount(cols, minlength=w)
        weights = weights.to(torch.float64)
        px_prob = _label_prob(sem, labels, num_stuff)
    else:
        logits = torch.cat(parts)
        labels = _upsampled_argmax(logits, labels, boxes, num_stuff, (height, width))
        weights = torch.ones(labels.shape, dtype=torch.float64, device=device)
        px_prob = _label_prob(sem, labels, num_stuff, rows=rows, cols=cols)

    areas, prob_sums = _channel_stats(labels, weights, px_prob, num_channels)
    lut, segments = _segments(
        areas, prob_sums, classes, scores, num_stuff, min_thing_area, min_stuff_area
    )
    id_map = lut[labels]
    if upsample == "ids":
        id_map = id_map.index_select(0, rows).index_select(1, cols)
    return PanopticResult(id_map=id_map, segments=segments)


def fuse_instances(
    instances: Instances,
    semantic_logits: Tensor,
    *,
    num_stuff: int,
    image_size: tuple[int, int] | None = None,
    prob_eps: float = 1.0e-4,
    unknown: bool = True,
    min_thing_area: int = 16,
    min_stuff_area: int = 1024,
    upsample: str = "ids",
) -> PanopticResult:
    """`panoptic_fusion` for the YOLACT postprocess's `Instances` of one image.

    instances: `segmentation_ros.structures.Instances`: `boxes` [N, 4] (image pixels),
        `classes` [N] thing class ids, `scores` [N] and `mask_probs` [N, Hp, Wp]: box-cropped
        sigmoid probabilities in the prototype frame covering the whole image.
    semantic_logits: [S + T, h, w] logits of the same image.
    image_size: (H, W) of the image; default `instances.image_size`.
    The probabilities are resampled bilinearly to h x w when Hp x Wp differs (for YOLACT's
    P3-sourced protonet and a semantic head at output stride 4 they coincide) and turned into
    mask logits `log(p / (1 - p))` with p clamped to [prob_eps, 1 - prob_eps] (YOLACT's masks are
    sigmoids of a linear combination, so this recovers that combination up to the clamp).
    Other arguments: see `panoptic_fusion`.
    """
    if semantic_logits.dim() != 3:
        raise ValueError(
            f"semantic_logits must be [S + T, h, w], got {tuple(semantic_logits.shape)}"
        )
    if not 0.0 < prob_eps < 0.5:
        raise ValueError(f"prob_eps must be in (0, 0.5), got {prob_eps}")
    probs = instances.mask_probs
    if probs.dim() != 3:
        raise ValueError(f"instances.mask_probs must be [N, Hp, Wp], got {tuple(probs.shape)}")
    size = tuple(semantic_logits.shape[-2:])
    probs = probs.to(device=semantic_logits.device, dtype=torch.float32)
    if tuple(probs.shape[-2:]) != size and probs.shape[0]:
        probs = F.interpolate(probs[None], size=size, mode="bilinear", align_corners=False)[0]
    elif tuple(probs.shape[-2:]) != size:
        probs = probs.new_zeros((0, *size))
    return panoptic_fusion(
        semantic_logits,
        instances.boxes,
        instances.classes,
        instances.scores,
        torch.logit(probs, eps=prob_eps),
        num_stuff=num_stuff,
        image_size=instances.image_size if image_size is None else image_size,
        unknown=unknown,
        min_thing_area=min_thing_area,
        min_stuff_area=min_stuff_area,
        upsample=upsample,
    )


def _check_inputs(
    semantic_logits: Tensor,
    boxes: Tensor,
    classes: Tensor,
    scores: Tensor,
    mask_logits: Tensor,
    num_stuff: int,
    image_size: tuple[int, int],
) -> tuple[int, int, int]:
    if not isinstance(semantic_logits, Tensor) or semantic_logits.dim() != 3:
        raise ValueError(
            "semantic_logits must be a [S + T, h, w] tensor (one image), got "
            f"{tuple(getattr(semantic_logits, 'shape', ()))}"
        )
    if not semantic_logits.dtype.is_floating_point:
        raise TypeError(f"semantic_logits must be floating point, got {semantic_logits.dtype}")
    num_classes, h, w = semantic_logits.shape
    if num_classes == 0 or h == 0 or w == 0:
        raise ValueError(f"semantic_logits must be non-empty, got {tuple(semantic_logits.shape)}")
    if isinstance(num_stuff, bool) or not isinstance(num_stuff, int):
        raise TypeError(f"num_stuff must be an int, got {type(num_stuff).__name__}")
    if not 0 <= num_stuff <= num_classes:
        raise ValueError(f"num_stuff must be in [0, {num_classes}] (S + T), got {num_stuff}")
    if len(image_size) != 2 or min(int(image_size[0]), int(image_size[1])) < 1:
        raise ValueError(f"image_size must be (H, W) with H, W >= 1, got {image_size!r}")
    n = boxes.shape[0] if boxes.dim() >= 1 else -1
    if boxes.dim() != 2 or boxes.shape[1] != 4:
        raise ValueError(f"boxes must be [N, 4] (x1, y1, x2, y2), got {tuple(boxes.shape)}")
    if classes.shape != (n,) or scores.shape != (n,):
        raise ValueError(
            f"classes and scores must be [N] with N = {n} boxes, got {tuple(classes.shape)} "
            f"and {tuple(scores.shape)}"
        )
    if classes.dtype.is_floating_point or classes.dtype == torch.bool:
        raise TypeError(f"classes must hold integer thing class ids, got {classes.dtype}")
    if mask_logits.shape != (n, h, w):
        raise ValueError(
            f"mask_logits must be [N, h, w] = {(n, h, w)} (N boxes, the semantic logits' h x w), "
            f"got {tuple(mask_logits.shape)}"
        )
    num_things = num_classes - num_stuff
    if n and (int(classes.min()) < 0 or int(classes.max()) >= num_things):
        raise ValueError(
            f"classes must be thing class ids in [0, {num_things}) (T = S + T - num_stuff), got "
            f"values in [{int(classes.min())}, {int(classes.max())}]"
        )
    if _has_nan(semantic_logits):
        raise ValueError("semantic_logits contain NaN")
    if n and _has_nan(mask_logits):
        raise ValueError("mask_logits contain NaN")
    if n and bool(torch.isnan(boxes).any()):
        raise ValueError("boxes contain NaN")
    return num_classes, h, w


def _logit_parts(
    sem: Tensor,
    boxes: Tensor,
    classes: Tensor,
    mask_logits: Tensor,
    num_stuff: int,
    image_size: tuple[int, int],
    unknown: bool,
) -> list[Tensor]:
    """UPSNet panoptic logits (see the module docstring) in parts: stuff [S, h, w], instances
    [N, h, w] and, when present, a void channel [1, h, w]: the unknown logit, or a constant very
    low logit when S = 0 and `unknown` is off (so that pixels no instance covers are void)."""
    inside = _box_masks(boxes, tuple(sem.shape[-2:]), image_size)  # [N, h, w] bool
    sem_inst = sem.index_select(0, num_stuff + classes)  # [N, h, w]: X[S + c_i]
    y = mask_logits.to(device=sem.device, dtype=torch.float32).clamp(-1.0e4, 1.0e4)
    parts = [sem[:num_stuff], torch.where(inside, sem_inst + y, float("-inf"))]
    if unknown:
        parts.append(_unknown_logit(sem[num_stuff:], sem_inst, inside)[None])
    elif num_stuff == 0:
        parts.append(sem.new_full((1, *sem.shape[-2:]), _VOID_LOGIT))
    return parts


def _panoptic_logits(
    sem: Tensor,
    boxes: Tensor,
    classes: Tensor,
    mask_logits: Tensor,
    num_stuff: int,
    image_size: tuple[int, int],
    unknown: bool,
) -> Tensor:
    """[S + N (+ 1), h, w] the parts of `_logit_parts` concatenated."""
    return torch.cat(_logit_parts(sem, boxes, classes, mask_logits, num_stuff, image_size, unknown))


def _coarse_argmax(parts: list[Tensor]) -> Tensor:
    """[h, w] int64 argmax over the concatenated parts (ties to the lower channel), without
    concatenating them."""
    best, labels, offset = None, None, 0
    for part in parts:
        if part.shape[0]:
            value, index = part.max(0)  # max(dim) is much faster than argmax(dim) on CPU
            if best is None:
                best, labels = value, index
            else:
                better = value > best
                best = torch.where(better, value, best)
                labels = torch.where(better, index + offset, labels)
        offset += int(part.shape[0])
    assert labels is not None, "the stuff, instance and void parts cannot all be empty"
    return labels


def _channel_stats(
    labels: Tensor, weights: Tensor, px_prob: Tensor, num_channels: int
) -> tuple[Tensor, Tensor]:
    """Per channel: image-pixel area [C] int64 and sum of stuff probability [C] float64."""
    flat = labels.flatten()
    w = weights.flatten()
    areas = torch.bincount(flat, weights=w, minlength=num_channels).round().long()
    prob_sums = torch.bincount(flat, weights=px_prob.flatten().double() * w, minlength=num_channels)
    return areas, prob_sums


def _segments(
    areas: Tensor,
    prob_sums: Tensor,
    classes: Tensor,
    scores: Tensor,
    num_stuff: int,
    min_thing_area: int,
    min_stuff_area: int,
) -> tuple[Tensor, Segments]:
    """Apply the area rules; return the channel -> segment id table [C] int32 and the segments."""
    device = areas.device
    num_inst = int(classes.shape[0])
    channel = torch.arange(areas.shape[0], device=device)
    is_stuff = channel < num_stuff
    is_inst = (channel >= num_stuff) & (channel < num_stuff + num_inst)
    min_area = torch.where(is_stuff, max(min_stuff_area, 1), max(min_thing_area, 1))
    kept = ((is_stuff | is_inst) & (areas >= min_area)).nonzero().squeeze(1)
    lut = torch.zeros(areas.shape[0], dtype=torch.int32, device=device)
    lut[kept] = torch.arange(1, kept.numel() + 1, dtype=torch.int32, device=device)

    kept_is_stuff = kept < num_stuff
    inst = (kept - num_stuff).clamp(0, max(num_inst - 1, 0))
    if num_inst:
        thing_category = num_stuff + classes[inst]
        thing_score = scores.to(device=device, dtype=torch.float32)[inst]
    else:
        thing_category = torch.zeros_like(kept)
        thing_score = torch.zeros(kept.shape, dtype=torch.float32, device=device)
    stuff_score = (prob_sums[kept] / areas[kept].clamp_min(1)).float()
    segments = Segments(
        ids=lut[kept],
        category_ids=torch.where(kept_is_stuff, kept, thing_category),
        is_thing=~kept_is_stuff,
        areas=areas[kept],
        scores=torch.where(kept_is_stuff, stuff_score, thing_score),
    )
    return lut, segments


def _has_nan(x: Tensor) -> bool:
    # The sum is NaN if any element is (or +inf meets -inf): a cheap test before the exact one.
    return bool(torch.isnan(x.sum())) and bool(torch.isnan(x).any())


def _box_masks(boxes: Tensor, grid: tuple[int, int], image_size: tuple[int, int]) -> Tensor:
    """[N, gh, gw] bool: grid pixel centres (in image pixels) inside each box."""
    gh, gw = grid
    height, width = image_size
    ys = (torch.arange(gh, device=boxes.device, dtype=torch.float32) + 0.5) * (height / gh)
    xs = (torch.arange(gw, device=boxes.device, dtype=torch.float32) + 0.5) * (width / gw)
    in_y = (ys[None, :] >= boxes[:, 1:2]) & (ys[None, :] < boxes[:, 3:4])  # [N, gh]
    in_x = (xs[None, :] >= boxes[:, 0:1]) & (xs[None, :] < boxes[:, 2:3])  # [N, gw]
    return in_y[:, :, None] & in_x[:, None, :]


def _unknown_logit(thing_logits: Tensor, sem_inst: Tensor, inside: Tensor) -> Tensor:
    """[h, w] UPSNet unknown logit: max_t X_thing - max(0, max over covering boxes X[S + c_i])."""
    if thing_logits.shape[0] == 0:
        return torch.full(thing_logits.shape[1:], float("-inf"), device=thing_logits.device)
    thing_max = thing_logits.amax(0)
    if sem_inst.shape[0] == 0:
        return thing_max
    covered = torch.where(inside, sem_inst, float("-inf")).amax(0).clamp_min(0.0)
    return thing_max - covered


def _nearest_index(out_size: int, in_size: int, device: torch.device) -> Tensor:
    """[out_size] int64 source index of each output pixel, pixel-centre aligned nearest."""
    idx = ((torch.arange(out_size, device=device, dtype=torch.float64) + 0.5) * in_size) / out_size
    return idx.floor().long().clamp_(0, in_size - 1)


def _label_prob(
    sem: Tensor,
    labels: Tensor,
    num_stuff: int,
    *,
    rows: Tensor | None = None,
    cols: Tensor | None = None,
) -> Tensor:
    """Per pixel of `labels`: the softmax probability (over all S + T semantic classes, at the
    fusion resolution) of its stuff class; 0 where the label is not stuff. `labels` is at the
    fusion resolution, or at the image resolution with `rows` / `cols` its nearest fusion pixel.
    """
    if num_stuff == 0:
        return torch.zeros(labels.shape, dtype=sem.dtype, device=labels.device)
    _, h, w = sem.shape
    top = sem.amax(0)
    log_norm = top + (sem - top).exp_().sum(0).log_()  # logsumexp over the classes, [h, w]
    pixel = torch.arange(h * w, device=labels.device).view(h, w)
    if rows is not None and cols is not None:
        pixel = pixel.index_select(0, rows).index_select(1, cols)
    logit = sem.flatten()[labels.clamp(max=num_stuff - 1) * (h * w) + pixel]
    prob = (logit - log_norm.flatten()[pixel]).exp()
    return torch.where(labels < num_stuff, prob, 0.0)


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


def _upsampled_argmax(
    logits: Tensor,
    labels: Tensor,
    boxes: Tensor,
    num_stuff: int,
    image_size: tuple[int, int],
) -> Tensor:
    """[H, W] argmax of the bilinearly upsampled panoptic logits with every instance channel
    cropped to its box at image pixels: equal to `_argmax_full_resolution` (up to rounding at
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
    table = logits.clamp_min(_FINITE_LOW).permute(1, 2, 0).reshape(h * w, num_channels)
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


def _argmax_full_resolution(
    logits: Tensor,
    boxes: Tensor,
    num_stuff: int,
    num_inst: int,
    image_size: tuple[int, int],
) -> Tensor:
    """Reference for `_upsampled_argmax`: upsample every channel, crop, argmax (slow)."""
    finite = logits.clamp_min(_FINITE_LOW)
    up = F.interpolate(finite[None], size=image_size, mode="bilinear", align_corners=False)[0]
    if num_inst:
        inside = _box_masks(boxes, image_size, image_size)
        inst = up[num_stuff : num_stuff + num_inst]
        up[num_stuff : num_stuff + num_inst] = torch.where(inside, inst, float("-inf"))
    return up.argmax(0)
