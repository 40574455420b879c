"""Model configurations: frozen dataclasses, one value per architecture, variants by
`dataclasses.replace`.

Everything that decides the architecture (and therefore the checkpoint layout), the priors, the
input normalisation and the postprocess defaults lives here. Nothing in this module is mutated
after construction; `YolactConfig.__post_init__` checks the pieces fit together, so an
inconsistent config cannot be built.

The official YOLACT / YOLACT++ configurations (dbolya/yolact `data/config.py`) are reproduced as
`YOLACT_BASE` (ResNet-101), `YOLACT_RESNET50`, `YOLACT_DARKNET53`, `YOLACT_PLUS_BASE` and
`YOLACT_PLUS_RESNET50`; `YOLACT_MOBILENETV3` and `YOLACT_RESNET18` are our light real-time
variants (random init). Use the registry (`segmentation_ros.models.registry`) to look them up by
name.

The pieces (backbone, FPN, protonet, head, priors, normalisation, mask IoU, postprocess) are in
`models.config_parts` and the plain-dict round trip in `models.config_io`; both are re-exported
here.

Conventions: `input_size` is (height, width) of the network input in pixels; images are RGB;
`Normalization` holds RGB means / stds (the official code holds them in BGR order and swaps the
channels after normalising, which is numerically identical).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from .config_io import from_plain, to_plain
from .config_parts import (  # noqa: F401 - the parts are re-exported: `models.config` names them all
    BACKBONE_KINDS,
    IMAGENET_NORMALIZATION,
    RESNET_DEPTHS,
    UNIT_NORMALIZATION,
    BackboneConfig,
    FPNConfig,
    HeadConfig,
    LayerSpec,
    MaskIoUConfig,
    Normalization,
    PostprocessConfig,
    PriorConfig,
    ProtonetConfig,
    conv,
    upsample,
)

COCO_CLASSES: tuple[str, ...] = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat",
    "traffic light", "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog",
    "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella",
    "handbag", "tie", "suitcase", "frisbee", "skis", "snowboard", "sports ball", "kite",
    "baseball bat", "baseball glove", "skateboard", "surfboard", "tennis racket", "bottle",
    "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple", "sandwich", "orange",
    "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch", "potted plant",
    "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard", "cell phone",
    "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase", "scissors",
    "teddy bear", "hair drier", "toothbrush",
)  # fmt: skip


@dataclass(frozen=True)
class YolactConfig:
    """A complete YOLACT / YOLACT++ model description.

    input_size: (height, width) of the network input in pixels.
    class_names: thing classes; raw confidences have len(class_names) + 1 columns, column 0 is
        background.
    mask_iou: the YOLACT++ mask re-scoring net, None for YOLACT v1.
    """

    name: str
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    fpn: FPNConfig = field(default_factory=FPNConfig)
    protonet: ProtonetConfig = field(default_factory=ProtonetConfig)
    head: HeadConfig = field(default_factory=HeadConfig)
    priors: PriorConfig = field(default_factory=PriorConfig)
    input_size: tuple[int, int] = (550, 550)
    class_names: tuple[str, ...] = COCO_CLASSES
    normalization: Normalization = IMAGENET_NORMALIZATION
    mask_iou: MaskIoUConfig | None = None
    postprocess: PostprocessConfig = field(default_factory=PostprocessConfig)

    def __post_init__(self) -> None:
        # Accept lists from callers (e.g. build_model(..., input_size=[320, 320])).
        object.__setattr__(self, "input_size", tuple(int(v) for v in self.input_size))
        object.__setattr__(self, "class_names", tuple(str(c) for c in self.class_names))
        if len(self.input_size) != 2 or min(self.input_size) < 1:
            raise ValueError(f"input_size must be (height, width) >= 1, got {self.input_size}")
        if not self.class_names:
            raise ValueError("class_names must name at least one class")
        stages = self.backbone.num_stages
        if self.backbone.selected_layers[-1] >= stages or self.backbone.selected_layers[0] < 0:
            raise ValueError(
                f"selected_layers {self.backbone.selected_layers} out of range for a backbone "
                f"with {stages} stages"
            )
        if self.priors.num_levels != self.num_levels:
            raise ValueError(
                f"priors describe {self.priors.num_levels} levels but the FPN makes "
                f"{self.num_levels} (len(selected_layers) + num_downsample)"
            )
        if self.head.share_prediction_module and len(set(self.priors.anchors_per_level)) != 1:
            raise ValueError(
                "a shared prediction module needs the same number of anchors on every level, got "
                f"{self.priors.anchors_per_level}"
            )
        if not 0 <= self.protonet.source_level < self.num_levels:
            raise ValueError(f"protonet.source_level {self.protonet.source_level} out of range")

    @property
    def num_classes(self) -> int:
        """Thing classes, background excluded."""
        return len(self.class_names)

    @property
    def num_prototypes(self) -> int:
        return self.protonet.num_prototypes

    @property
    def num_levels(self) -> int:
        return len(self.backbone.selected_layers) + self.fpn.num_downsample

    @property
    def level_strides(self) -> tuple[int, ...]:
        """Nominal stride of every pyramid level (feature sizes are ceil(size / stride))."""
        strides = [self.backbone.stage_strides[i] for i in self.backbone.selected_layers]
        for _ in range(self.fpn.num_downsample):
            strides.append(strides[-1] * 2)
        return tuple(strides)

    @property
    def use_maskiou(self) -> bool:
        return self.mask_iou is not None


# --------------------------------------------------------------------------------------------
# Official configurations (dbolya/yolact data/config.py), 550 x 550, COCO's 80 classes.

_V1_PRIORS = PriorConfig(
    aspect_ratios=((1.0, 0.5, 2.0),) * 5,
    scales=((24.0,), (48.0,), (96.0,), (192.0,), (384.0,)),
    use_pixel_scales=True,
    preapply_sqrt=False,
    use_square_anchors=True,  # official: "backward compatibility with a bug"
)

_PLUS_PRIORS = PriorConfig(
    aspect_ratios=((1.0, 0.5, 2.0),) * 5,
    scales=tuple(tuple(i * 2 ** (j / 3.0) for j in range(3)) for i in (24, 48, 96, 192, 384)),
    use_pixel_scales=True,
    preapply_sqrt=False,
    use_square_anchors=False,
)

YOLACT_BASE = YolactConfig(
    name="yolact_base",
    backbone=BackboneConfig(kind="resnet", depth=101, selected_layers=(1, 2, 3)),
    priors=_V1_PRIORS,
)

YOLACT_RESNET50 = dataclasses.replace(
    YOLACT_BASE,
    name="yolact_resnet50",
    backbone=BackboneConfig(kind="resnet", depth=50, selected_layers=(1, 2, 3)),
)

YOLACT_DARKNET53 = dataclasses.replace(
    YOLACT_BASE,
    name="yolact_darknet53",
    backbone=BackboneConfig(kind="darknet", depth=53, selected_layers=(2, 3, 4)),
    normalization=UNIT_NORMALIZATION,
)

_PLUS_POSTPROCESS = PostprocessConfig(
    rescore_mask=True, rescore_bbox=False, mask_iou_alpha=25.0, discard_mask_area=5 * 5
)

YOLACT_PLUS_BASE = dataclasses.replace(
    YOLACT_BASE,
    name="yolact_plus_base",
    backbone=BackboneConfig(
        kind="resnet",
        depth=101,
        selected_layers=(1, 2, 3),
        dcn_layers=(0, 4, 23, 3),
        dcn_interval=3,
    ),
    priors=_PLUS_PRIORS,
    mask_iou=MaskIoUConfig(),
    postprocess=_PLUS_POSTPROCESS,
)

YOLACT_PLUS_RESNET50 = dataclasses.replace(
    YOLACT_PLUS_BASE,
    name="yolact_plus_resnet50",
    backbone=BackboneConfig(
        kind="resnet", depth=50, selected_layers=(1, 2, 3), dcn_layers=(0, 4, 6, 3), dcn_interval=1
    ),
)

# --------------------------------------------------------------------------------------------
# Light real-time configurations (ours, random init): narrow FPN / protonet / head, 320 x 320.

_LIGHT_INPUT = (320, 320)
_LIGHT_PRIORS = PriorConfig(
    aspect_ratios=((1.0, 0.5, 2.0),) * 5,
    # The official pixel scales (24 ... 384 at 550) rescaled to a 320 input.
    scales=((14.0,), (28.0,), (56.0,), (112.0,), (224.0,)),
    use_pixel_scales=True,
    preapply_sqrt=False,
    use_square_anchors=False,
)
_LIGHT_FPN = FPNConfig(num_features=128)
_LIGHT_PROTONET = ProtonetConfig(
    source_level=0,
    layers=(
        conv(64, 3, padding=1),
        conv(64, 3, padding=1),
        upsample(2),
        conv(64, 3, padding=1),
        conv(16, 1),
    ),
)
_LIGHT_HEAD = HeadConfig(extra_head_net=(conv(128, 3, padding=1),))

YOLACT_MOBILENETV3 = YolactConfig(
    name="yolact_mobilenetv3",
    backbone=BackboneConfig(kind="mobilenetv3_large", depth=0, selected_layers=(1, 2, 3)),
    fpn=_LIGHT_FPN,
    protonet=_LIGHT_PROTONET,
    head=_LIGHT_HEAD,
    priors=_LIGHT_PRIORS,
    input_size=_LIGHT_INPUT,
)

# YOLACT++ light: deformable depthwise convs in the stride-16 stage (blocks 0, 2, 4 of its six,
# the ResNet rule with interval 2; the 5x5 blocks at stride 32 stay plain: their offset convs
# would double the file) and the mask-IoU re-scoring head.
YOLACT_PLUS_MOBILENETV3 = dataclasses.replace(
    YOLACT_MOBILENETV3,
    name="yolact_plus_mobilenetv3",
    backbone=BackboneConfig(
        kind="mobilenetv3_large",
        depth=0,
        selected_layers=(1, 2, 3),
        dcn_layers=(0, 0, 6, 0),
        dcn_interval=2,
    ),
    # Padded: unpadded (official, made for 138 x 138 prototypes) 3x3 / 2 convs shrink this
    # net's 60 x 80 prototypes below a kernel by the fifth layer.
    mask_iou=MaskIoUConfig(
        layers=tuple(conv(c, 3, stride=2, padding=1) for c in (8, 16, 32, 64, 128)),
        last_relu=False,  # trained from random initialisation (see MaskIoUConfig)
    ),
    postprocess=_PLUS_POSTPROCESS,
)

YOLACT_RESNET18 = dataclasses.replace(
    YOLACT_MOBILENETV3,
    name="yolact_resnet18",
    backbone=BackboneConfig(kind="resnet", depth=18, selected_layers=(1, 2, 3)),
)


def with_input_size(
    config: YolactConfig, input_size: tuple[int, int], *, rescale_anchors: bool = True
) -> YolactConfig:
    """`config` at another input size (height, width).

    With `rescale_anchors` (and pixel scales) the anchor scales are multiplied by
    sqrt(new area / old area), so that anchors keep their size relative to the image, the way
    the official `yolact_im400` / `yolact_im700` configs rescale theirs. Without it, anchors
    keep their size in pixels (what a checkpoint trained at the old size expects of objects of
    the same pixel size).
    """
    new = dataclasses.replace(config, input_size=tuple(input_size))
    if not rescale_anchors or not config.priors.use_pixel_scales:
        return new
    factor = math.sqrt(
        (new.input_size[0] * new.input_size[1]) / (config.input_size[0] * config.input_size[1])
    )
    scales = tuple(tuple(s * factor for s in level) for level in config.priors.scales)
    return dataclasses.replace(new, priors=dataclasses.replace(config.priors, scales=scales))


# --------------------------------------------------------------------------------------------
# Plain-dict round trip (for our checkpoints; `torch.load(weights_only=True)` safe).


def config_to_dict(config: YolactConfig) -> dict[str, Any]:
    """The config as nested dicts / lists / numbers / strings (JSON and weights_only safe)."""
    return to_plain(config)


def config_from_dict(data: dict[str, Any]) -> YolactConfig:
    """Rebuild a `YolactConfig` from `config_to_dict` output; unknown keys raise ValueError."""
    return from_plain(YolactConfig, data, "config")
