"""int8 on the CPU: ONNX Runtime static quantization (QDQ, per-channel weights, calibrated on
images) through build_backend and segmentation-ros-compile; the quantized file is read back
with `onnx` (an independent reader) and its outputs agree with the fp32 network."""

import json
from pathlib import Path
from typing import NamedTuple

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper
from torch import nn

from segmentation_ros.runtime.backends import build_backend
from segmentation_ros.runtime.cache import ArtifactCache, ArtifactCacheError
from segmentation_ros.tools.compile import main as compile_main


class SmallOutputs(NamedTuple):
    maps: torch.Tensor
    pooled: torch.Tensor


class Small(nn.Module):
    """Conv, depthwise conv, pointwise head: the layer kinds of our backbones."""

    output_type = SmallOutputs

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 3, padding=1)
        self.depthwise = nn.Conv2d(16, 16, 3, padding=1, groups=16)
        self.head = nn.Conv2d(16, 8, 1)

    def forward(self, x):
        y = self.head(self.depthwise(self.stem(x).relu()).relu())
        return SmallOutputs(y, y.mean(dim=(2, 3)))


def _images(seed: int, count: int) -> list[torch.Tensor]:
    """Smooth images (a gradient plus low-frequency noise), normalised like preprocess does."""
    generator = torch.Generator().manual_seed(seed)
    images = []
    for _ in range(count):
        coarse = torch.rand(1, 3, 4, 4, generator=generator)
        image = nn.functional.interpolate(coarse, size=(32, 32), mode="bilinear")
        images.append((image - 0.45) / 0.25)
    return images


@pytest.fixture(scope="module")
def small():
    torch.manual_seed(0)
    return Small().eval()


def test_int8_builds_quantized_and_agrees_with_fp32(tmp_path, small):
    cache = ArtifactCache(tmp_path)
    backend = build_backend(
        "onnxruntime", small, precision="int8", input_size=(32, 32), cache=cache,
        calibration=_images(0, 32),
    )  # fmt: skip
    assert backend.name == "onnxruntime" and backend.precision == "int8"
    assert backend.artifact.status == "built" and backend.artifact.key.precision == "int8"

    graph = onnx.load(backend.artifact.path).graph
    ops = [n.op_type for n in graph.node]
    assert "QuantizeLinear" in ops and "DequantizeLinear" in ops
    initializers = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    # Per-channel: each convolution weight is dequantized with one scale per output channel.
    weight_scales = sorted(
        initializers[n.input[1]].shape
        for n in graph.node
        if n.op_type == "DequantizeLinear" and initializers.get(n.input[0]) is not None
        and initializers[n.input[0]].dtype == np.int8 and initializers[n.input[0]].ndim == 4
    )  # fmt: skip
    assert weight_scales == [(16,), (16,)]
    # The layer that produces a raw output (`head`: maps) keeps float weights: its error would
    # go straight into boxes and masks. It is the only Conv without quantized input or weight.
    float_convs = [
        n for n in graph.node
        if n.op_type == "Conv" and n.input[1] in initializers
        and initializers[n.input[1]].dtype == np.float32
    ]  # fmt: skip
    assert len(float_convs) == 1 and initializers[float_convs[0].input[1]].shape == (8, 16, 1, 1)

    fp32 = build_backend("torch", small)
    for image in _images(1, 4):  # not the calibration images
        expected, got = fp32.infer(image), backend.infer(image)
        assert type(got) is SmallOutputs
        for a, b in zip(expected, got):
            assert b.dtype == torch.float32 and b.shape == a.shape
            # Each int8 step is 1/255 of a calibrated range; three quantized layers stack a few
            # steps: a few percent of the signal (RMS). Not zero: the file really is int8.
            relative = ((a - b).norm() / a.norm()).item()
            assert 1e-4 < relative <= 0.1, relative

    # A robot loads the built file without calibrating again.
    again = build_backend(
        "onnxruntime", small, precision="int8", input_size=(32, 32), cache=cache,
        allow_build=False,
    )  # fmt: skip
    assert again.artifact.status == "loaded" and again.precision == "int8"


def test_int8_without_calibration_says_so(tmp_path, small):
    with pytest.raises(ArtifactCacheError, match="'int8' needs calibration") as raised:
        build_backend("onnxruntime", small, precision="int8", input_size=(32, 32),
                      cache=ArtifactCache(tmp_path))  # fmt: skip
    assert isinstance(raised.value.__cause__, ValueError)
    wrong = [torch.zeros(1, 3, 8, 8)]
    with pytest.raises(ArtifactCacheError, match=r"calibration batch 0 must be a \[B, 3, 32, 32\]"):
        build_backend("onnxruntime", small, precision="int8", input_size=(32, 32),
                      cache=ArtifactCache(tmp_path), calibration=wrong)  # fmt: skip


def test_compile_builds_the_default_model_int8(tmp_path, capsys):
    args = ["--backend", "onnxruntime", "--precision", "int8", "--cache-dir", str(tmp_path)]
    assert compile_main(args) == 2
    assert "needs --calibration-data" in capsys.readouterr().err
    assert compile_main([*args, "--calibration-data", "synthetic-live:8@320x240"]) == 0
    built = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert built["status"] == "built" and "int8" in Path(built["path"]).name
