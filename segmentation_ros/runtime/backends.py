"""Inference backends behind one interface.

Every backend takes the same preprocessed tensor ([B, 3, H, W] float32, normalised, on the
backend's device) and returns the same raw outputs (the model's NamedTuple, e.g. YolactOutputs,
float32) for the one shared postprocess. Backends hold no postprocess and no ROS.

    backend = build_backend("onnxruntime", model, input_size=(240, 320))
    outputs = backend.infer(preprocess(image, config))

kind           precisions                 device      what it is
torch          fp32, bf16, fp16 (cuda)    cpu, cuda   eager PyTorch (autocast below fp32)
torch_compile  fp32, bf16, fp16 (cuda)    cpu, cuda   torch.compile (inductor; CUDA graphs on
                                                      cuda), compiled on the first calls
onnxruntime    fp32                       cpu, cuda   ONNX Runtime on an exported ONNX file
tensorrt       fp32, fp16, bf16, int8     cuda        a serialized TensorRT engine
                                                      (torch-tensorrt, `runtime.tensorrt`)

ONNX files and TensorRT engines come from `ArtifactCache` (`runtime.cache`): keyed by the
weights, input shape, precision and the building software and GPU; built when missing or
stale (or refused, with `allow_build=False`).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import NamedTuple, Protocol

import torch
from torch import nn

from segmentation_ros.runtime.cache import ArtifactCache, ArtifactKey, CacheResult
from segmentation_ros.runtime.names import BACKENDS, PRECISIONS
from segmentation_ros.runtime.onnx_export import MIN_OPSET

_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}


class BackendUnavailable(RuntimeError):
    """The requested backend cannot run here; the message says what is missing."""


class Backend(Protocol):
    name: str
    precision: str
    #: How its ONNX file / engine was obtained (`build_backend` sets it); None for torch.
    artifact: CacheResult | None

    def infer(self, images: torch.Tensor) -> NamedTuple:
        """[B, 3, H, W] float32 -> the model's raw outputs (a NamedTuple of float32 tensors)."""
        ...


def check_precision(kind: str, precision: str, device: str) -> None:
    """ValueError (saying what works) unless backend `kind` supports `precision` on `device`."""
    if kind not in BACKENDS:
        raise ValueError(f"unknown backend {kind!r}; expected one of {BACKENDS}")
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; expected one of {PRECISIONS}")
    cuda = torch.device(device).type == "cuda"
    if kind == "tensorrt" or precision == "fp32":
        return
    if precision == "int8":
        raise ValueError(f"int8 needs the tensorrt backend (with a calibration set), not {kind}")
    if kind == "onnxruntime":
        raise ValueError(
            f"backend onnxruntime runs fp32 only; for {precision} use tensorrt (GPU) or torch"
        )
    if precision == "fp16" and not cuda:
        raise ValueError(
            f"{precision} on the CPU has no fast kernels in {kind}: use bf16 or fp32 there"
        )


def _float32(outputs: NamedTuple) -> NamedTuple:
    return type(outputs)(*(t.float() for t in outputs))


class TorchBackend:
    """Eager PyTorch on the model's device; fp16 / bf16 through autocast (weights stay fp32)."""

    name = "torch"
    artifact = None

    def __init__(self, model: nn.Module, *, precision: str = "fp32"):
        self.model = model.eval()
        self.precision = precision
        self._dtype = _DTYPES.get(precision)

    @torch.inference_mode()
    def infer(self, images: torch.Tensor) -> NamedTuple:
        if self._dtype is None:
            return self.model(images)
        with torch.autocast(images.device.type, dtype=self._dtype):
            return _float32(self.model(images))


