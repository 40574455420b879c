"""Official checkpoint layout: our state dict keys / shapes equal an independent description of
the official dbolya/yolact architectures, official state dicts load strictly, and wrong ones give
a readable CheckpointError."""

from __future__ import annotations

import sys

import pytest
import torch

from segmentation_ros.models import (
    CheckpointError,
    build_model,
    get_config,
    load_official_checkpoint,
)

# ---------------------------------------------------------------------------------------------
# Independent generator of the official key names and shapes, written from the official code
# (yolact.py, backbone.py, data/config.py at dbolya/yolact master), not from our modules.

Shapes = dict[str, tuple[int, ...]]

# Deformable blocks per ResNet stage, counted by hand from the official rule
# (dcn_layers=(0, 4, 6, 3) for R50++, (0, 4, 23, 3) with interval 3 for R101++: 11 DCN layers).
DCN_BLOCKS = {
    "yolact_plus_resnet50": {1: {0, 1, 2, 3}, 2: {0, 1, 2, 3, 4, 5}, 3: {0, 1, 2}},
    "yolact_plus_base": {1: {0, 3}, 2: {0, 3, 6, 9, 12, 15, 18, 21}, 3: {0}},
}
RESNET_DEPTH = {
    "yolact_base": (3, 4, 23, 3),
    "yolact_resnet50": (3, 4, 6, 3),
    "yolact_plus_base": (3, 4, 23, 3),
    "yolact_plus_resnet50": (3, 4, 6, 3),
}


def _conv(keys: Shapes, name: str, cin: int, cout: int, k: int, bias: bool = True) -> None:
    keys[f"{name}.weight"] = (cout, cin, k, k)
    if bias:
        keys[f"{name}.bias"] = (cout,)


def _bn(keys: Shapes, name: str, c: int) -> None:
    for p in ("weight", "bias", "running_mean", "running_var"):
        keys[f"{name}.{p}"] = (c,)
    keys[f"{name}.num_batches_tracked"] = ()


def _official_resnet(keys: Shapes, blocks: tuple[int, ...], dcn: dict[int, set[int]]) -> list:
    _conv(keys, "backbone.conv1", 3, 64, 7, bias=False)
    _bn(keys, "backbone.bn1", 64)
    inplanes, channels = 64, []
    for stage, (n, planes) in enumerate(zip(blocks, (64, 128, 256, 512))):
        for b in range(n):
            p = f"backbone.layers.{stage}.{b}"
            cin = inplanes if b == 0 else planes * 4
            _conv(keys, f"{p}.conv1", cin, planes, 1, bias=False)
            _bn(keys, f"{p}.bn1", planes)
            if b in dcn.get(stage, set()):  # DCNv2: weight, bias, conv_offset_mask (3 * 3 * 3)
                _conv(keys, f"{p}.conv2", planes, planes, 3, bias=True)
                _conv(keys, f"{p}.conv2.conv_offset_mask", planes, 27, 3, bias=True)
            else:
                _conv(keys, f"{p}.conv2", planes, planes, 3, bias=False)
            _bn(keys, f"{p}.bn2", planes)
            _conv(keys, f"{p}.conv3", planes, planes * 4, 1, bias=False)
            _bn(keys, f"{p}.bn3", planes * 4)
            if b == 0:
                _conv(keys, f"{p}.downsample.0", inplanes, planes * 4, 1, bias=False)
                _bn(keys, f"{p}.downsample.1", planes * 4)
        inplanes = planes * 4
        channels.append(inplanes)
    return channels


def _official_darknet(keys: Shapes) -> list:
    def dconv(name: str, cin: int, cout: int, k: int) -> None:
        _conv(keys, f"{name}.0", cin, cout, k, bias=False)
        _bn(keys, f"{name}.1", cout)

    dconv("backbone._preconv", 3, 32, 3)
    cin, channels = 32, []
    for stage, n in enumerate((1, 2, 8, 8, 4)):
        c = 32 * 2**stage
        dconv(f"backbone.layers.{stage}.0", cin, 2 * c, 3)
        for b in range(1, n + 1):
            dconv(f"backbone.layers.{stage}.{b}.conv1", 2 * c, c, 1)
            dconv(f"backbone.layers.{stage}.{b}.conv2", c, 2 * c, 3)
        cin = 2 * c
        channels.append(cin)
    return channels


