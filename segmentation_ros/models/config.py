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

Conventions: `input_size` is (height, width) of the network input in pixels; images are RGB;
`Normalization` holds RGB means / stds (the official code holds them in BGR order and swaps the
channels after normalising, which is numerically identical).
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from typing import Any

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

BACKBONE_KINDS = ("resnet", "darknet", "mobilenetv3_large")
RESNET_DEPTHS = (18, 34, 50, 101, 152)


@dataclass(frozen=True)
class LayerSpec:
    """One layer of a small conv net, the official `make_net` entry `(channels, kernel, kwargs)`.

    - `channels` int, `kernel_size` > 0: Conv2d(kernel_size, stride, padding) + ReLU.
    - `channels` None, `kernel_size` = -f: bilinear upsampling by f (align_corners=False) + ReLU.
    - `channels` int, `kernel_size` = -f: ConvTranspose2d(kernel f, stride) + ReLU.
    """

    channels: int | None
    kernel_size: int
    stride: int = 1
    padding: int = 0

    def __post_init__(self) -> None:
        if self.kernel_size == 0:
            raise ValueError("LayerSpec.kernel_size must be > 0 (conv) or < 0 (upsample)")
        if self.channels is None and self.kernel_size > 0:
            raise ValueError("LayerSpec with channels=None must be an upsample (kernel_size < 0)")
        if self.channels is not None and self.channels <= 0:
            raise ValueError(f"LayerSpec.channels must be positive, got {self.channels}")


def conv(channels: int, kernel_size: int, *, stride: int = 1, padding: int = 0) -> LayerSpec:
    """A conv + ReLU layer spec."""
    return LayerSpec(channels, kernel_size, stride, padding)


def upsample(factor: int = 2) -> LayerSpec:
    """A bilinear x`factor` upsampling + ReLU layer spec."""
    return LayerSpec(None, -factor)


@dataclass(frozen=True)
class BackboneConfig:
    """Backbone architecture.

    kind: "resnet" (official YOLACT ResNet, `depth` 18/34/50/101/152), "darknet" (DarkNet-53,
        `depth` 53) or "mobilenetv3_large" (torchvision MobileNetV3-Large features, `depth` 0).
    selected_layers: indices of the backbone stages fed to the FPN (official: ResNet (1, 2, 3),
        i.e. C3-C5 at strides 8, 16, 32; DarkNet (2, 3, 4)).
    dcn_layers: per ResNet stage, how many of the last blocks use a modulated deformable 3x3
        convolution (YOLACT++: (0, 4, 6, 3) for R50, (0, 4, 23, 3) for R101); empty = none.
    dcn_interval: only every `dcn_interval`-th of those blocks is deformable (R101++: 3).
    """

    kind: str = "resnet"
    depth: int = 101
    selected_layers: tuple[int, ...] = (1, 2, 3)
    dcn_layers: tuple[int, ...] = ()
    dcn_interval: int = 1

    def __post_init__(self) -> None:
        if self.kind not in BACKBONE_KINDS:
            raise ValueError(
                f"unknown backbone kind {self.kind!r}; expected one of {BACKBONE_KINDS}"
            )
        if self.kind == "resnet" and self.depth not in RESNET_DEPTHS:
            raise ValueError(f"ResNet depth must be one of {RESNET_DEPTHS}, got {self.depth}")
        if self.kind == "darknet" and self.depth != 53:
            raise ValueError(f"DarkNet depth must be 53, got {self.depth}")
        if not self.selected_layers or list(self.selected_layers) != sorted(
            set(self.selected_layers)
        ):
            raise ValueError(
                f"selected_layers must be non-empty and increasing, got {self.selected_layers}"
            )
        if any(self.dcn_layers):
            if self.kind != "resnet" or self.depth < 50:
                raise ValueError("dcn_layers need a Bottleneck ResNet (depth 50, 101 or 152)")
            if len(self.dcn_layers) != 4:
                raise ValueError(f"dcn_layers needs one entry per stage (4), got {self.dcn_layers}")
        if self.dcn_interval < 1:
            raise ValueError(f"dcn_interval must be >= 1, got {self.dcn_interval}")

    @property
    def num_stages(self) -> int:
        return 5 if self.kind == "darknet" else 4

    @property
    def stage_strides(self) -> tuple[int, ...]:
        """Stride of each stage output relative to the input."""
        if self.kind == "darknet":
            return (2, 4, 8, 16, 32)
        return (4, 8, 16, 32)


