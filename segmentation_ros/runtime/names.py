"""Backend and precision names, torch-free: parameters and command-line parsers import these
without paying for torch. `runtime.backends` says which backend runs which precision where."""

BACKENDS = ("torch", "torch_compile", "onnxruntime", "tensorrt")
PRECISIONS = ("fp32", "fp16", "bf16", "int8")
#: What the node and the pipeline run when not told: the fastest backend on this machine's CPU.
DEFAULT_BACKEND = "onnxruntime"
