"""PyTorch backends: eager (`TorchBackend`) and inductor (`CompiledBackend`).

precisions: fp32 and bf16 on the CPU; fp32, fp16 and bf16 on CUDA, all through autocast (the
weights stay float32; our custom ops run in float32 under autocast, as torchvision's do).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from segmentation_ros.runtime.base import float32_outputs

_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}


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
            return float32_outputs(self.model(images))


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
