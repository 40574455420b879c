"""Inference backends behind one interface.

Every backend takes the same preprocessed tensor ([B, 3, H, W] float32, normalised, on the
backend's device) and returns the same raw outputs (the model's NamedTuple, e.g. YolactOutputs)
for the one shared postprocess. Backends hold no postprocess and no ROS.

    backend = build_backend("onnxruntime", model, onnx_path="model.onnx")
    outputs = backend.infer(preprocess(image, config))
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple, Protocol

import torch
from torch import nn


class BackendUnavailable(RuntimeError):
    """The requested backend cannot run here; the message says what is missing."""


class Backend(Protocol):
    name: str

    def infer(self, images: torch.Tensor) -> NamedTuple:
        """[B, 3, H, W] float32 -> the model's raw outputs (a NamedTuple of tensors)."""
        ...


class TorchBackend:
    """Eager PyTorch on the model's device."""

    name = "torch"

    def __init__(self, model: nn.Module):
        self.model = model.eval()

    @torch.inference_mode()
    def infer(self, images: torch.Tensor) -> NamedTuple:
        return self.model(images)


class OnnxRuntimeBackend:
    """ONNX Runtime (CPU; CUDA when onnxruntime-gpu is installed and `device` is cuda).

    Outputs come back as torch tensors sharing ONNX Runtime's numpy buffers (no copy), packed
    into `output_type` by the ONNX output names (which `export_onnx` sets to its field names).
    """

    name = "onnxruntime"

    def __init__(
        self,
        onnx_path: str | Path,
        output_type: type[NamedTuple],
        *,
        device: str = "cpu",
        intra_op_threads: int = 0,
    ):
        try:
            import onnxruntime as ort
        except ImportError as error:  # pragma: no cover - onnxruntime is in requirements.txt
            raise BackendUnavailable("backend onnxruntime needs the onnxruntime package") from error
        path = Path(onnx_path)
        if not path.is_file():
            raise FileNotFoundError(f"ONNX model {str(path)!r} does not exist; export it first")
        providers = ["CPUExecutionProvider"]
        if str(device).startswith("cuda"):
            if "CUDAExecutionProvider" not in ort.get_available_providers():
                raise BackendUnavailable(
                    "backend onnxruntime on cuda needs onnxruntime-gpu (CUDAExecutionProvider)"
                )
            providers.insert(0, "CUDAExecutionProvider")
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
        arrays = self.session.run(self._fields, {self.input_name: images.detach().cpu().numpy()})
        return self.output_type(*(torch.from_numpy(a) for a in arrays))


def build_backend(
    kind: str,
    model: nn.Module,
    *,
    onnx_path: str | Path | None = None,
    device: str = "cpu",
    input_size: tuple[int, int] | None = None,
) -> Backend:
    """A backend by name: "torch" or "onnxruntime" (exported on first use when `onnx_path` is
    missing and `input_size` (H, W) is given). "tensorrt" raises BackendUnavailable here."""
    if kind == "torch":
        return TorchBackend(model.to(device))
    if kind == "onnxruntime":
        if onnx_path is None:
            raise ValueError("backend onnxruntime needs onnx_path")
        if not Path(onnx_path).is_file():
            if input_size is None:
                raise FileNotFoundError(f"{onnx_path} does not exist and no input_size to export")
            from segmentation_ros.runtime.onnx_export import export_onnx

            export_onnx(model, onnx_path, input_size=input_size)
        return OnnxRuntimeBackend(onnx_path, model_output_type(model), device=device)
    if kind == "tensorrt":
        raise BackendUnavailable(
            "backend tensorrt needs torch_tensorrt and TensorRT's libraries, which are not "
            "installed here; use torch or onnxruntime"
        )
    raise ValueError(f"unknown backend {kind!r}; expected torch, onnxruntime or tensorrt")


def model_output_type(model: nn.Module) -> type[NamedTuple]:
    """The NamedTuple type a model's forward returns: `model.output_type` where declared, else
    found by running the model once on a small zero input."""
    output_type = getattr(model, "output_type", None)
    if output_type is not None:
        return output_type
    config = getattr(model, "config", None)
    height, width = getattr(config, "input_size", (64, 64))
    parameter = next(model.parameters())
    with torch.inference_mode():
        outputs = model.eval()(torch.zeros(1, 3, height, width, device=parameter.device))
    if not hasattr(type(outputs), "_fields"):
        raise TypeError(f"{type(model).__name__}.forward must return a NamedTuple of tensors")
    return type(outputs)
