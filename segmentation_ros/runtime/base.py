"""What every backend shares: the protocol, the error that says what is missing, the precision
check, and small model facts. The bottom layer of `runtime`: it imports only `runtime.names`
(every other runtime module may import it; it imports none of them).

Layers (each imports only those above it; test/runtime/test_layers.py checks with ast that
nothing imports in a cycle at module level):
  names                      torch-free names and tables
  cache                      the artifact cache (torch-free)
  base                       this module
  torch_backends, ort_backend, openvino_backend, onnx_export, tensorrt.status
  tensorrt.plugins
  tensorrt.build, tensorrt.run
  keys                       cache keys (weights hash, device, versions)
  backends                   build_backend: a registry lookup; "auto" resolved there
"""

from __future__ import annotations

from typing import NamedTuple, Protocol

import torch
from torch import nn

from segmentation_ros.runtime.cache import CacheResult
from segmentation_ros.runtime.names import KINDS, PRECISIONS, SUPPORTED


class BackendUnavailable(RuntimeError):
    """The requested backend cannot run here; the message says what is missing."""


class Backend(Protocol):
    #: The backend that runs (never "auto": `build_backend` resolves it first).
    name: str
    #: The precision the network runs at (TensorRT: what the engine was built and checked for).
    precision: str
    #: How its ONNX file / engine was obtained (`build_backend` sets it); None for torch.
    artifact: CacheResult | None

    def infer(self, images: torch.Tensor) -> NamedTuple:
        """[B, 3, H, W] float32 -> the model's raw outputs (a NamedTuple of float32 tensors)."""
        ...


def device_type(device: str | torch.device) -> str:
    """ "cpu" or "cuda" (ValueError for a device string torch does not parse)."""
    return torch.device(device).type


def check_precision(kind: str, precision: str, device: str) -> None:
    """ValueError (saying what works) unless backend `kind` supports `precision` on `device`.
    tensorrt is checked for its precisions only: its device is `tensorrt.status`'s to judge
    (it names everything missing at once)."""
    if kind not in KINDS:
        raise ValueError(f"unknown backend {kind!r}; expected one of {KINDS}")
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; expected one of {PRECISIONS}")
    where = "cuda" if device_type(device) == "cuda" else "cpu"
    supported = SUPPORTED[kind]["cuda" if kind == "tensorrt" else where]
    if precision in supported:
        return
    if not supported:
        raise ValueError(f"backend {kind} does not run on {where}")
    if precision == "int8":
        others = [k for k in KINDS if "int8" in SUPPORTED[k][where]]
        raise ValueError(
            f"int8 needs the tensorrt backend (with a calibration set){_or_others(others, kind)}"
            f", not {kind}"
        )
    if kind == "onnxruntime":
        raise ValueError(
            f"backend onnxruntime runs fp32 only (and int8 on the CPU, statically quantized); "
            f"for {precision} use openvino (bf16 on the CPU), tensorrt (GPU) or torch"
        )
    raise ValueError(
        f"{precision} on the CPU has no fast kernels in {kind}: use bf16 or fp32 there"
    )


def _or_others(kinds: list[str], asked: str) -> str:
    others = [k for k in kinds if k not in ("tensorrt", asked)]
    return f" or {', '.join(others)} on this device" if others else ""


def float32_outputs(outputs: NamedTuple) -> NamedTuple:
    """The same NamedTuple with every tensor in float32 (the backends' output contract)."""
    return type(outputs)(*(t.float() for t in outputs))


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


def require_cuda(device: str | torch.device) -> None:
    """BackendUnavailable unless `device` is a CPU or a CUDA device torch can use here."""
    dev = torch.device(device)
    if dev.type != "cuda":
        return
    if not torch.cuda.is_available():
        raise BackendUnavailable(
            f"device {str(device)!r}: torch sees no CUDA device here (no GPU, no driver, or a "
            "CPU-only torch); use device cpu"
        )
    if dev.index is not None and dev.index >= torch.cuda.device_count():
        raise BackendUnavailable(
            f"device {str(device)!r}: only {torch.cuda.device_count()} CUDA device(s) here"
        )


def warm_up(backend: Backend, input_size: tuple[int, int], *, device: str, runs: int = 2) -> None:
    """Run the backend on zeros: compiles torch_compile, lets CUDA / TensorRT allocate and
    autotune, so that the first camera frame is not the slow one."""
    zeros = torch.zeros(1, 3, *input_size, device=device)
    for _ in range(runs):
        backend.infer(zeros)
