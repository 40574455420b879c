"""OpenVINO backend: the exported ONNX file compiled by OpenVINO's CPU plugin.

Why a second CPU runtime: on this project's CPUs (x86 with avx512_bf16 / VNNI) OpenVINO has
what ONNX Runtime lacks: bf16 convolutions (`INFERENCE_PRECISION_HINT` bf16: the default model
runs its network ~1.6x faster than fp32 on 2 cores) and int8 kernels for a QDQ-quantized ONNX
file (the same file `runtime.ort_quantize` writes; ONNX Runtime runs it slower than fp32 on
this model, OpenVINO ~2x faster than fp32). Figures: `benchmarks/bench_backends.py`.

precision -> what runs: fp32 the fp32 ONNX file in f32; bf16 the fp32 file with bf16 inference
(weights and activations in bf16, accumulation in f32, outputs f32); int8 the QDQ file (its
float-kept layers in f32).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from segmentation_ros.runtime.base import BackendUnavailable

#: OpenVINO's name of each precision's inference type (int8 comes from the file's QDQ nodes).
_INFERENCE_TYPE = {"fp32": "f32", "bf16": "bf16", "int8": "f32"}


class OpenVINOBackend:
    """OpenVINO on the CPU. `threads` 0: OpenVINO's choice (one per physical core)."""

    name = "openvino"
    artifact = None

    def __init__(
        self,
        onnx_path: str | Path,
        output_type: type[NamedTuple],
        *,
        precision: str = "fp32",
        threads: int = 0,
    ):
        ov = openvino_module()
        path = Path(onnx_path)
        if not path.is_file():
            raise FileNotFoundError(f"ONNX model {str(path)!r} does not exist; export it first")
        if precision not in _INFERENCE_TYPE:
            raise ValueError(f"openvino runs {tuple(_INFERENCE_TYPE)}, not {precision!r}")
        core = ov.Core()
        if precision == "bf16" and not cpu_has_bf16(core):
            raise BackendUnavailable(
                "openvino bf16: this CPU has no bf16 instructions (avx512_bf16 / AMX); use fp32"
            )
        config = {
            "PERFORMANCE_HINT": "LATENCY",
            "INFERENCE_PRECISION_HINT": _INFERENCE_TYPE[precision],
        }
        if threads:
            config["INFERENCE_NUM_THREADS"] = int(threads)
        try:
            self.compiled = core.compile_model(str(path), "CPU", config)
        except RuntimeError as error:
            missing = unconvertible_ops(str(error))
            if not missing:
                raise
            # e.g. DeformConv (YOLACT++): OpenVINO's ONNX reader has no rule for it
            raise BackendUnavailable(
                f"openvino cannot convert {', '.join(missing)} of {str(path)!r} (no conversion "
                "rule in its ONNX reader); run this model with onnxruntime or torch"
            ) from error
        names = [port.get_any_name() for port in self.compiled.outputs]
        if sorted(names) != sorted(output_type._fields):
            raise ValueError(
                f"ONNX model {str(path)!r} has outputs {names}, expected {output_type._fields}; "
                "was it exported from another model type?"
            )
        self.precision = precision
        self.device = torch.device("cpu")
        self.output_type = output_type
        self._request = self.compiled.create_infer_request()
        self._ports = [self.compiled.output(name) for name in output_type._fields]  # once

    def infer(self, images: torch.Tensor) -> NamedTuple:
        x = np.ascontiguousarray(images.detach().cpu().numpy(), dtype=np.float32)
        # share_outputs=False: copies, so the next frame's inference cannot overwrite a result
        # the postprocess still reads.
        out = self._request.infer({0: x}, share_outputs=False)
        return self.output_type(*(torch.from_numpy(out[port]) for port in self._ports))


def unconvertible_ops(message: str) -> list[str]:
    """The ONNX ops an OpenVINO conversion error names as having no conversion rule."""
    found = re.search(r"No conversion rule found for operations: ([^\n]*)", message)
    if not found:
        return []
    return [op.strip() for op in found.group(1).split(",") if op.strip()]


def openvino_module():
    """The `openvino` module, or BackendUnavailable saying how to get it."""
    try:
        import openvino
    except ImportError as error:
        raise BackendUnavailable(
            "backend openvino needs the openvino package (pip install openvino; see "
            "requirements.txt)"
        ) from error
    return openvino


def cpu_has_bf16(core=None) -> bool:
    """Whether OpenVINO's CPU plugin runs bf16 here (avx512_bf16 or AMX)."""
    core = core or openvino_module().Core()
    return "BF16" in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")
