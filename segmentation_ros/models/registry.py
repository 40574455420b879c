"""Model registry: a name -> a function returning its config (`YolactConfig`,
`PanopticYolactConfig` or `PCVConfig`); the config's model family (`models.family`) builds the
network.

    from segmentation_ros.models.registry import build_model
    model = build_model("yolact_resnet50")                       # official layout, random init
    model = build_model("yolact_mobilenetv3", input_size=(288, 512), class_names=("a", "b"))

Registered: the official yolact_base (ResNet-101), yolact_resnet50, yolact_darknet53,
yolact_plus_base, yolact_plus_resnet50 (550 x 550, COCO), the light yolact_mobilenetv3 and
yolact_resnet18 (320 x 320), and the panoptic panoptic_yolact_mobilenetv3 (320) and
panoptic_yolact_resnet50 (550), and Pixel Consensus Voting pcv_mobilenetv3 (320) and
pcv_resnet50 (550), and Mask R-CNN mask_rcnn_mobilenetv3 (240 x 320), the same with person
keypoints mask_rcnn_mobilenetv3_keypoints, and mask_rcnn_resnet50 (torchvision's layout,
480 x 640). The registry is filled once, at import, by `register_model`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from . import config as _cfg
from . import mask_rcnn as _mrcnn
from . import panoptic_yolact as _pan
from . import pcv as _pcv
from .config import YolactConfig
from .family import family_of
from .mask_rcnn import MaskRCNNConfig
from .panoptic_yolact import PanopticYolactConfig
from .pcv import PCVConfig
from .yolact import Yolact

ModelConfig = YolactConfig | PanopticYolactConfig | PCVConfig | MaskRCNNConfig

_REGISTRY: dict[str, Callable[[], ModelConfig]] = {}


def register_model(name: str) -> Callable[[Callable[[], YolactConfig]], Callable[[], YolactConfig]]:
    """Decorator: register a zero-argument function returning the config of model `name`."""

    def decorator(fn: Callable[[], YolactConfig]) -> Callable[[], YolactConfig]:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is already registered")
        _REGISTRY[name] = fn
        return fn

    return decorator


def available_models() -> tuple[str, ...]:
    """Registered model names, sorted."""
    return tuple(sorted(_REGISTRY))


def get_config(name: str) -> YolactConfig:
    """The config registered as `name` (ValueError listing the names if unknown)."""
    try:
        fn = _REGISTRY[name]
    except KeyError:
        raise ValueError(
            f"unknown model {name!r}; available: {', '.join(available_models())}"
        ) from None
    return fn()


def build_model(name_or_config: str | ModelConfig, **config_overrides: object) -> Yolact:
    """Build a randomly initialised model from a registered name or a config.

    config_overrides: top-level `YolactConfig` fields to replace (`input_size`, `class_names`,
    `fpn`, ...), applied with `dataclasses.replace`; nested changes take a replaced sub-config,
    e.g. `fpn=dataclasses.replace(cfg.fpn, num_features=128)`.
    """
    if isinstance(name_or_config, str):
        config = get_config(name_or_config)
    else:
        config = name_or_config
        family_of(config)  # TypeError naming the config types for anything else
    if config_overrides:
        fields = {f.name for f in dataclasses.fields(config)}
        unknown = sorted(set(config_overrides) - fields)
        if unknown:
            raise ValueError(
                f"unknown {type(config).__name__} fields {unknown}; fields: {sorted(fields)}"
            )
        config = dataclasses.replace(config, **config_overrides)
    return family_of(config).build(config)


@register_model("yolact_base")
def _yolact_base() -> YolactConfig:
    return _cfg.YOLACT_BASE


@register_model("yolact_resnet50")
def _yolact_resnet50() -> YolactConfig:
    return _cfg.YOLACT_RESNET50


@register_model("yolact_darknet53")
def _yolact_darknet53() -> YolactConfig:
    return _cfg.YOLACT_DARKNET53


@register_model("yolact_plus_base")
def _yolact_plus_base() -> YolactConfig:
    return _cfg.YOLACT_PLUS_BASE


@register_model("yolact_plus_resnet50")
def _yolact_plus_resnet50() -> YolactConfig:
    return _cfg.YOLACT_PLUS_RESNET50


@register_model("yolact_mobilenetv3")
def _yolact_mobilenetv3() -> YolactConfig:
    return _cfg.YOLACT_MOBILENETV3


@register_model("yolact_plus_mobilenetv3")
def _yolact_plus_mobilenetv3() -> YolactConfig:
    return _cfg.YOLACT_PLUS_MOBILENETV3


@register_model("yolact_resnet18")
def _yolact_resnet18() -> YolactConfig:
    return _cfg.YOLACT_RESNET18


@register_model("panoptic_yolact_mobilenetv3")
def _panoptic_yolact_mobilenetv3() -> PanopticYolactConfig:
    return _pan.PANOPTIC_YOLACT_MOBILENETV3


@register_model("panoptic_yolact_plus_mobilenetv3")
def _panoptic_yolact_plus_mobilenetv3() -> PanopticYolactConfig:
    return _pan.PANOPTIC_YOLACT_PLUS_MOBILENETV3


@register_model("panoptic_yolact_resnet50")
def _panoptic_yolact_resnet50() -> PanopticYolactConfig:
    return _pan.PANOPTIC_YOLACT_RESNET50


@register_model("pcv_mobilenetv3")
def _pcv_mobilenetv3() -> PCVConfig:
    return _pcv.PCV_MOBILENETV3


@register_model("pcv_resnet50")
def _pcv_resnet50() -> PCVConfig:
    return _pcv.PCV_RESNET50


@register_model("mask_rcnn_mobilenetv3")
def _mask_rcnn_mobilenetv3() -> MaskRCNNConfig:
    return _mrcnn.MASK_RCNN_MOBILENETV3


@register_model("mask_rcnn_resnet50")
def _mask_rcnn_resnet50() -> MaskRCNNConfig:
    return _mrcnn.MASK_RCNN_RESNET50


@register_model("mask_rcnn_mobilenetv3_keypoints")
def _mask_rcnn_mobilenetv3_keypoints() -> MaskRCNNConfig:
    return _mrcnn.MASK_RCNN_MOBILENETV3_KEYPOINTS
