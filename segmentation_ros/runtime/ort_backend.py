"""ONNX Runtime backend: an exported ONNX file run on the CPU (or CUDA with onnxruntime-gpu)."""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import torch

from segmentation_ros.runtime.base import BackendUnavailable


class OnnxRuntimeBackend:
    """ONNX Runtime (CPU; CUDA when onnxruntime-gpu is installed and `device` is cuda).

    Outputs come back as torch tensors sharing ONNX Runtime's numpy buffers (no copy), packed
    into `output_type` by the ONNX output names (which `export_onnx` sets to its field names).
    """

    name = "onnxruntime"
    artifact = None

    def __init__(
        self,
        onnx_path: str | Path,
        output_type: type[NamedTuple],
        *,
        device: str = "cpu",
        intra_op_threads: int = 0,
        precision: str = "fp32",
    ):
        ort = onnxruntime_module()
        path = Path(onnx_path)
        if not path.is_file():
            raise FileNotFoundError(f"ONNX model {str(path)!r} does not exist; export it first")
        self.precision = precision
        self.device = torch.device(device)
        providers = onnxruntime_providers(self.device)
        options = ort.SessionOptions()
        options.intra_op_num_threads = intra_op_threads
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # Idle worker threads must not spin: on a small CPU they would take the cores the
        # postprocess and the ROS executor need between inferences.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(str(path), options, providers=providers)
        self.output_type = output_type
        self.input_name = self.session.get_inputs()[0].name
        names = [o.name for o in self.session.get_outputs()]
        if sorted(names) != sorted(output_type._fields):
            raise ValueError(
                f"ONNX model {str(path)!r} has outputs {names}, expected {output_type._fields}; "
                "was it exported from another model type?"
            )
        self._fields = list(output_type._fields)

    def infer(self, images: torch.Tensor) -> NamedTuple:
        if self.device.type == "cuda":  # tensors stay on the GPU: bind them, no host copies
            return self._infer_bound(images)
        arrays = self.session.run(self._fields, {self.input_name: images.detach().cpu().numpy()})
        return self.output_type(*(torch.from_numpy(a) for a in arrays))

    def _infer_bound(self, images: torch.Tensor) -> NamedTuple:
        images = images.detach().contiguous()
        binding = self.session.io_binding()
        index = images.device.index or 0
        binding.bind_input(
            self.input_name, "cuda", index, _numpy_dtype(images), tuple(images.shape),
            images.data_ptr(),
        )  # fmt: skip
        for name in self._fields:
            binding.bind_output(name, "cuda", index)
        self.session.run_with_iobinding(binding)
        # Outputs come back through the host (ORT's Python API has no portable zero-copy
        # hand-over to torch); the input, the larger tensor, never leaves the GPU.
        arrays = binding.copy_outputs_to_cpu()
        return self.output_type(*(torch.from_numpy(a).to(images.device) for a in arrays))


def _numpy_dtype(tensor: torch.Tensor):
    import numpy as np

    return {torch.float32: np.float32, torch.float16: np.float16}[tensor.dtype]


def onnxruntime_providers(device: torch.device) -> list:
    """ONNX Runtime's execution providers for `device` (BackendUnavailable when it has none)."""
    ort = onnxruntime_module()
    if device.type != "cuda":
        return ["CPUExecutionProvider"]
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        raise BackendUnavailable(
            "backend onnxruntime on cuda needs onnxruntime-gpu (CUDAExecutionProvider); "
            f"installed providers: {ort.get_available_providers()}"
        )
    return [("CUDAExecutionProvider", {"device_id": device.index or 0}), "CPUExecutionProvider"]


def onnxruntime_module():
    """The onnxruntime module (BackendUnavailable when it is not installed)."""
    try:
        import onnxruntime as ort
    except ImportError as error:
        raise BackendUnavailable("backend onnxruntime needs the onnxruntime package") from error
    return ort
