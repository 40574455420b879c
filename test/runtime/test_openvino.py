"""The openvino backend on this CPU: fp32 equals torch; bf16 really runs in bf16 (OpenVINO's
compiled model says so, and the outputs differ from fp32 by bf16's rounding, not more); int8
runs the QDQ file with integer kernels (the compiled graph's runtime precisions, read from
OpenVINO, not from our code). The reference is torch eager fp32."""

from typing import NamedTuple

import pytest
import torch
from torch import nn

from segmentation_ros.runtime.backends import build_backend
from segmentation_ros.runtime.base import BackendUnavailable
from segmentation_ros.runtime.cache import ArtifactCache
from segmentation_ros.runtime.openvino_backend import OpenVINOBackend, cpu_has_bf16


class Outputs(NamedTuple):
    maps: torch.Tensor
    pooled: torch.Tensor


class Small(nn.Module):
    """Conv, depthwise conv, pointwise head: the layer kinds of our backbones."""

    output_type = Outputs

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 32, 3, padding=1)
        self.depthwise = nn.Conv2d(32, 32, 3, padding=1, groups=32)
        self.head = nn.Conv2d(32, 8, 1)

    def forward(self, x):
        y = self.head(self.depthwise(self.stem(x).relu()).relu())
        return Outputs(y, y.mean(dim=(2, 3)))


def _images(count: int, seed: int = 0) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    coarse = [torch.rand(1, 3, 4, 4, generator=generator) for _ in range(count)]
    return [
        (nn.functional.interpolate(c, size=(32, 32), mode="bilinear") - 0.45) / 0.25 for c in coarse
    ]


@pytest.fixture(scope="module")
def small():
    torch.manual_seed(0)
    return Small().eval()


def _build(small, tmp_path, precision, **kw):
    return build_backend(
        "openvino",
        small,
        precision=precision,
        input_size=(32, 32),
        cache=ArtifactCache(tmp_path),
        **kw,
    )


def test_fp32_equals_torch(small, tmp_path):
    backend = _build(small, tmp_path, "fp32")
    assert (backend.name, backend.precision, backend.artifact.status) == (
        "openvino",
        "fp32",
        "built",
    )
    assert backend.compiled.get_property("INFERENCE_PRECISION_HINT").to_string() == "f32"
    x = _images(1)[0]
    with torch.no_grad():
        expected = small(x)
    got = backend.infer(x)
    assert got.maps.dtype == torch.float32 and got.maps.shape == expected.maps.shape
    torch.testing.assert_close(got.maps, expected.maps, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(got.pooled, expected.pooled, rtol=1e-4, atol=1e-4)
    # a second artifact request reuses the file; results of earlier frames stay intact
    first = backend.infer(x)
    backend.infer(_images(1, seed=3)[0])
    torch.testing.assert_close(first.maps, expected.maps, rtol=1e-4, atol=1e-4)
    assert _build(small, tmp_path, "fp32").artifact.status == "loaded"


@pytest.mark.skipif(not cpu_has_bf16(), reason="this CPU has no bf16 instructions")
def test_bf16_runs_in_bf16(small, tmp_path):
    backend = _build(small, tmp_path, "bf16")
    assert backend.precision == "bf16"
    assert backend.compiled.get_property("INFERENCE_PRECISION_HINT").to_string() == "bf16"
    # bf16 is a compile option of the fp32 file: no second export
    assert backend.artifact.status in ("built", "loaded")
    x = _images(1)[0]
    with torch.no_grad():
        expected = small(x).maps
    got = backend.infer(x).maps
    error = (got - expected).abs().max().item()
    scale = expected.abs().max().item()
    # bf16 keeps 8 significant bits: relative rounding 2^-9 per operation
    assert 1e-5 * scale < error < 3e-2 * scale, (error, scale)


def test_int8_runs_integer_kernels(small, tmp_path):
    calibration = _images(8, seed=1)
    backend = _build(small, tmp_path, "int8", calibration=calibration)
    assert backend.precision == "int8"
    runtime = backend.compiled.get_runtime_model()
    precisions = {
        op.get_rt_info()["runtimePrecision"].astype(str)
        for op in runtime.get_ops()
        if op.get_rt_info()["layerType"].astype(str) == "Convolution"
    }
    assert precisions & {"i8", "u8"}, precisions
    x = _images(1, seed=2)[0]
    with torch.no_grad():
        expected = small(x).maps
    got = backend.infer(x).maps
    assert torch.corrcoef(torch.stack((got.flatten(), expected.flatten())))[0, 1] > 0.99


def test_bad_files_and_devices(small, tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        OpenVINOBackend(tmp_path / "missing.onnx", Outputs)
    path = _build(small, tmp_path, "fp32").artifact.path

    class Other(NamedTuple):
        boxes: torch.Tensor

    with pytest.raises(ValueError, match="expected"):
        OpenVINOBackend(path, Other)
    with pytest.raises((ValueError, BackendUnavailable), match="cuda"):
        build_backend("openvino", small, input_size=(32, 32), device="cuda")


class Deformable(nn.Module):
    """A conv and YOLACT++'s deformable conv (exported as the standard ONNX DeformConv)."""

    output_type = Outputs

    def __init__(self) -> None:
        super().__init__()
        from segmentation_ros.ops.deform_conv import ModulatedDeformConv2d

        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.deformable = ModulatedDeformConv2d(8, 8, 3, padding=1)

    def forward(self, x):
        y = self.deformable(self.stem(x).relu())
        return Outputs(y, y.mean(dim=(2, 3)))


def test_a_model_openvino_cannot_convert_runs_on_the_next_auto_backend(tmp_path):
    """OpenVINO's ONNX reader has no rule for DeformConv (its own error says so): backend
    openvino says BackendUnavailable naming the op, and auto builds ONNX Runtime instead, whose
    outputs equal torch's."""
    torch.manual_seed(0)
    model = Deformable().eval()
    cache = ArtifactCache(tmp_path)
    with pytest.raises(BackendUnavailable, match="DeformConv"):
        build_backend("openvino", model, input_size=(32, 32), cache=cache)
    backend = build_backend("auto", model, precision="auto", input_size=(32, 32), cache=cache)
    assert (backend.name, backend.precision) == ("onnxruntime", "fp32")
    image = _images(1)[0]
    with torch.no_grad():
        expected = model(image)
    torch.testing.assert_close(backend.infer(image).maps, expected.maps, atol=1e-4, rtol=1e-4)
