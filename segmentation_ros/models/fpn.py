"""The official YOLACT feature pyramid (Lin et al. 2017 with YOLACT's choices).

Lateral 1x1 convs, top-down bilinear upsampling (align_corners=False) to the lateral's size, 3x3
smoothing convs (padding 1) with ReLU, then `num_downsample` extra levels from 3x3 stride-2 convs
on the last level (P6, P7) without ReLU. Module names are official: `lat_layers` and
`pred_layers` are stored coarsest first (lat_layers[0] takes C5), `downsample_layers`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch.nn.functional as F
from torch import Tensor, nn


class FPN(nn.Module):
    """Feature pyramid: list of backbone maps (finest first) -> list of pyramid maps.

    Args:
        in_channels: channels of each input map, finest first.
        num_features: channels of every output map.
        num_downsample: extra coarser levels appended after the last one.
        use_conv_downsample: extra levels from 3x3 stride-2 convs (else stride-2 subsampling).
        relu_pred_layers: ReLU after the smoothing convs.
        relu_downsample_layers: ReLU on the extra levels.
        interpolation_mode: top-down upsampling mode.

    forward(features): `features[i]` is [B, in_channels[i], H_i, W_i]; returns
    len(in_channels) + num_downsample maps [B, num_features, H_l, W_l], finest first; the extra
    levels have size ceil(H / 2) of the level above.
    """

    def __init__(
        self,
        in_channels: Sequence[int],
        *,
        num_features: int = 256,
        num_downsample: int = 2,
        use_conv_downsample: bool = True,
        relu_pred_layers: bool = True,
        relu_downsample_layers: bool = False,
        interpolation_mode: str = "bilinear",
    ) -> None:
        super().__init__()
        self.lat_layers = nn.ModuleList(
            nn.Conv2d(c, num_features, kernel_size=1) for c in reversed(in_channels)
        )
        self.pred_layers = nn.ModuleList(
            nn.Conv2d(num_features, num_features, kernel_size=3, padding=1) for _ in in_channels
        )
        if use_conv_downsample:
            self.downsample_layers = nn.ModuleList(
                nn.Conv2d(num_features, num_features, kernel_size=3, padding=1, stride=2)
                for _ in range(num_downsample)
            )
        self.num_features = num_features
        self.num_downsample = num_downsample
        self.use_conv_downsample = use_conv_downsample
        self.relu_pred_layers = relu_pred_layers
        self.relu_downsample_layers = relu_downsample_layers
        self.interpolation_mode = interpolation_mode

    def forward(self, features: Sequence[Tensor]) -> list[Tensor]:
        if len(features) != len(self.lat_layers):
            raise ValueError(f"FPN expects {len(self.lat_layers)} maps, got {len(features)}")
        n = len(features)
        out: list[Tensor] = [features[0]] * n
        x: Tensor | None = None
        # Coarsest first; layer index i works on input / output index j = n - 1 - i.
        for i, (lat, pred) in enumerate(zip(self.lat_layers, self.pred_layers)):
            j = n - 1 - i
            lateral = lat(features[j])
            if x is None:
                x = lateral
            else:
                size = features[j].shape[-2:]
                up = F.interpolate(x, size=size, mode=self.interpolation_mode, align_corners=False)
                x = up + lateral
            y = pred(x)
            out[j] = F.relu(y) if self.relu_pred_layers else y
        extra: list[Tensor] = []
        last = out[-1]
        for k in range(self.num_downsample):
            if self.use_conv_downsample:
                last = self.downsample_layers[k](last)
            else:
                last = last[:, :, ::2, ::2]
            extra.append(last)
        if self.relu_downsample_layers:
            extra = [F.relu(e) for e in extra]
        return out + extra
