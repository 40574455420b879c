"""The Mask R-CNN family: torchvision's two-stage detector (`models.mask_rcnn`), Mask Scoring
R-CNN's mask IoU, and UPSNet's fusion with the semantic head (as the panoptic YOLACT).

Raw outputs: `MaskRCNNOutputs` (detections after the RoI heads: boxes in input pixels, scores,
classes, box-frame mask probabilities, predicted mask IoU; semantic logits), with keypoints
`KeypointMaskRCNNOutputs` (+ per detection K heatmap logits in the box frame). Postprocess: the
settings' score threshold, an extra class-wise NMS at the settings' IoU (the graph's NMS ran at
the config's), the masks pasted into the input frame (`paste_masks_in_image`, torchvision's),
the keypoints of the keypoint class decoded (`heatmaps_to_keypoints`, torchvision's: the
heatmap's arg-max, refined nowhere, in image pixels), then `panoptic.fusion.fuse_instances`.
Classes: stuff 0..S-1, things S..S+T-1.
torchvision's `maskrcnn_resnet50_fpn` weights (a state-dict file) load into `model.detector`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from segmentation_ros.structures import ClassTable, Instances, PanopticResult

from ..family import ModelFamily, PostprocessSettings, register_family
from ..mask_rcnn import MaskRCNNConfig, MaskRCNNModel

EXPORT_NOTES = (
    "The graph runs the whole two-stage detector (RPN, RoIAlign as ONNX RoiAlign, per-class NMS "
    "as NonMaxSuppression, the mask and MaskIoU heads) and the semantic head; it is exported "
    "with the TorchScript-based exporter (torchvision's detection code has data-dependent "
    "shapes). Mask pasting and the panoptic fusion run in torch after any backend."
)


def decode_keypoints(logits: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """Heatmap logits [N, K, S, S] (box frame) of boxes [N, 4] (x1, y1, x2, y2) -> keypoints
    [N, K, 3] float32 (x, y, score) in the boxes' pixels: torchvision's `heatmaps_to_keypoints`
    (each heatmap resized to its box, arg-max, + 0.5 to the pixel centre; score: the logit
    there)."""
    from torchvision.models.detection.roi_heads import heatmaps_to_keypoints

    if logits.shape[0] == 0:
        return logits.new_zeros((0, logits.shape[1], 3))
    xy, scores = heatmaps_to_keypoints(logits.float(), boxes.float())
    return torch.cat([xy[..., :2], scores[..., None]], dim=-1)


def detections_to_instances(
    raw: Any,
    config: MaskRCNNConfig,
    image_size: tuple[int, int],
    settings: PostprocessSettings,
    input_size: tuple[int, int],
) -> Instances:
    """Image 0 of `raw` (`MaskRCNNOutputs` or `KeypointMaskRCNNOutputs`) -> `Instances` (boxes
    in image pixels, masks pasted into the network input frame, which covers the whole image;
    sorted by descending score; with keypoints [N, K, 3] (x, y, score) in image pixels, NaN for
    detections of other classes)."""
    from torchvision.models.detection.roi_heads import paste_masks_in_image
    from torchvision.ops import batched_nms

    boxes, scores = raw.boxes[0].float(), raw.scores[0].float()
    classes, probs, iou = raw.classes[0].long(), raw.mask_probs[0].float(), raw.mask_iou[0].float()
    keep = torch.nonzero(scores > settings.score_threshold).flatten()
    if keep.numel():
        nms = batched_nms(boxes[keep], scores[keep], classes[keep], settings.nms_threshold)
        keep = keep[nms[: settings.max_detections]]
    boxes, scores, classes, probs, iou = (t[keep] for t in (boxes, scores, classes, probs, iou))
    mask_scores = scores * iou if config.rescore else scores
    height, width = input_size
    pasted = paste_masks_in_image(probs[:, None], boxes, (height, width), padding=1)[:, 0]
    scale = boxes.new_tensor([image_size[1] / width, image_size[0] / height] * 2)
    limit = boxes.new_tensor([image_size[1], image_size[0]] * 2)
    image_boxes = torch.minimum((boxes * scale).clamp(min=0), limit)
    keypoints = None
    if config.keypoint_names:
        keypoints = boxes.new_full((len(keep), config.num_keypoints, 3), float("nan"))
        person = torch.nonzero(classes == config.keypoint_thing).flatten()
        logits = raw.keypoint_logits[0][keep[person]]
        decoded = decode_keypoints(logits, boxes[person])
        keypoints[person] = decoded * decoded.new_tensor([scale[0], scale[1], 1.0])
    return Instances(
        image_size=image_size,
        boxes=image_boxes,
        scores=scores,
        mask_scores=mask_scores,
        classes=classes,
        mask_probs=pasted.reshape(-1, height, width),
        keypoints=keypoints,
    )


def torchvision_targets(
    targets: Sequence[Any], num_keypoints: int = 0
) -> list[dict[str, torch.Tensor]]:
    """Our `TrainTarget`s -> torchvision's detection targets (labels 1..T; crowd regions and
    boxes without area left out: torchvision refuses degenerate boxes). With `num_keypoints`
    K > 0 also "keypoints" [N, K, 3] (x, y, visibility) input pixels: the target's `keypoints`
    where it has them, else visibility 0 (COCO's "not labelled": no keypoint loss)."""
    out = []
    for t in targets:
        boxes = t.boxes.float()
        keep = ~t.iscrowd.bool() & (boxes[:, 2] > boxes[:, 0] + 1e-3)
        keep &= boxes[:, 3] > boxes[:, 1] + 1e-3
        target = {
            "boxes": boxes[keep],
            "labels": t.classes[keep].long() + 1,
            "masks": t.masks[keep].to(torch.uint8),
        }
        if num_keypoints:
            kp = getattr(t, "keypoints", None)
            if kp is None:
                kp = boxes.new_zeros((boxes.shape[0], num_keypoints, 3))
            target["keypoints"] = kp[keep].float()
        out.append(target)
    return out


class MaskRCNNFamily(ModelFamily):
    """Mask R-CNN (`models.mask_rcnn.MaskRCNNModel`, `MaskRCNNConfig`): things and stuff."""

    kind = "mask_rcnn"
    config_type = MaskRCNNConfig
    network_type = MaskRCNNModel
    export_notes = EXPORT_NOTES

    def classes(self, config: MaskRCNNConfig) -> ClassTable:
        return ClassTable.panoptic(config.stuff_names, config.thing_names)

    def keypoint_names(self, config: MaskRCNNConfig) -> tuple[str, ...]:
        return config.keypoint_names

    def network_config(self, config: MaskRCNNConfig) -> MaskRCNNConfig:
        return config  # it has `input_size` and `normalization`, all `preprocess` reads

    def with_classes(
        self, config: MaskRCNNConfig, *, stuff_names: Sequence[str], thing_names: Sequence[str]
    ) -> MaskRCNNConfig:
        # Keypoints stay only where their class does (a data set without people has none).
        keypoints = config.keypoint_names if config.keypoint_class in thing_names else ()
        return dataclasses.replace(
            config,
            stuff_names=tuple(stuff_names),
            thing_names=tuple(thing_names),
            keypoint_names=keypoints,
        )

    def with_input_size(self, config: MaskRCNNConfig, input_size) -> MaskRCNNConfig:
        # Anchors are in input pixels and stay (Mask R-CNN resizes images, not anchors).
        return dataclasses.replace(config, input_size=tuple(input_size))

    def official_part(self, model: nn.Module) -> tuple[nn.Module, str]:
        return model.detector, "detector."

    def load_official(self, model: nn.Module, state_dict: Any) -> nn.Module:
        """torchvision's `maskrcnn_resnet50_fpn` state dict (e.g. the file torchvision
        downloads, loaded with weights_only=True) into `model.detector`."""
        from ..mask_rcnn_build import load_torchvision_state_dict

        if not isinstance(state_dict, dict):
            raise ValueError("torchvision's Mask R-CNN weights are a state dict (a dict)")
        load_torchvision_state_dict(model.detector, state_dict, model.config.thing_names)
        return model

    def postprocessor(self, model, config, *, input_size, device="cpu"):
        from segmentation_ros.panoptic.fusion import fuse_instances

        fusion_options = dataclasses.asdict(config.fusion)  # fuse_instances' keywords
        model_output = MaskRCNNModel.output_type_of(config)

        def postprocess(raw: Any, image_size, settings: PostprocessSettings) -> PanopticResult:
            raw = model_output(*(t.to(device) for t in raw))
            instances = detections_to_instances(raw, config, image_size, settings, input_size)
            return fuse_instances(
                instances,
                raw.semantic[0].float(),
                num_stuff=config.num_stuff,
                image_size=image_size,
                **fusion_options,
            )

        return postprocess

    def postprocess_defaults(self, config: MaskRCNNConfig) -> PostprocessSettings:
        return PostprocessSettings(
            score_threshold=0.3,
            nms_threshold=config.box_nms_thresh,
            mask_threshold=0.5,
            max_detections=config.box_detections_per_img,
        )

    def training_losses(
        self, model, images, targets, priors, loss_config, *, generator=None
    ) -> Any:
        """torchvision's losses (unweighted, as torchvision trains: RPN objectness and box,
        classifier, box, mask) + the MaskIoU L2 term x `weights.mask_iou` / 25 (the YOLACT++
        weight 25 maps to the paper's 1) + the semantic cross-entropy x `weights.semantic`;
        with keypoints torchvision's keypoint loss (unweighted, as torchvision)."""
        from segmentation_ros.models.losses import Losses, semantic_term

        num_keypoints = model.config.num_keypoints
        out = model.training_losses(images, torchvision_targets(targets, num_keypoints))
        weights = loss_config.weights
        iou = out.get("loss_mask_iou")
        return Losses(
            box=out["loss_box_reg"] + out["loss_rpn_box_reg"],
            cls=out["loss_classifier"] + out["loss_objectness"],
            mask=out["loss_mask"],
            mask_iou=None if iou is None else iou * (weights.mask_iou / 25.0),
            semantic=semantic_term(out["semantic"], targets, loss_config),
            keypoint=out.get("loss_keypoint"),
        )


MASK_RCNN = register_family(MaskRCNNFamily())
