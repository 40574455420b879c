"""Inference backends behind one interface, built by name.

Every backend takes the same preprocessed tensor ([B, 3, H, W] float32, normalised, on the
backend's device) and returns the same raw outputs (the model's NamedTuple, e.g. YolactOutputs,
float32) for the one shared postprocess. Backends hold no postprocess and no ROS.

    backend = build_backend("auto", model, input_size=(240, 320))   # openvino on a CPU
    outputs = backend.infer(preprocess(image, config))

kind           precisions                 device      what it is
torch          fp32, bf16, fp16 (cuda)    cpu, cuda   eager PyTorch (autocast below fp32)
torch_compile  fp32, bf16, fp16 (cuda)    cpu, cuda   torch.compile (inductor; CUDA graphs on
                                                      cuda), compiled on the first calls
onnxruntime    fp32, int8 (cpu)           cpu, cuda   ONNX Runtime on an exported ONNX file
                                                      (int8: static QDQ quantization,
                                                      `runtime.ort_quantize`)
openvino       fp32, bf16, int8           cpu         OpenVINO on the same ONNX files (bf16
                                                      where the CPU has it; int8: the QDQ file)
tensorrt       fp32, fp16, bf16, int8     cuda        a serialized TensorRT engine
                                                      (torch-tensorrt, `runtime.tensorrt`)
auto           the fastest that runs there, in `AUTO_ORDER` (`resolve_backend`): openvino, else
               onnxruntime, on a CPU; one that cannot run the model (an op it cannot
               convert) gives way to the next

ONNX files and TensorRT engines come from `ArtifactCache` (`runtime.cache`): keyed by the
weights, input shape, precision and the building software and GPU; built when missing or
stale (or refused, with `allow_build=False`). `build_backend` is a lookup in `BUILDERS`; the
names it re-exports (BackendUnavailable, check_precision, ...) live in the modules below it
(layers: `runtime.base`).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from segmentation_ros.runtime.base import (
    Backend,
    BackendUnavailable,
    check_precision,
    device_type,
    model_output_type,
    require_cuda,
    warm_up,
)
from segmentation_ros.runtime.cache import ArtifactCache, ArtifactCacheError
from segmentation_ros.runtime.keys import artifact_key, device_facts, weights_sha256
from segmentation_ros.runtime.names import (
    AUTO,
    AUTO_ORDER,
    AUTO_PRECISION,
    BACKENDS,
    PRECISIONS,
    SUPPORTED,
)
from segmentation_ros.runtime.onnx_export import export_onnx
from segmentation_ros.runtime.openvino_backend import (
    OpenVINOBackend,
    cpu_has_bf16,
    openvino_module,
)
from segmentation_ros.runtime.ort_backend import OnnxRuntimeBackend, onnxruntime_providers
from segmentation_ros.runtime.ort_quantize import quantize_int8
from segmentation_ros.runtime.tensorrt.build import build_engine
from segmentation_ros.runtime.tensorrt.run import TensorRTBackend
from segmentation_ros.runtime.tensorrt.status import require_tensorrt, tensorrt_status
from segmentation_ros.runtime.torch_backends import CompiledBackend, TorchBackend


@dataclass(frozen=True)
class BuildRequest:
    """What `build_backend` was asked for, handed to the backend's builder (see there)."""

    model: nn.Module
    precision: str
    device: str
    input_size: tuple[int, int] | None
    artifact_path: str | os.PathLike | None
    cache: ArtifactCache
    allow_build: bool
    calibration: Any
    batch_sizes: tuple[int, int, int] | None
    intra_op_threads: int


@dataclass(frozen=True)
class Builder:
    """How one backend is made. build(request) -> Backend. require(device): raises
    BackendUnavailable first, before anything else is looked at, when its software is missing.
    artifact: it compiles a fixed-size artifact (needs input_size). dynamic_batch: it takes
    batch_sizes."""

    build: Callable[[BuildRequest], Backend]
    require: Callable[[str], None] | None = None
    artifact: bool = False
    dynamic_batch: bool = False


