"""Mask R-CNN (He et al., ICCV 2017) as torchvision builds it, with Mask Scoring R-CNN's MaskIoU
head and UPSNet's semantic head for panoptic output.

The detector is `torchvision.models.detection.MaskRCNN` (backbone + FPN, RPN, `MultiScaleRoIAlign`
box and mask heads) with its RoI heads replaced by `mask_rcnn_heads.ScoredRoIHeads` (the same
modules and key names, plus the optional MaskIoU head). torchvision's image transform is not used:
`models.preprocess` resizes and normalises (as for every family), the network input is the
whole image.

`MaskRCNNModel.forward(x)` (eval) returns `MaskRCNNOutputs`: D detections per image after the
RPN, RoIAlign, the box head, torchvision's per-class NMS, and the mask head; each detection's
mask probabilities in the frame of its box (M x M, 28 in torchvision's layout), its predicted
mask IoU, and the semantic logits. The postprocess (`models.families.mask_rcnn`) pastes the
masks into the image and fuses them with the semantic logits (UPSNet).

Layout: `model.detector` is torchvision's `MaskRCNN`: the `maskrcnn_resnet50_fpn` state dict
loads into it (`load_torchvision_state_dict`). Configs: `mask_rcnn_mobilenetv3` (light, 240 x
320, MobileNetV3-Large FPN at strides 8-64, the robot default) and `mask_rcnn_resnet50`
(torchvision's ResNet-50-FPN layout, 480 x 640).
"""

from __future__ import annotations

import dataclasses
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import NamedTuple

import torch
from torch import Tensor, nn

from segmentation_ros.structures.keypoints import SYNTHETIC_KEYPOINTS

from .config import COCO_CLASSES
from .config_parts import Normalization
from .panoptic_yolact import COCO_PANOPTIC_STUFF, PanopticFusionConfig, SemanticHeadConfig
from .semantic_head import SemanticHead

__all__ = [
    "BACKBONES",
    "MASK_RCNN_MOBILENETV3",
    "MASK_RCNN_MOBILENETV3_KEYPOINTS",
    "MASK_RCNN_RESNET50",
    "TORCHVISION_NORMALIZATION",
    "MaskRCNNConfig",
    "MaskRCNNModel",
    "KeypointMaskRCNNOutputs",
    "MaskRCNNOutputs",
]

BACKBONES = ("mobilenet_v3_large", "resnet50")
#: torchvision's detection transform: ImageNet mean / std of [0, 1] images, times 255.
TORCHVISION_NORMALIZATION = Normalization(
    mean=(123.675, 116.28, 103.53), std=(58.395, 57.12, 57.375)
)


