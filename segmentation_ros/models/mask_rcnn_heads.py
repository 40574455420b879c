"""The RoI heads of our Mask R-CNN: torchvision's `RoIHeads` (box head, Fast R-CNN predictor,
mask head, `MultiScaleRoIAlign`) plus Mask Scoring R-CNN's MaskIoU head.

References: He et al., "Mask R-CNN", ICCV 2017 (RoIAlign, the FCN mask head, one mask per
class, the mask of the predicted class); Huang et al., "Mask Scoring R-CNN", CVPR 2019, Sec. 3
(MaskIoU head: RoI features concatenated with the predicted mask max-pooled to the RoI size,
four 3x3 convs, the last with stride 2, three fully connected layers, one IoU per class; an L2
regression of the IoU between the binarised predicted mask and its target; mask score = class
score x predicted IoU).

Everything but the MaskIoU head and the forward below is torchvision's: `select_training_samples`,
`fastrcnn_loss`, `maskrcnn_loss`, `project_masks_on_boxes`, `postprocess_detections`, and the
optional keypoint branch (`KeypointRCNNHeads`, `KeypointRCNNPredictor`, `keypointrcnn_loss`: the
lecture's K one-hot masks, a softmax over each keypoint's S x S heatmap). The forward is
`RoIHeads.forward` returning tensors (the MaskIoU head needs the RoI features and the mask
logits, which torchvision's forward keeps inside); the keypoint branch runs on one class only
(`keypoint_label`) in training, and on every detection at inference (a fixed graph: the
postprocess keeps the keypoints of that class).

Frames: boxes are (x1, y1, x2, y2) float pixels of the network input; mask probabilities are
M x M in the frame of their box (M = 2 x the mask RoI size, torchvision's layout: 28).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models.detection.roi_heads import (
    RoIHeads,
    fastrcnn_loss,
    keypointrcnn_loss,
    maskrcnn_loss,
    project_masks_on_boxes,
)

__all__ = ["Detections", "MaskIoUHead", "ScoredRoIHeads", "mask_iou_targets"]


class Detections(NamedTuple):
    """One image's detections from the RoI heads (D detections, sorted by descending score).

    boxes [D, 4] float (network input pixels), scores [D] float, labels [D] int64 (1..T;
    torchvision's labels: 0 is background), mask_probs [D, M, M] float (the label's mask, box
    frame), mask_iou [D] float (predicted IoU of the mask; 1 without a MaskIoU head),
    keypoint_logits [D, K, S, S] float (heatmap logits in the box frame; None without the
    keypoint branch).
    """

    boxes: Tensor
    scores: Tensor
    labels: Tensor
    mask_probs: Tensor
    mask_iou: Tensor
    keypoint_logits: Tensor | None = None


class MaskIoUHead(nn.Module):
    """Mask Scoring R-CNN's MaskIoU head: RoI features + predicted mask -> IoU per class.

    in_channels: channels of the mask RoI features [K, in_channels, R, R] (R: the mask RoI size).
    num_classes: outputs (torchvision's label count, background included: index by label).
    conv_channels / fc_channels: the paper's 256 / 1024.
    forward(features [K, C, R, R], mask_probs [K, 1, 2R, 2R] in [0, 1]) -> [K, num_classes].
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        *,
        roi_size: int = 14,
        conv_channels: int = 256,
        fc_channels: int = 1024,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = in_channels + 1
        for i in range(4):  # the paper: four 3x3 convs, the last one with stride 2
            layers += [
                nn.Conv2d(channels, conv_channels, 3, stride=2 if i == 3 else 1, padding=1),
                nn.ReLU(inplace=True),
            ]
            channels = conv_channels
        self.convs = nn.Sequential(*layers)
        side = (roi_size + 1) // 2
        self.fcs = nn.Sequential(
            nn.Linear(conv_channels * side * side, fc_channels),
            nn.ReLU(inplace=True),
            nn.Linear(fc_channels, fc_channels),
            nn.ReLU(inplace=True),
        )
        self.predictor = nn.Linear(fc_channels, num_classes)
        # He init by fan-in everywhere (a fan-out init of the 6272-input FC blows its outputs
        # up); the IoU predictor starts near 0.
        for m in self.modules():
            if isinstance(m, nn.Conv2d | nn.Linear):
                nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
                nn.init.zeros_(m.bias)
        nn.init.normal_(self.predictor.weight, std=0.01)

    def forward(self, features: Tensor, mask_probs: Tensor) -> Tensor:
        pooled = F.max_pool2d(mask_probs, kernel_size=2, stride=2)
        x = self.convs(torch.cat([features, pooled], dim=1))
        return self.predictor(self.fcs(x.flatten(1)))


def mask_iou_targets(mask_logits: Tensor, mask_targets: Tensor) -> Tensor:
    """IoU of the binarised predicted masks (logit > 0, i.e. probability > 0.5) with their
    targets (>= 0.5), both [K, M, M] in the box frame; 0 where both are empty. [K] float."""
    pred = mask_logits > 0
    target = mask_targets >= 0.5
    inter = (pred & target).flatten(1).sum(1).float()
    union = (pred | target).flatten(1).sum(1).float()
    return torch.where(union > 0, inter / union.clamp(min=1.0), torch.zeros_like(union))


class ScoredRoIHeads(RoIHeads):
    """torchvision's `RoIHeads` with an optional MaskIoU head (`mask_iou_head`, None: off) and
    torchvision's optional keypoint branch (`keypoint_roi_pool`, `keypoint_head`,
    `keypoint_predictor`) for the objects of label `keypoint_label` (1..T).

    forward(features, proposals, image_shapes, targets=None):
    - training: (None, losses) with torchvision's "loss_classifier", "loss_box_reg",
      "loss_mask" and, with the MaskIoU head, "loss_mask_iou" (mean squared error of the
      predicted IoU at the ground-truth class against `mask_iou_targets`, the paper's L2 loss;
      its inputs are detached: the head learns to judge the masks, not to change them); with
      the keypoint branch "loss_keypoint" (torchvision's `keypointrcnn_loss` on the positive
      proposals of `keypoint_label`; targets need "keypoints" [N, K, 3] (x, y, visibility),
      input pixels, visibility 0 for objects without keypoints).
    - eval: (list of `Detections` per image, {}).
    """

    def __init__(
        self, *args, mask_iou_head: MaskIoUHead | None = None, keypoint_label: int = 0, **kwargs
    ) -> None:
        super().__init__(*args, **kwargs)
        self.mask_iou_head = mask_iou_head
        self.keypoint_label = keypoint_label
        if self.has_keypoint() and keypoint_label < 1:
            raise ValueError("the keypoint branch needs keypoint_label >= 1 (0 is background)")

    def forward(self, features, proposals, image_shapes, targets=None):  # noqa: D102
        if self.training:
            if targets is None:
                raise ValueError("ScoredRoIHeads needs targets in training mode")
            proposals, matched_idxs, labels, regression_targets = self.select_training_samples(
                proposals, targets
            )
        box_features = self.box_head(self.box_roi_pool(features, proposals, image_shapes))
        class_logits, box_regression = self.box_predictor(box_features)
        if self.training:
            return None, self._training_losses(
                features,
                image_shapes,
                targets,
                proposals,
                matched_idxs,
                labels,
                (class_logits, box_regression, regression_targets),
            )
        boxes, scores, labels = self.postprocess_detections(
            class_logits, box_regression, proposals, image_shapes
        )
        return self._detections(features, image_shapes, boxes, scores, labels), {}

    def _mask_branch(self, features, boxes, image_shapes) -> tuple[Tensor, Tensor]:
        """RoIAlign'd mask features [K, C, R, R] and mask logits [K, T + 1, M, M]."""
        roi = self.mask_roi_pool(features, boxes, image_shapes)
        return roi, self.mask_predictor(self.mask_head(roi))

    def _keypoint_logits(self, features, boxes, image_shapes) -> Tensor:
        """Keypoint heatmap logits [K', K, S, S] of the boxes (one list entry per image)."""
        roi = self.keypoint_roi_pool(features, boxes, image_shapes)
        return self.keypoint_predictor(self.keypoint_head(roi))

    def _detections(self, features, image_shapes, boxes, scores, labels) -> list[Detections]:
        roi, logits = self._mask_branch(features, boxes, image_shapes)
        label = torch.cat(labels)
        index = torch.arange(label.shape[0], device=label.device)
        probs = logits[index, label].sigmoid()
        if self.mask_iou_head is not None:
            iou = self.mask_iou_head(roi, probs[:, None])[index, label]
        else:
            iou = torch.ones_like(label, dtype=probs.dtype)
        kp = self._keypoint_logits(features, boxes, image_shapes) if self.has_keypoint() else None
        if len(boxes) == 1:  # no split: a traced graph must not fix the detection count
            return [Detections(boxes[0], scores[0], labels[0], probs, iou, kp)]
        counts = [int(b.shape[0]) for b in boxes]
        kps = kp.split(counts) if kp is not None else [None] * len(counts)
        return [
            Detections(b, s, lab, p, i, k)
            for b, s, lab, p, i, k in zip(
                boxes, scores, labels, probs.split(counts), iou.split(counts), kps, strict=True
            )
        ]

    def _training_losses(
        self, features, image_shapes, targets, proposals, matched_idxs, labels, box_terms
    ) -> dict[str, Tensor]:
        class_logits, box_regression, regression_targets = box_terms
        loss_cls, loss_box = fastrcnn_loss(class_logits, box_regression, labels, regression_targets)
        positive = [torch.where(lab > 0)[0] for lab in labels]
        mask_boxes = [p[i] for p, i in zip(proposals, positive, strict=True)]
        matched = [m[i] for m, i in zip(matched_idxs, positive, strict=True)]
        roi, logits = self._mask_branch(features, mask_boxes, image_shapes)
        gt_masks = [t["masks"] for t in targets]
        gt_labels = [t["labels"] for t in targets]
        losses = {
            "loss_classifier": loss_cls,
            "loss_box_reg": loss_box,
            "loss_mask": maskrcnn_loss(logits, mask_boxes, gt_masks, gt_labels, matched),
        }
        if self.mask_iou_head is not None:
            losses["loss_mask_iou"] = self._mask_iou_loss(
                roi, logits, mask_boxes, gt_masks, gt_labels, matched
            )
        if self.has_keypoint():
            losses["loss_keypoint"] = self._keypoint_loss(
                features, image_shapes, targets, proposals, matched_idxs, labels
            )
        return losses

    def _keypoint_loss(self, features, image_shapes, targets, proposals, matched_idxs, labels):
        """torchvision's `keypointrcnn_loss` (cross-entropy of each visible keypoint's one-hot
        S x S target) on the positive proposals of `keypoint_label`."""
        if any("keypoints" not in t for t in targets):
            raise ValueError(
                "the keypoint head needs targets['keypoints'] [N, K, 3] (x, y, visibility) for "
                "every image; visibility 0 where an object has none"
            )
        boxes, matched = [], []
        for p, m, lab in zip(proposals, matched_idxs, labels, strict=True):
            pos = torch.where(lab == self.keypoint_label)[0]
            boxes.append(p[pos])
            matched.append(m[pos])
        logits = self._keypoint_logits(features, boxes, image_shapes)
        gt = [t["keypoints"] for t in targets]
        return keypointrcnn_loss(logits, boxes, gt, matched)

    def _mask_iou_loss(self, roi, logits, mask_boxes, gt_masks, gt_labels, matched) -> Tensor:
        size = logits.shape[-1]
        label = torch.cat([lab[m] for lab, m in zip(gt_labels, matched, strict=True)])
        if label.numel() == 0:
            return logits.sum() * 0.0
        target_masks = torch.cat(
            [
                project_masks_on_boxes(m, b, i, size)
                for m, b, i in zip(gt_masks, mask_boxes, matched, strict=True)
            ]
        )
        index = torch.arange(label.shape[0], device=label.device)
        selected = logits[index, label].detach()
        target = mask_iou_targets(selected, target_masks)
        predicted = self.mask_iou_head(roi.detach(), selected.sigmoid()[:, None])[index, label]
        return F.mse_loss(predicted, target)
