"""Networks export to ONNX with the dynamo exporter (opset 19; DCN becomes DeformConv) and ONNX
Runtime on the CPU reproduces PyTorch within 1e-4; the backends share one interface."""

import numpy as np
import onnx
import pytest
import torch

from segmentation_ros.models import PanopticYolactOutputs, build_model
from segmentation_ros.models.registry import available_models
from segmentation_ros.runtime.backends import (
    BackendUnavailable,
    OnnxRuntimeBackend,
    TorchBackend,
    build_backend,
    model_output_type,
)
from segmentation_ros.runtime.onnx_export import export_onnx

# Every registered config, at a small input so that the export stays quick (the graphs are
# the same at any size; 128 keeps every FPN level at least 1 pixel for the deepest configs).
SIZES = {"yolact_plus_resnet50": (256, 256)}
# Mask R-CNN's graph ends after NMS (its outputs are detections, whose order random weights make
# fragile): test/models/test_mask_rcnn.py checks it on a model with well separated scores.
CASES = [
    (name, SIZES.get(name, (96, 128)))
    for name in available_models()
    if not name.startswith("mask_rcnn")
]


@pytest.mark.parametrize("name,size", CASES, ids=[c[0] for c in CASES])
def test_export_matches_torch(tmp_path, name, size):
    torch.manual_seed(0)
    model = build_model(name, **_input_size_override(name, size)).eval()
    deformable = [m for m in model.modules() if hasattr(m, "conv_offset_mask")]
    for module in deformable:  # make the deformable offsets matter
        torch.nn.init.normal_(module.conv_offset_mask.weight, std=0.01)
    path = export_onnx(model, tmp_path / f"{name}.onnx", input_size=size)
    node_types = {node.op_type for node in onnx.load(str(path)).graph.node}
    assert ("DeformConv" in node_types) == bool(deformable)
    output_type = model_output_type(model)
    x = torch.randn(1, 3, *size)
    eager = TorchBackend(model).infer(x)
    ort = OnnxRuntimeBackend(path, output_type).infer(x)
    assert type(ort) is output_type is type(eager)
    for field, a, b in zip(output_type._fields, eager, ort):
        assert a.shape == b.shape, field
        scale = max(1.0, float(a.abs().max()))  # deep random networks: large activations
        np.testing.assert_allclose(b.numpy(), a.numpy(), atol=1e-4 * scale, rtol=0, err_msg=field)


def _input_size_override(name, size):
    import dataclasses

    from segmentation_ros.models import get_config

    config = get_config(name)
    if name.startswith("panoptic"):
        return {"yolact": dataclasses.replace(config.yolact, input_size=size)}
    if name.startswith("pcv"):
        return {"network": dataclasses.replace(config.network, input_size=size)}
    return {"input_size": size}


def test_build_backend_errors(tmp_path):
    model = build_model("yolact_mobilenetv3", input_size=(64, 64))
    with pytest.raises(BackendUnavailable, match="tensorrt"):
        build_backend("tensorrt", model)
    with pytest.raises(ValueError, match="unknown backend"):
        build_backend("tflite", model)
    with pytest.raises(ValueError, match="input_size"):
        build_backend("onnxruntime", model)
    with pytest.raises(ValueError, match="opset"):
        export_onnx(model, tmp_path / "m.onnx", input_size=(64, 64), opset=18)


def test_onnx_from_another_model_is_rejected(tmp_path):
    model = build_model("yolact_mobilenetv3", input_size=(64, 64))
    path = export_onnx(model, tmp_path / "m.onnx", input_size=(64, 64))
    with pytest.raises(ValueError, match="outputs"):
        OnnxRuntimeBackend(path, PanopticYolactOutputs)
