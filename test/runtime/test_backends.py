"""Backends share one interface: the same input, the same NamedTuple of float32 outputs,
whatever the backend and precision; unsupported combinations say what works."""

import subprocess
import sys
from pathlib import Path
from typing import NamedTuple

import pytest
import torch
from torch import nn

from segmentation_ros.models import build_model
from segmentation_ros.ros import params
from segmentation_ros.runtime import backends
from segmentation_ros.runtime.backends import (
    BackendUnavailable,
    build_backend,
    check_precision,
    warm_up,
    weights_sha256,
)


class TinyOutputs(NamedTuple):
    features: torch.Tensor
    pooled: torch.Tensor


class Tiny(nn.Module):
    """Two outputs like our networks' NamedTuples, small enough to compile in seconds."""

    output_type = TinyOutputs

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.head = nn.Conv2d(8, 4, 1)

    def forward(self, x):
        y = self.head(self.conv(x).relu())
        return TinyOutputs(y.sigmoid(), y.mean(dim=(2, 3)))


def test_node_parameters_offer_exactly_the_runtime_choices():
    specs = params.PARAMETERS
    assert specs["backend"].choices == (*backends.BUILDERS, "auto")
    assert specs["precision"].choices == (*backends.PRECISIONS, "auto")


def test_every_backend_has_a_builder_and_auto_is_the_default():
    from segmentation_ros.runtime import names

    assert set(backends.BUILDERS) == set(names.KINDS)
    assert names.DEFAULT_BACKEND == "auto" and names.BACKENDS == (*names.KINDS, "auto")


# The rule (issue #13): OpenVINO, else ONNX Runtime, on a CPU; TensorRT where TensorRT and CUDA
# exist, else torch_compile on CUDA; a precision the first choice cannot run falls to the next
# that can.
@pytest.mark.parametrize(
    "where,precision,available,expected",
    [
        ("cpu", "fp32", {}, "openvino"),
        ("cpu", "fp32", {"openvino": False}, "onnxruntime"),
        ("cpu", "fp32", {"openvino": False, "tensorrt": True}, "onnxruntime"),  # needs CUDA
        ("cpu", "fp32", {"openvino": False, "onnxruntime": False}, "torch"),
        ("cpu", "bf16", {}, "openvino"),
        ("cpu", "bf16", {"openvino": False}, "torch"),
        ("cpu", "int8", {}, "openvino"),
        ("cpu", "int8", {"openvino": False}, "onnxruntime"),
        ("cuda", "fp32", {"tensorrt": True}, "tensorrt"),
        ("cuda", "fp16", {"tensorrt": True}, "tensorrt"),
        ("cuda", "int8", {"tensorrt": True}, "tensorrt"),
        ("cuda", "fp32", {"tensorrt": False}, "torch_compile"),
        ("cuda", "fp16", {"tensorrt": False}, "torch_compile"),
        ("cuda", "fp32", {"tensorrt": False, "torch_compile": False}, "torch"),
    ],
)
def test_auto_rule(where, precision, available, expected):
    assert backends.choose_backend(where, precision, available) == expected


def test_auto_rule_says_when_nothing_fits():
    with pytest.raises(BackendUnavailable, match="nothing runs int8 on cuda.*tensorrt"):
        backends.choose_backend("cuda", "int8", {"tensorrt": False})


def test_auto_on_this_machine(tmp_path):
    """Here (CPU, openvino and onnxruntime installed, no TensorRT): auto is openvino, and the
    built backend reports the backend that runs."""
    from segmentation_ros.runtime.cache import ArtifactCache

    available = backends.backend_availability("cpu")
    assert available["openvino"] and available["onnxruntime"]
    assert not backends.backend_availability("cuda")["tensorrt"]
    assert not backends.backend_availability("cuda")["openvino"]
    assert backends.resolve_backend("auto", device="cpu") == "openvino"
    assert backends.resolve_backend("torch", device="cpu") == "torch"
    backend = build_backend("auto", Tiny(), input_size=(16, 16), cache=ArtifactCache(tmp_path))
    assert backend.name == "openvino" and backend.artifact.status == "built"
    with pytest.raises(BackendUnavailable, match="no CUDA device"):
        build_backend("auto", Tiny(), input_size=(16, 16), device="cuda")


def _cpu_flags() -> set[str]:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def test_auto_precision(tmp_path):
    """auto precision: bf16 with openvino where the CPU has bf16 instructions (the kernel's
    cpuinfo flags say so, independently of OpenVINO), fp32 for every other backend; a given
    precision passes through. The built backend reports what runs."""
    from segmentation_ros.runtime.cache import ArtifactCache

    has_bf16 = bool({"avx512_bf16", "amx_bf16"} & _cpu_flags())
    assert backends.resolve_precision("auto", "openvino") == ("bf16" if has_bf16 else "fp32")
    for kind in ("torch", "torch_compile", "onnxruntime", "tensorrt"):
        assert backends.resolve_precision("auto", kind) == "fp32"
    assert backends.resolve_precision("int8", "openvino") == "int8"
    backend = build_backend(
        "auto", Tiny(), precision="auto", input_size=(16, 16), cache=ArtifactCache(tmp_path)
    )
    assert (backend.name, backend.precision) == ("openvino", "bf16" if has_bf16 else "fp32")
    torch_backend = build_backend("torch", Tiny(), precision="auto")
    assert torch_backend.precision == "fp32"
    with pytest.raises(ValueError, match="unknown precision"):
        build_backend("torch", Tiny(), precision="fast")


