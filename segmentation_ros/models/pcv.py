"""Pixel Consensus Voting network (Wang et al., CVPR 2020): backbone + FPN + UPSNet-style
semantic head + voting head.

`PCVModel.forward(x)` returns `PCVOutputs(votes [B, 18, h, w], semantic [B, S + T, h, w])`, both
raw logits on the voting grid (1/output_stride of the input, 1/4 by default): the 17 cells of the
vote table plus abstain (`segmentation_ros.ops.pcv_voting`), and the semantic classes, stuff
first (panoptic category order of `segmentation_ros.panoptic.result`). The panoptic result is
made by `segmentation_ros.panoptic.pcv_inference.pcv_panoptic` per image.

Training: targets from `assign_vote_cells` (instance map on the voting grid) and
`pcv_vote_loss` weighted by `models.pcv_losses.vote_weight_mask` (the reference's WeightMask); the
semantic head with `semantic_loss`.

Config: `PCVConfig` (frozen) reuses a `YolactConfig` as the description of the backbone, FPN,
input size and normalisation (its `class_names` are the thing classes; its prior / protonet /
prediction-head fields are not used), like `PanopticYolactConfig`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from segmentation_ros.ops.pcv_voting import VoteConfig

from . import config as _cfg
from .config import Normalization, YolactConfig
from .config_io import from_plain, to_plain
from .panoptic_yolact import COCO_PANOPTIC_STUFF, SemanticHeadConfig
from .semantic_head import NORMS, SemanticHead
from .yolact import BackboneWithFPN, build_backbone_fpn


class PCVOutputs(NamedTuple):
    """votes: [B, 18, h, w] logits (cells 0..16, abstain 17); semantic: [B, S + T, h, w] logits."""

    votes: Tensor
    semantic: Tensor


def _norm(kind: str, channels: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "group":
        return nn.GroupNorm(min(32, channels), channels)
    return nn.Identity()


class VotingHead(nn.Module):
    """Per-pixel vote classifier: a feature map [B, in_channels, H, W] -> logits
    [B, num_classes, H * upsample_factor, W * upsample_factor].

    `num_convs` 3 x 3 convolutions (+ norm + ReLU) of `mid_channels`, a 1 x 1 classifier into
    `num_classes` (18: 17 cells + abstain), then bilinear upsampling by `upsample_factor` (the
    head on the stride-8 P3 map with factor 2 gives the stride-4 voting grid).
    """

    def __init__(
        self,
        in_channels: int,
        mid_channels: int = 64,
        num_convs: int = 3,
        num_classes: int = 18,
        *,
        upsample_factor: int = 1,
        norm: str = "none",
    ) -> None:
        super().__init__()
        for name, value in (
            ("in_channels", in_channels),
            ("mid_channels", mid_channels),
            ("num_classes", num_classes),
            ("upsample_factor", upsample_factor),
        ):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if not isinstance(num_convs, int) or num_convs < 0:
            raise ValueError(f"num_convs must be an int >= 0, got {num_convs!r}")
        if norm not in NORMS:
            raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.upsample_factor = upsample_factor
        layers: list[nn.Module] = []
        channels = in_channels
        for _ in range(num_convs):
            layers += [
                nn.Conv2d(channels, mid_channels, 3, padding=1, bias=norm == "none"),
                _norm(norm, mid_channels),
                nn.ReLU(inplace=True),
            ]
            channels = mid_channels
        self.convs = nn.Sequential(*layers)
        self.classifier = nn.Conv2d(channels, num_classes, 1)
        for m in self.convs.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        nn.init.normal_(self.classifier.weight, std=0.01)
        nn.init.zeros_(self.classifier.bias)

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"features must be [B, {self.in_channels}, H, W], got {tuple(x.shape)}"
            )
        logits = self.classifier(self.convs(x))
        if self.upsample_factor != 1:
            logits = F.interpolate(
                logits, scale_factor=self.upsample_factor, mode="bilinear", align_corners=False
            )
        return logits


def pcv_vote_loss(
    logits: Tensor, gt_cells: Tensor, weights: Tensor | None = None, ignore_index: int = -1
) -> Tensor:
    """Pixel cross-entropy of the vote logits, weighted as the reference (w-hc/pcv `loss.py`,
    normalisation "total"): sum(weight * ce) / sum(weight) over the pixels not ignored.

    logits: [B, C, h, w] raw logits (C = 18). gt_cells: [B, h, w] integer vote classes
    (`assign_vote_cells` on the same grid) in [0, C) or `ignore_index`.
    weights: [B, h, w] float >= 0 per pixel (`models.pcv_losses.vote_weight_mask`: the reference's
        `WeightMask`, 1 / sqrt(segment area)); None = 1 everywhere (the plain mean).
    Returns a scalar; 0 (still differentiable) when every pixel is ignored or weighs 0.
    """
    if logits.dim() != 4:
        raise ValueError(f"logits must be [B, C, h, w], got {tuple(logits.shape)}")
    grid = (logits.shape[0], *logits.shape[2:])
    if gt_cells.dim() != 3 or gt_cells.shape != grid:
        raise ValueError(
            f"gt_cells must be [B, h, w] = {grid} (the grid of the logits), got "
            f"{tuple(gt_cells.shape)}"
        )
    if gt_cells.dtype.is_floating_point or gt_cells.dtype == torch.bool:
        raise TypeError(f"gt_cells must hold integer classes, got {gt_cells.dtype}")
    if weights is not None and tuple(weights.shape) != grid:
        raise ValueError(f"weights must be [B, h, w] = {grid}, got {tuple(weights.shape)}")
    target = gt_cells.long()
    valid = target != ignore_index
    bad = valid & ((target < 0) | (target >= logits.shape[1]))
    if bool(bad.any()):
        raise ValueError(
            f"gt_cells holds classes outside [0, {logits.shape[1]}) that are not "
            f"ignore_index={ignore_index}: {target[bad].unique().tolist()[:10]}"
        )
    if not bool(valid.any()):
        return logits.sum() * 0.0
    ce = F.cross_entropy(logits, target, ignore_index=ignore_index, reduction="none")
    if weights is None:
        return ce[valid].mean()
    w = torch.where(valid, weights.to(ce.dtype), 0.0)
    total = w.sum()
    if float(total) <= 0.0:
        return logits.sum() * 0.0
    return (ce * w).sum() / total


@dataclass(frozen=True)
class VotingHeadConfig:
    """Voting head settings (see `VotingHead`); its logits share the semantic head's grid."""

    mid_channels: int = 64
    num_convs: int = 3
    norm: str = "batch"

    def __post_init__(self) -> None:
        if self.mid_channels < 1 or self.num_convs < 0:
            raise ValueError("mid_channels must be >= 1 and num_convs >= 0")
        if self.norm not in NORMS:
            raise ValueError(f"norm must be one of {NORMS}, got {self.norm!r}")


