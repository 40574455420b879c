"""int8 for the CPU: ONNX Runtime static quantization of an exported fp32 ONNX file.

QDQ format (QuantizeLinear / DequantizeLinear pairs around each quantized op; ONNX Runtime
fuses them into int8 kernels, VNNI where the CPU has it), int8 activations and weights (S8S8,
ONNX Runtime's recommended first choice), per-channel weight scales (one per output channel of
each convolution: what keeps accuracy in depthwise and narrow layers), activation ranges from
MinMax calibration over preprocessed images (the `calibration_data` option).
Ops it does not quantize (e.g. DeformConv) stay float32, and so do the layers that produce the
raw outputs (box offsets, class logits, mask coefficients, prototypes, semantic logits): their
error goes straight into which boxes win NMS and where mask edges fall, for a small share of
the compute (`output_layers`). Reference: onnxruntime.ai, "Quantize ONNX models".
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from torch import Tensor

from segmentation_ros.runtime.base import BackendUnavailable


def _calibration_arrays(calibration: Iterable[Tensor], input_size: tuple[int, int]) -> list:
    """The calibration images as [1, 3, H, W] float32 arrays (the ONNX file is batch 1).
    ValueError for a batch of another shape, or no image at all."""
    arrays = []
    for index, batch in enumerate(calibration):
        if not isinstance(batch, Tensor) or tuple(batch.shape[1:]) != (3, *input_size):
            shape = tuple(batch.shape) if isinstance(batch, Tensor) else type(batch)
            raise ValueError(
                f"calibration batch {index} must be a [B, 3, {input_size[0]}, {input_size[1]}] "
                f"tensor (preprocessed images), got {shape}"
            )
        arrays += [image[None].float().cpu().numpy() for image in batch.detach()]
    if not arrays:
        raise ValueError("calibration gave no images; int8 needs representative images")
    return arrays


#: Part of the cache key of int8 ONNX files: change it when the quantization recipe changes, so
#: that files made by an older recipe are rebuilt rather than reused.
RECIPE = "qdq-s8s8-per-channel-minmax-float-output-layers"

#: Ops between a last convolution and a graph output that only reshape, reorder or squash values.
_PASS_THROUGH = frozenset(
    "Reshape Transpose Concat Flatten Squeeze Unsqueeze Identity Cast Slice Split Sigmoid Tanh "
    "Softmax Relu Resize".split()
)
_LAYERS = frozenset(("Conv", "ConvTranspose", "MatMul", "Gemm"))


def output_layers(model_path: str | Path) -> list[str]:
    """Names of the Conv / MatMul / Gemm nodes whose results reach a graph output through
    pass-through ops only (the heads' last layers)."""
    import onnx

    graph = onnx.load(str(model_path), load_external_data=False).graph
    producer = {out: node for node in graph.node for out in node.output}
    found, seen = [], set()
    stack = [o.name for o in graph.output]
    while stack:
        node = producer.get(stack.pop())
        if node is None or node.name in seen:
            continue
        seen.add(node.name)
        if node.op_type in _LAYERS:
            found.append(node.name)
        elif node.op_type in _PASS_THROUGH:
            stack += [name for name in node.input if name]
    return sorted(found)


def quantize_int8(
    fp32_path: str | Path,
    int8_path: str | Path,
    calibration: Iterable[Tensor] | None,
    *,
    input_size: tuple[int, int],
    input_name: str = "images",
) -> Path:
    """Write the static int8 quantization of the ONNX file `fp32_path` to `int8_path`.

    calibration: preprocessed [B, 3, H, W] float32 images (a few dozen representative ones,
    e.g. `pipeline.calibration_batches`); required. Returns `int8_path`.
    """
    if calibration is None:
        raise ValueError(
            "precision 'int8' needs calibration: pass calibration=an iterable of preprocessed "
            "[B, 3, H, W] float32 tensors (the calibration_data option / --calibration-data)"
        )
    arrays = _calibration_arrays(calibration, input_size)
    try:
        from onnxruntime.quantization import (
            CalibrationDataReader,
            CalibrationMethod,
            QuantFormat,
            QuantType,
            quantize_static,
        )
    except ImportError as error:
        raise BackendUnavailable("int8 quantization needs onnxruntime (with onnx)") from error

    class _Reader(CalibrationDataReader):
        """The calibration images, one range at a time (`CalibStridedMinMax` below)."""

        def __init__(self) -> None:
            self.set_range(0, len(arrays))

        def __len__(self) -> int:
            return len(arrays)

        def set_range(self, start_index: int, end_index: int) -> None:
            self._images = iter(arrays[start_index:end_index])

        def get_next(self) -> dict | None:
            image = next(self._images, None)
            return None if image is None else {input_name: image}

    quantize_static(
        str(fp32_path),
        str(int8_path),
        _Reader(),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        activation_type=QuantType.QInt8,
        weight_type=QuantType.QInt8,
        # MinMax: exact when strided (per-image ranges merge into the global one). Percentile
        # measured a little better on the default model (mask IoU with fp32 0.953 vs 0.931) but
        # its histograms fail to merge across strides on narrow ranges ("Too many bins").
        calibrate_method=CalibrationMethod.MinMax,
        nodes_to_exclude=output_layers(fp32_path),
        # One image at a time into the histograms: ONNX Runtime otherwise keeps every
        # intermediate output of every calibration image (32 images of YOLACT-R50 at 550: more
        # than 20 GB, killed).
        extra_options={"CalibStridedMinMax": 1},
    )
    return Path(int8_path)
