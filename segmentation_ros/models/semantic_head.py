"""UPSNet-style semantic head on FPN features (Xiong et al., "UPSNet: A Unified Panoptic
Segmentation Network", CVPR 2019, Sec. 3.2).

Each used FPN level goes through the same small subnet of 3x3 convolutions (weights shared
across levels, deformable convolutions optional, as UPSNet), the results are upsampled to the
finest used level, concatenated and classified by a 1x1 convolution into S + T logits: the stuff
classes first, then the thing classes (the panoptic category order of
`segmentation_ros.panoptic.result`). The logits are then upsampled bilinearly to 1/4 or 1/8 of
the network input.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

NORMS = ("none", "batch", "group")


def _norm(kind: str, channels: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "group":
        return nn.GroupNorm(min(32, channels), channels)
    return nn.Identity()


def _conv3x3(in_channels: int, out_channels: int, *, deformable: bool, bias: bool) -> nn.Module:
    if deformable:
        # Imported here so that the plain head does not depend on the custom op being built.
        from segmentation_ros.ops.deform_conv import ModulatedDeformConv2d

        return ModulatedDeformConv2d(in_channels, out_channels, 3, padding=1, bias=bias)
    return nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=bias)


class SemanticHead(nn.Module):
    """Semantic segmentation head: FPN features -> [B, S + T, H / os, W / os] logits.

    Args:
        in_channels: channels of every FPN map.
        mid_channels: channels of the per-level subnet output (UPSNet: 128); the classifier sees
            `num_levels * mid_channels` channels.
        num_classes: S + T output channels, stuff classes first, then thing classes.
        num_levels: how many FPN levels are used, finest first (`features[:num_levels]`).
        output_stride: 4 or 8, the stride of the logits relative to the network input.
        use_deformable: modulated deformable 3x3 convolutions (DCNv2, `segros` op) in the subnet
            instead of plain ones, as UPSNet.
        input_stride: stride of `features[0]` relative to the network input (YOLACT's P3: 8).
            Level l is expected at stride `input_stride * 2**l`.
        num_convs: 3x3 convolutions in the subnet (UPSNet: 2); the first maps in_channels to
            mid_channels.
        norm: "group" (GroupNorm, min(32, mid_channels) groups), "batch" or "none".

    `forward(features)` takes the list of FPN maps `[B, in_channels, H_l, W_l]`, finest first (it
    may hold more than `num_levels` maps; the extra coarse ones are ignored), and returns raw
    logits `[B, num_classes, H_0 * r, W_0 * r]` with `r = input_stride // output_stride`, i.e.
    1/output_stride of the network input (rounded up as the FPN rounds).
    """

    def __init__(
        self,
        in_channels: int,
        mid_channels: int,
        num_classes: int,
        num_levels: int,
        output_stride: int = 4,
        use_deformable: bool = False,
        *,
        input_stride: int = 8,
        num_convs: int = 2,
        norm: str = "group",
    ) -> None:
        super().__init__()
        for name, value in (
            ("in_channels", in_channels),
            ("mid_channels", mid_channels),
            ("num_classes", num_classes),
            ("num_levels", num_levels),
            ("num_convs", num_convs),
        ):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if output_stride not in (4, 8):
            raise ValueError(f"output_stride must be 4 or 8, got {output_stride!r}")
        if input_stride < output_stride or input_stride % output_stride:
            raise ValueError(
                f"input_stride ({input_stride}) must be a multiple of output_stride "
                f"({output_stride}); the head only upsamples"
            )
        if norm not in NORMS:
            raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")
        if norm == "group" and mid_channels % min(32, mid_channels):
            raise ValueError(f"norm='group' needs mid_channels divisible by 32, got {mid_channels}")

        self.in_channels = in_channels
        self.num_classes = num_classes
        self.num_levels = num_levels
        self.output_stride = output_stride
        self.input_stride = input_stride
        self.upsample_factor = input_stride // output_stride

        layers: list[nn.Module] = []
        channels = in_channels
        for _ in range(num_convs):
            layers += [
                _conv3x3(channels, mid_channels, deformable=use_deformable, bias=norm == "none"),
                _norm(norm, mid_channels),
                nn.ReLU(inplace=True),
            ]
            channels = mid_channels
        self.subnet = nn.Sequential(*layers)
        self.classifier = nn.Conv2d(num_levels * mid_channels, num_classes, 1)
        self._init_weights()

    def _init_weights(self) -> None:
        # The main kernels only (direct children): a deformable conv initialises its own offset
        # branch (zero offsets, mask 0.5) and must keep it.
        for m in self.subnet.children():
            weight = getattr(m, "weight", None)
            if isinstance(weight, nn.Parameter) and weight.dim() == 4:
                nn.init.kaiming_normal_(weight, mode="fan_out", nonlinearity="relu")
                bias = getattr(m, "bias", None)
                if isinstance(bias, nn.Parameter):
                    nn.init.zeros_(bias)
        nn.init.normal_(self.classifier.weight, std=0.01)
        nn.init.zeros_(self.classifier.bias)

    def forward(self, features: list[Tensor]) -> Tensor:
        if len(features) < self.num_levels:
            raise ValueError(
                f"SemanticHead needs {self.num_levels} FPN levels, got {len(features)} maps"
            )
        finest = features[0]
        if finest.dim() != 4 or finest.shape[1] != self.in_channels:
            raise ValueError(
                f"FPN maps must be [B, {self.in_channels}, H, W], got {tuple(finest.shape)}"
            )
        size = finest.shape[-2:]
        outs = []
        for level, x in enumerate(features[: self.num_levels]):
            y = self.subnet(x)
            if level:
                y = F.interpolate(y, size=size, mode="bilinear", align_corners=False)
            outs.append(y)
        logits = self.classifier(torch.cat(outs, dim=1))
        if self.upsample_factor != 1:
            logits = F.interpolate(
                logits, scale_factor=self.upsample_factor, mode="bilinear", align_corners=False
            )
        return logits


def semantic_loss(
    logits: Tensor, target: Tensor, ignore_index: int = 255, class_weights: Tensor | None = None
) -> Tensor:
    """Mean pixel cross-entropy of semantic logits against a label map.

    logits: [B, C, h, w] float raw logits (C = S + T, stuff first).
    target: [B, H, W] integer class ids in [0, C) or `ignore_index`. When (H, W) differs from
        (h, w) the logits are upsampled bilinearly to (H, W) first (UPSNet computes the loss at
        the label resolution).
    class_weights: [C] per-class weights of the pixels (None: all 1); the mean is then weighted
        (divided by the summed weight of the pixels, as `F.cross_entropy`).
    Returns a scalar; 0 (still differentiable) when every pixel is ignored.
    """
    if logits.dim() != 4:
        raise ValueError(f"logits must be [B, C, h, w], got {tuple(logits.shape)}")
    if target.dim() != 3 or target.shape[0] != logits.shape[0]:
        raise ValueError(
            f"target must be [B, H, W] with B = {logits.shape[0]}, got {tuple(target.shape)}"
        )
    if target.dtype.is_floating_point or target.dtype == torch.bool:
        raise TypeError(f"target must hold integer class ids, got {target.dtype}")
    num_classes = logits.shape[1]
    target = target.long()
    valid = target != ignore_index
    bad = valid & ((target < 0) | (target >= num_classes))
    if bool(bad.any()):
        raise ValueError(
            f"target holds class ids outside [0, {num_classes}) that are not "
            f"ignore_index={ignore_index}: {torch.unique(target[bad]).tolist()[:10]}"
        )
    if not bool(valid.any()):
        return logits.sum() * 0.0
    if target.shape[-2:] != logits.shape[-2:]:
        logits = F.interpolate(logits, size=target.shape[-2:], mode="bilinear", align_corners=False)
    if class_weights is not None:
        if class_weights.shape != (num_classes,):
            raise ValueError(f"{tuple(class_weights.shape)} class weights, {num_classes} classes")
        class_weights = class_weights.to(device=logits.device, dtype=torch.float32)
        logits = logits.float()  # cross_entropy wants the weights in the logits' dtype
    return F.cross_entropy(logits, target, weight=class_weights, ignore_index=ignore_index)
