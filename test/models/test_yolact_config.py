"""Configs, registry and our own checkpoints (save / load round trip)."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from segmentation_ros.models import (
    CheckpointError,
    FPNConfig,
    LayerSpec,
    YolactConfig,
    available_models,
    build_model,
    get_config,
    load_checkpoint,
    load_official_checkpoint,
    read_checkpoint,
    register_model,
    save_checkpoint,
)
from segmentation_ros.models.config import COCO_CLASSES, config_from_dict, config_to_dict

# The panoptic configs have their own tests (test_panoptic_yolact.py).
YOLACT_MODELS = [n for n in available_models() if isinstance(get_config(n), YolactConfig)]


def test_official_configs():
    base = get_config("yolact_base")
    assert base.input_size == (550, 550) and base.class_names == COCO_CLASSES
    assert len(COCO_CLASSES) == 80 and base.num_classes == 80
    assert (base.backbone.kind, base.backbone.depth) == ("resnet", 101)
    assert base.priors.use_square_anchors and not base.use_maskiou
    assert base.normalization.mean == (123.68, 116.78, 103.94)  # official BGR means reversed
    assert base.level_strides == (8, 16, 32, 64, 128)
    plus = get_config("yolact_plus_base")
    assert plus.backbone.dcn_layers == (0, 4, 23, 3) and plus.backbone.dcn_interval == 3
    assert (
        plus.use_maskiou and plus.postprocess.rescore_mask and plus.postprocess.mask_iou_alpha == 25
    )
    assert plus.postprocess.discard_mask_area == 25 and not plus.priors.use_square_anchors
    assert get_config("yolact_plus_resnet50").backbone.dcn_layers == (0, 4, 6, 3)
    dark = get_config("yolact_darknet53")
    assert dark.normalization.std == (255.0, 255.0, 255.0) and dark.backbone.selected_layers == (
        2,
        3,
        4,
    )
    light = get_config("yolact_mobilenetv3")
    assert light.input_size == (320, 320) and light.fpn.num_features == 128
    assert light.protonet.layers[0].channels == 64


def test_configs_are_frozen_and_replaceable():
    base = get_config("yolact_resnet50")
    with pytest.raises(dataclasses.FrozenInstanceError):
        base.input_size = (1, 1)
    variant = dataclasses.replace(base, input_size=[400, 400], class_names=["a"])
    assert variant.input_size == (400, 400) and variant.class_names == ("a",)
    assert get_config("yolact_resnet50") == base


@pytest.mark.parametrize(
    "change, match",
    [
        (dict(input_size=(0, 10)), "input_size"),
        (dict(class_names=()), "class_names"),
        (dict(fpn=FPNConfig(num_downsample=1)), "priors describe 5 levels"),
    ],
)
def test_inconsistent_configs_are_rejected(change, match):
    with pytest.raises(ValueError, match=match):
        dataclasses.replace(get_config("yolact_resnet50"), **change)


def test_sub_config_validation():
    with pytest.raises(ValueError, match="ResNet depth"):
        dataclasses.replace(get_config("yolact_resnet50").backbone, depth=77)
    with pytest.raises(ValueError, match="kind"):
        dataclasses.replace(get_config("yolact_resnet50").backbone, kind="vgg")
    with pytest.raises(ValueError, match="DCN|dcn"):
        dataclasses.replace(get_config("yolact_resnet18").backbone, dcn_layers=(0, 1, 1, 1))
    with pytest.raises(ValueError, match="upsample"):
        LayerSpec(None, 3)


def test_registry_errors_and_registration():
    with pytest.raises(ValueError, match="unknown model 'nope'; available: .*yolact_base"):
        get_config("nope")
    with pytest.raises(ValueError, match="already registered"):
        register_model("yolact_base")(lambda: get_config("yolact_base"))
    with pytest.raises(ValueError, match="unknown YolactConfig fields"):
        build_model("yolact_resnet18", input_sise=(1, 1))
    with pytest.raises(TypeError, match="model name or a model config"):
        build_model(42)
    assert available_models() == tuple(sorted(available_models()))


@pytest.mark.parametrize("name", YOLACT_MODELS)
def test_config_dict_round_trip(name):
    config = get_config(name)
    plain = config_to_dict(config)
    assert config_from_dict(plain) == config


def test_config_dict_errors():
    plain = config_to_dict(get_config("yolact_resnet18"))
    plain["fpn"]["bogus"] = 1
    with pytest.raises(ValueError, match="unknown FPNConfig fields"):
        config_from_dict(plain)


def test_our_checkpoint_round_trip(tmp_path):
    config = dataclasses.replace(
        get_config("yolact_mobilenetv3"), input_size=(64, 96), class_names=("road", "car", "person")
    )
    model = build_model(config).eval()
    path = tmp_path / "ours.pt"
    save_checkpoint(path, model, config, extra={"epoch": 3, "metrics": {"pq": 0.25}})
    loaded, loaded_config = load_checkpoint(path)
    assert loaded_config == config and loaded.class_names == ("road", "car", "person")
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        for a, b in zip(model(x), loaded.eval()(x)):
            torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert read_checkpoint(path).extra == {"epoch": 3, "metrics": {"pq": 0.25}}
    save_checkpoint(tmp_path / "default.pt", model)  # config from model.config
    assert read_checkpoint(tmp_path / "default.pt").config == config


def test_checkpoint_kind_errors(tmp_path):
    official = tmp_path / "official.pth"
    torch.save({"fpn.lat_layers.0.weight": torch.zeros(1)}, official)
    with pytest.raises(CheckpointError, match="load_official_checkpoint"):
        load_checkpoint(official)
    ours = tmp_path / "ours.pt"
    model = build_model("yolact_resnet18")
    save_checkpoint(ours, model)
    with pytest.raises(CheckpointError, match="use load_checkpoint"):
        load_official_checkpoint(model, torch.load(ours, weights_only=True))
    with pytest.raises(ValueError, match="needs the model's config"):
        save_checkpoint(tmp_path / "x.pt", torch.nn.Linear(1, 1))


def test_config_type():
    assert isinstance(get_config("yolact_resnet18"), YolactConfig)


def test_export_for_inference_drops_training_state_and_halves(tmp_path):
    import torch

    from segmentation_ros.models.checkpoint import export_for_inference, load_checkpoint

    torch.manual_seed(0)
    model = build_model("panoptic_yolact_mobilenetv3").eval()
    source = tmp_path / "train.pt"
    save_checkpoint(source, model, extra={"optimizer": {"state": torch.randn(1000, 100)}})
    export_for_inference(source, tmp_path / "deploy.pt")
    assert (tmp_path / "deploy.pt").stat().st_size < 0.6 * source.stat().st_size
    deployed, config = load_checkpoint(tmp_path / "deploy.pt")
    assert config == model.config and next(deployed.parameters()).dtype == torch.float32
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        for a, b in zip(model(x), deployed.eval()(x)):
            torch.testing.assert_close(a, b, atol=0.05, rtol=0.02)  # float16 weights


def test_export_for_inference_at_another_input_size(tmp_path):
    """A model deployed at another input size than it was trained at: its config says the new
    size (the node and the priors follow it), its weights are the trained ones, and it computes
    what the trained model computes on an input of that size."""
    import torch

    from segmentation_ros.models.checkpoint import export_for_inference, load_checkpoint

    torch.manual_seed(0)
    model = build_model("panoptic_yolact_mobilenetv3").eval()
    source = tmp_path / "train.pt"
    save_checkpoint(source, model)
    export_for_inference(source, tmp_path / "deploy.pt", half=False, input_size=(96, 128))
    deployed, config = load_checkpoint(tmp_path / "deploy.pt")
    assert config.yolact.input_size == (96, 128) != model.config.yolact.input_size
    x = torch.randn(1, 3, 96, 128)
    with torch.no_grad():
        for a, b in zip(model(x), deployed.eval()(x)):
            torch.testing.assert_close(a, b)


def test_light_yolact_plus_deformable_depthwise_blocks():
    """YOLACT++'s rule (official backbone `_make_layer`: the first block if dcn_layers >= blocks,
    block i >= 1 if i + dcn_layers >= blocks and i % dcn_interval == 0) on MobileNetV3-Large's
    stride-16 stage, torchvision `features` 7..12: (6, interval 2) -> blocks 7, 9, 11. A block's
    depthwise conv becomes deformable with the same shape; untrained (zero offsets, mask
    sigmoid(0)) it is the plain conv x 0.5 (DCNv2's initialisation)."""
    import torch
    import torchvision

    from segmentation_ros.models import build_model
    from segmentation_ros.ops.deform_conv import ModulatedDeformConv2d

    model = build_model("panoptic_yolact_plus_mobilenetv3")
    features = model.yolact.backbone.features
    deformable = {
        i
        for i, block in enumerate(features)
        if any(isinstance(m, ModulatedDeformConv2d) for m in block.modules())
    }
    assert deformable == {7, 9, 11}
    head = model.yolact.mask_iou_head
    assert head is not None and isinstance(head.maskiou_net[-1], torch.nn.Conv2d)  # linear end
    plain = torchvision.models.mobilenet_v3_large(weights=None).features
    for i in deformable:
        dcn, conv = features[i].block[1][0], plain[i].block[1][0]
        assert (dcn.weight.shape, dcn.stride, dcn.padding, dcn.groups) == (
            conv.weight.shape,
            conv.stride,
            conv.padding,
            conv.groups,
        )
        x = torch.randn(1, conv.in_channels, 16, 20)
        with torch.no_grad():
            conv.weight.copy_(dcn.weight)
            torch.testing.assert_close(dcn(x), 0.5 * conv(x), rtol=1e-4, atol=1e-5)
