"""Backbones: the official YOLACT ResNet (with YOLACT++'s deformable blocks) and DarkNet-53, and
torchvision's MobileNetV3-Large features for the light models.

Every backbone takes a normalised image [B, 3, H, W] and returns a tuple with the output of each
stage; `channels[i]` and `strides[i]` give the channels and nominal stride of stage i (the
spatial size is ceil(H / stride) x ceil(W / stride): every downsampling rounds up).
Module names are the official ones (`conv1`, `bn1`, `layers.i.j.conv2`, `_preconv`, ...), so the
official checkpoints load without renaming.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from .config import BackboneConfig

RESNET_BLOCKS: dict[int, tuple[str, tuple[int, ...]]] = {
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
    101: ("bottleneck", (3, 4, 23, 3)),
    152: ("bottleneck", (3, 8, 36, 3)),
}


def _deformable_conv3x3(channels: int, *, stride: int, dilation: int) -> nn.Module:
    # Imported here so that models without DCN do not need the custom op.
    from segmentation_ros.ops.deform_conv import ModulatedDeformConv2d

    return ModulatedDeformConv2d(
        channels,
        channels,
        3,
        stride=stride,
        padding=dilation,
        dilation=dilation,
        deformable_groups=1,
        bias=True,
    )


class Bottleneck(nn.Module):
    """ResNet v1.5 bottleneck (stride on the 3x3 conv), optionally with a DCNv2 3x3 conv.

    The deformable conv has a bias and a `conv_offset_mask` submodule, as the official DCN_v2.
    """

    expansion = 4

    def __init__(
        self,
        inplanes: int,
        planes: int,
        *,
        stride: int = 1,
        downsample: nn.Module | None = None,
        dilation: int = 1,
        use_dcn: bool = False,
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, kernel_size=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        if use_dcn:
            self.conv2 = _deformable_conv3x3(planes, stride=stride, dilation=dilation)
        else:
            self.conv2 = nn.Conv2d(
                planes,
                planes,
                kernel_size=3,
                stride=stride,
                padding=dilation,
                dilation=dilation,
                bias=False,
            )
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, kernel_size=1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        residual = x if self.downsample is None else self.downsample(x)
        return self.relu(out + residual)


class BasicBlock(nn.Module):
    """ResNet-18/34 basic block (two 3x3 convs)."""

    expansion = 1

    def __init__(
        self,
        inplanes: int,
        planes: int,
        *,
        stride: int = 1,
        downsample: nn.Module | None = None,
        dilation: int = 1,
        use_dcn: bool = False,
    ) -> None:
        super().__init__()
        if use_dcn or dilation != 1:
            raise ValueError("BasicBlock supports neither DCN nor dilation")
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        residual = x if self.downsample is None else self.downsample(x)
        return self.relu(out + residual)


class ResNetBackbone(nn.Module):
    """Official YOLACT ResNet: stem + 4 stages (`layers`), outputs C2..C5 at strides 4..32.

    Args:
        layers: blocks per stage, e.g. (3, 4, 23, 3) for ResNet-101.
        block: "bottleneck" or "basic".
        dcn_layers: per stage, how many of the last blocks are deformable (official rule: the
            first block if dcn_layers >= blocks, block i >= 1 if i + dcn_layers >= blocks and
            i % dcn_interval == 0).
        dcn_interval: see dcn_layers.
    """

    def __init__(
        self,
        layers: Sequence[int],
        *,
        block: str = "bottleneck",
        dcn_layers: Sequence[int] = (),
        dcn_interval: int = 1,
    ) -> None:
        super().__init__()
        if block not in ("bottleneck", "basic"):
            raise ValueError(f"block must be 'bottleneck' or 'basic', got {block!r}")
        block_cls = Bottleneck if block == "bottleneck" else BasicBlock
        dcn_layers = tuple(dcn_layers) or (0,) * len(layers)
        self.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layers = nn.ModuleList()
        self.channels: list[int] = []
        self.strides: list[int] = []
        inplanes, stride_total = 64, 4
        for idx, (num_blocks, num_dcn) in enumerate(zip(layers, dcn_layers)):
            planes = 64 * 2**idx
            stride = 1 if idx == 0 else 2
            stride_total *= stride
            out_channels = planes * block_cls.expansion
            downsample = None
            if stride != 1 or inplanes != out_channels:
                downsample = nn.Sequential(
                    nn.Conv2d(inplanes, out_channels, kernel_size=1, stride=stride, bias=False),
                    nn.BatchNorm2d(out_channels),
                )
            blocks = [
                block_cls(
                    inplanes,
                    planes,
                    stride=stride,
                    downsample=downsample,
                    use_dcn=_uses_dcn(0, num_dcn, num_blocks, dcn_interval),
                )
            ]
            for i in range(1, num_blocks):
                use_dcn = _uses_dcn(i, num_dcn, num_blocks, dcn_interval)
                blocks.append(block_cls(out_channels, planes, use_dcn=use_dcn))
            inplanes = out_channels
            self.layers.append(nn.Sequential(*blocks))
            self.channels.append(out_channels)
            self.strides.append(stride_total)

    def forward(self, x: Tensor) -> tuple[Tensor, ...]:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        outs = []
        for layer in self.layers:
            x = layer(x)
            outs.append(x)
        return tuple(outs)


def _darknet_conv(in_channels: int, out_channels: int, kernel_size: int, stride: int = 1):
    """Conv (no bias) + BatchNorm + LeakyReLU(0.1), the official `darknetconvlayer`."""
    return nn.Sequential(
        nn.Conv2d(
            in_channels,
            out_channels,
            kernel_size,
            stride=stride,
            padding=kernel_size // 2,
            bias=False,
        ),
        nn.BatchNorm2d(out_channels),
        nn.LeakyReLU(0.1, inplace=True),
    )


class DarkNetBlock(nn.Module):
    """DarkNet-53 residual block: 1x1 to `channels`, 3x3 back to 2 * channels, plus identity."""

    expansion = 2

    def __init__(self, in_channels: int, channels: int) -> None:
        super().__init__()
        self.conv1 = _darknet_conv(in_channels, channels, 1)
        self.conv2 = _darknet_conv(channels, channels * self.expansion, 3)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv2(self.conv1(x)) + x


class DarkNetBackbone(nn.Module):
    """Official YOLACT DarkNet-53: a 3x3 stem, then 5 stages (a stride-2 3x3 conv and residual
    blocks) with 64..1024 channels at strides 2..32. Expects inputs scaled to [0, 1]."""

    def __init__(self, layers: Sequence[int] = (1, 2, 8, 8, 4)) -> None:
        super().__init__()
        self._preconv = _darknet_conv(3, 32, 3)
        self.layers = nn.ModuleList()
        self.channels: list[int] = []
        self.strides: list[int] = []
        in_channels = 32
        for idx, num_blocks in enumerate(layers):
            channels = 32 * 2**idx
            out_channels = channels * DarkNetBlock.expansion
            stage = [_darknet_conv(in_channels, out_channels, 3, stride=2)]
            stage += [DarkNetBlock(out_channels, channels) for _ in range(num_blocks)]
            self.layers.append(nn.Sequential(*stage))
            in_channels = out_channels
            self.channels.append(out_channels)
            self.strides.append(2 ** (idx + 1))

    def forward(self, x: Tensor) -> tuple[Tensor, ...]:
        x = self._preconv(x)
        outs = []
        for layer in self.layers:
            x = layer(x)
            outs.append(x)
        return tuple(outs)


class MobileNetV3Backbone(nn.Module):
    """torchvision MobileNetV3-Large `features` (random init), cut into 4 stages at strides
    4, 8, 16, 32 with 24, 40, 112, 960 channels.

    The module keeps torchvision's names (`features.N`), so an ImageNet state dict of
    `torchvision.models.mobilenet_v3_large` loads into it with its `features.` keys.

    dcn_layers / dcn_interval pick deformable blocks per stage by the ResNet rule
    (`_uses_dcn`); such a block's depthwise convolution becomes a modulated deformable
    depthwise convolution (same kernel, stride and padding, groups = channels): the light
    counterpart of YOLACT++'s deformable 3x3 in ResNet bottlenecks.
    """

    STAGE_ENDS = (4, 7, 13, 17)

    def __init__(self, dcn_layers: Sequence[int] = (), dcn_interval: int = 1) -> None:
        super().__init__()
        from torchvision.models import mobilenet_v3_large
        from torchvision.models.mobilenetv3 import InvertedResidual

        self.features = mobilenet_v3_large(weights=None).features
        self.channels = [24, 40, 112, 960]
        self.strides = [4, 8, 16, 32]
        start = 0
        for end, num_dcn in zip(self.STAGE_ENDS, tuple(dcn_layers) or (0,) * 4):
            blocks = [m for m in self.features[start:end] if isinstance(m, InvertedResidual)]
            for i, block in enumerate(blocks):
                if _uses_dcn(i, num_dcn, len(blocks), dcn_interval):
                    depthwise_unit = block.block[1 if len(block.block) > 2 else 0]
                    depthwise_unit[0] = _deformable_like(depthwise_unit[0])
            start = end

    def forward(self, x: Tensor) -> tuple[Tensor, ...]:
        outs = []
        start = 0
        for end in self.STAGE_ENDS:
            for i in range(start, end):
                x = self.features[i](x)
            outs.append(x)
            start = end
        return tuple(outs)


def _uses_dcn(index: int, num_dcn: int, num_blocks: int, interval: int) -> bool:
    """The official YOLACT++ rule: the first block if num_dcn covers the whole stage, block
    i >= 1 if it is among the last num_dcn and i % interval == 0."""
    if index == 0:
        return num_dcn >= num_blocks
    return index + num_dcn >= num_blocks and index % interval == 0


def _deformable_like(conv: nn.Conv2d) -> nn.Module:
    """A modulated deformable conv with `conv`'s shape (untrained: the plain conv x 0.5)."""
    from segmentation_ros.ops.deform_conv import ModulatedDeformConv2d

    return ModulatedDeformConv2d(
        conv.in_channels,
        conv.out_channels,
        conv.kernel_size,
        stride=conv.stride,
        padding=conv.padding,
        dilation=conv.dilation,
        groups=conv.groups,
        bias=conv.bias is not None,
    )


def build_backbone(config: BackboneConfig) -> nn.Module:
    """The backbone described by `config`; it has `channels` and `strides` lists, one per stage."""
    if config.kind == "resnet":
        block, layers = RESNET_BLOCKS[config.depth]
        return ResNetBackbone(
            layers, block=block, dcn_layers=config.dcn_layers, dcn_interval=config.dcn_interval
        )
    if config.kind == "darknet":
        return DarkNetBackbone((1, 2, 8, 8, 4))
    if config.kind == "mobilenetv3_large":
        return MobileNetV3Backbone(config.dcn_layers, config.dcn_interval)
    raise ValueError(f"unknown backbone kind {config.kind!r}")