@dataclass(frozen=True)
class FPNConfig:
    """Official YOLACT FPN (`fpn_base` + the YOLACT overrides).

    num_features: channels of every pyramid level.
    num_downsample: extra levels below the last selected one (P6, P7).
    use_conv_downsample: the extra levels come from 3x3 stride-2 convs (else stride-2 subsampling).
    relu_pred_layers: ReLU after the 3x3 smoothing convs.
    relu_downsample_layers: ReLU on the extra levels (never set by the official configs; the
        official code applies it to the wrong list entries, we apply it as documented).
    interpolation_mode: top-down upsampling mode ("bilinear", align_corners=False).
    """

    num_features: int = 256
    num_downsample: int = 2
    use_conv_downsample: bool = True
    relu_pred_layers: bool = True
    relu_downsample_layers: bool = False
    interpolation_mode: str = "bilinear"

    def __post_init__(self) -> None:
        if self.num_features <= 0 or self.num_downsample < 0:
            raise ValueError("FPN num_features must be > 0 and num_downsample >= 0")


@dataclass(frozen=True)
class ProtonetConfig:
    """Prototype branch: `layers` applied to pyramid level `source_level` (official: P3).

    The last layer's ReLU is left out (as official) and a ReLU is applied to the output, so the
    prototypes are >= 0. The number of prototypes k is the channel count of the last conv.
    """

    source_level: int = 0
    layers: tuple[LayerSpec, ...] = (
        conv(256, 3, padding=1),
        conv(256, 3, padding=1),
        conv(256, 3, padding=1),
        upsample(2),
        conv(256, 3, padding=1),
        conv(32, 1),
    )

    def __post_init__(self) -> None:
        if not self.layers or self.layers[-1].channels is None:
            raise ValueError(
                "the protonet must end with a conv layer (it sets the prototype count)"
            )

    @property
    def num_prototypes(self) -> int:
        last = self.layers[-1].channels
        assert last is not None
        return last

    @property
    def upsample_factor(self) -> int:
        """Total resolution gain of the protonet relative to its source level."""
        factor = 1
        for layer in self.layers:
            if layer.kernel_size < 0:
                factor *= -layer.kernel_size
        return factor


@dataclass(frozen=True)
class HeadConfig:
    """Prediction head (official PredictionModule, no DSSD module, no YOLO regressors).

    extra_head_net: the shared `upfeature` layers before the three output convs.
    extra_layers: extra 3x3 conv + ReLU layers for the (bbox, conf, mask) branches.
    share_prediction_module: one set of head weights for every pyramid level (official: True).
    kernel_size / padding: of the bbox / conf / mask output convs.
    """

    extra_head_net: tuple[LayerSpec, ...] = (conv(256, 3, padding=1),)
    extra_layers: tuple[int, int, int] = (0, 0, 0)
    share_prediction_module: bool = True
    kernel_size: int = 3
    padding: int = 1


@dataclass(frozen=True)
class PriorConfig:
    """Anchor boxes, one entry per pyramid level (official `pred_scales`, `pred_aspect_ratios`).

    At every cell of level l, for each scale in `scales[l]`, for each ratio in
    `aspect_ratios[l]`: one prior (cx, cy, w, h) relative to the input (see `priors.py`).

    use_pixel_scales: scales are in input pixels (official YOLACT); else in cells of the level.
    preapply_sqrt: the ratios are already square-rooted (False: w = s*sqrt(r), h = s/sqrt(r)).
    use_square_anchors: official YOLACT v1 bug kept for its checkpoints: h = w.
    """

    aspect_ratios: tuple[tuple[float, ...], ...] = ((1.0, 0.5, 2.0),) * 5
    scales: tuple[tuple[float, ...], ...] = ((24.0,), (48.0,), (96.0,), (192.0,), (384.0,))
    use_pixel_scales: bool = True
    preapply_sqrt: bool = False
    use_square_anchors: bool = False

    def __post_init__(self) -> None:
        if len(self.aspect_ratios) != len(self.scales):
            raise ValueError(
                f"priors need as many aspect-ratio lists ({len(self.aspect_ratios)}) as scale "
                f"lists ({len(self.scales)}): one per pyramid level"
            )
        for values in (*self.aspect_ratios, *self.scales):
            if not values or any(not (v > 0 and math.isfinite(v)) for v in values):
                raise ValueError(f"prior scales / aspect ratios must be positive, got {values}")

    @property
    def num_levels(self) -> int:
        return len(self.scales)

    @property
    def anchors_per_level(self) -> tuple[int, ...]:
        return tuple(len(s) * len(r) for s, r in zip(self.scales, self.aspect_ratios))