def _build_torch(r: BuildRequest) -> Backend:
    return TorchBackend(r.model.to(r.device), precision=r.precision)


def _build_compiled(r: BuildRequest) -> Backend:
    return CompiledBackend(r.model.to(r.device), precision=r.precision, device=r.device)


def _build_onnxruntime(r: BuildRequest) -> Backend:
    onnxruntime_providers(torch.device(r.device))  # fail before exporting
    output_type = model_output_type(r.model)
    key = artifact_key(
        "onnxruntime", r.model, input_size=r.input_size, precision=r.precision, device=r.device
    )
    result = r.cache.get_or_build(
        key,
        lambda target: _export_onnx(r, target),
        suffix=".onnx",
        path=r.artifact_path,
        validate=lambda path: OnnxRuntimeBackend(path, output_type),
        allow_build=r.allow_build,
    )
    backend = OnnxRuntimeBackend(
        result.path, output_type, device=r.device, intra_op_threads=r.intra_op_threads,
        precision=r.precision,
    )  # fmt: skip
    backend.artifact = result
    return backend


def _export_onnx(r: BuildRequest, target: Path) -> None:
    """The ONNX file of the request: the fp32 export, statically quantized for int8."""
    if r.precision != "int8":
        export_onnx(r.model, target, input_size=r.input_size)
        return
    with tempfile.TemporaryDirectory() as folder:
        fp32 = export_onnx(r.model, Path(folder) / "fp32.onnx", input_size=r.input_size)
        quantize_int8(fp32, target, r.calibration, input_size=r.input_size)


def artifact_precision(kind: str, precision: str) -> str:
    """The precision in the cache key of `kind`'s artifact: openvino's bf16 is a compile option
    of the fp32 ONNX file (its int8 is the QDQ file); other backends build one per precision."""
    if kind == "openvino" and precision != "int8":
        return "fp32"
    return precision


def _build_openvino(r: BuildRequest) -> Backend:
    output_type = model_output_type(r.model)
    file_precision = artifact_precision("openvino", r.precision)
    key = artifact_key(
        "openvino", r.model, input_size=r.input_size, precision=file_precision, device=r.device
    )
    try:
        result = r.cache.get_or_build(
            key,
            lambda target: _export_onnx(dataclasses.replace(r, precision=file_precision), target),
            suffix=".onnx",
            path=r.artifact_path,
            validate=lambda path: OpenVINOBackend(path, output_type),
            allow_build=r.allow_build,
        )
    except ArtifactCacheError as error:
        if isinstance(error.__cause__, BackendUnavailable):  # an op OpenVINO cannot convert
            raise error.__cause__ from error
        raise
    backend = OpenVINOBackend(
        result.path, output_type, precision=r.precision, threads=r.intra_op_threads
    )
    backend.artifact = result
    return backend


def _require_openvino(device: str) -> None:
    if device_type(device) != "cpu":
        raise BackendUnavailable(f"backend openvino runs on the CPU, not {device!r}")
    openvino_module()


def _build_tensorrt(r: BuildRequest) -> Backend:
    output_type = model_output_type(r.model)
    batch = "-".join(map(str, r.batch_sizes)) if r.batch_sizes else "1"
    key = artifact_key(
        "tensorrt", r.model, input_size=r.input_size, precision=r.precision, device=r.device,
        batch=batch,
    )  # fmt: skip
    result = r.cache.get_or_build(
        key,
        lambda target: target.write_bytes(
            build_engine(
                r.model.to(r.device), input_size=r.input_size, precision=r.precision,
                device=r.device, batch_sizes=r.batch_sizes, calibration=r.calibration,
            )
        ),
        suffix=".engine",
        path=r.artifact_path,
        validate=lambda path: TensorRTBackend(
            path.read_bytes(), output_type, device=r.device
        ),
        allow_build=r.allow_build,
    )  # fmt: skip
    backend = TensorRTBackend(
        result.path.read_bytes(), output_type, device=r.device, precision=r.precision
    )
    backend.artifact = result
    return backend