class CompiledBackend(TorchBackend):
    """torch.compile (inductor) of the model for a fixed input shape. On CUDA with CUDA graphs
    ("reduce-overhead": one graph launch per frame, no per-kernel CPU cost). The first calls
    compile (tens of seconds; `warm_up` does it before a node goes active)."""

    name = "torch_compile"

    def __init__(self, model: nn.Module, *, precision: str = "fp32", device: str = "cpu"):
        super().__init__(model, precision=precision)
        cuda = torch.device(device).type == "cuda"
        self.model = torch.compile(
            self.model, mode="reduce-overhead" if cuda else None, dynamic=False
        )

    def infer(self, images: torch.Tensor) -> NamedTuple:
        outputs = super().infer(images)
        # CUDA graphs reuse their output buffers on the next call: hand out copies.
        if images.device.type == "cuda":
            outputs = type(outputs)(*(t.clone() for t in outputs))
        return outputs


class OnnxRuntimeBackend:
    """ONNX Runtime (CPU; CUDA when onnxruntime-gpu is installed and `device` is cuda).

    Outputs come back as torch tensors sharing ONNX Runtime's numpy buffers (no copy), packed
    into `output_type` by the ONNX output names (which `export_onnx` sets to its field names).
    """

    name = "onnxruntime"
    precision = "fp32"
    artifact: CacheResult | None = None

    def __init__(
        self,
        onnx_path: str | Path,
        output_type: type[NamedTuple],
        *,
        device: str = "cpu",
        intra_op_threads: int = 0,
    ):
        ort = _onnxruntime()
        path = Path(onnx_path)
        if not path.is_file():
            raise FileNotFoundError(f"ONNX model {str(path)!r} does not exist; export it first")
        self.device = torch.device(device)
        providers = _onnxruntime_providers(self.device)
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


def _onnxruntime_providers(device: torch.device) -> list:
    """ONNX Runtime's execution providers for `device` (BackendUnavailable when it has none)."""
    ort = _onnxruntime()
    if device.type != "cuda":
        return ["CPUExecutionProvider"]
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        raise BackendUnavailable(
            "backend onnxruntime on cuda needs onnxruntime-gpu (CUDAExecutionProvider); "
            f"installed providers: {ort.get_available_providers()}"
        )
    return [("CUDAExecutionProvider", {"device_id": device.index or 0}), "CPUExecutionProvider"]


def _onnxruntime():
    try:
        import onnxruntime as ort
    except ImportError as error:  # pragma: no cover - onnxruntime is in requirements.txt
        raise BackendUnavailable("backend onnxruntime needs the onnxruntime package") from error
    return ort


