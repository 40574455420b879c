"""Mixed precision for training: the network's forward pass under `torch.autocast`, the losses in
float32, and for float16 a `torch.amp.GradScaler`.

- "fp32": no autocast.
- "bf16": autocast to bfloat16 on the CPU or CUDA (same exponent range as float32: no scaler).
- "fp16": autocast to float16 with dynamic loss scaling (CUDA only: float16 matmuls and
  convolutions on the CPU are slow or missing, and the CPU has bf16 for this).

Only the forward pass runs under autocast (`ForwardThrough`): the network's float outputs are
cast back to float32 before the family's losses, so prior matching, box encoding and the
summed losses keep float32 precision whatever the precision of the convolutions. A family
whose forward pass computes its losses itself (torchvision's detectors) gets them under
autocast, as torchvision's reference scripts run them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import torch
from torch.utils._pytree import tree_map

__all__ = ["ForwardThrough", "autocast", "check_precision", "float32_outputs", "grad_scaler"]

_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def check_precision(precision: str, device: torch.device) -> None:
    """ValueError when `precision` cannot train on `device` (fp16 needs CUDA)."""
    if precision not in ("fp32", *_DTYPES):
        raise ValueError(f"precision must be fp32, bf16 or fp16, got {precision!r}")
    if precision == "fp16" and device.type != "cuda":
        raise ValueError(
            f"precision fp16 trains on CUDA only (gradient scaling), not on {device.type}; "
            "use --precision bf16 (autocast to bfloat16 works on the CPU) or fp32"
        )


def autocast(precision: str, device: torch.device) -> contextlib.AbstractContextManager:
    """The autocast context of `precision` on `device` (a no-op for fp32)."""
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=_DTYPES[precision])


def grad_scaler(precision: str, device: torch.device) -> torch.amp.GradScaler:
    """A gradient scaler, enabled for fp16 only (disabled it passes calls straight through)."""
    return torch.amp.GradScaler(device.type, enabled=precision == "fp16")


def float32_outputs(outputs: Any) -> Any:
    """`outputs` (a tensor, or tuples / named tuples / lists / dicts of them) with every
    half-precision floating tensor cast to float32; other values unchanged."""

    def up(value: Any) -> Any:
        if isinstance(value, torch.Tensor) and value.dtype in (torch.float16, torch.bfloat16):
            return value.float()
        return value

    return tree_map(up, outputs)


class ForwardThrough:
    """The model as a family's `training_losses` sees it: calling it runs `forward` (the DDP
    wrapper, if any) under the autocast of `precision` and returns float32 outputs; every
    attribute (`config`, `mask_iou_head`, submodules) is the model's own.

    model: the bare model (`nn.Module`). forward: what runs the forward pass (the model or its
    `DistributedDataParallel` wrapper).
    """

    def __init__(
        self, model: torch.nn.Module, forward: Callable, precision: str, device: torch.device
    ) -> None:
        self._model = model
        self._forward = forward
        self._precision = precision
        self._device = device

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        with autocast(self._precision, self._device):
            out = self._forward(*args, **kwargs)
        return float32_outputs(out)

    def run(self, method: str, *args: Any) -> Any:
        """`model.<method>(*args)` as a forward pass (through DDP, under autocast): what a
        family's training calls instead of the model's methods directly (a method called
        beside DDP's forward gets no gradient averaging)."""
        with autocast(self._precision, self._device):
            if self._forward is self._model:
                out = getattr(self._model, method)(*args)
            else:
                out = self._forward(*args, method=method)
        return float32_outputs(out)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._model, name)