#: backend name -> how to build it. Adding a backend is a builder and an entry here (and its
#: name and precisions in runtime.names).
BUILDERS: dict[str, Builder] = {
    "torch": Builder(_build_torch),
    "torch_compile": Builder(_build_compiled),
    "onnxruntime": Builder(_build_onnxruntime, artifact=True),
    "openvino": Builder(_build_openvino, require=_require_openvino, artifact=True),
    "tensorrt": Builder(
        _build_tensorrt, require=require_tensorrt, artifact=True, dynamic_batch=True
    ),
}


# ---------------------------------------------------------------------------------------------
# "auto"


def auto_candidates(where: str, precision: str, available: Mapping[str, bool]) -> list[str]:
    """The backends "auto" may pick, in `AUTO_ORDER[where]` ("cpu" or "cuda"): available here
    and running `precision` there. `available`: backend -> whether its software runs here
    (missing entries count as available)."""
    return [
        k for k in AUTO_ORDER[where] if available.get(k, True) and precision in SUPPORTED[k][where]
    ]


def choose_backend(where: str, precision: str, available: Mapping[str, bool]) -> str:
    """The rule behind "auto" (pure): the first of `auto_candidates`."""
    candidates = auto_candidates(where, precision, available)
    if candidates:
        return candidates[0]
    tried = ", ".join(
        f"{k} ({'no ' + precision if available.get(k, True) else 'not available'})"
        for k in AUTO_ORDER[where]
    )
    raise BackendUnavailable(f"backend auto: nothing runs {precision} on {where} here: {tried}")


def backend_availability(device: str) -> dict[str, bool]:
    """Whether each backend's software runs on `device` here (facts of this machine)."""
    cuda = device_type(device) == "cuda"
    found = {
        m: importlib.util.find_spec(m) is not None
        for m in ("onnxruntime", "onnxscript", "openvino")
    }
    onnxruntime = found["onnxruntime"] and found["onnxscript"]
    if onnxruntime and cuda:
        import onnxruntime as ort

        onnxruntime = "CUDAExecutionProvider" in ort.get_available_providers()
    return {
        "torch": True,
        # inductor generates Triton kernels on CUDA
        "torch_compile": not cuda or importlib.util.find_spec("triton") is not None,
        "onnxruntime": onnxruntime,
        # exported by torch.onnx (onnxscript), int8 quantized by onnxruntime
        "openvino": not cuda and found["openvino"] and onnxruntime,
        "tensorrt": tensorrt_status(device) is None,
    }


def resolve_backend(kind: str, *, device: str, precision: str = "fp32") -> str:
    """`kind` itself, or for "auto" the fastest backend that runs `precision` on `device` here:
    OpenVINO (else ONNX Runtime) on a CPU; on CUDA TensorRT where it is installed, else
    torch_compile (torch when a precision rules the others out). ValueError for an unknown name."""
    if kind != AUTO:
        if kind not in BACKENDS:
            raise ValueError(f"unknown backend {kind!r}; expected one of {BACKENDS}")
        return kind
    require_cuda(device)
    where = "cuda" if device_type(device) == "cuda" else "cpu"
    return choose_backend(where, precision, backend_availability(device))


def resolve_precision(precision: str, kind: str) -> str:
    """`precision` itself, or for "auto" the fast precision backend `kind` (resolved) runs
    here: `AUTO_PRECISION` (openvino: bf16 where the CPU has bf16 instructions), else fp32."""
    if precision != AUTO:
        return precision
    chosen = AUTO_PRECISION.get(kind, "fp32")
    if chosen == "bf16" and kind == "openvino" and not cpu_has_bf16():
        return "fp32"
    return chosen


# ---------------------------------------------------------------------------------------------
# build_backend


