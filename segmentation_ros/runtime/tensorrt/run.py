"""Run a serialized TensorRT engine (TensorRT's Python runtime). Needs TensorRT only when a
`TensorRTBackend` is made; the input checks and binding logic are pure (tested on the CPU)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import Tensor

from segmentation_ros.runtime.tensorrt.plugins import register_available_plugins
from segmentation_ros.runtime.tensorrt.status import require_tensorrt

_TRT_TO_TORCH_DTYPE = {
    "FLOAT": torch.float32,
    "HALF": torch.float16,
    "BF16": torch.bfloat16,
    "INT8": torch.int8,
    "UINT8": torch.uint8,
    "INT32": torch.int32,
    "INT64": torch.int64,
    "BOOL": torch.bool,
}


def _torch_dtype(trt_dtype_name: str) -> torch.dtype:
    """The torch dtype of a tensorrt.DataType member name ("FLOAT" -> torch.float32)."""
    try:
        return _TRT_TO_TORCH_DTYPE[trt_dtype_name]
    except KeyError:
        message = f"engine tensor of TensorRT type {trt_dtype_name} is not supported"
        raise ValueError(message) from None


def _output_bindings(engine_outputs: Sequence[str], fields: Sequence[str]) -> list[str]:
    """Engine output names in the order of `fields`: by name when the engine names them after
    the fields, else Torch-TensorRT's default names output0, output1, ... in field order."""
    engine_outputs, fields = list(engine_outputs), list(fields)
    if sorted(engine_outputs) == sorted(fields):
        return fields
    defaults = [f"output{i}" for i in range(len(fields))]
    if sorted(engine_outputs) == defaults:
        return defaults
    raise ValueError(
        f"engine outputs {engine_outputs} do not match the {len(fields)} fields {fields}; "
        "was the engine built from another model type?"
    )


def _check_images(
    shape: Sequence[int],
    dtype: torch.dtype,
    min_shape: Sequence[int],
    max_shape: Sequence[int],
) -> None:
    """Check images against the engine's input profile [B, 3, H, W] (min and max shapes)."""
    shape, min_shape, max_shape = tuple(shape), tuple(min_shape), tuple(max_shape)
    if len(shape) != 4 or shape[1] != 3:
        raise ValueError(f"images must be [B, 3, H, W], got {list(shape)}")
    if shape[2:] != min_shape[2:]:
        raise ValueError(
            f"the engine was built for {min_shape[2]}x{min_shape[3]} inputs, got "
            f"{shape[2]}x{shape[3]}; preprocess to the engine's input size"
        )
    if not min_shape[0] <= shape[0] <= max_shape[0]:
        accepted = (
            f"batch {min_shape[0]}"
            if min_shape[0] == max_shape[0]
            else f"batches {min_shape[0]} to {max_shape[0]}"
        )
        raise ValueError(
            f"the engine accepts {accepted}, got {shape[0]}; rebuild it with "
            "batch_sizes=(min, opt, max) covering that batch"
        )
    if dtype != torch.float32:
        raise TypeError(f"images must be float32 (preprocessed), got {dtype}")


class TensorRTBackend:
    """A serialized TensorRT engine run with TensorRT's Python runtime (`tensorrt.Runtime`,
    `IExecutionContext.execute_async_v3` on torch's current CUDA stream, no synchronisation:
    later torch work on that stream is ordered after it).

    infer(images [B, 3, H, W] float32 on `device`) -> `output_type` of float32 tensors on
    `device`, fields in order; B within the engine's batch range, H x W its input size.
    """

    name = "tensorrt"
    artifact = None  # set by `backends.build_backend` (the engine cache's answer)

    def __init__(
        self,
        engine: bytes,
        output_type: type[NamedTuple],
        *,
        device: str | torch.device = "cuda",
        precision: str = "fp32",
    ):
        # What the engine computes in: the precision its cache key names, which `build_engine`
        # checked in the graph before TensorRT built it (a strongly typed network keeps it).
        self.precision = precision
        if not isinstance(engine, bytes | bytearray | memoryview):
            raise TypeError(f"engine must be the serialized engine bytes, got {type(engine)}")
        if not hasattr(output_type, "_fields"):
            raise TypeError(f"output_type must be a NamedTuple type, got {output_type!r}")
        require_tensorrt(device)
        import tensorrt as trt

        # JIT plugins must be registered in this process before an engine using them loads.
        register_available_plugins()
        device = torch.device(device)
        self.device = (
            device
            if device.index is not None
            else torch.device("cuda", torch.cuda.current_device())
        )
        self.output_type = output_type
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)  # must outlive the engine
        with torch.cuda.device(self.device):
            self._engine = self._runtime.deserialize_cuda_engine(bytes(engine))
            if self._engine is None:
                raise ValueError(
                    "TensorRT could not deserialise the engine: it was built by another "
                    "TensorRT version or for another GPU, holds plugin layers this TensorRT "
                    "cannot make (see TensorRT's log), or is not an engine; rebuild it here"
                )
            self._context = self._engine.create_execution_context()
        names = [self._engine.get_tensor_name(i) for i in range(self._engine.num_io_tensors)]
        inputs = [n for n in names if self._engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        outputs = [n for n in names if n not in inputs]
        if len(inputs) != 1:
            raise ValueError(f"expected an engine with one input (the images), got {inputs}")
        self._input = inputs[0]
        self._outputs = _output_bindings(outputs, output_type._fields)
        self._input_dtype = _torch_dtype(self._engine.get_tensor_dtype(self._input).name)
        self._output_dtypes = [
            _torch_dtype(self._engine.get_tensor_dtype(n).name) for n in self._outputs
        ]
        min_shape, _, max_shape = self._engine.get_tensor_profile_shape(self._input, 0)
        self.min_shape, self.max_shape = tuple(min_shape), tuple(max_shape)
        self.input_size = self.min_shape[2:]
        self.batch_range = (self.min_shape[0], self.max_shape[0])

    @torch.inference_mode()
    def infer(self, images: Tensor) -> NamedTuple:
        if not isinstance(images, Tensor):
            raise TypeError(f"images must be a tensor, got {type(images)}")
        _check_images(images.shape, images.dtype, self.min_shape, self.max_shape)
        if images.device != self.device:
            raise ValueError(
                f"images are on {images.device}, the engine on {self.device}; preprocess on the "
                "backend's device"
            )
        images = images.to(self._input_dtype).contiguous()
        context = self._context
        if not context.set_input_shape(self._input, tuple(images.shape)):
            raise ValueError(f"TensorRT rejected input shape {tuple(images.shape)}")
        context.set_tensor_address(self._input, images.data_ptr())
        outputs = []
        for name, dtype in zip(self._outputs, self._output_dtypes):
            out = torch.empty(
                tuple(context.get_tensor_shape(name)), dtype=dtype, device=self.device
            )
            context.set_tensor_address(name, out.data_ptr())
            outputs.append(out)
        stream = torch.cuda.current_stream(self.device)
        if not context.execute_async_v3(stream.cuda_stream):
            raise RuntimeError("TensorRT failed to run the engine (see TensorRT's log)")
        return self.output_type(*(out.float() for out in outputs))
