"""Backend and precision names, torch-free: parameters and command-line parsers import these
without paying for torch. `runtime.base.check_precision` says which backend runs which
precision where; `runtime.backends.resolve_backend` what "auto" becomes."""

#: The backends that exist (each has a builder in `runtime.backends.BUILDERS`).
KINDS = ("torch", "torch_compile", "onnxruntime", "openvino", "tensorrt")
#: Resolved where the node runs to the fastest backend that runs there (see `resolve_backend`).
AUTO = "auto"
#: What a user may ask for: a backend, or "auto".
BACKENDS = (*KINDS, AUTO)
PRECISIONS = ("fp32", "fp16", "bf16", "int8")
#: What a user may ask for: a precision, or "auto" (`runtime.backends.resolve_precision`).
PRECISION_CHOICES = (*PRECISIONS, AUTO)
#: What the node and the pipeline run when not told.
DEFAULT_BACKEND = AUTO
DEFAULT_PRECISION = AUTO

#: Precisions each backend builds, per device type ("cpu" / "cuda"). int8: TensorRT with
#: ModelOpt calibration on CUDA, ONNX Runtime static (QDQ) quantization on the CPU (run by
#: ONNX Runtime or OpenVINO). bf16 on the CPU: OpenVINO where the CPU has bf16 instructions.
SUPPORTED = {
    "torch": {"cpu": ("fp32", "bf16"), "cuda": ("fp32", "fp16", "bf16")},
    "torch_compile": {"cpu": ("fp32", "bf16"), "cuda": ("fp32", "fp16", "bf16")},
    "onnxruntime": {"cpu": ("fp32", "int8"), "cuda": ("fp32",)},
    "openvino": {"cpu": ("fp32", "bf16", "int8"), "cuda": ()},
    "tensorrt": {"cpu": (), "cuda": ("fp32", "fp16", "bf16", "int8")},
}

#: "auto" tries these in order, keeping the first that runs here at the asked precision.
AUTO_ORDER = {
    "cpu": ("openvino", "onnxruntime", "torch"),
    "cuda": ("tensorrt", "torch_compile", "torch"),
}

#: "auto" precision per backend: the fastest it runs without calibration data whose agreement
#: with fp32 was measured within `train.backend_agreement.Tolerances` (README "GPU runtime");
#: where the hardware lacks it (`resolve_precision`), and for every other backend, fp32.
AUTO_PRECISION = {"openvino": "bf16"}