@dataclass(frozen=True)
class MaskRCNNConfig:
    """A complete Mask R-CNN description (frozen; variants by `dataclasses.replace`).

    backbone: "mobilenet_v3_large" (FPN on strides 8, 16, 32 + a max-pooled 64) or "resnet50"
        (torchvision's `maskrcnn_resnet50_fpn` layout: strides 4-32 + 64).
    frozen_batchnorm: FrozenBatchNorm2d in the backbone (torchvision's choice with pretrained
        weights); trainable_layers: backbone stages that train (torchvision's meaning).
    fpn_channels: the FPN's width, which every RoI head reads (torchvision: 256).
    anchor_sizes: per FPN level, anchor sizes in input pixels; aspect_ratios: h / w per size.
    rpn_*: proposals kept before / after the RPN's NMS per image, in training / at test.
    box_*: RoI samples per image in training, score threshold and NMS IoU of the final boxes,
        detections per image. representation_size: the box head's MLP width.
        The graph keeps any class score (box_score_thresh 0, torchvision: 0.05): the postprocess
        thresholds per frame, and a traced graph (ONNX) must never see an empty NMS input.
    mask_head_layers: channels of the FCN mask head's 3x3 convs (torchvision: 4 x 256);
        mask_predictor_channels: its deconvolution; masks are 2 x mask_roi_size square.
    mask_iou: a Mask Scoring R-CNN MaskIoU head, its (conv, fc) widths `mask_iou_channels`
        (the paper: 256, 1024); rescore: mask score = class score x
        predicted IoU (else the class score).
    semantic / fusion / stuff_names: UPSNet's semantic head on the FPN and the panoptic fusion.
    keypoint_names: K keypoints of `keypoint_class` (a thing), the lecture's K one-hot masks
        (torchvision's `KeypointRCNNHeads` convs `keypoint_head_layers` on RoIAlign'd
        `keypoint_roi_size` features, `KeypointRCNNPredictor`: S = 4 x the RoI size heatmaps,
        56 in torchvision's layout); () = no keypoint head. Their sigmas / skeleton live in the
        data's `structures.keypoints.KeypointSet` (the config only names them).
    """

    name: str
    backbone: str = "mobilenet_v3_large"
    thing_names: tuple[str, ...] = COCO_CLASSES
    stuff_names: tuple[str, ...] = COCO_PANOPTIC_STUFF
    input_size: tuple[int, int] = (240, 320)
    normalization: Normalization = TORCHVISION_NORMALIZATION
    frozen_batchnorm: bool = False
    trainable_layers: int = 6
    fpn_channels: int = 256
    anchor_sizes: tuple[tuple[int, ...], ...] = ((16, 24), (32, 48), (64, 96), (128, 192))
    aspect_ratios: tuple[float, ...] = (0.5, 1.0, 2.0)
    rpn_pre_nms_top_n_train: int = 1000
    rpn_post_nms_top_n_train: int = 500
    rpn_pre_nms_top_n_test: int = 500
    rpn_post_nms_top_n_test: int = 200
    box_batch_size_per_image: int = 128
    box_score_thresh: float = 0.0
    box_nms_thresh: float = 0.5
    box_detections_per_img: int = 50
    representation_size: int = 512
    mask_roi_size: int = 14
    mask_head_layers: tuple[int, ...] = (128, 128)
    mask_predictor_channels: int = 128
    mask_iou: bool = True
    mask_iou_channels: tuple[int, int] = (128, 512)
    rescore: bool = True
    semantic: SemanticHeadConfig = field(
        default_factory=lambda: SemanticHeadConfig(
            mid_channels=64, num_levels=3, output_stride=4, norm="batch"
        )
    )
    fusion: PanopticFusionConfig = field(default_factory=PanopticFusionConfig)
    keypoint_names: tuple[str, ...] = ()
    keypoint_class: str = "person"
    keypoint_head_layers: tuple[int, ...] = (128, 128, 128, 128)
    keypoint_roi_size: int = 14

    def __post_init__(self) -> None:
        object.__setattr__(self, "input_size", tuple(int(v) for v in self.input_size))
        object.__setattr__(self, "thing_names", tuple(str(n) for n in self.thing_names))
        object.__setattr__(self, "stuff_names", tuple(str(n) for n in self.stuff_names))
        object.__setattr__(self, "keypoint_names", tuple(str(n) for n in self.keypoint_names))
        if self.backbone not in BACKBONES:
            raise ValueError(f"unknown backbone {self.backbone!r}; expected one of {BACKBONES}")
        if len(self.input_size) != 2 or min(self.input_size) < 32:
            raise ValueError(f"input_size must be (height, width) >= 32, got {self.input_size}")
        if not self.thing_names:
            raise ValueError("thing_names must name at least one class")
        names = self.stuff_names + self.thing_names
        if len(set(names)) != len(names):
            dup = sorted({n for n in names if names.count(n) > 1})
            raise ValueError(f"stuff and thing names must be unique, repeated: {dup}")
        if len(self.anchor_sizes) != len(self.level_strides):
            raise ValueError(
                f"anchor_sizes needs one tuple per FPN level ({len(self.level_strides)}), got "
                f"{len(self.anchor_sizes)}"
            )
        if len({len(s) for s in self.anchor_sizes}) != 1:
            raise ValueError("every FPN level needs the same number of anchor sizes (shared RPN)")
        if self.semantic.num_levels > len(self.level_strides) - 1:
            raise ValueError("the semantic head uses more FPN levels than the backbone makes")
        if self.semantic.output_stride > self.level_strides[0]:
            raise ValueError("the semantic head's output_stride is coarser than the finest level")
        if not 0 <= self.box_score_thresh < 1 or not 0 < self.box_nms_thresh <= 1:
            raise ValueError("box_score_thresh must be in [0, 1), box_nms_thresh in (0, 1]")
        if self.keypoint_names:
            if self.keypoint_class not in self.thing_names:
                raise ValueError(
                    f"keypoint_class {self.keypoint_class!r} is not a thing class; keypoints "
                    "need one (or set keypoint_names to () for no keypoint head)"
                )
            if not self.keypoint_head_layers or self.keypoint_roi_size < 2:
                raise ValueError("the keypoint head needs layers and a RoI size >= 2")
            if len(set(self.keypoint_names)) != len(self.keypoint_names):
                raise ValueError(f"keypoint_names must be unique, got {self.keypoint_names}")

    @property
    def level_strides(self) -> tuple[int, ...]:
        """Strides of the FPN maps ("0", "1", ..., "pool") relative to the input."""
        return (8, 16, 32, 64) if self.backbone == "mobilenet_v3_large" else (4, 8, 16, 32, 64)

    @property
    def num_stuff(self) -> int:
        return len(self.stuff_names)

    @property
    def num_things(self) -> int:
        return len(self.thing_names)

    @property
    def category_names(self) -> tuple[str, ...]:
        """Panoptic categories in id order: stuff, then things."""
        return self.stuff_names + self.thing_names

    @property
    def num_keypoints(self) -> int:
        return len(self.keypoint_names)

    @property
    def keypoint_thing(self) -> int:
        """Thing index (0..T-1) of `keypoint_class`; -1 without keypoints."""
        return self.thing_names.index(self.keypoint_class) if self.keypoint_names else -1

    @property
    def keypoint_heatmap_size(self) -> int:
        """S: side of the keypoint heatmaps (box frame)."""
        return 4 * self.keypoint_roi_size

    @property
    def mask_size(self) -> int:
        """M: side of the predicted masks (box frame)."""
        return 2 * self.mask_roi_size


