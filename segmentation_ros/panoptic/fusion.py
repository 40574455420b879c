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
    Z[S + N]   = max_t X[S + t] - max_i Xm_i,  Xm_i = X[S + c_i] inside box_i, 0 outside
                                                                          (unknown, optional)
X = semantic logits, Y_i = instance i's mask logits. UPSNet pads both instance terms with 0
outside the box; we use -inf in Z[S + i] so that an instance can never claim a pixel outside
its box (with 0 padding it does wherever every stuff logit is negative). The unknown logit is
the paper's `Z_unknown = max(X_thing) - max(X_mask)` (Sec. 3.3) with X_mask_i zero outside
box_i, as UPSNet's code builds it (`SegTerm` pads the cropped thing logits with 0): a pixel that
the semantic head calls a thing but that no box of a matching class covers gets a high unknown
logit, i.e. a probable missed instance becomes void instead of being given to a stuff class or
to a neighbouring instance. Where every box covers a pixel there is no zero in the max: with one
detection whose class logit is negative inside its box, the unknown logit there is
max_t X[S + t] - X[S + c] >= 0. With no instance the max is taken as 0 (UPSNet's code uses a
constant -10, which voids every pixel whose best thing logit is within 10 of the stuff logits).
An earlier variant of ours clamped the max at 0 (it differs only where every box covers the
pixel); with the default model on 100 held-out synthetic scenes both give PQ 55.78 (no pixel
of the first 30 differs: there is nearly always a box that does not cover it), so it was dropped.
Argmax ties go to the lower channel (stuff, then instances in input order).

With no stuff class and `unknown` off, a constant very low void channel stands in for the
unknown one, so that pixels no instance covers are void.

Resolution. `upsample="ids"` (default, fast) takes the argmax at the fusion resolution and
upsamples the id map to the image with nearest neighbour (pixel-centre aligned); segment borders
are then as coarse as the fusion grid. `upsample="logits"` is the argmax of the panoptic logits
upsampled bilinearly (align_corners=False) to the image, every instance cropped to its box at
image pixels (UPSNet fuses at the input resolution; the unknown channel is interpolated like the
others). It is computed exactly but only where needed: image pixels whose 2 x 2 fusion
neighbours share one coarse label keep it (see `fusion_upsample`); the rest, near segment
borders and box edges, are interpolated over the channels that can still win.

Post-rules (after the argmax, in image pixels): a thing segment with fewer than `min_thing_area`
pixels and a stuff segment with fewer than `min_stuff_area` pixels become void (id 0), as
UPSNet's `panoptic_stuff_area_limit` (4096 px at 800 x 1333 input). Unknown pixels are void.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from segmentation_ros.panoptic.fusion_upsample import box_masks, upsampled_argmax
from segmentation_ros.structures import Instances, PanopticResult, Segments

UPSAMPLE_MODES = ("ids", "logits")
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
        segments: stuff segments first in category order, then thing segments in input order,
        and `detections`: per segment the index of the input instance it came from (-1 for
        stuff). Stuff scores are the mean softmax probability (over the S + T semantic classes,
        at the fusion resolution) of the stuff class over the segment's pixels; thing scores are
        the detection scores. Outputs are on the device of `semantic_logits`.
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
        labels = upsampled_argmax(logits, labels, boxes, num_stuff, (height, width))
        weights = torch.ones(labels.shape, dtype=torch.float64, device=device)
        px_prob = _label_prob(sem, labels, num_stuff, rows=rows, cols=cols)

    areas, prob_sums = _channel_stats(labels, weights, px_prob, num_channels)
    lut, segments, detections = _segments(
        areas, prob_sums, classes, scores, num_stuff, min_thing_area, min_stuff_area
    )
    id_map = lut[labels]
    if upsample == "ids":
        id_map = id_map.index_select(0, rows).index_select(1, cols)
    return PanopticResult(id_map=id_map, segments=segments, detections=detections)


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
    Other arguments: see `panoptic_fusion`. Thing segments carry their detection's box and mask
    score, and its keypoints where it has them (`result.detections` says which detection each
    came from).
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
    result = panoptic_fusion(
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
    # Thing segments keep their detection's box and mask score.
    things = result.detections >= 0
    kept = result.detections[things]
    segments = result.segments
    segments.boxes[things] = instances.boxes.to(segments.boxes)[kept]
    segments.mask_scores[things] = instances.mask_scores.to(segments.mask_scores)[kept]
    if instances.keypoints is not None:
        kp = instances.keypoints.to(segments.boxes)
        segments.keypoints = kp.new_full((len(segments), *kp.shape[1:]), float("nan"))
        segments.keypoints[things] = kp[kept]
    return result


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
    inside = box_masks(boxes, tuple(sem.shape[-2:]), image_size)  # [N, h, w] bool
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
) -> tuple[Tensor, Segments, Tensor]:
    """Apply the area rules; return the channel -> segment id table [C] int32, the segments and
    each segment's instance index [K] int64 (-1 for stuff)."""
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
        class_ids=torch.where(kept_is_stuff, kept, thing_category),
        is_thing=~kept_is_stuff,
        scores=torch.where(kept_is_stuff, stuff_score, thing_score),
        areas=areas[kept],
    )
    return lut, segments, torch.where(kept_is_stuff, -1, kept - num_stuff)


def _has_nan(x: Tensor) -> bool:
    # The sum is NaN if any element is (or +inf meets -inf): a cheap test before the exact one.
    return bool(torch.isnan(x.sum())) and bool(torch.isnan(x).any())


def _unknown_logit(thing_logits: Tensor, sem_inst: Tensor, inside: Tensor) -> Tensor:
    """[h, w] UPSNet unknown logit max_t X_thing - max_i Xm_i, Xm_i = X[S + c_i] inside box_i
    and 0 outside (no clamp: where every box covers the pixel the max may be negative);
    max_t X_thing with no instance."""
    if thing_logits.shape[0] == 0:
        return torch.full(thing_logits.shape[1:], float("-inf"), device=thing_logits.device)
    thing_max = thing_logits.amax(0)
    if sem_inst.shape[0] == 0:
        return thing_max
    return thing_max - torch.where(inside, sem_inst, 0.0).amax(0)


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
