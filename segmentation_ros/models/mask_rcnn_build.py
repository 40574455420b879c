"""torchvision's Mask R-CNN wired from a `MaskRCNNConfig`, and torchvision's own
`maskrcnn_resnet50_fpn` checkpoint layout loaded from a file (no download).

Everything here is torchvision's: `mobilenet_backbone` / `_resnet_fpn_extractor`, `AnchorGenerator`,
`MultiScaleRoIAlign`, `TwoMLPHead`, `FastRCNNPredictor`, `MaskRCNNHeads`, `MaskRCNNPredictor`,
`MaskRCNN`; only the RoI heads are our subclass (`ScoredRoIHeads`: the MaskIoU head).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from .mask_rcnn_heads import MaskIoUHead, ScoredRoIHeads

__all__ = ["TORCHVISION_COCO_CATEGORIES", "build_detector", "load_torchvision_state_dict"]


def _torchvision_categories() -> tuple[str, ...]:
    from torchvision.models.detection import MaskRCNN_ResNet50_FPN_Weights

    return tuple(MaskRCNN_ResNet50_FPN_Weights.COCO_V1.meta["categories"])


#: torchvision's 91 COCO labels of `maskrcnn_resnet50_fpn` (0 "__background__", gaps "N/A").
TORCHVISION_COCO_CATEGORIES = _torchvision_categories()


def _backbone(config) -> nn.Module:
    from torchvision.ops import misc as misc_nn_ops

    norm = misc_nn_ops.FrozenBatchNorm2d if config.frozen_batchnorm else nn.BatchNorm2d
    if config.backbone == "resnet50":
        from torchvision.models import resnet50
        from torchvision.models.detection.backbone_utils import _resnet_fpn_extractor

        # maskrcnn_resnet50_fpn's construction, without weights.
        return _resnet_fpn_extractor(
            resnet50(weights=None, norm_layer=norm), config.trainable_layers
        )
    from torchvision.models import mobilenet_v3_large
    from torchvision.models.detection.backbone_utils import (
        BackboneWithFPN,
        _mobilenet_extractor,
    )

    body = mobilenet_v3_large(weights=None, norm_layer=norm)
    # Stages 2, 3 and 5 of MobileNetV3-Large: strides 8, 16 and 32 (+ the max-pooled 64); the
    # torchvision default (4, 5) starts at stride 32, too coarse for 320 x 240 frames.
    # torchvision's helper picks and freezes the layers but fixes the FPN at 256 channels: its
    # layers, at the config's width.
    helper = _mobilenet_extractor(body, True, config.trainable_layers, returned_layers=[2, 3, 5])
    return_layers = helper.body.return_layers
    return BackboneWithFPN(
        body.features,
        return_layers,
        [body.features[int(index)].out_channels for index in return_layers],
        config.fpn_channels,
    )


def build_detector(config) -> nn.Module:
    """torchvision's `MaskRCNN` for `config` (random init), RoI heads `ScoredRoIHeads` (with
    torchvision's keypoint head and predictor when the config names keypoints)."""
    from torchvision.models.detection import MaskRCNN
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
    from torchvision.models.detection.keypoint_rcnn import KeypointRCNNHeads, KeypointRCNNPredictor
    from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor
    from torchvision.ops import MultiScaleRoIAlign

    num_classes = config.num_things + 1  # torchvision's labels: 0 is background
    levels = [str(i) for i in range(len(config.level_strides) - 1)]  # "pool" feeds the RPN only
    anchors = AnchorGenerator(
        tuple(tuple(s) for s in config.anchor_sizes),
        (tuple(config.aspect_ratios),) * len(config.anchor_sizes),
    )
    box_pool = MultiScaleRoIAlign(levels, output_size=7, sampling_ratio=2)
    mask_pool = MultiScaleRoIAlign(levels, output_size=config.mask_roi_size, sampling_ratio=2)
    channels = config.fpn_channels
    detector = MaskRCNN(
        _backbone(config),
        num_classes=None,
        rpn_anchor_generator=anchors,
        rpn_pre_nms_top_n_train=config.rpn_pre_nms_top_n_train,
        rpn_post_nms_top_n_train=config.rpn_post_nms_top_n_train,
        rpn_pre_nms_top_n_test=config.rpn_pre_nms_top_n_test,
        rpn_post_nms_top_n_test=config.rpn_post_nms_top_n_test,
        box_roi_pool=box_pool,
        box_head=TwoMLPHead(channels * 7 * 7, config.representation_size),
        box_predictor=FastRCNNPredictor(config.representation_size, num_classes),
        mask_roi_pool=mask_pool,
        mask_head=MaskRCNNHeads(channels, list(config.mask_head_layers), 1),
        mask_predictor=MaskRCNNPredictor(
            config.mask_head_layers[-1], config.mask_predictor_channels, num_classes
        ),
    )
    old = detector.roi_heads
    mask_iou = None
    if config.mask_iou:
        conv, fc = config.mask_iou_channels
        mask_iou = MaskIoUHead(
            channels,
            num_classes,
            roi_size=config.mask_roi_size,
            conv_channels=conv,
            fc_channels=fc,
        )
    keypoints = {}
    if config.keypoint_names:
        layers = list(config.keypoint_head_layers)
        keypoints = {
            "keypoint_roi_pool": MultiScaleRoIAlign(
                levels, output_size=config.keypoint_roi_size, sampling_ratio=2
            ),
            "keypoint_head": KeypointRCNNHeads(channels, layers),
            "keypoint_predictor": KeypointRCNNPredictor(layers[-1], config.num_keypoints),
            "keypoint_label": config.keypoint_thing + 1,
        }
    detector.roi_heads = ScoredRoIHeads(
        old.box_roi_pool,
        old.box_head,
        old.box_predictor,
        0.5,  # torchvision's defaults: fg / bg IoU, sampling, box coder weights
        0.5,
        config.box_batch_size_per_image,
        0.25,
        None,
        config.box_score_thresh,
        config.box_nms_thresh,
        config.box_detections_per_img,
        mask_roi_pool=old.mask_roi_pool,
        mask_head=old.mask_head,
        mask_predictor=old.mask_predictor,
        mask_iou_head=mask_iou,
        **keypoints,
    )
    return detector