@dataclass(frozen=True)
class PCVConfig:
    """A complete PCV description.

    name: registry name.
    network: backbone, FPN, input size and normalisation (a `YolactConfig`; its `class_names`
        are the thing classes T; its heads are unused).
    stuff_names: the stuff classes S, panoptic categories 0..S-1.
    semantic: the semantic head (S + T classes); its `output_stride` is the voting grid's.
    voting: the voting head. vote: the vote table.
    """

    name: str
    network: YolactConfig
    stuff_names: tuple[str, ...]
    semantic: SemanticHeadConfig = field(default_factory=SemanticHeadConfig)
    voting: VotingHeadConfig = field(default_factory=VotingHeadConfig)
    vote: VoteConfig = field(default_factory=VoteConfig)

    def __post_init__(self) -> None:
        object.__setattr__(self, "stuff_names", tuple(str(n) for n in self.stuff_names))
        names = self.stuff_names + self.thing_names
        if len(set(names)) != len(names):
            dup = sorted({n for n in names if names.count(n) > 1})
            raise ValueError(f"stuff and thing names must be unique, repeated: {dup}")
        if self.semantic.num_levels > self.network.num_levels:
            raise ValueError(
                f"the semantic head uses {self.semantic.num_levels} FPN levels but the FPN makes "
                f"{self.network.num_levels}"
            )
        finest = self.network.level_strides[0]
        if finest % self.semantic.output_stride:
            raise ValueError(
                f"output_stride {self.semantic.output_stride} must divide the finest FPN stride "
                f"{finest}"
            )

    @property
    def thing_names(self) -> tuple[str, ...]:
        return self.network.class_names

    @property
    def num_stuff(self) -> int:
        return len(self.stuff_names)

    @property
    def num_things(self) -> int:
        return len(self.network.class_names)

    @property
    def category_names(self) -> tuple[str, ...]:
        return self.stuff_names + self.thing_names

    @property
    def output_stride(self) -> int:
        """Stride of the voting grid (and of the semantic logits) relative to the input."""
        return self.semantic.output_stride

    @property
    def input_size(self) -> tuple[int, int]:
        return self.network.input_size

    @property
    def normalization(self) -> Normalization:
        return self.network.normalization