class MaskRCNNOutputs(NamedTuple):
    """Raw Mask R-CNN outputs of a batch (B images, D detections each; images with fewer are
    padded with score 0, which every postprocess threshold drops).

    boxes:      [B, D, 4] float32 (x1, y1, x2, y2) pixels of the network input.
    scores:     [B, D] float32 class scores (softmax), descending.
    classes:    [B, D] int64 thing class index 0..T-1.
    mask_probs: [B, D, M, M] float32 mask probabilities of the detection's class, box frame.
    mask_iou:   [B, D] float32 predicted mask IoU (Mask Scoring R-CNN; 1 without its head).
    semantic:   [B, S + T, h, w] float32 semantic logits, stuff first, at 1/output_stride.
    """

    boxes: Tensor
    scores: Tensor
    classes: Tensor
    mask_probs: Tensor
    mask_iou: Tensor
    semantic: Tensor


class KeypointMaskRCNNOutputs(NamedTuple):
    """`MaskRCNNOutputs` of a config with keypoints, plus
    keypoint_logits: [B, D, K, S, S] float32 heatmap logits of every detection in the frame of
    its box (the postprocess keeps those of the keypoint class)."""

    boxes: Tensor
    scores: Tensor
    classes: Tensor
    mask_probs: Tensor
    mask_iou: Tensor
    semantic: Tensor
    keypoint_logits: Tensor