# Per-class rows of the predictors in torchvision's state dict (key -> rows per class).
_CLASS_ROWS = {
    "roi_heads.box_predictor.cls_score.weight": 1,
    "roi_heads.box_predictor.cls_score.bias": 1,
    "roi_heads.box_predictor.bbox_pred.weight": 4,
    "roi_heads.box_predictor.bbox_pred.bias": 4,
    "roi_heads.mask_predictor.mask_fcn_logits.weight": 1,
    "roi_heads.mask_predictor.mask_fcn_logits.bias": 1,
}


def load_torchvision_state_dict(
    detector: nn.Module, state_dict: Mapping[str, Any], thing_names: tuple[str, ...]
) -> None:
    """Load torchvision's `maskrcnn_resnet50_fpn` state dict (91 COCO labels) into `detector`
    (a `build_detector` of a ResNet-50 config whose thing classes are COCO names).

    The predictors' per-class rows are picked by name (background + `thing_names`); the MaskIoU
    head and a keypoint head, absent from torchvision's layout, keep their initialisation.
    Anything else that does not fit raises ValueError naming the keys.
    """
    state = dict(state_dict)
    index = {n: i for i, n in enumerate(TORCHVISION_COCO_CATEGORIES) if n != "N/A"}
    unknown = [n for n in thing_names if n not in index]
    if unknown:
        raise ValueError(
            f"classes {unknown} are not COCO labels of torchvision's Mask R-CNN; its weights "
            "load into a model of COCO thing classes (e.g. mask_rcnn_resnet50)"
        )
    rows = torch.tensor([0] + [index[n] for n in thing_names])
    for key, per_class in _CLASS_ROWS.items():
        value: Tensor | None = state.get(key)
        if value is None:
            continue
        if value.shape[0] != len(TORCHVISION_COCO_CATEGORIES) * per_class:
            raise ValueError(
                f"{key} has {value.shape[0]} rows; torchvision's COCO layout has "
                f"{len(TORCHVISION_COCO_CATEGORIES) * per_class}"
            )
        picked = (rows[:, None] * per_class + torch.arange(per_class)).flatten()
        state[key] = value[picked]
    result = detector.load_state_dict(state, strict=False)
    ours = ("roi_heads.mask_iou_head.", "roi_heads.keypoint_")  # not in torchvision's layout
    missing = [k for k in result.missing_keys if not k.startswith(ours)]
    if missing or result.unexpected_keys:
        raise ValueError(
            "not torchvision's maskrcnn_resnet50_fpn layout for this model: missing "
            f"{missing[:8]}, unexpected {list(result.unexpected_keys)[:8]}"
        )
