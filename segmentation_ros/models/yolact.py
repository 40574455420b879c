"""The YOLACT / YOLACT++ network (Bolya et al., ICCV 2019 / TPAMI 2020) as a plain module.

`Yolact.forward(x)` takes a normalised batch [B, 3, H, W] (see `preprocess.py`) and returns the
raw head tensors as `YolactOutputs` (box offsets, class logits, tanh mask coefficients, ReLU
prototypes channels-last); decoding, NMS and mask assembly are the postprocess's job.

Module and parameter names are the official ones (`backbone`, `fpn`, `proto_net`,
`prediction_layers.0.upfeature.0`, `maskiou_net.maskiou_net.N`, ...), so an official checkpoint
is the state dict of this module minus the official training-only keys (see `checkpoint.py`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .backbones import build_backbone
from .config import LayerSpec, YolactConfig
from .fpn import FPN
from .outputs import YolactOutputs
from .priors import make_priors


class InterpolateModule(nn.Module):
    """Bilinear upsampling by an integer factor (align_corners=False), a module for Sequential."""

    def __init__(self, scale_factor: int) -> None:
        super().__init__()
        self.scale_factor = scale_factor

    def forward(self, x: Tensor) -> Tensor:
        return F.interpolate(
            x, scale_factor=self.scale_factor, mode="bilinear", align_corners=False
        )


def make_net(
    in_channels: int, layers: Sequence[LayerSpec], *, include_last_relu: bool = True
) -> tuple[nn.Sequential, int]:
    """The official `make_net`: each spec becomes [layer, ReLU]; returns (net, out_channels).

    Sequential indices are the official ones (conv at 0, 2, 4, ...), so are the weight names.
    """
    modules: list[nn.Module] = []
    for spec in layers:
        if spec.kernel_size > 0:
            assert spec.channels is not None
            layer: nn.Module = nn.Conv2d(
                in_channels,
                spec.channels,
                spec.kernel_size,
                stride=spec.stride,
                padding=spec.padding,
            )
        elif spec.channels is None:
            layer = InterpolateModule(-spec.kernel_size)
        else:
            layer = nn.ConvTranspose2d(
                in_channels,
                spec.channels,
                -spec.kernel_size,
                stride=spec.stride,
                padding=spec.padding,
            )
        modules += [layer, nn.ReLU(inplace=True)]
        if spec.channels is not None:
            in_channels = spec.channels
    if not include_last_relu:
        modules = modules[:-1]
    return nn.Sequential(*modules), in_channels


def _extra(num_layers: int, channels: int) -> nn.Module:
    if num_layers == 0:
        return nn.Identity()
    modules: list[nn.Module] = []
    for _ in range(num_layers):
        modules += [nn.Conv2d(channels, channels, 3, padding=1), nn.ReLU(inplace=True)]
    return nn.Sequential(*modules)


class PredictionModule(nn.Module):
    """Per-level head: `upfeature` convs, then 3x3 convs for boxes, class logits and mask
    coefficients of `num_anchors` priors per cell.

    Args:
        in_channels: channels of the pyramid maps.
        num_anchors: priors per cell.
        num_classes: confidence columns, background included (C + 1).
        num_prototypes: k, mask coefficients per prior.
        extra_head_net: the `upfeature` layers (official: one 3x3 conv + ReLU).
        extra_layers: extra conv + ReLU layers per (bbox, conf, mask) branch.
        kernel_size, padding: of the three output convs.

    forward(x [B, in_channels, h, w]) -> (loc [B, h*w*a, 4], conf logits [B, h*w*a, C + 1],
    coef [B, h*w*a, k] after tanh), rows ordered cell-major (row, column) then anchor.
    """

    def __init__(
        self,
        in_channels: int,
        *,
        num_anchors: int,
        num_classes: int,
        num_prototypes: int,
        extra_head_net: Sequence[LayerSpec] = (),
        extra_layers: Sequence[int] = (0, 0, 0),
        kernel_size: int = 3,
        padding: int = 1,
    ) -> None:
        super().__init__()
        self.num_anchors = num_anchors
        self.num_classes = num_classes
        self.num_prototypes = num_prototypes
        channels = in_channels
        if extra_head_net:
            self.upfeature, channels = make_net(in_channels, extra_head_net)
        else:
            self.upfeature = nn.Identity()
        params = {"kernel_size": kernel_size, "padding": padding}
        self.bbox_layer = nn.Conv2d(channels, num_anchors * 4, **params)
        self.conf_layer = nn.Conv2d(channels, num_anchors * num_classes, **params)
        self.mask_layer = nn.Conv2d(channels, num_anchors * num_prototypes, **params)
        self.bbox_extra, self.conf_extra, self.mask_extra = (
            _extra(n, channels) for n in extra_layers
        )

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        batch = x.shape[0]
        x = self.upfeature(x)
        loc = self.bbox_layer(self.bbox_extra(x)).permute(0, 2, 3, 1).reshape(batch, -1, 4)
        conf = self.conf_layer(self.conf_extra(x)).permute(0, 2, 3, 1)
        coef = self.mask_layer(self.mask_extra(x)).permute(0, 2, 3, 1)
        conf = conf.reshape(batch, -1, self.num_classes)
        coef = torch.tanh(coef.reshape(batch, -1, self.num_prototypes))
        return loc, conf, coef


class FastMaskIoUNet(nn.Module):
    """YOLACT++ fast mask re-scoring: [N, 1, Hp, Wp] masks -> [N, C] predicted mask IoU per
    class (official `FastMaskIoUNet`: `layers` + a 1x1 conv to C, all with ReLU, global max)."""

    def __init__(
        self, layers: Sequence[LayerSpec], num_classes: int, *, last_relu: bool = True
    ) -> None:
        super().__init__()
        last = LayerSpec(num_classes, 1)
        self.maskiou_net, _ = make_net(1, (*layers, last), include_last_relu=last_relu)
        self.num_classes = num_classes
        # The last ReLU gives a class whose output is <= 0 for every mask no gradient; from
        # random init (zero bias) some classes start dead and stay so (a learning test saw its
        # loss stuck at 2.145). Bias 1 starts every class alive; official checkpoints replace it.
        last_conv = [m for m in self.maskiou_net if isinstance(m, nn.Conv2d)][-1]
        nn.init.constant_(last_conv.bias, 1.0)

    def forward(self, masks: Tensor) -> Tensor:
        if masks.ndim != 4 or masks.shape[1] != 1:
            raise ValueError(f"masks must be [N, 1, Hp, Wp], got {tuple(masks.shape)}")
        if masks.shape[0] == 0:
            return masks.new_zeros((0, self.num_classes))
        return self.maskiou_net(masks).amax(dim=(2, 3))


class BackboneWithFPN(nn.Module):
    """Backbone + FPN: [B, 3, H, W] -> list of pyramid maps [B, out_channels, H_l, W_l].

    Attributes: `backbone`, `fpn` (official names, so `backbone.*` / `fpn.*` keys of an official
    checkpoint load here), `selected_layers`, `out_channels`, `strides` (nominal per level).
    """

    def __init__(self, backbone: nn.Module, fpn: FPN, selected_layers: Sequence[int]) -> None:
        super().__init__()
        self.backbone = backbone
        self.fpn = fpn
        self.selected_layers = tuple(selected_layers)
        self.out_channels = fpn.num_features
        strides = [backbone.strides[i] for i in self.selected_layers]
        strides += [strides[-1] * 2 ** (k + 1) for k in range(fpn.num_downsample)]
        self.strides = tuple(strides)

    def forward(self, x: Tensor) -> list[Tensor]:
        return pyramid_features(self.backbone, self.fpn, self.selected_layers, x)


def pyramid_features(
    backbone: nn.Module, fpn: FPN, selected_layers: Sequence[int], x: Tensor
) -> list[Tensor]:
    """FPN maps of `x`, finest first: the selected backbone stages through the FPN."""
    stages = backbone(x)
    return fpn([stages[i] for i in selected_layers])


def _build_fpn(config: YolactConfig, backbone: nn.Module) -> FPN:
    fpn = config.fpn
    return FPN(
        [backbone.channels[i] for i in config.backbone.selected_layers],
        num_features=fpn.num_features,
        num_downsample=fpn.num_downsample,
        use_conv_downsample=fpn.use_conv_downsample,
        relu_pred_layers=fpn.relu_pred_layers,
        relu_downsample_layers=fpn.relu_downsample_layers,
        interpolation_mode=fpn.interpolation_mode,
    )


def build_backbone_fpn(config: YolactConfig) -> BackboneWithFPN:
    """The backbone and FPN of `config` alone (for the panoptic / PCV models)."""
    backbone = build_backbone(config.backbone)
    return BackboneWithFPN(backbone, _build_fpn(config, backbone), config.backbone.selected_layers)


class Yolact(nn.Module):
    """YOLACT / YOLACT++: backbone -> FPN -> (protonet on one level, shared prediction head on
    every level).

    Args:
        backbone: returns a tuple of stage maps; has `channels` and `strides`.
        fpn: takes the `selected_layers` stages.
        proto_net: prototype net (without its last ReLU) on pyramid level `proto_source_level`.
        prediction_layers: one PredictionModule shared by all levels, or one per level.
        selected_layers: backbone stages fed to the FPN.
        proto_source_level: pyramid level of the protonet input.
        maskiou_net: YOLACT++ FastMaskIoUNet, or None.
        semantic_seg_conv: the training-only 1x1 conv of YOLACT's auxiliary semantic
            segmentation loss ([B, F, h, w] P3 -> [B, C, h, w] thing logits), or None (inference:
            `from_config(config, training=False)` does not build it; `forward` never runs it).
        class_names: thing classes (background excluded).
        priors: [A, 4] priors for the nominal input size (kept as a non-persistent buffer so it
            follows `.to(device)`), or None.
        config: the config the model was built from (informational; `from_config` sets it).

    forward(x [B, 3, H, W] float32, normalised) -> YolactOutputs(loc [B, A, 4],
    conf [B, A, C + 1] logits, coef [B, A, k] tanh, proto [B, Hp, Wp, k] ReLU, channels last).
    Any H, W work; A = `priors.num_priors(config, (H, W))`, Hp = 2 * ceil(H / 8) for the official
    protonet. The device and dtype follow `x`.
    """

    def __init__(
        self,
        *,
        backbone: nn.Module,
        fpn: FPN,
        proto_net: nn.Module,
        prediction_layers: nn.ModuleList,
        selected_layers: Sequence[int],
        proto_source_level: int = 0,
        maskiou_net: FastMaskIoUNet | None = None,
        semantic_seg_conv: nn.Conv2d | None = None,
        class_names: Sequence[str] = (),
        priors: Tensor | None = None,
        config: YolactConfig | None = None,
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.fpn = fpn
        self.proto_net = proto_net
        self.prediction_layers = prediction_layers
        if maskiou_net is not None:
            self.maskiou_net = maskiou_net
        if semantic_seg_conv is not None:  # registered last: its parameters come last
            self.semantic_seg_conv = semantic_seg_conv
        self.selected_layers = tuple(selected_layers)
        self.proto_source_level = proto_source_level
        self.class_names = tuple(class_names)
        self.config = config
        self.register_buffer("priors", priors, persistent=False)

    @classmethod
    def from_config(cls, config: YolactConfig, *, training: bool = False) -> Yolact:
        """The network of `config`; `training` adds the auxiliary semantic head (official
        `semantic_seg_conv`: a 1x1 conv from the FPN's finest level, P3, to the C thing
        classes), which only the training loss uses."""
        backbone = build_backbone(config.backbone)
        fpn = _build_fpn(config, backbone)
        channels = config.fpn.num_features
        proto_net, _ = make_net(channels, config.protonet.layers, include_last_relu=False)
        head = config.head
        num_heads = 1 if head.share_prediction_module else config.num_levels
        prediction_layers = nn.ModuleList(
            PredictionModule(
                channels,
                num_anchors=config.priors.anchors_per_level[level],
                num_classes=config.num_classes + 1,
                num_prototypes=config.num_prototypes,
                extra_head_net=head.extra_head_net,
                extra_layers=head.extra_layers,
                kernel_size=head.kernel_size,
                padding=head.padding,
            )
            for level in range(num_heads)
        )
        maskiou_net = None
        if config.mask_iou is not None:
            maskiou_net = FastMaskIoUNet(
                config.mask_iou.layers, config.num_classes, last_relu=config.mask_iou.last_relu
            )
        return cls(
            backbone=backbone,
            fpn=fpn,
            proto_net=proto_net,
            prediction_layers=prediction_layers,
            selected_layers=config.backbone.selected_layers,
            proto_source_level=config.protonet.source_level,
            maskiou_net=maskiou_net,
            semantic_seg_conv=(
                nn.Conv2d(channels, config.num_classes, kernel_size=1) if training else None
            ),
            class_names=config.class_names,
            priors=make_priors(config),
            config=config,
        )

    @property
    def num_classes(self) -> int:
        """Thing classes C (confidences have C + 1 columns)."""
        return self.prediction_layers[0].num_classes - 1

    @property
    def mask_iou_head(self) -> FastMaskIoUNet | None:
        """The YOLACT++ mask re-scoring net ([N, 1, Hp, Wp] -> [N, C]), None for YOLACT v1."""
        return getattr(self, "maskiou_net", None)

    @property
    def semantic_aux_head(self) -> nn.Conv2d | None:
        """The training-only auxiliary semantic head (P3 -> [B, C, h, w] logits), or None."""
        return getattr(self, "semantic_seg_conv", None)

    def features(self, x: Tensor) -> list[Tensor]:
        """FPN maps of a normalised batch, finest first (P3 ... P7 for the official models)."""
        return pyramid_features(self.backbone, self.fpn, self.selected_layers, x)

    def forward_with_aux(self, x: Tensor) -> tuple[YolactOutputs, Tensor | None]:
        """Training: the raw outputs and the auxiliary semantic logits [B, C, h, w] on P3 (None
        without the training-only head), from one pass."""
        pyramid = self.features(x)
        head = self.semantic_aux_head
        return self.heads(pyramid), (head(pyramid[0]) if head is not None else None)

    def forward(self, x: Tensor) -> YolactOutputs:
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"expected a normalised batch [B, 3, H, W], got {tuple(x.shape)}")
        return self.heads(self.features(x))

    def heads(self, pyramid: Sequence[Tensor]) -> YolactOutputs:
        """The raw outputs of FPN maps (`features`): protonet and prediction heads."""
        proto = F.relu(self.proto_net(pyramid[self.proto_source_level]))
        proto = proto.permute(0, 2, 3, 1).contiguous()
        shared = len(self.prediction_layers) == 1
        locs, confs, coefs = [], [], []
        for level, feature in enumerate(pyramid):
            head = self.prediction_layers[0 if shared else level]
            loc, conf, coef = head(feature)
            locs.append(loc)
            confs.append(conf)
            coefs.append(coef)
        return YolactOutputs(
            loc=torch.cat(locs, dim=1),
            conf=torch.cat(confs, dim=1),
            coef=torch.cat(coefs, dim=1),
            proto=proto,
        )