def official_shapes(name: str, *, training_only: bool = False) -> Shapes:
    """Key -> shape of the official checkpoint of `name` (COCO, 81 conf columns)."""
    keys: Shapes = {}
    if name == "yolact_darknet53":
        channels = _official_darknet(keys)
        selected = channels[2:5]
    else:
        channels = _official_resnet(keys, RESNET_DEPTH[name], DCN_BLOCKS.get(name, {}))
        selected = channels[1:4]
    for i, c in enumerate(reversed(selected)):  # lat_layers coarsest first
        _conv(keys, f"fpn.lat_layers.{i}", c, 256, 1)
    for i in range(3):
        _conv(keys, f"fpn.pred_layers.{i}", 256, 256, 3)
    for i in range(2):
        _conv(keys, f"fpn.downsample_layers.{i}", 256, 256, 3)
    # mask_proto_net: 3 x (256, 3), upsample, (256, 3), (32, 1); ReLUs in between.
    for idx in (0, 2, 4, 8):
        _conv(keys, f"proto_net.{idx}", 256, 256, 3)
    _conv(keys, "proto_net.10", 256, 32, 1)
    anchors = 9 if name.startswith("yolact_plus") else 3
    _conv(keys, "prediction_layers.0.upfeature.0", 256, 256, 3)
    _conv(keys, "prediction_layers.0.bbox_layer", 256, anchors * 4, 3)
    _conv(keys, "prediction_layers.0.conf_layer", 256, anchors * 81, 3)
    _conv(keys, "prediction_layers.0.mask_layer", 256, anchors * 32, 3)
    if name.startswith("yolact_plus"):
        cin = 1
        for idx, c in enumerate((8, 16, 32, 64, 128)):
            _conv(keys, f"maskiou_net.maskiou_net.{2 * idx}", cin, c, 3)
            cin = c
        _conv(keys, "maskiou_net.maskiou_net.10", 128, 80, 1)
    if training_only:
        _conv(keys, "semantic_seg_conv", 256, 80, 1)
    return keys


def random_state_dict(shapes: Shapes, seed: int = 0, device: str = "cpu") -> dict:
    g = torch.Generator().manual_seed(seed)
    out = {}
    for key, shape in shapes.items():
        if key.endswith("num_batches_tracked"):
            out[key] = torch.tensor(1000, dtype=torch.long, device=device)
        elif device == "meta":
            out[key] = torch.empty(shape, device="meta")
        elif key.endswith("running_var"):
            out[key] = torch.rand(shape, generator=g) + 0.5
        else:
            out[key] = torch.randn(shape, generator=g) * 0.05
    return out


OFFICIAL = ["yolact_base", "yolact_resnet50", "yolact_darknet53"]
OFFICIAL_PLUS = ["yolact_plus_base", "yolact_plus_resnet50"]


def _needs_dcn(name: str) -> None:
    if name.startswith("yolact_plus"):
        pytest.importorskip("segmentation_ros.ops.deform_conv")


def _meta_model(name: str):
    with torch.device("meta"):
        return build_model(name)


def test_generator_sanity():
    # Hand-checked figures of the official models.
    r101 = official_shapes("yolact_base")
    assert r101["prediction_layers.0.conf_layer.weight"] == (243, 256, 3, 3)
    assert r101["fpn.lat_layers.0.weight"] == (256, 2048, 1, 1)
    assert (
        sum(k.endswith("conv_offset_mask.weight") for k in official_shapes("yolact_plus_base"))
        == 11
    )
    r50pp = official_shapes("yolact_plus_resnet50")
    assert sum(k.endswith("conv_offset_mask.weight") for k in r50pp) == 13
    assert r50pp["prediction_layers.0.bbox_layer.weight"] == (36, 256, 3, 3)
    assert official_shapes("yolact_darknet53")["fpn.lat_layers.0.weight"] == (256, 1024, 1, 1)


@pytest.mark.parametrize("name", OFFICIAL + OFFICIAL_PLUS)
def test_state_dict_layout_is_official(name):
    _needs_dcn(name)
    ours = {k: tuple(v.shape) for k, v in _meta_model(name).state_dict().items()}
    expected = official_shapes(name)
    assert sorted(set(ours) - set(expected)) == []
    assert sorted(set(expected) - set(ours)) == []
    assert {k: s for k, s in ours.items() if expected[k] != s} == {}


@pytest.mark.parametrize("name", OFFICIAL + OFFICIAL_PLUS)
def test_official_checkpoint_loads_strictly_meta(name):
    _needs_dcn(name)
    state = random_state_dict(official_shapes(name, training_only=True), device="meta")
    model = load_official_checkpoint(_meta_model(name), state, assign=True)
    assert model.prediction_layers[0].conf_layer.weight.shape[0] == (
        243 if name in OFFICIAL else 729
    )


def test_official_checkpoint_loads_values(tmp_path):
    name = "yolact_resnet50"
    state = random_state_dict(official_shapes(name, training_only=True), seed=3)
    # Legacy keys the official load_weights drops.
    state["backbone.layer1.0.conv1.weight"] = torch.zeros(1)
    state["fpn.downsample_layers.2.weight"] = torch.zeros(1)
    path = tmp_path / "yolact_resnet50_54_800000.pth"
    torch.save(state, path)
    model = load_official_checkpoint(build_model(name), path)
    got = model.state_dict()
    for key in ("backbone.layers.2.5.conv2.weight", "proto_net.10.bias", "fpn.lat_layers.2.weight"):
        torch.testing.assert_close(got[key], state[key], rtol=0, atol=0)
    assert got["backbone.bn1.num_batches_tracked"].item() == 1000
    out = model.eval()(torch.randn(1, 3, 64, 64))
    assert all(torch.isfinite(t).all() for t in out)


