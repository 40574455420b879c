"""Panoptic YOLACT: the YOLACT network plus an UPSNet-style semantic head on its FPN features.

`PanopticYolact.forward(x)` returns `PanopticYolactOutputs`: the raw YOLACT tensors and semantic
logits [B, S + T, H / os, W / os] (stuff classes first, then the thing classes in YOLACT's class
order: the panoptic category convention of `segmentation_ros.panoptic.result`). The panoptic
result is made by the postprocess: YOLACT detections -> `Instances`, then UPSNet's
parameter-free fusion (`segmentation_ros.panoptic.fusion.fuse_instances`).

The YOLACT half is a plain `Yolact` module (`model.yolact`), so official YOLACT weights load
into it with `load_official_checkpoint(model.yolact, path)`.

Configs: `PanopticYolactConfig` (frozen) = a `YolactConfig` (its `class_names` are the thing
classes) + `SemanticHeadConfig` + `stuff_names` + `PanopticFusionConfig` (postprocess defaults).
Registered-to-be: `panoptic_yolact_mobilenetv3` (light, 320 x 320, the embedded default) and
`panoptic_yolact_resnet50` (550 x 550, deformable semantic head as UPSNet), both COCO-panoptic
(53 stuff + 80 things).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import config as _cfg
from .config import Normalization, YolactConfig
from .config_io import from_plain, to_plain
from .outputs import PanopticYolactOutputs, YolactOutputs
from .semantic_head import NORMS, SemanticHead
from .yolact import Yolact

# COCO-panoptic stuff categories (panopticapi `panoptic_coco_categories.json`, isthing = 0), in
# COCO category-id order (92 banner ... 200 rug-merged).
COCO_PANOPTIC_STUFF: tuple[str, ...] = (
    "banner", "blanket", "bridge", "cardboard", "counter", "curtain", "door-stuff", "floor-wood",
    "flower", "fruit", "gravel", "house", "light", "mirror-stuff", "net", "pillow", "platform",
    "playingfield", "railroad", "river", "road", "roof", "sand", "sea", "shelf", "snow", "stairs",
    "tent", "towel", "wall-brick", "wall-stone", "wall-tile", "wall-wood", "water-other",
    "window-blind", "window-other", "tree-merged", "fence-merged", "ceiling-merged",
    "sky-other-merged", "cabinet-merged", "table-merged", "floor-other-merged", "pavement-merged",
    "mountain-merged", "grass-merged", "dirt-merged", "paper-merged", "food-other-merged",
    "building-other-merged", "rock-merged", "wall-other-merged", "rug-merged",
)  # fmt: skip


@dataclass(frozen=True)
class SemanticHeadConfig:
    """UPSNet semantic head settings (see `SemanticHead`).

    mid_channels: per-level subnet output channels (UPSNet: 128).
    num_levels: FPN levels used, finest first (3: P3-P5, strides 8-32).
    output_stride: 4 or 8, stride of the semantic logits relative to the network input.
    use_deformable: modulated deformable 3x3 convs in the subnet (UPSNet; needs the segros op).
    num_convs: 3x3 convs per level (UPSNet: 2). norm: "group", "batch" or "none".
    """

    mid_channels: int = 128
    num_levels: int = 3
    output_stride: int = 4
    use_deformable: bool = False
    num_convs: int = 2
    norm: str = "group"

    def __post_init__(self) -> None:
        if self.output_stride not in (4, 8):
            raise ValueError(f"output_stride must be 4 or 8, got {self.output_stride}")
        if min(self.mid_channels, self.num_levels, self.num_convs) < 1:
            raise ValueError("mid_channels, num_levels and num_convs must be >= 1")
        if self.norm not in NORMS:
            raise ValueError(f"norm must be one of {NORMS}, got {self.norm!r}")


@dataclass(frozen=True)
class PanopticFusionConfig:
    """Defaults of the panoptic fusion (`segmentation_ros.panoptic.fusion.panoptic_fusion`).

    unknown: UPSNet's unknown class (probable missed instances become void).
    min_thing_area / min_stuff_area: smaller segments become void (image pixels).
    upsample: "ids" (argmax at the semantic resolution, fast) or "logits" (argmax at the image
        resolution). prob_eps: clamp of the mask probabilities before their logit.
    """

    unknown: bool = True
    min_thing_area: int = 16
    min_stuff_area: int = 1024
    upsample: str = "ids"
    prob_eps: float = 1.0e-4

    def __post_init__(self) -> None:
        if self.upsample not in ("ids", "logits"):
            raise ValueError(f"upsample must be 'ids' or 'logits', got {self.upsample!r}")
        if self.min_thing_area < 0 or self.min_stuff_area < 0:
            raise ValueError("min_thing_area and min_stuff_area must be >= 0")
        if not 0.0 < self.prob_eps < 0.5:
            raise ValueError(f"prob_eps must be in (0, 0.5), got {self.prob_eps}")


@dataclass(frozen=True)
class PanopticYolactConfig:
    """A complete panoptic YOLACT description.

    name: registry name.
    yolact: the YOLACT network; its `class_names` are the thing classes (T).
    semantic: the semantic head; it predicts S + T classes, stuff first.
    stuff_names: the stuff classes (S), panoptic categories 0..S-1.
    fusion: postprocess defaults for the panoptic fusion.
    Change the classes with `with_classes`; other variants with `dataclasses.replace`.
    """

    name: str
    yolact: YolactConfig
    stuff_names: tuple[str, ...]
    semantic: SemanticHeadConfig = field(default_factory=SemanticHeadConfig)
    fusion: PanopticFusionConfig = field(default_factory=PanopticFusionConfig)

    def __post_init__(self) -> None:
        object.__setattr__(self, "stuff_names", tuple(str(n) for n in self.stuff_names))
        names = self.stuff_names + self.thing_names
        if len(set(names)) != len(names):
            dup = sorted({n for n in names if names.count(n) > 1})
            raise ValueError(f"stuff and thing names must be unique, repeated: {dup}")
        if self.semantic.num_levels > self.yolact.num_levels:
            raise ValueError(
                f"the semantic head uses {self.semantic.num_levels} FPN levels but the FPN makes "
                f"{self.yolact.num_levels}"
            )
        if self.semantic.output_stride > self.yolact.level_strides[0]:
            raise ValueError(
                f"semantic output_stride {self.semantic.output_stride} is coarser than the finest "
                f"FPN level (stride {self.yolact.level_strides[0]})"
            )

    @property
    def thing_names(self) -> tuple[str, ...]:
        """The thing classes (T) = `yolact.class_names`, panoptic categories S..S+T-1."""
        return self.yolact.class_names

    @property
    def num_stuff(self) -> int:
        return len(self.stuff_names)

    @property
    def num_things(self) -> int:
        return len(self.yolact.class_names)

    @property
    def category_names(self) -> tuple[str, ...]:
        """All panoptic categories in id order: stuff then things."""
        return self.stuff_names + self.thing_names

    @property
    def input_size(self) -> tuple[int, int]:
        """(height, width) of the network input (so `preprocess(image, config)` works)."""
        return self.yolact.input_size

    @property
    def normalization(self) -> Normalization:
        return self.yolact.normalization


def with_classes(
    config: PanopticYolactConfig, *, stuff_names: tuple[str, ...], thing_names: tuple[str, ...]
) -> PanopticYolactConfig:
    """`config` predicting other stuff and thing classes (a new head size; random init)."""
    yolact = dataclasses.replace(config.yolact, class_names=tuple(thing_names))
    return dataclasses.replace(config, yolact=yolact, stuff_names=tuple(stuff_names))


def panoptic_config_to_dict(config: PanopticYolactConfig) -> dict[str, Any]:
    """The config as nested plain data (JSON and `weights_only` safe)."""
    return to_plain(config)


def panoptic_config_from_dict(data: dict[str, Any]) -> PanopticYolactConfig:
    """Inverse of `panoptic_config_to_dict`; unknown keys raise ValueError."""
    return from_plain(PanopticYolactConfig, data, "config")


class PanopticYolact(nn.Module):
    """YOLACT + semantic head sharing one backbone and FPN.

    Args:
        yolact: the YOLACT network (backbone, FPN, protonet, prediction head).
        semantic_head: takes the FPN maps, returns [B, S + T, Hs, Ws] logits.
        stuff_names: stuff classes S (the thing classes are `yolact.class_names`).
        config: the config the model was built from (informational; `from_config` sets it).

    forward(x [B, 3, H, W] float32, normalised) -> PanopticYolactOutputs(loc, conf, coef, proto
    as `Yolact`, semantic [B, S + T, Hs, Ws] logits at 1/output_stride of the input: for the
    official P3-sourced protonet and output_stride 4, Hs x Ws = Hp x Wp, the prototype size).
    """

    def __init__(
        self,
        *,
        yolact: Yolact,
        semantic_head: SemanticHead,
        stuff_names: tuple[str, ...],
        config: PanopticYolactConfig | None = None,
    ) -> None:
        super().__init__()
        expected = len(stuff_names) + yolact.num_classes
        if semantic_head.num_classes != expected:
            raise ValueError(
                f"semantic head predicts {semantic_head.num_classes} classes, expected S + T = "
                f"{len(stuff_names)} + {yolact.num_classes}"
            )
        self.yolact = yolact
        self.semantic_head = semantic_head
        self.stuff_names = tuple(stuff_names)
        self.config = config

    @classmethod
    def from_config(cls, config: PanopticYolactConfig) -> PanopticYolact:
        yolact = Yolact.from_config(config.yolact)
        sem = config.semantic
        head = SemanticHead(
            config.yolact.fpn.num_features,
            sem.mid_channels,
            config.num_stuff + config.num_things,
            sem.num_levels,
            sem.output_stride,
            sem.use_deformable,
            input_stride=config.yolact.level_strides[0],
            num_convs=sem.num_convs,
            norm=sem.norm,
        )
        return cls(yolact=yolact, semantic_head=head, stuff_names=config.stuff_names, config=config)

    @property
    def thing_names(self) -> tuple[str, ...]:
        return self.yolact.class_names

    @property
    def num_stuff(self) -> int:
        return len(self.stuff_names)

    @property
    def num_things(self) -> int:
        return self.yolact.num_classes

    @property
    def priors(self) -> Tensor | None:
        """The YOLACT priors [A, 4] for the nominal input size."""
        return self.yolact.priors

    def forward(self, x: Tensor) -> PanopticYolactOutputs:
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"expected a normalised batch [B, 3, H, W], got {tuple(x.shape)}")
        pyramid = self.yolact.features(x)
        out = _yolact_heads(self.yolact, pyramid)
        return PanopticYolactOutputs(*out, semantic=self.semantic_head(pyramid))


def _yolact_heads(yolact: Yolact, pyramid: list[Tensor]) -> YolactOutputs:
    """`Yolact.forward` after the FPN (kept in step with it; see test_panoptic_yolact)."""
    proto = F.relu(yolact.proto_net(pyramid[yolact.proto_source_level]))
    proto = proto.permute(0, 2, 3, 1).contiguous()
    shared = len(yolact.prediction_layers) == 1
    outs = [
        yolact.prediction_layers[0 if shared else level](feature)
        for level, feature in enumerate(pyramid)
    ]
    loc, conf, coef = (torch.cat([o[i] for o in outs], dim=1) for i in range(3))
    return YolactOutputs(loc=loc, conf=conf, coef=coef, proto=proto)


# --------------------------------------------------------------------------------------------
# Configurations (random init), COCO-panoptic classes: 53 stuff + YOLACT's 80 things.

PANOPTIC_YOLACT_MOBILENETV3 = PanopticYolactConfig(
    name="panoptic_yolact_mobilenetv3",
    yolact=dataclasses.replace(_cfg.YOLACT_MOBILENETV3, name="panoptic_yolact_mobilenetv3"),
    stuff_names=COCO_PANOPTIC_STUFF,
    # Light: 64 channels per level, BatchNorm (folds into the convs when exported).
    semantic=SemanticHeadConfig(mid_channels=64, num_levels=3, output_stride=4, norm="batch"),
)

PANOPTIC_YOLACT_PLUS_MOBILENETV3 = dataclasses.replace(
    PANOPTIC_YOLACT_MOBILENETV3,
    name="panoptic_yolact_plus_mobilenetv3",
    yolact=dataclasses.replace(
        _cfg.YOLACT_PLUS_MOBILENETV3, name="panoptic_yolact_plus_mobilenetv3"
    ),
)

PANOPTIC_YOLACT_RESNET50 = PanopticYolactConfig(
    name="panoptic_yolact_resnet50",
    yolact=dataclasses.replace(_cfg.YOLACT_RESNET50, name="panoptic_yolact_resnet50"),
    stuff_names=COCO_PANOPTIC_STUFF,
    # UPSNet: 128 channels per level, deformable convs, GroupNorm.
    semantic=SemanticHeadConfig(
        mid_channels=128, num_levels=3, output_stride=4, use_deformable=True, norm="group"
    ),
)
