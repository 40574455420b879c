"""Pure PyTorch models: configs (frozen dataclasses) and registry, backbones, FPN, the YOLACT /
YOLACT++ network, priors, preprocessing, checkpoint I/O and the model families (`family`: one
registered object per family, looked up by config or checkpoint kind). Never imports rclpy.

    from segmentation_ros.models import build_model, preprocess, load_official_checkpoint
    model = load_official_checkpoint(build_model("yolact_resnet50"), "yolact_resnet50.pth")
    outputs = model.eval()(preprocess(rgb_image, model.config))   # YolactOutputs
"""

from .checkpoint import (
    CheckpointError,
    load_checkpoint,
    load_official_checkpoint,
    read_checkpoint,
    save_checkpoint,
)
from .config import (
    BackboneConfig,
    FPNConfig,
    HeadConfig,
    LayerSpec,
    MaskIoUConfig,
    Normalization,
    PostprocessConfig,
    PriorConfig,
    ProtonetConfig,
    YolactConfig,
    with_input_size,
)
from .family import ModelFamily, PostprocessSettings, all_families, family_of, register_family
from .outputs import PanopticYolactOutputs, YolactOutputs
from .preprocess import preprocess
from .priors import feature_map_sizes, make_priors, num_priors
from .registry import available_models, build_model, get_config, register_model
from .yolact import BackboneWithFPN, Yolact, build_backbone_fpn

__all__ = [
    "BackboneConfig",
    "BackboneWithFPN",
    "CheckpointError",
    "FPNConfig",
    "HeadConfig",
    "LayerSpec",
    "MaskIoUConfig",
    "ModelFamily",
    "Normalization",
    "PanopticYolactOutputs",
    "PostprocessConfig",
    "PostprocessSettings",
    "PriorConfig",
    "ProtonetConfig",
    "Yolact",
    "YolactConfig",
    "YolactOutputs",
    "available_models",
    "build_backbone_fpn",
    "build_model",
    "all_families",
    "family_of",
    "feature_map_sizes",
    "get_config",
    "load_checkpoint",
    "load_official_checkpoint",
    "make_priors",
    "num_priors",
    "preprocess",
    "read_checkpoint",
    "register_family",
    "register_model",
    "save_checkpoint",
    "with_input_size",
]