def build_backend(
    kind: str,
    model: nn.Module,
    *,
    precision: str = "fp32",
    device: str = "cpu",
    input_size: tuple[int, int] | None = None,
    artifact_path: str | os.PathLike | None = None,
    cache: ArtifactCache | None = None,
    allow_build: bool = True,
    calibration=None,
    batch_sizes: tuple[int, int, int] | None = None,
    intra_op_threads: int = 0,
) -> Backend:
    """A backend by name, or "auto" (`resolve_backend`; the result's `.name` is the backend
    that runs), at a precision or "auto" (`resolve_precision`; `.precision` is the one that
    runs). See the module docstring.

    input_size: (H, W) of the network input; needed by onnxruntime and tensorrt (their
    artifacts are built for one size). artifact_path: a prebuilt ONNX file / engine to use
    (checked against its manifest); default: `cache` (default ~/.cache/segmentation_ros).
    allow_build: build a missing or stale artifact (else ArtifactCacheError).
    calibration: preprocessed batches for int8 (tensorrt; onnxruntime on the CPU), needed
    when the artifact is built. batch_sizes: (min, opt, max) of a
    dynamic-batch TensorRT engine (default: batch 1).
    Raises ValueError (unsupported combination), BackendUnavailable (missing software or
    device), ArtifactCacheError.
    """
    if precision not in (*PRECISIONS, AUTO):
        raise ValueError(f"unknown precision {precision!r}; expected one of {PRECISIONS} or auto")
    options = dict(
        model=model, device=device, input_size=input_size, artifact_path=artifact_path,
        cache=cache, allow_build=allow_build, calibration=calibration, batch_sizes=batch_sizes,
        intra_op_threads=intra_op_threads,
    )  # fmt: skip
    if kind != AUTO:
        return _build_one(resolve_backend(kind, device=device), precision, **options)
    # auto: the first candidate that builds this model here (auto precision: the backends as
    # for fp32, then each one's fast precision); a backend that cannot run one of the model's
    # ops (OpenVINO and YOLACT++'s DeformConv) says BackendUnavailable and the next one builds.
    require_cuda(device)
    where = "cuda" if device_type(device) == "cuda" else "cpu"
    fixed = "fp32" if precision == AUTO else precision
    available = backend_availability(device)
    choose_backend(where, fixed, available)  # none at all: its message says why
    reasons = []
    for candidate in auto_candidates(where, fixed, available):
        try:
            return _build_one(candidate, precision, **options)
        except BackendUnavailable as error:
            reasons.append(f"{candidate}: {error}")
    raise BackendUnavailable("backend auto: no candidate builds here: " + "; ".join(reasons))


def _build_one(kind: str, precision: str, *, model, device, input_size, cache, **options):
    precision = resolve_precision(precision, kind)
    check_precision(kind, precision, device)
    builder = BUILDERS[kind]
    if builder.require is not None:  # what is missing first: nothing else matters without it
        builder.require(device)
    require_cuda(device)
    if device_type(device) == "cuda":
        from segmentation_ros.ops.triton import register_cuda_kernels

        register_cuda_kernels()  # our ops' Triton kernels serve CUDA tensors
    if options["batch_sizes"] is not None and not builder.dynamic_batch:
        raise ValueError(f"batch_sizes is for tensorrt engines; {kind} runs batch 1 artifacts")
    if builder.artifact and input_size is None:
        raise ValueError(f"backend {kind} needs input_size (its artifact has a fixed size)")
    request = BuildRequest(
        model=model, precision=precision, device=device,
        input_size=tuple(input_size) if input_size is not None else None,
        cache=cache or ArtifactCache(), **options,
    )  # fmt: skip
    return builder.build(request)


__all__ = [
    "BACKENDS",
    "BUILDERS",
    "PRECISIONS",
    "Backend",
    "BackendUnavailable",
    "CompiledBackend",
    "OnnxRuntimeBackend",
    "OpenVINOBackend",
    "TorchBackend",
    "artifact_key",
    "artifact_precision",
    "backend_availability",
    "build_backend",
    "check_precision",
    "choose_backend",
    "device_facts",
    "model_output_type",
    "resolve_backend",
    "resolve_precision",
    "warm_up",
    "weights_sha256",
]