def weights_sha256(model: nn.Module) -> str:
    """SHA-256 of a model's state (names, shapes, dtypes, values): the "checkpoint hash" of
    cache keys, the same whichever file (or dtype on disk) the weights came from."""
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        t = tensor.detach().to("cpu").contiguous()
        digest.update(f"{name}:{tuple(t.shape)}:{t.dtype}".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def device_facts(device: str) -> tuple[str, str]:
    """(device name, compute capability) for cache keys: ("cpu", "") or ("NVIDIA ...", "8.7")."""
    dev = torch.device(device)
    if dev.type != "cuda":
        return "cpu", ""
    index = dev.index if dev.index is not None else torch.cuda.current_device()
    major, minor = torch.cuda.get_device_capability(index)
    return torch.cuda.get_device_name(index), f"{major}.{minor}"


def artifact_key(
    kind: str,
    model: nn.Module,
    *,
    input_size: tuple[int, int],
    precision: str,
    device: str,
    batch: str = "1",
) -> ArtifactKey:
    """The cache key of `model` compiled by backend `kind` ("onnxruntime" or "tensorrt")."""
    name = getattr(getattr(model, "config", None), "name", type(model).__name__)
    versions = {"torch": torch.__version__}
    if kind == "tensorrt":
        from segmentation_ros.runtime.tensorrt import tensorrt_versions

        versions.update({k: v or "missing" for k, v in tensorrt_versions().items()})
        device_name, capability = device_facts(device)
    else:  # an ONNX file runs on any device: the exporter and the opset make it
        versions["onnx_opset"] = str(MIN_OPSET)
        device_name, capability = "any", ""
    return ArtifactKey(
        backend=kind,
        model=name,
        checkpoint_sha256=weights_sha256(model),
        input_shape=(batch, 3, *input_size),
        precision=precision,
        device_name=device_name,
        compute_capability=capability,
        versions=tuple(sorted(versions.items())),
    )


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
    """A backend by name (see the module docstring).

    input_size: (H, W) of the network input; needed by onnxruntime and tensorrt (their
    artifacts are built for one size). artifact_path: a prebuilt ONNX file / engine to use
    (checked against its manifest); default: `cache` (default ~/.cache/segmentation_ros).
    allow_build: build a missing or stale artifact (else ArtifactCacheError).
    calibration: preprocessed batches for tensorrt int8. batch_sizes: (min, opt, max) of a
    dynamic-batch TensorRT engine (default: batch 1).
    Raises ValueError (unsupported combination), BackendUnavailable (missing software or
    device), ArtifactCacheError.
    """
    check_precision(kind, precision, device)
    if kind == "tensorrt":  # what is missing first: nothing else matters without it
        from segmentation_ros.runtime import tensorrt as trt

        trt.require_tensorrt(device)
    if torch.device(device).type == "cuda":
        if not torch.cuda.is_available():
            raise BackendUnavailable(
                f"device {device!r}: torch sees no CUDA device here (no GPU, no driver, or a "
                "CPU-only torch); use device cpu"
            )
        from segmentation_ros.ops.triton import register_cuda_kernels

        register_cuda_kernels()  # our ops' Triton kernels serve CUDA tensors
    if kind == "torch":
        return TorchBackend(model.to(device), precision=precision)
    if kind == "torch_compile":
        return CompiledBackend(model.to(device), precision=precision, device=device)
    if batch_sizes is not None and kind != "tensorrt":
        raise ValueError(f"batch_sizes is for tensorrt engines; {kind} runs batch 1 artifacts")
    if input_size is None:
        raise ValueError(f"backend {kind} needs input_size (its artifact has a fixed size)")
    cache = cache or ArtifactCache()
    output_type = model_output_type(model)
    if kind == "onnxruntime":
        _onnxruntime_providers(torch.device(device))  # fail before exporting
        from segmentation_ros.runtime.onnx_export import export_onnx

        key = artifact_key(kind, model, input_size=input_size, precision=precision, device=device)
        result = cache.get_or_build(
            key,
            lambda target: export_onnx(model, target, input_size=input_size),
            suffix=".onnx",
            path=artifact_path,
            validate=lambda path: OnnxRuntimeBackend(path, output_type),
            allow_build=allow_build,
        )
        backend = OnnxRuntimeBackend(
            result.path, output_type, device=device, intra_op_threads=intra_op_threads
        )
        backend.artifact = result
        return backend
    batch = "-".join(map(str, batch_sizes)) if batch_sizes else "1"
    key = artifact_key(
        kind, model, input_size=input_size, precision=precision, device=device, batch=batch
    )
    result = cache.get_or_build(
        key,
        lambda target: target.write_bytes(
            trt.build_engine(
                model.to(device), input_size=input_size, precision=precision, device=device,
                batch_sizes=batch_sizes, calibration=calibration,
            )
        ),
        suffix=".engine",
        path=artifact_path,
        validate=lambda path: trt.TensorRTBackend(path.read_bytes(), output_type, device=device),
        allow_build=allow_build,
    )  # fmt: skip
    backend = trt.TensorRTBackend(
        result.path.read_bytes(), output_type, device=device, precision=precision
    )
    backend.artifact = result
    return backend


def warm_up(backend: Backend, input_size: tuple[int, int], *, device: str, runs: int = 2) -> None:
    """Run the backend on zeros: compiles torch_compile, lets CUDA / TensorRT allocate and
    autotune, so that the first camera frame is not the slow one."""
    zeros = torch.zeros(1, 3, *input_size, device=device)
    for _ in range(runs):
        backend.infer(zeros)


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
