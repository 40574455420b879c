"""Prior (anchor) boxes, in the official YOLACT order and numerics.

Order (it matches the head's flattened outputs): pyramid levels finest first; within a level,
cells row-major (y then x); within a cell, for each scale, for each aspect ratio.
A prior is (cx, cy, w, h) relative to the network input, all in [0, 1] for the centres:

    cx = (x + 0.5) / level_width,  cy = (y + 0.5) / level_height
    r  = sqrt(ratio)   (ratio as given if preapply_sqrt)
    pixel scales:  w = scale * r / input_width,  h = scale / r / input_height
    cell scales:   w = scale * r / level_width,  h = scale / r / level_height
    use_square_anchors (official v1 bug): h is computed like w, on the height axis:
                   h = scale * r / input_height  (cell scales: / level_height)

For a square input this is exactly the official code (which divides both w and h by `max_size`);
for a non-square input each axis is normalised by its own size, so a prior is `scale * r` by
`scale / r` input pixels whatever the aspect ratio of the input. The values are computed in
float64 like the official Python floats and then rounded to float32 once, so they are
bit-identical to the official priors.

Level sizes: every downsampling in our backbones and FPN rounds up, so level l of an H x W input
is ceil(H / stride_l) x ceil(W / stride_l) (550 -> 69, 35, 18, 9, 5).
"""

from __future__ import annotations

import torch
from torch import Tensor

from .config import YolactConfig


def feature_map_sizes(
    config: YolactConfig, input_size: tuple[int, int] | None = None
) -> list[tuple[int, int]]:
    """(height, width) of every pyramid level for `input_size` (default `config.input_size`)."""
    height, width = config.input_size if input_size is None else input_size
    if height < 1 or width < 1:
        raise ValueError(f"input_size must be >= 1 pixel, got {(height, width)}")
    return [(-(-height // s), -(-width // s)) for s in config.level_strides]


def make_priors(
    config: YolactConfig,
    input_size: tuple[int, int] | None = None,
    *,
    device: torch.device | str | None = None,
) -> Tensor:
    """Priors [A, 4] float32 (cx, cy, w, h) relative to the input, official order (see module).

    input_size: (height, width) of the network input; default `config.input_size`. The raw
    outputs of a forward pass at that size have A rows.
    """
    height, width = config.input_size if input_size is None else input_size
    prior_cfg = config.priors
    levels = []
    for (conv_h, conv_w), scales, ratios in zip(
        feature_map_sizes(config, (height, width)), prior_cfg.scales, prior_cfg.aspect_ratios
    ):
        scale = torch.tensor(scales, dtype=torch.float64).repeat_interleave(len(ratios))
        ratio = torch.tensor(ratios, dtype=torch.float64).repeat(len(scales))
        if not prior_cfg.preapply_sqrt:
            ratio = ratio.sqrt()
        norm_w, norm_h = (width, height) if prior_cfg.use_pixel_scales else (conv_w, conv_h)
        w = scale * ratio / norm_w
        h = scale * ratio / norm_h if prior_cfg.use_square_anchors else scale / ratio / norm_h
        cy = (torch.arange(conv_h, dtype=torch.float64) + 0.5) / conv_h
        cx = (torch.arange(conv_w, dtype=torch.float64) + 0.5) / conv_w
        num = scale.numel()
        level = torch.stack(
            torch.broadcast_tensors(
                cx[None, :, None], cy[:, None, None], w[None, None, :], h[None, None, :]
            ),
            dim=-1,
        )  # [conv_h, conv_w, num, 4]
        levels.append(level.reshape(conv_h * conv_w * num, 4))
    return torch.cat(levels).to(dtype=torch.float32, device=device)


def num_priors(config: YolactConfig, input_size: tuple[int, int] | None = None) -> int:
    """A, the number of priors (rows of the raw outputs) for `input_size`."""
    sizes = feature_map_sizes(config, input_size)
    return sum(h * w * a for (h, w), a in zip(sizes, config.priors.anchors_per_level))