def test_official_semantic_seg_conv_loads_into_the_model_built_for_training():
    """The training-only `semantic_seg_conv` (YOLACT's auxiliary semantic loss) is dropped for
    inference but arrives in a model built for training."""
    from segmentation_ros.models.family import family_of

    name = "yolact_resnet50"
    state = random_state_dict(official_shapes(name, training_only=True), seed=5)
    config = get_config(name)
    model = load_official_checkpoint(family_of(config).build(config, training=True), state)
    got = model.state_dict()
    for key in ("semantic_seg_conv.weight", "semantic_seg_conv.bias", "proto_net.10.bias"):
        torch.testing.assert_close(got[key], state[key], rtol=0, atol=0)
    assert not hasattr(load_official_checkpoint(build_model(name), state), "semantic_seg_conv")


def test_missing_num_batches_tracked_is_tolerated():
    shapes = official_shapes("yolact_darknet53")
    state = {k: v for k, v in random_state_dict(shapes, device="meta").items()}
    state = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    load_official_checkpoint(_meta_model("yolact_darknet53"), state, assign=True)


def test_missing_and_unexpected_keys_are_listed():
    state = random_state_dict(official_shapes("yolact_resnet50"), device="meta")
    del state["fpn.lat_layers.0.weight"]
    state["prediction_layers.0.foo.weight"] = torch.empty(3, device="meta")
    with pytest.raises(CheckpointError) as info:
        load_official_checkpoint(_meta_model("yolact_resnet50"), state, assign=True)
    msg = str(info.value)
    assert "missing (1): fpn.lat_layers.0.weight" in msg
    assert "unexpected (1): prediction_layers.0.foo.weight" in msg


def test_wrong_class_count_is_explained():
    shapes = official_shapes("yolact_resnet50")
    shapes["prediction_layers.0.conf_layer.weight"] = (3 * 21, 256, 3, 3)
    shapes["prediction_layers.0.conf_layer.bias"] = (3 * 21,)
    state = random_state_dict(shapes, device="meta")
    with pytest.raises(CheckpointError) as info:
        load_official_checkpoint(_meta_model("yolact_resnet50"), state, assign=True)
    msg = str(info.value)
    assert "mis-shaped (2)" in msg and "(63,) vs model (243,)" in msg
    assert "predicts 20 classes, the model 80" in msg


def test_wrong_depth_is_explained_and_shortened():
    state = random_state_dict(official_shapes("yolact_base"), device="meta")
    with pytest.raises(CheckpointError) as info:
        load_official_checkpoint(_meta_model("yolact_resnet50"), state, assign=True)
    msg = str(info.value)
    assert "ResNet depth differs" in msg and "ResNet-101" in msg
    assert "more modules" in msg  # 17 extra blocks are not all spelled out
    assert len(msg) < 2000


@pytest.mark.parametrize("ckpt, model", [("yolact_plus_resnet50", "yolact_resnet50")])
def test_plus_checkpoint_into_v1_model(ckpt, model):
    state = random_state_dict(official_shapes(ckpt), device="meta")
    with pytest.raises(CheckpointError) as info:
        load_official_checkpoint(_meta_model(model), state, assign=True)
    msg = str(info.value)
    assert "mask-IoU net" in msg and "deformable convs" in msg


def test_darknet_into_resnet():
    state = random_state_dict(official_shapes("yolact_darknet53"), device="meta")
    with pytest.raises(CheckpointError, match="DarkNet-53 vs ResNet"):
        load_official_checkpoint(_meta_model("yolact_resnet50"), state, assign=True)


def test_not_a_state_dict(tmp_path):
    path = tmp_path / "x.pth"
    torch.save([1, 2, 3], path)
    with pytest.raises(CheckpointError, match="expected a state dict"):
        load_official_checkpoint(_meta_model("yolact_resnet50"), path)
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot read checkpoint"):
        load_official_checkpoint(_meta_model("yolact_resnet50"), tmp_path / "junk.pth")


class _ParamsOnlyDCN(torch.nn.Module):
    """Stand-in with the DCN contract's parameters (weight, bias, conv_offset_mask), no forward:
    checks the YOLACT++ layout even where the real op is not importable."""

    def __init__(self, cin, cout, k, *, stride=1, padding=0, dilation=1, groups=1,
                 deformable_groups=1, bias=True):  # fmt: skip
        super().__init__()
        self.weight = torch.nn.Parameter(torch.empty(cout, cin // groups, k, k))
        self.bias = torch.nn.Parameter(torch.empty(cout)) if bias else None
        self.conv_offset_mask = torch.nn.Conv2d(cin, deformable_groups * 3 * k * k, k)


@pytest.mark.parametrize("name", OFFICIAL_PLUS)
def test_plus_layout_with_stand_in_dcn(name, monkeypatch):
    import types

    fake = types.ModuleType("segmentation_ros.ops.deform_conv")
    fake.ModulatedDeformConv2d = _ParamsOnlyDCN
    monkeypatch.setitem(sys.modules, "segmentation_ros.ops.deform_conv", fake)
    model = _meta_model(name)
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert ours == official_shapes(name)
    state = random_state_dict(official_shapes(name, training_only=True), device="meta")
    load_official_checkpoint(model, state, assign=True)
