"""Training checkpoints: our checkpoint format (`models.checkpoint`: config with the class names,
weights) with the training state in `extra` (step, optimizer and gradient-scaler state, settings).

Portable between machines: the optimizer and scaler state are stored on the CPU and everything
is read with `map_location="cpu"` (a run on `cuda:3` resumes on a CPU-only machine or on
`cuda:0`; the optimizer moves its state to its parameters' device), the state dict is the bare
model's (no `module.` prefix of a DDP wrapper), `extra` holds plain data only (loads with
`weights_only=True`) and no path of the machine that wrote it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

__all__ = ["plain", "read_training_checkpoint", "save_training_checkpoint", "to_cpu"]


def to_cpu(value: Any) -> Any:
    """Tensors moved to the CPU, recursively through dicts, lists and tuples."""
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    if isinstance(value, dict):
        return {k: to_cpu(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(to_cpu(v) for v in value)
    return value


def plain(value: Any) -> Any:
    """Tuples -> lists, recursively (so `extra` holds only weights_only-safe plain data)."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value


def save_training_checkpoint(
    path: str | os.PathLike, model: nn.Module, extra: dict[str, Any]
) -> None:
    """Our checkpoint (`models.checkpoint.save_checkpoint`: format, config with class names,
    weights) with `extra` (step, optimizer state, ...; its tensors on the CPU). Written
    atomically (temp + rename)."""
    from segmentation_ros.models import checkpoint as ckpt

    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    ckpt.save_checkpoint(tmp, model, model.config, to_cpu(extra))
    tmp.replace(path)


def read_training_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """The raw dict of one of our checkpoints: {"format", "config", "state_dict", "extra"},
    tensors on the CPU whatever device wrote them."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    data = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(data, dict) or not {"format", "config", "state_dict"} <= set(data):
        raise ValueError(f"{path} is not a segmentation_ros checkpoint (official weights?)")
    return data