class MaskRCNNModel(nn.Module):
    """torchvision's Mask R-CNN (`detector`) + a semantic head on its FPN maps.

    forward(x [B, 3, H, W] float32 normalised) -> `MaskRCNNOutputs`, or
    `KeypointMaskRCNNOutputs` when the config names keypoints (the type follows the config, so
    one model always returns one type; eval mode only: training needs the targets, see
    `training_losses`).
    """

    output_type = MaskRCNNOutputs
    #: The export path (`runtime.onnx_export`): torchvision's detection code (data-dependent
    #: NMS) traces with the TorchScript exporter; RoIAlign and NMS become ONNX RoiAlign and
    #: NonMaxSuppression.
    onnx_exporter = "torchscript"
    onnx_dynamic_outputs = {"boxes": 1, "scores": 1, "classes": 1, "mask_probs": 1, "mask_iou": 1}

    def __init__(self, detector: nn.Module, semantic_head: SemanticHead, config: MaskRCNNConfig):
        super().__init__()
        self.detector = detector
        self.semantic_head = semantic_head
        self.config = config
        self.output_type = self.output_type_of(config)
        if config.keypoint_names:
            self.onnx_dynamic_outputs = {**type(self).onnx_dynamic_outputs, "keypoint_logits": 1}

    @staticmethod
    def output_type_of(config: MaskRCNNConfig) -> type:
        """The raw output type of a model of `config`."""
        return KeypointMaskRCNNOutputs if config.keypoint_names else MaskRCNNOutputs

    @classmethod
    def from_config(cls, config: MaskRCNNConfig) -> MaskRCNNModel:
        from .mask_rcnn_build import build_detector

        sem = config.semantic
        head = SemanticHead(
            config.fpn_channels,
            sem.mid_channels,
            config.num_stuff + config.num_things,
            sem.num_levels,
            sem.output_stride,
            sem.use_deformable,
            input_stride=config.level_strides[0],
            num_convs=sem.num_convs,
            norm=sem.norm,
        )
        return cls(build_detector(config), head, config)

    def features(self, x: Tensor) -> OrderedDict[str, Tensor]:
        """FPN maps {"0": stride s0, ..., "pool"} of a normalised batch."""
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"expected a normalised batch [B, 3, H, W], got {tuple(x.shape)}")
        return self.detector.backbone(x)

    def _semantic(self, features: OrderedDict[str, Tensor]) -> Tensor:
        return self.semantic_head(list(features.values()))

    def forward(self, x: Tensor) -> MaskRCNNOutputs:
        from torchvision.models.detection.image_list import ImageList

        if self.training:
            raise RuntimeError("MaskRCNNModel.forward is for inference; train with training_losses")
        features = self.features(x)
        images = ImageList(x, [(int(x.shape[-2]), int(x.shape[-1]))] * x.shape[0])
        proposals, _ = self.detector.rpn(images, features)
        detections, _ = self.detector.roi_heads(features, proposals, images.image_sizes)
        semantic = self._semantic(features)
        keypoints = () if detections[0].keypoint_logits is None else ("keypoint_logits",)
        if len(detections) == 1:  # no padding: the exported graph stays free of it
            d = detections[0]
            extra = tuple(getattr(d, k)[None] for k in keypoints)
            return self.output_type(
                d.boxes[None],
                d.scores[None],
                (d.labels - 1)[None],
                d.mask_probs[None],
                d.mask_iou[None],
                semantic,
                *extra,
            )
        *padded, kp = _pad_batch(detections, self.config.mask_size)
        return self.output_type(*padded, semantic, *((kp,) if keypoints else ()))

    def training_losses(self, x: Tensor, targets: list[dict[str, Tensor]]) -> dict[str, Tensor]:
        """One training pass (train mode): torchvision's losses ("loss_objectness",
        "loss_rpn_box_reg", "loss_classifier", "loss_box_reg", "loss_mask", with a MaskIoU
        head "loss_mask_iou") and the semantic logits under "semantic" (its loss needs the
        semantic labels, which the family has), with keypoints "loss_keypoint". targets:
        torchvision's per image: boxes [N, 4] float input pixels, labels [N] int64 1..T, masks
        [N, H, W] uint8, with keypoints keypoints [N, K, 3] (x, y, visibility) input pixels."""
        from torchvision.models.detection.image_list import ImageList

        features = self.features(x)
        images = ImageList(x, [(int(x.shape[-2]), int(x.shape[-1]))] * x.shape[0])
        proposals, rpn_losses = self.detector.rpn(images, features, targets)
        _, head_losses = self.detector.roi_heads(features, proposals, images.image_sizes, targets)
        return {**rpn_losses, **head_losses, "semantic": self._semantic(features)}