@dataclass(frozen=True)
class Normalization:
    """Input normalisation, RGB order: x = (pixel - mean) / std with pixel in [0, 255].

    Official ResNet configs: ImageNet means / stds (the official BGR tuples reversed).
    Official DarkNet config: x = pixel / 255 (mean 0, std 255, bit-identical).
    """

    mean: tuple[float, float, float] = (123.68, 116.78, 103.94)
    std: tuple[float, float, float] = (58.40, 57.12, 57.38)

    def __post_init__(self) -> None:
        if len(self.mean) != 3 or len(self.std) != 3 or any(s <= 0 for s in self.std):
            raise ValueError("Normalization needs 3 means and 3 positive stds (RGB)")


IMAGENET_NORMALIZATION = Normalization()
UNIT_NORMALIZATION = Normalization(mean=(0.0, 0.0, 0.0), std=(255.0, 255.0, 255.0))


@dataclass(frozen=True)
class MaskIoUConfig:
    """YOLACT++ fast mask re-scoring net: `layers` then a 1x1 conv to C classes, each with ReLU,
    then a global max pool. Input [N, 1, Hp, Wp] (binarised masks at prototype resolution)."""

    layers: tuple[LayerSpec, ...] = (
        conv(8, 3, stride=2),
        conv(16, 3, stride=2),
        conv(32, 3, stride=2),
        conv(64, 3, stride=2),
        conv(128, 3, stride=2),
    )


@dataclass(frozen=True)
class PostprocessConfig:
    """Defaults for the postprocess (official `nms_*`, `max_num_detections`, mask re-scoring).

    score_threshold: detections below this class confidence are dropped before NMS.
    nms_threshold: IoU above which Fast NMS suppresses a box.
    top_k: candidates per class kept for NMS. max_detections: kept after NMS.
    mask_threshold: probability above which a mask pixel is foreground.
    rescore_mask / rescore_bbox / mask_iou_alpha: YOLACT++ mask-IoU re-scoring.
    discard_mask_area: masks with fewer pixels (at prototype resolution) are dropped (-1: off).
    """

    score_threshold: float = 0.05
    nms_threshold: float = 0.5
    top_k: int = 200
    max_detections: int = 100
    mask_threshold: float = 0.5
    rescore_mask: bool = False
    rescore_bbox: bool = False
    mask_iou_alpha: float = 1.0
    discard_mask_area: int = -1


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
    return _to_plain(config)


def config_from_dict(data: dict[str, Any]) -> YolactConfig:
    """Rebuild a `YolactConfig` from `config_to_dict` output; unknown keys raise ValueError."""
    return _from_plain(YolactConfig, data, "config")


def _to_plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _to_plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, tuple | list):
        return [_to_plain(v) for v in value]
    return value


def _from_plain(annotation: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(annotation)
        if value is None and type(None) in options:
            return None
        (inner,) = [a for a in options if a is not type(None)]
        return _from_plain(inner, value, where)
    if dataclasses.is_dataclass(annotation):
        if not isinstance(value, dict):
            raise ValueError(f"{where}: expected a dict for {annotation.__name__}, got {value!r}")
        hints = typing.get_type_hints(annotation)
        names = {f.name for f in dataclasses.fields(annotation)}
        unknown = set(value) - names
        if unknown:
            raise ValueError(f"{where}: unknown {annotation.__name__} fields {sorted(unknown)}")
        kwargs = {k: _from_plain(hints[k], v, f"{where}.{k}") for k, v in value.items()}
        return annotation(**kwargs)
    if origin is tuple:
        args = typing.get_args(annotation)
        if not isinstance(value, list | tuple):
            raise ValueError(f"{where}: expected a list, got {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_from_plain(args[0], v, f"{where}[{i}]") for i, v in enumerate(value))
        if len(args) != len(value):
            raise ValueError(f"{where}: expected {len(args)} values, got {len(value)}")
        return tuple(
            _from_plain(a, v, f"{where}[{i}]") for i, (a, v) in enumerate(zip(args, value))
        )
    if annotation is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if annotation in (int, str, bool) and isinstance(value, annotation):
        return value
    raise ValueError(f"{where}: expected {annotation}, got {value!r}")
