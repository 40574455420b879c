"""CPU int8 through ONNX Runtime static quantization: the graph really holds int8 weights (one
scale per output channel) between QDQ pairs, and its outputs stay within a few quantization steps
of the fp32 network on the images it was calibrated for (ONNX Runtime runs both)."""

from typing import NamedTuple

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper
from torch import nn

from segmentation_ros.runtime.backends import OnnxRuntimeBackend
from segmentation_ros.runtime.onnx_export import export_onnx
from segmentation_ros.runtime.quantize import quantize_int8


class Outputs(NamedTuple):
    features: torch.Tensor
    pooled: torch.Tensor


class Net(nn.Module):
    output_type = Outputs

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.body = nn.Sequential(
            nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 16, 3, padding=1), nn.ReLU()
        )
        self.head = nn.Conv2d(16, 8, 1)

    def forward(self, x):
        y = self.head(self.body(x))
        return Outputs(y, y.mean(dim=(2, 3)))


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("int8")
    net = Net().eval()
    generator = torch.Generator().manual_seed(1)
    calibration = [torch.randn(1, 3, 32, 32, generator=generator) for _ in range(8)]
    fp32 = export_onnx(net, tmp / "net.onnx", input_size=(32, 32))
    int8 = quantize_int8(fp32, tmp / "net.int8.onnx", calibration=calibration)
    return fp32, int8, calibration


def test_int8_graph_has_per_channel_int8_weights_in_qdq_pairs(models):
    _, int8, _ = models
    graph = onnx.load(str(int8)).graph
    ops = [n.op_type for n in graph.node]
    assert ops.count("Conv") == 3
    assert "QuantizeLinear" in ops and "DequantizeLinear" in ops
    weights = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    int8_weights = [w for w in weights.values() if w.dtype == np.int8 and w.ndim == 4]
    assert sorted(w.shape[0] for w in int8_weights) == [8, 16, 16]
    dequantized = [n for n in graph.node if n.op_type == "DequantizeLinear"]
    scales = [weights[n.input[1]] for n in dequantized if weights.get(n.input[0]) is not None
              and weights[n.input[0]].ndim == 4]  # fmt: skip
    assert sorted(s.shape[0] for s in scales) == [8, 16, 16]  # one scale per output channel
    assert not any(o.name.startswith(("features_", "pooled_")) for o in graph.output)
    assert [o.type.tensor_type.elem_type for o in graph.output] == [onnx.TensorProto.FLOAT] * 2


def test_int8_outputs_stay_within_a_few_quantization_steps_of_fp32(models):
    fp32, int8, calibration = models
    ref, q = OnnxRuntimeBackend(fp32, Outputs), OnnxRuntimeBackend(int8, Outputs)
    for x in calibration[:3]:
        a, b = ref.infer(x).features, q.infer(x).features
        # Three quantized activations (input, two hidden) each add up to half a uint8 step of
        # their own range; measured through this net: ~2 output steps on average.
        step = float(a.max() - a.min()) / 255
        assert float((a - b).abs().mean()) < 4 * step
        assert float((a - b).abs().max()) < 24 * step
        assert float(torch.corrcoef(torch.stack([a.flatten(), b.flatten()]))[0, 1]) > 0.99
        assert not torch.equal(a, b)  # it is not the fp32 graph


def test_int8_needs_calibration_images(models, tmp_path):
    fp32, _, _ = models
    with pytest.raises(ValueError, match="calibration"):
        quantize_int8(fp32, tmp_path / "x.onnx", calibration=[])