def _pad_batch(detections, mask_size: int) -> tuple[Tensor, ...]:
    """Per-image `Detections` -> [B, D, ...] tensors padded with score 0 (the keypoint logits
    None without a keypoint branch)."""
    count = max(int(d.boxes.shape[0]) for d in detections)
    ref = detections[0].boxes
    b = len(detections)
    boxes = ref.new_zeros((b, count, 4))
    scores = ref.new_zeros((b, count))
    classes = torch.zeros((b, count), dtype=torch.int64, device=ref.device)
    probs = ref.new_zeros((b, count, mask_size, mask_size))
    iou = ref.new_zeros((b, count))
    kp = None
    if detections[0].keypoint_logits is not None:
        kp = ref.new_zeros((b, count, *detections[0].keypoint_logits.shape[1:]))
    for i, d in enumerate(detections):
        n = int(d.boxes.shape[0])
        boxes[i, :n], scores[i, :n], classes[i, :n] = d.boxes, d.scores, d.labels - 1
        probs[i, :n], iou[i, :n] = d.mask_probs, d.mask_iou
        if kp is not None:
            kp[i, :n] = d.keypoint_logits
    return boxes, scores, classes, probs, iou, kp


# --------------------------------------------------------------------------------------------
# Configurations (random init), COCO-panoptic classes: 53 stuff + 80 things.

# Light: a 128-wide FPN, box head and MaskIoU fc of 256 (with torchvision's 256 and 512 the
# model was 17.2 M parameters, 34.6 MB in fp16, 6.7 M of them the box head's first fc).
MASK_RCNN_MOBILENETV3 = MaskRCNNConfig(
    name="mask_rcnn_mobilenetv3",
    fpn_channels=128,
    representation_size=256,
    mask_iou_channels=(128, 256),
    keypoint_head_layers=(128, 128, 128, 128),
)

# The light model with the synthetic world's person keypoints (`structures.keypoints`).
MASK_RCNN_MOBILENETV3_KEYPOINTS = dataclasses.replace(
    MASK_RCNN_MOBILENETV3,
    name="mask_rcnn_mobilenetv3_keypoints",
    keypoint_names=SYNTHETIC_KEYPOINTS.names,
)

MASK_RCNN_RESNET50 = MaskRCNNConfig(
    name="mask_rcnn_resnet50",
    backbone="resnet50",
    input_size=(480, 640),
    frozen_batchnorm=True,
    trainable_layers=3,
    # torchvision's maskrcnn_resnet50_fpn: anchors 32-512, its RPN / box settings, 4 x 256 mask
    # head, 1024-wide box head.
    anchor_sizes=((32,), (64,), (128,), (256,), (512,)),
    rpn_pre_nms_top_n_train=2000,
    rpn_post_nms_top_n_train=2000,
    rpn_pre_nms_top_n_test=1000,
    rpn_post_nms_top_n_test=1000,
    box_batch_size_per_image=512,
    box_detections_per_img=100,
    representation_size=1024,
    mask_head_layers=(256, 256, 256, 256),
    mask_predictor_channels=256,
    mask_iou_channels=(256, 1024),
    semantic=SemanticHeadConfig(mid_channels=128, num_levels=4, output_stride=4, norm="group"),
)
