"""Box decoding, class probabilities and the relative -> image box conversion (official
numerics: `layers/box_utils.py` decode / sanitize_coordinates, softmax over the last axis)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["VARIANCES", "boxes_to_image", "class_softmax", "decode_boxes"]

VARIANCES = (0.1, 0.2)


def decode_boxes(loc: Tensor, priors: Tensor, variances: tuple[float, float] = VARIANCES) -> Tensor:
    """Decode box offsets against priors (SSD encoding with variances, official `decode`).

    loc:    [..., A, 4] float offsets (dx, dy, dw, dh).
    priors: [A, 4] float (cx, cy, w, h) relative to the network input.
    Returns [..., A, 4] (x1, y1, x2, y2) relative to the network input, not clamped:
        cx' = cx + dx * v0 * w,  w' = w * exp(dw * v1),  x1 = cx' - w' / 2,  x2 = w' + x1.
    """
    if loc.shape[-1] != 4 or priors.dim() != 2 or priors.shape[-1] != 4:
        raise ValueError(
            f"loc must be [..., A, 4] and priors [A, 4], got {tuple(loc.shape)}, "
            f"{tuple(priors.shape)}"
        )
    if loc.shape[-2] != priors.shape[0]:
        raise ValueError(f"loc has {loc.shape[-2]} anchors but priors has {priors.shape[0]}")
    centre = priors[:, :2] + loc[..., :2] * variances[0] * priors[:, 2:]
    size = priors[:, 2:] * torch.exp(loc[..., 2:] * variances[1])
    top_left = centre - size / 2
    return torch.cat([top_left, size + top_left], dim=-1)


def class_softmax(conf: Tensor) -> Tensor:
    """[..., C + 1] class logits -> probabilities (softmax over the last axis, as official).
    Column 0 is background; thing class c (0-based) is column c + 1."""
    return F.softmax(conf, dim=-1)


def boxes_to_image(boxes: Tensor, image_size: tuple[int, int]) -> Tensor:
    """Relative (x1, y1, x2, y2) -> absolute pixels of an H x W image, clamped to it.

    Official `sanitize_coordinates(cast=False)`: scale, order each pair, x1 >= 0, x2 <= W.
    We also clamp x1 <= W and x2 >= 0, so a box entirely outside the image becomes an empty
    box on its border instead of an inverted one (the only difference from the official).
    """
    height, width = image_size
    out = torch.empty_like(boxes)
    for lo, hi, size in ((0, 2, width), (1, 3, height)):
        a = boxes[:, lo] * size
        b = boxes[:, hi] * size
        out[:, lo] = torch.clamp(torch.min(a, b), min=0, max=size)
        out[:, hi] = torch.clamp(torch.max(a, b), min=0, max=size)
    return out
