"""Forward pass of every registered model at small inputs: output contract, shapes that follow
the input size, head row order, and the backbone against torchvision's ResNet."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F

from segmentation_ros.models import (
    YolactConfig,
    YolactOutputs,
    available_models,
    build_backbone_fpn,
    build_model,
    feature_map_sizes,
    get_config,
    num_priors,
)
from segmentation_ros.models.backbones import ResNetBackbone
from segmentation_ros.models.fpn import FPN
from segmentation_ros.models.yolact import FastMaskIoUNet, PredictionModule

# The panoptic configs have their own tests (test_panoptic_yolact.py).
YOLACT_MODELS = [n for n in available_models() if isinstance(get_config(n), YolactConfig)]


def _needs_dcn(name: str) -> None:
    if name.startswith("yolact_plus"):
        pytest.importorskip("segmentation_ros.ops.deform_conv")


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def test_registry_lists_the_models():
    assert set(available_models()) >= {
        "yolact_base",
        "yolact_resnet50",
        "yolact_darknet53",
        "yolact_plus_base",
        "yolact_plus_resnet50",
        "yolact_mobilenetv3",
        "yolact_resnet18",
    }


@pytest.mark.parametrize("name", YOLACT_MODELS)
def test_forward_contract(name):
    _needs_dcn(name)
    height, width = (48, 48) if "base" in name or "plus" in name else (64, 96)
    model = build_model(name).eval()
    config = model.config
    with torch.no_grad():
        out = model(torch.randn(2, 3, height, width))
    assert isinstance(out, YolactOutputs)
    a, c, k = num_priors(config, (height, width)), config.num_classes, config.num_prototypes
    assert out.loc.shape == (2, a, 4)
    assert out.conf.shape == (2, a, c + 1)
    assert out.coef.shape == (2, a, k)
    hp, wp = 2 * math.ceil(height / 8), 2 * math.ceil(width / 8)
    assert out.proto.shape == (2, hp, wp, k) and out.proto.is_contiguous()
    assert all(t.dtype == torch.float32 and torch.isfinite(t).all() for t in out)
    assert out.coef.abs().max() <= 1 and out.proto.min() >= 0
    assert model.priors.shape == (num_priors(config), 4)
    assert (model.mask_iou_head is not None) == config.use_maskiou


@pytest.mark.parametrize("name", ["yolact_resnet18", "yolact_darknet53", "yolact_mobilenetv3"])
@pytest.mark.parametrize("size", [(97, 61), (33, 128)])
def test_feature_sizes_follow_the_ceil_rule(name, size):
    config = get_config(name)
    model = build_backbone_fpn(config).eval()
    with torch.no_grad():
        feats = model(torch.randn(1, 3, *size))
    assert [tuple(f.shape[-2:]) for f in feats] == feature_map_sizes(config, size)
    assert all(f.shape[1] == model.out_channels for f in feats)
    assert model.strides == config.level_strides


def test_light_models_at_their_sizes():
    for size in [(320, 320), (288, 512)]:
        model = build_model("yolact_mobilenetv3", input_size=size).eval()
        with torch.no_grad():
            out = model(torch.randn(1, 3, *size))
        assert out.loc.shape[1] == model.priors.shape[0] == num_priors(model.config)
        assert out.proto.shape[1:3] == (size[0] // 4, size[1] // 4)


def test_custom_classes_and_batch_of_one():
    model = build_model("yolact_resnet18", class_names=("road", "car"), input_size=(64, 64))
    out = model.eval()(torch.randn(1, 3, 64, 64))
    assert out.conf.shape[-1] == 3 and model.num_classes == 2
    assert model.class_names == ("road", "car")


def test_prediction_rows_are_cell_major_then_anchor():
    head = PredictionModule(8, num_anchors=3, num_classes=4, num_prototypes=5).eval()
    x = torch.randn(2, 8, 3, 4)
    loc, conf, coef = head(x)
    feat = head.upfeature(x)
    raw_loc, raw_conf = head.bbox_layer(feat), head.conf_layer(feat)
    raw_coef = torch.tanh(head.mask_layer(feat))
    for y in range(3):
        for xx in range(4):
            for a in range(3):
                row = (y * 4 + xx) * 3 + a
                torch.testing.assert_close(loc[:, row], raw_loc[:, 4 * a : 4 * a + 4, y, xx])
                torch.testing.assert_close(conf[:, row], raw_conf[:, 4 * a : 4 * a + 4, y, xx])
                torch.testing.assert_close(coef[:, row], raw_coef[:, 5 * a : 5 * a + 5, y, xx])


def test_fpn_matches_functional_reference():
    fpn = FPN([8, 16, 32], num_features=6, num_downsample=2).eval()
    feats = [torch.randn(1, c, s, s) for c, s in [(8, 13), (16, 7), (32, 4)]]
    out = fpn(feats)
    lat = {j: fpn.lat_layers[2 - j] for j in range(3)}  # stored coarsest first
    pred = {j: fpn.pred_layers[2 - j] for j in range(3)}
    p5 = lat[2](feats[2])
    p4 = F.interpolate(p5, size=(7, 7), mode="bilinear", align_corners=False) + lat[1](feats[1])
    p3 = F.interpolate(p4, size=(13, 13), mode="bilinear", align_corners=False) + lat[0](feats[0])
    expected = [F.relu(pred[0](p3)), F.relu(pred[1](p4)), F.relu(pred[2](p5))]
    expected.append(fpn.downsample_layers[0](expected[2]))
    expected.append(fpn.downsample_layers[1](expected[3]))
    assert [tuple(o.shape[-2:]) for o in out] == [(13, 13), (7, 7), (4, 4), (2, 2), (1, 1)]
    for got, want in zip(out, expected):
        torch.testing.assert_close(got, want)
    subsample = FPN([8, 16, 32], num_features=6, num_downsample=1, use_conv_downsample=False)
    outs = subsample(feats)
    torch.testing.assert_close(outs[3], outs[2][:, :, ::2, ::2])


@pytest.mark.parametrize("depth", [18, 50])
def test_resnet_backbone_equals_torchvision(depth):
    import torchvision

    tv = getattr(torchvision.models, f"resnet{depth}")(weights=None).eval()
    block = "basic" if depth == 18 else "bottleneck"
    ours = ResNetBackbone((2, 2, 2, 2) if depth == 18 else (3, 4, 6, 3), block=block).eval()
    state = {
        (f"layers.{int(k[5]) - 1}{k[6:]}" if k.startswith("layer") else k): v
        for k, v in tv.state_dict().items()
        if not k.startswith("fc.")
    }
    ours.load_state_dict(state, strict=True)
    x = torch.randn(1, 3, 45, 67)
    with torch.no_grad():
        outs = ours(x)
        y = tv.maxpool(tv.relu(tv.bn1(tv.conv1(x))))
        for i, layer in enumerate((tv.layer1, tv.layer2, tv.layer3, tv.layer4)):
            y = layer(y)
            torch.testing.assert_close(outs[i], y)


def test_mask_iou_head():
    net = FastMaskIoUNet(get_config("yolact_plus_base").mask_iou.layers, num_classes=80).eval()
    scores = net((torch.rand(3, 1, 69, 69) > 0.5).float())
    assert scores.shape == (3, 80) and scores.min() >= 0
    assert net(torch.zeros(0, 1, 69, 69)).shape == (0, 80)
    with pytest.raises(ValueError, match=r"\[N, 1, Hp, Wp\]"):
        net(torch.zeros(3, 69, 69))


def test_forward_rejects_bad_input():
    model = build_model("yolact_resnet18")
    with pytest.raises(ValueError, match=r"\[B, 3, H, W\]"):
        model(torch.zeros(3, 32, 32))


def test_backbone_fpn_keys_are_yolact_keys():
    config = dataclasses.replace(get_config("yolact_resnet50"))
    with torch.device("meta"):
        pyramid = build_backbone_fpn(config)
        model = build_model(config)
    keys = set(pyramid.state_dict())
    assert keys == {k for k in model.state_dict() if k.startswith(("backbone.", "fpn."))}