def pcv_with_classes(
    config: PCVConfig, *, stuff_names: tuple[str, ...], thing_names: tuple[str, ...]
) -> PCVConfig:
    """`config` predicting other stuff and thing classes (random init of the heads)."""
    network = dataclasses.replace(config.network, class_names=tuple(thing_names))
    return dataclasses.replace(config, network=network, stuff_names=tuple(stuff_names))


def pcv_config_to_dict(config: PCVConfig) -> dict[str, Any]:
    """The config as nested plain data (JSON and `weights_only` safe)."""
    return to_plain(config)


def pcv_config_from_dict(data: dict[str, Any]) -> PCVConfig:
    """Inverse of `pcv_config_to_dict`; unknown keys raise ValueError."""
    return from_plain(PCVConfig, data, "config")


class PCVModel(nn.Module):
    """Backbone + FPN + semantic head + voting head.

    Args:
        backbone_fpn: image -> FPN maps, finest first (`build_backbone_fpn`).
        semantic_head: FPN maps -> [B, S + T, h, w] logits.
        voting_head: the finest FPN map -> [B, 18, h, w] logits (same grid).
        stuff_names, thing_names: the classes (S stuff, T things).
        config: the config the model was built from (informational).

    forward(x [B, 3, H, W] float32, normalised) -> PCVOutputs(votes, semantic), raw logits at
    1/output_stride of the input (H / 4 x W / 4 by default, rounded up as the FPN rounds).
    """

    def __init__(
        self,
        *,
        backbone_fpn: BackboneWithFPN,
        semantic_head: SemanticHead,
        voting_head: VotingHead,
        stuff_names: tuple[str, ...],
        thing_names: tuple[str, ...],
        config: PCVConfig | None = None,
    ) -> None:
        super().__init__()
        expected = len(stuff_names) + len(thing_names)
        if semantic_head.num_classes != expected:
            raise ValueError(
                f"semantic head predicts {semantic_head.num_classes} classes, expected S + T = "
                f"{len(stuff_names)} + {len(thing_names)}"
            )
        self.backbone_fpn = backbone_fpn
        self.semantic_head = semantic_head
        self.voting_head = voting_head
        self.stuff_names = tuple(stuff_names)
        self.thing_names = tuple(thing_names)
        self.config = config

    @classmethod
    def from_config(cls, config: PCVConfig) -> PCVModel:
        net, sem, vot = config.network, config.semantic, config.voting
        input_stride = net.level_strides[0]
        semantic_head = SemanticHead(
            net.fpn.num_features,
            sem.mid_channels,
            config.num_stuff + config.num_things,
            sem.num_levels,
            sem.output_stride,
            sem.use_deformable,
            input_stride=input_stride,
            num_convs=sem.num_convs,
            norm=sem.norm,
        )
        voting_head = VotingHead(
            net.fpn.num_features,
            vot.mid_channels,
            vot.num_convs,
            config.vote.num_classes,
            upsample_factor=input_stride // sem.output_stride,
            norm=vot.norm,
        )
        return cls(
            backbone_fpn=build_backbone_fpn(net),
            semantic_head=semantic_head,
            voting_head=voting_head,
            stuff_names=config.stuff_names,
            thing_names=config.thing_names,
            config=config,
        )

    @property
    def num_stuff(self) -> int:
        return len(self.stuff_names)

    @property
    def num_things(self) -> int:
        return len(self.thing_names)

    def forward(self, x: Tensor) -> PCVOutputs:
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"expected a normalised batch [B, 3, H, W], got {tuple(x.shape)}")
        pyramid = self.backbone_fpn(x)
        votes = self.voting_head(pyramid[0])
        semantic = self.semantic_head(pyramid)
        return PCVOutputs(votes=votes, semantic=semantic)


# --------------------------------------------------------------------------------------------
# Configurations (random init), COCO-panoptic classes: 53 stuff + 80 things.

PCV_MOBILENETV3 = PCVConfig(
    name="pcv_mobilenetv3",
    network=dataclasses.replace(_cfg.YOLACT_MOBILENETV3, name="pcv_mobilenetv3"),
    stuff_names=COCO_PANOPTIC_STUFF,
    semantic=SemanticHeadConfig(mid_channels=64, num_levels=3, output_stride=4, norm="batch"),
    voting=VotingHeadConfig(mid_channels=64, num_convs=3, norm="batch"),
)

PCV_RESNET50 = PCVConfig(
    name="pcv_resnet50",
    network=dataclasses.replace(_cfg.YOLACT_RESNET50, name="pcv_resnet50"),
    stuff_names=COCO_PANOPTIC_STUFF,
    semantic=SemanticHeadConfig(mid_channels=128, num_levels=3, output_stride=4, norm="group"),
    voting=VotingHeadConfig(mid_channels=128, num_convs=3, norm="group"),
)