def test_backend_names_and_node_parameters_import_without_torch():
    code = (
        "import sys, segmentation_ros.runtime.names, segmentation_ros.ros.params; "
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize(
    "kind,precision,device,error",
    [
        ("torch", "fp32", "cpu", None),
        ("torch", "bf16", "cpu", None),
        ("torch", "fp16", "cuda", None),
        ("torch_compile", "bf16", "cpu", None),
        ("tensorrt", "int8", "cuda", None),
        ("tensorrt", "fp16", "cuda", None),
        ("onnxruntime", "fp32", "cuda", None),
        ("torch", "fp16", "cpu", "use bf16 or fp32"),
        ("torch", "int8", "cpu", "int8 needs the tensorrt backend"),
        ("onnxruntime", "int8", "cpu", None),
        ("onnxruntime", "int8", "cuda", "int8 needs the tensorrt backend"),
        ("onnxruntime", "fp16", "cpu", "fp32 only"),
        ("onnxruntime", "bf16", "cuda", "fp32 only"),
        ("openvino", "fp32", "cpu", None),
        ("openvino", "bf16", "cpu", None),
        ("openvino", "int8", "cpu", None),
        ("openvino", "fp16", "cpu", "use bf16 or fp32"),
        ("openvino", "fp32", "cuda", "does not run on cuda"),
        ("tflite", "fp32", "cpu", "unknown backend"),
        ("torch", "fp8", "cpu", "unknown precision"),
    ],
)
def test_precision_support(kind, precision, device, error):
    if error is None:
        check_precision(kind, precision, device)
    else:
        with pytest.raises(ValueError, match=error):
            check_precision(kind, precision, device)


def test_bf16_autocast_returns_float32_close_to_fp32():
    torch.manual_seed(0)
    model = build_model("yolact_mobilenetv3", input_size=(64, 64)).eval()
    x = torch.randn(1, 3, 64, 64)
    reference = build_backend("torch", model).infer(x)
    bf16 = build_backend("torch", model, precision="bf16").infer(x)
    assert type(bf16) is type(reference)
    for a, b in zip(reference, bf16):
        assert b.dtype == torch.float32 and b.shape == a.shape
        # bf16 keeps 8 bits of mantissa: agreement to a few percent of the output's range
        assert (a - b).abs().max() <= 0.05 * a.abs().max() + 0.05


def test_torch_compile_matches_eager_and_warms_up():
    """Real inductor compilation (C++ on the CPU) of a small network."""
    torch.manual_seed(0)
    model = Tiny().eval()
    x = torch.randn(1, 3, 16, 16)
    compiled = build_backend("torch_compile", model)
    assert compiled.name == "torch_compile"
    warm_up(compiled, (16, 16), device="cpu", runs=1)
    out = compiled.infer(x)
    expected = build_backend("torch", model).infer(x)
    assert type(out) is TinyOutputs
    for a, b in zip(expected, out):
        torch.testing.assert_close(b, a, atol=1e-5, rtol=1e-5)


def test_weights_hash_follows_the_values():
    torch.manual_seed(0)
    a, b = Tiny(), Tiny()
    b.load_state_dict(a.state_dict())
    assert weights_sha256(a) == weights_sha256(b)
    with torch.no_grad():
        b.head.bias[0] += 1e-3
    assert weights_sha256(a) != weights_sha256(b)


def test_tensorrt_is_refused_here_with_what_is_missing():
    with pytest.raises(BackendUnavailable, match="tensorrt|TensorRT"):
        build_backend("tensorrt", Tiny(), input_size=(16, 16), device="cuda")


def test_cuda_without_a_device_or_the_gpu_package_says_so(tmp_path):
    """Here: no CUDA device (and onnxruntime without its CUDA provider); nothing is exported."""
    from segmentation_ros.runtime.cache import ArtifactCache
    from segmentation_ros.runtime.ort_backend import onnxruntime_providers

    model = build_model("yolact_mobilenetv3", input_size=(64, 64))
    for kind in ("torch", "torch_compile", "onnxruntime"):
        with pytest.raises(BackendUnavailable, match="no CUDA device"):
            build_backend(kind, model, input_size=(64, 64), device="cuda",
                          cache=ArtifactCache(tmp_path))  # fmt: skip
    assert not list(tmp_path.iterdir())
    import onnxruntime as ort

    if "CUDAExecutionProvider" not in ort.get_available_providers():
        with pytest.raises(BackendUnavailable, match="onnxruntime-gpu"):
            onnxruntime_providers(torch.device("cuda"))


def test_dynamic_batch_is_for_tensorrt_engines():
    with pytest.raises(ValueError, match="batch_sizes is for tensorrt"):
        build_backend("onnxruntime", Tiny(), input_size=(16, 16), batch_sizes=(1, 2, 4))
