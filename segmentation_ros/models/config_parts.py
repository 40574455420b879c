"""The pieces of a `YolactConfig` (frozen dataclasses): backbone, FPN, protonet, prediction head,
priors, input normalisation, YOLACT++ mask-IoU net and postprocess defaults. Re-exported by
`models.config`, where the whole config and the registered values live.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

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
    dcn_layers: per stage, how many of the last blocks use a modulated deformable convolution
        (YOLACT++: (0, 4, 6, 3) for R50, (0, 4, 23, 3) for R101; on MobileNetV3 the blocks'
        depthwise convolutions become deformable); empty = none.
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
            if not (
                self.kind == "mobilenetv3_large" or (self.kind == "resnet" and self.depth >= 50)
            ):
                raise ValueError(
                    "dcn_layers need a Bottleneck ResNet (depth 50, 101 or 152) or MobileNetV3"
                )
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
    then a global max pool. Input [N, 1, Hp, Wp] (binarised masks at prototype resolution).

    last_relu: the official net ends in a ReLU too. Trained from random initialisation, where
    every early mask has IoU 0, that ReLU learns to output 0 and then never gets a gradient
    again (measured: the light YOLACT++'s mask-IoU loss was 0.000 from step 100 on); False
    leaves the last conv linear (the postprocess clamps the predicted IoU at 0).
    """

    last_relu: bool = True
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
