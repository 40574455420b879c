"""YOLACT / YOLACT++ / panoptic YOLACT training losses, as the official dbolya/yolact
`layers/modules/multibox_loss.py` (the `yolact_base` / `yolact_plus_base` settings).

Per batch, with N = the number of positive priors over the batch (at least 1):
- box (B):   smooth-L1 (beta 1) of the positives' encoded offsets, summed, x bbox_alpha, / N.
- class (C): cross-entropy of positives and hard negatives, summed, x conf_alpha, / N. Hard
  negatives (OHEM): per image, the non-positive, non-neutral priors ranked by their background
  loss logsumexp(conf) - conf[0], the top negpos_ratio x (positives of the image) of them.
- mask (M):  per positive (at most masks_to_train per image, drawn at random; the image's sum
  is scaled by old / new count), the prototype masks sigmoid(P @ c) cropped to the matched
  ground-truth box (official crop, padding 1), binary cross-entropy against the ground-truth
  mask bilinearly downsampled to the prototype size and binarised (> 0.5) (or, `mask_target`
  "area", its covered fraction per prototype pixel), summed over pixels
  and divided by the box area in prototype pixels (mask_proto_normalize_emulate_roi_pooling
  with mask_proto_crop); summed, x mask_alpha, / N.
- mask IoU (I, YOLACT++ only): the mask-IoU head on the cropped mask probabilities of the
  positives whose ground-truth mask has more than discard_mask_area prototype pixels;
  smooth-L1 against the IoU of the binarised mask (> 0.5) with the ground truth, at the
  ground-truth class, summed, x maskiou_alpha, / N. The gradient reaches the masks too, as in
  the official code.
- semantic aux (S, YOLACT / YOLACT++ built for training): official `semantic_segmentation_loss`,
  see `semantic_aux_loss`; x semantic_aux.
- semantic (panoptic YOLACT): pixel cross-entropy of the semantic logits (upsampled to the
  label size) against the semantic map, void (255) ignored, mean, x semantic_alpha (UPSNet).
- PCV (a `models.pcv.PCVModel`): vote cross-entropy against `ops.pcv_voting.assign_vote_cells`
  targets of the thing-instance map on the voting grid (void and crowd ignored), each pixel
  weighted by 1 / sqrt(area of its segment) and normalised by the total weight (the reference's
  `WeightMask`, power 0.5, and "total" normalisation: without it the abstain class of the
  large stuff segments wins everywhere), x pcv weight, plus the semantic term.
Crowd ground truth never becomes positive and only turns covering priors neutral.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from segmentation_ros.data.transforms import TrainTarget
from segmentation_ros.models.matching import VARIANCES, match_priors
from segmentation_ros.ops.mask_assembly import crop_windows

__all__ = [
    "LossConfig",
    "LossWeights",
    "Losses",
    "MatchedBatch",
    "box_loss",
    "hard_negatives",
    "class_loss",
    "mask_loss",
    "match_batch",
    "semantic_aux_loss",
    "semantic_term",
    "yolact_losses",
]

# BCE of a probability of exactly 0 against a target of 1: PyTorch clamps the log at -100.
_BCE_LOG_CLAMP = 100.0


@dataclass(frozen=True)
class LossWeights:
    """Loss weights (official names in brackets, official values as defaults).

    box [bbox_alpha] 1.5, cls [conf_alpha] 1, mask [mask_alpha] 6.125 (= 0.4 / 256 * 140 * 140),
    mask_iou [maskiou_alpha] 25 (YOLACT++), semantic_aux [semantic_segmentation_alpha] 1 (YOLACT's
    auxiliary semantic loss), semantic 1 (UPSNet), pcv 1 (PCV voting loss).
    """

    box: float = 1.5
    cls: float = 1.0
    mask: float = 6.125
    mask_iou: float = 25.0
    semantic: float = 1.0
    pcv: float = 1.0
    semantic_aux: float = 1.0

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if not (value >= 0 and math.isfinite(value)):
                raise ValueError(f"loss weight {f.name} must be finite and >= 0, got {value}")


MASK_TARGETS = ("binary", "area")


@dataclass(frozen=True)
class LossConfig:
    """Matching and loss settings (official defaults).

    pos_threshold / neg_threshold: IoU for a positive / below which a prior is background
        (between: neutral). crowd_iou_threshold: prior area covered by a crowd box above which a
        non-positive prior is neutral (>= 1 turns crowd handling off).
    negpos_ratio: hard negatives per positive (OHEM).
    masks_to_train: at most this many positives per image get a mask loss.
    mask_crop_padding: prototype pixels added around the ground-truth box when cropping.
    discard_mask_area: YOLACT++ mask-IoU loss: ground-truth masks of at most this many prototype
        pixels are left out (official 5 * 5).
    mask_target: the mask loss's ground truth at the prototype size: "binary" (official:
        bilinear, binarised > 0.5) or "area" (the fraction of each prototype pixel the object
        covers, `mask_targets`). Bilinear 4x downsampling reads 2 of every 4 input rows and
        columns, so a stroke 1-2 px wide (a bicycle frame) is in the target only where it
        happens to cross them, and binarising drops every cell it covers less than half; the
        area fraction is what a mask at the prototype grid, upsampled bilinearly and thresholded
        at 0.5 as the postprocess does, can be judged against.
    semantic_class_weights: per-class weights of the semantic cross-entropy's pixels, one per
        semantic channel (stuff first); empty: unweighted (UPSNet). E.g. square-root median
        frequency balancing (`data.datasets.sqrt_median_frequency`), so that a class of few
        pixels (bicycle frames) is not left to its background.
    """

    pos_threshold: float = 0.5
    neg_threshold: float = 0.4
    crowd_iou_threshold: float = 0.7
    negpos_ratio: int = 3
    masks_to_train: int = 100
    mask_crop_padding: int = 1
    discard_mask_area: int = 25
    mask_target: str = "binary"
    semantic_class_weights: tuple[float, ...] = ()
    variances: tuple[float, float] = VARIANCES
    weights: LossWeights = field(default_factory=LossWeights)

    def __post_init__(self) -> None:
        if not 0 <= self.neg_threshold <= self.pos_threshold <= 1:
            raise ValueError(
                "thresholds must satisfy 0 <= neg_threshold <= pos_threshold <= 1, got "
                f"{self.neg_threshold}, {self.pos_threshold}"
            )
        if self.negpos_ratio < 0 or self.masks_to_train < 1 or self.mask_crop_padding < 0:
            raise ValueError("negpos_ratio >= 0, masks_to_train >= 1, mask_crop_padding >= 0")
        if self.mask_target not in MASK_TARGETS:
            raise ValueError(f"mask_target must be one of {MASK_TARGETS}, got {self.mask_target!r}")
        if not all(math.isfinite(w) and w > 0 for w in self.semantic_class_weights):
            raise ValueError(f"semantic_class_weights must be > 0: {self.semantic_class_weights}")


@dataclass(frozen=True)
class Losses:
    """The weighted loss terms of one batch (scalars); the terms a model does not have are None.

    box, cls, mask (YOLACT), mask_iou (YOLACT++), semantic_aux (YOLACT's auxiliary semantic
    loss), semantic (panoptic YOLACT, PCV), pcv (PCV voting), keypoint (Mask R-CNN's keypoint
    head). num_positives: positive priors in
    the batch (0-d int64 tensor, the normaliser N; None without YOLACT terms).
    """

    box: Tensor | None = None
    cls: Tensor | None = None
    mask: Tensor | None = None
    num_positives: Tensor | None = None
    mask_iou: Tensor | None = None
    semantic: Tensor | None = None
    pcv: Tensor | None = None
    semantic_aux: Tensor | None = None
    keypoint: Tensor | None = None

    def items(self) -> list[tuple[str, Tensor]]:
        """(name, value) of the present terms, in a fixed order."""
        names = ("box", "cls", "mask", "mask_iou", "semantic_aux", "semantic", "pcv", "keypoint")
        return [(n, getattr(self, n)) for n in names if getattr(self, n) is not None]

    @property
    def total(self) -> Tensor:
        """The sum of the present terms (what is back-propagated)."""
        terms = [v for _, v in self.items()]
        if not terms:
            raise ValueError("no loss term")
        out = terms[0]
        for t in terms[1:]:
            out = out + t
        return out


# ---------------------------------------------------------------------------------------------
# Matching over a batch


@dataclass(frozen=True)
class MatchedBatch:
    """Matching of a batch: labels [B, A] (-1 / 0 / class + 1), gt_index [B, A], loc_target
    [B, A, 4]; per image the non-crowd ground truth (boxes relative [N_b, 4], classes, masks
    [N_b, H, W]) that gt_index points into."""

    labels: Tensor
    gt_index: Tensor
    loc_target: Tensor
    gt_boxes: tuple[Tensor, ...]
    gt_classes: tuple[Tensor, ...]
    gt_masks: tuple[Tensor, ...]


def match_batch(
    targets: Sequence[TrainTarget],
    priors: Tensor,
    config: LossConfig = LossConfig(),  # noqa: B008 (frozen)
) -> MatchedBatch:
    """Match every image's ground truth to the priors (`models.matching.match_priors`).

    targets: one `TrainTarget` per image (boxes in input pixels, input size = semantic's size).
    priors: [A, 4] (cx, cy, w, h) relative to the network input.
    """
    labels, gt_index, loc_target = [], [], []
    boxes_out, classes_out, masks_out = [], [], []
    for target in targets:
        height, width = target.semantic.shape[-2:]
        scale = torch.tensor([width, height, width, height], dtype=priors.dtype)
        boxes = target.boxes.to(priors.dtype) / scale.to(target.boxes.device)
        crowd = target.iscrowd.to(torch.bool)
        gt_boxes = boxes[~crowd].to(priors.device)
        m = match_priors(
            gt_boxes,
            target.classes[~crowd].to(priors.device),
            priors,
            crowd_boxes=boxes[crowd].to(priors.device),
            pos_threshold=config.pos_threshold,
            neg_threshold=config.neg_threshold,
            crowd_iou_threshold=config.crowd_iou_threshold,
            variances=config.variances,
        )
        labels.append(m.labels)
        gt_index.append(m.gt_index)
        loc_target.append(m.loc_target)
        boxes_out.append(gt_boxes)
        classes_out.append(target.classes[~crowd].to(priors.device))
        masks_out.append(target.masks[~crowd].to(priors.device))
    return MatchedBatch(
        torch.stack(labels),
        torch.stack(gt_index),
        torch.stack(loc_target),
        tuple(boxes_out),
        tuple(classes_out),
        tuple(masks_out),
    )


# ---------------------------------------------------------------------------------------------
# Terms (unweighted sums; `yolact_losses` weights and normalises)


def box_loss(loc: Tensor, loc_target: Tensor, positive: Tensor) -> Tensor:
    """Smooth-L1 (beta 1) summed over the positives' 4 offsets. loc, loc_target [B, A, 4],
    positive [B, A] bool."""
    return F.smooth_l1_loss(loc[positive], loc_target[positive], reduction="sum")


def hard_negatives(conf: Tensor, labels: Tensor, negpos_ratio: int = 3) -> Tensor:
    """OHEM negatives [B, A] bool (official `ohem_conf_loss`).

    conf: [B, A, C + 1] logits, labels: [B, A] (-1 neutral, 0 background, > 0 positive).
    Per image, among the priors that are neither positive nor neutral, the
    min(negpos_ratio * positives, A - 1) of highest background loss
    logsumexp(conf) - conf[..., 0] (ties: lower prior index first).
    """
    with torch.no_grad():
        positive = labels > 0
        background_loss = torch.logsumexp(conf, dim=-1) - conf[..., 0]
        background_loss = background_loss.masked_fill(positive | (labels < 0), 0.0)
        order = background_loss.argsort(dim=1, descending=True, stable=True)
        rank = order.argsort(dim=1)
        num_neg = (negpos_ratio * positive.sum(1, keepdim=True)).clamp(max=labels.shape[1] - 1)
        return (rank < num_neg) & ~positive & (labels >= 0)


def class_loss(conf: Tensor, labels: Tensor, negpos_ratio: int = 3) -> Tensor:
    """Cross-entropy summed over positives and OHEM hard negatives (see `hard_negatives`)."""
    keep = (labels > 0) | hard_negatives(conf, labels, negpos_ratio)
    return F.cross_entropy(conf[keep], labels[keep], reduction="sum")


def mask_targets(gt_masks: Tensor, size: tuple[int, int], kind: str = "binary") -> Tensor:
    """[n, H, W] ground-truth masks -> [n, h, w] float targets at the prototype size `size`:
    "binary" (official) bilinear (align_corners=False) then > 0.5; "area" the covered fraction
    of each target pixel (area interpolation: exact averages when H, W are multiples of h, w)."""
    masks = gt_masks[None].float()
    if kind == "area":
        return F.interpolate(masks, size, mode="area")[0]
    return F.interpolate(masks, size, mode="bilinear", align_corners=False)[0].gt(0.5).float()


def mask_loss(
    proto: Tensor,
    coef: Tensor,
    gt_masks: Tensor,
    gt_boxes: Tensor,
    *,
    padding: int = 1,
    target_kind: str = "binary",
) -> tuple[Tensor, Tensor, Tensor]:
    """One image's mask loss of n positives, not yet weighted (official `lincomb_mask_loss` with
    crop, binarised ground truth and ROI-pooling normalisation).

    proto:    [Hp, Wp, k] prototypes.
    coef:     [n, k] the positives' coefficients.
    gt_masks: [n, H, W] bool / float ground-truth masks of the matched objects (input size).
    gt_boxes: [n, 4] relative (x1, y1, x2, y2) matched ground-truth boxes.
    target_kind: `mask_targets`' kind ("binary" official, "area" soft coverage).
    Returns (sum over the n masks of BCE summed over the crop / box area in prototype pixels,
    [n, Hp, Wp] cropped mask probabilities, [n, Hp, Wp] downsampled ground truth).
    Pixels outside the crop have probability 0: a ground-truth pixel there costs 100 (PyTorch's
    log clamp), as in the official loss; inside, BCE is computed from the logits.
    """
    height, width, k = proto.shape
    n = coef.shape[0]
    with torch.no_grad():
        target = mask_targets(gt_masks, (height, width), target_kind).to(proto.dtype)
        rows, cols = crop_windows(gt_boxes, height, width, padding)
        inside = (rows[:, :, None] & cols[:, None, :]).to(proto.dtype)
    logits = (coef @ proto.reshape(height * width, k).t()).view(n, height, width)
    bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    per_pixel = bce * inside + (1 - inside) * target * _BCE_LOG_CLAMP
    box_w = (gt_boxes[:, 2] - gt_boxes[:, 0]) * width
    box_h = (gt_boxes[:, 3] - gt_boxes[:, 1]) * height
    per_mask = per_pixel.sum(dim=(1, 2)) / box_w / box_h * (height * width)
    probs = torch.sigmoid(logits) * inside
    return per_mask.sum(), probs, target


def _mask_iou_targets(probs: Tensor, target: Tensor) -> Tensor:
    """IoU [n] of binarised probabilities (> 0.5) with the binary targets, both [n, Hp, Wp]."""
    pred = probs.detach().gt(0.5).to(target.dtype)
    inter = (pred * target).sum(dim=(1, 2))
    union = pred.sum(dim=(1, 2)) + target.sum(dim=(1, 2)) - inter
    return inter / union


def semantic_term(
    logits: Tensor, targets: Sequence[TrainTarget], config: LossConfig | None = None
) -> Tensor:
    """The semantic loss term of every family with a semantic head: cross-entropy of logits
    [B, S + T, h, w] against the targets' semantic maps [H, W] (void 255 ignored; logits
    upsampled to H x W), pixels weighted by `config.semantic_class_weights` when given, x
    `config.weights.semantic`."""
    from segmentation_ros.models.semantic_head import semantic_loss

    config = config or LossConfig()
    labels = torch.stack([t.semantic for t in targets]).to(logits.device)
    cw = config.semantic_class_weights
    weights = torch.tensor(cw, dtype=torch.float32) if cw else None
    loss = semantic_loss(logits, labels, ignore_index=255, class_weights=weights)
    return loss * config.weights.semantic


def semantic_aux_loss(logits: Tensor, targets: Sequence[TrainTarget]) -> Tensor:
    """YOLACT's auxiliary semantic segmentation loss, unweighted (official
    `semantic_segmentation_loss`, bilinear).

    logits: [B, C, h, w] thing-class logits of the `semantic_seg_conv` on P3.
    targets: B `TrainTarget`s; their non-crowd masks [N, H, W] and classes [N] in [0, C).
    Per image: every mask bilinearly resized to h x w (align_corners=False) and binarised (> 0.5),
    the masks of one class merged by max into that class's target map [C, h, w] (0 where no
    object); binary cross-entropy with logits summed over classes and pixels, / (h * w).
    Returns the mean over the batch (the official loss divides its batch sum by B).
    """
    batch, num_classes, height, width = logits.shape
    if len(targets) != batch:
        raise ValueError(f"{len(targets)} targets for a batch of {batch}")
    total = logits.new_zeros(())
    for logit, target in zip(logits, targets):
        keep = ~target.iscrowd.to(torch.bool)
        masks = target.masks[keep].to(device=logits.device, dtype=logits.dtype)
        classes = target.classes[keep].to(device=logits.device, dtype=torch.long)
        segment = torch.zeros_like(logit)
        if masks.shape[0]:
            with torch.no_grad():
                down = F.interpolate(
                    masks[None], (height, width), mode="bilinear", align_corners=False
                )[0].gt(0.5)
                one_hot = F.one_hot(classes, num_classes).bool()  # [N, C]
                segment = (one_hot[:, :, None, None] & down[:, None]).any(0).to(logit.dtype)
        total = total + F.binary_cross_entropy_with_logits(logit, segment, reduction="sum")
    return total / (height * width) / batch


# ---------------------------------------------------------------------------------------------
# Whole model


def yolact_losses(
    outputs: Any,
    priors: Tensor,
    targets: Sequence[TrainTarget],
    config: LossConfig = LossConfig(),  # noqa: B008 (frozen)
    *,
    mask_iou_head: nn.Module | None = None,
    generator: torch.Generator | None = None,
) -> Losses:
    """The YOLACT losses of a batch (module docstring), weighted and normalised.

    outputs: `YolactOutputs` (or `PanopticYolactOutputs`): loc [B, A, 4], conf [B, A, C + 1],
        coef [B, A, k], proto [B, Hp, Wp, k], from a forward pass in training mode.
    priors: [A, 4] (cx, cy, w, h) relative, for the input size of the batch.
    targets: B `TrainTarget`s at the network input size.
    mask_iou_head: YOLACT++ mask-IoU net ([n, 1, Hp, Wp] -> [n, C]) to train, or None.
    generator: CPU generator for the masks_to_train draw (reproducible training).
    """
    loc, conf, coef, proto = outputs.loc, outputs.conf, outputs.coef, outputs.proto
    if loc.shape[1] != priors.shape[0]:
        raise ValueError(
            f"the outputs have {loc.shape[1]} priors but `priors` has {priors.shape[0]}: make the "
            "priors for the batch's input size (models.make_priors(config, (H, W)))"
        )
    if len(targets) != loc.shape[0]:
        raise ValueError(f"{len(targets)} targets for a batch of {loc.shape[0]}")
    priors = priors.to(device=loc.device, dtype=loc.dtype)
    matched = match_batch(targets, priors, config)
    positive = matched.labels > 0
    num_pos = positive.sum()
    norm = num_pos.clamp(min=1).to(loc.dtype)
    w = config.weights

    box = box_loss(loc, matched.loc_target, positive) * w.box
    cls = class_loss(conf, matched.labels, config.negpos_ratio) * w.cls

    mask_sum = proto.new_zeros(())
    iou_inputs, iou_targets, iou_classes = [], [], []
    for b in range(loc.shape[0]):
        pos_idx = positive[b].nonzero().squeeze(1)
        if pos_idx.numel() == 0:
            continue
        old_count = pos_idx.numel()
        if old_count > config.masks_to_train:
            select = torch.randperm(old_count, generator=generator)[: config.masks_to_train]
            pos_idx = pos_idx[select.to(pos_idx.device)]
        gt = matched.gt_index[b, pos_idx]
        loss_b, probs, target = mask_loss(
            proto[b],
            coef[b, pos_idx],
            matched.gt_masks[b][gt],
            matched.gt_boxes[b][gt],
            padding=config.mask_crop_padding,
            target_kind=config.mask_target,
        )
        mask_sum = mask_sum + loss_b * (old_count / pos_idx.numel())
        if mask_iou_head is not None:
            binary = target.gt(0.5).to(target.dtype)  # an "area" target's covered half
            big = binary.sum(dim=(1, 2)) > config.discard_mask_area
            iou_inputs.append(probs[big, None])
            iou_targets.append(_mask_iou_targets(probs[big], binary[big]))
            iou_classes.append(matched.gt_classes[b][gt][big])
    height, width = proto.shape[1:3]
    mask = mask_sum * w.mask / (height * width)

    mask_iou = None
    if mask_iou_head is not None:
        mask_iou = proto.new_zeros(())
        if iou_inputs and sum(t.numel() for t in iou_targets):
            scores = mask_iou_head(torch.cat(iou_inputs))
            picked = scores.gather(1, torch.cat(iou_classes)[:, None]).squeeze(1)
            mask_iou = F.smooth_l1_loss(picked, torch.cat(iou_targets), reduction="sum")
        mask_iou = mask_iou * w.mask_iou / norm
    return Losses(
        box=box / norm, cls=cls / norm, mask=mask / norm, num_positives=num_pos, mask_iou=mask_iou
    )
