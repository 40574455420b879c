"""CPU int8: ONNX Runtime static quantization of an exported fp32 ONNX network.

QDQ format (QuantizeLinear / DequantizeLinear pairs around each quantized operator, which ONNX
Runtime fuses into integer kernels), int8 weights per output channel, uint8 activations whose
ranges come from calibration images (MinMax over the calibration set). On x86 CPUs with
AVX512-VNNI (this project's EPYC) u8 x s8 products run in VNNI instructions without the
saturation that older AVX2 kernels have, so no reduced range is needed.

Operators that ONNX Runtime cannot quantize (`DeformConv` of YOLACT++) stay in float between
dequantize / quantize nodes; the graph's outputs stay float32 raw head tensors, so the one
postprocess serves the int8 network unchanged.

    quantize_int8("model.onnx", "model.int8.onnx", calibration=[x1, x2, ...])  # [1, 3, H, W]
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch

#: Operators quantized to int8 (ONNX Runtime has integer kernels for them on the CPU). Resize,
#: Sigmoid, Softmax and the arithmetic of the heads stay float: quantizing them costs accuracy
#: for no speed on these networks (convolutions are ~all the time).
INT8_OPS = ("Conv", "MatMul", "Gemm", "ConvTranspose")


class _Batches:
    """ONNX Runtime's CalibrationDataReader over preprocessed images."""

    def __init__(self, input_name: str, batches: Iterable[torch.Tensor]):
        self._items = iter(
            {input_name: b.detach().to("cpu", torch.float32).contiguous().numpy()} for b in batches
        )

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._items, None)


def quantize_int8(
    fp32_path: str | Path,
    int8_path: str | Path,
    *,
    calibration: Iterable[torch.Tensor],
    input_name: str = "images",
    op_types: tuple[str, ...] = INT8_OPS,
) -> Path:
    """Write the int8 QDQ version of the fp32 ONNX model at `fp32_path` to `int8_path`.

    calibration: preprocessed images, each [1, 3, H, W] float32 at the model's input size
    (`pipeline.calibration_batches` makes them from a data set); at least one.
    Raises ValueError for an empty calibration set.
    """
    from onnxruntime.quantization import (
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    batches = list(calibration)
    if not batches:
        raise ValueError("int8 quantization needs calibration images (calibration_data)")
    int8_path = Path(int8_path)
    int8_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        # Shape inference + graph optimisation first, as ONNX Runtime recommends: quantization
        # then sees fused Conv+activation patterns and every tensor's shape.
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(fp32_path), str(prepared), skip_symbolic_shape=True)
        quantize_static(
            str(prepared),
            str(int8_path),
            _Batches(input_name, batches),
            quant_format=QuantFormat.QDQ,
            op_types_to_quantize=list(op_types),
            per_channel=True,
            reduce_range=False,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
        )
    return int8_path
