"""Image -> normalised network input, numerically the official `FastBaseTransform`.

The official transform takes a BGR image, resizes it (bilinear, align_corners=False, no
antialias) to the input size, normalises with BGR means / stds (ResNet) or divides by 255
(DarkNet), then swaps the channels to RGB. We take RGB images and normalise with the reversed
(RGB) means / stds of `config.normalization` instead of swapping channels: every operation is per
channel, so the result is bit-identical.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from .config import YolactConfig

_DTYPES = (torch.uint8, torch.float32)


def preprocess(
    image: np.ndarray | Tensor,
    config: YolactConfig,
    *,
    input_size: tuple[int, int] | None = None,
    device: torch.device | str | None = None,
) -> Tensor:
    """Resize and normalise RGB images for the network.

    Args:
        image: one image [H, W, 3] or a batch [B, H, W, 3], RGB, channels last, uint8 or float32
            with values in [0, 255]; a numpy array or a tensor (the result stays on the tensor's
            device).
        config: gives `input_size` and `normalization`.
        input_size: (height, width) to resize to; default `config.input_size`.
        device: where to compute for numpy input (the uint8 image is moved before conversion);
            default CPU. Ignored for tensors.

    Returns:
        [B, 3, height, width] float32, normalised (B = 0 gives an empty batch).

    Raises:
        TypeError: not an array / tensor, or another dtype.
        ValueError: not [H, W, 3] / [B, H, W, 3], or H or W is 0.
    """
    x = _as_batch(image, device)
    height, width = config.input_size if input_size is None else input_size
    x = x.permute(0, 3, 1, 2).to(torch.float32)
    if x.shape[0] == 0:
        return x.new_zeros((0, 3, height, width))
    if tuple(x.shape[-2:]) != (height, width):
        x = F.interpolate(x, size=(height, width), mode="bilinear", align_corners=False)
    norm = config.normalization
    mean = torch.tensor(norm.mean, dtype=torch.float32, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(norm.std, dtype=torch.float32, device=x.device).view(1, 3, 1, 1)
    return ((x - mean) / std).contiguous()


def _as_batch(image: np.ndarray | Tensor, device: torch.device | str | None) -> Tensor:
    if isinstance(image, np.ndarray):
        if image.dtype not in (np.uint8, np.float32):
            raise TypeError(f"image must be uint8 or float32 RGB, got dtype {image.dtype}")
        tensor = torch.from_numpy(np.ascontiguousarray(image))
        if device is not None:
            tensor = tensor.to(device)
    elif isinstance(image, Tensor):
        if image.dtype not in _DTYPES:
            raise TypeError(f"image must be uint8 or float32 RGB, got dtype {image.dtype}")
        tensor = image
    else:
        raise TypeError(
            f"image must be a numpy array or a torch tensor, got {type(image).__name__}"
        )
    if tensor.ndim == 3:
        tensor = tensor.unsqueeze(0)
    if tensor.ndim != 4 or tensor.shape[-1] != 3:
        raise ValueError(
            f"image must be [H, W, 3] or [B, H, W, 3] RGB channels last, got {tuple(image.shape)}"
        )
    if tensor.shape[1] == 0 or tensor.shape[2] == 0:
        raise ValueError(f"image is empty: shape {tuple(image.shape)}")
    return tensor
