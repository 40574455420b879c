"""Modulated deformable convolution (DCNv2), the op of YOLACT++'s backbone.

Four parts side by side:
- `modulated_deform_conv2d`: the documented wrapper, calling the registered op
  `segros::modulated_deform_conv2d` (fake kernel with input checks, autograd);
- `deform_conv2d_reference`: pure PyTorch (vectorised bilinear gathers), the fallback where
  torchvision's kernel is missing and the test oracle;
- `ModulatedDeformConv2d`: the layer, parameter names as the official DCNv2 `DCN` class, so
  official YOLACT++ checkpoints load (`conv2.weight`, `conv2.bias`, `conv2.conv_offset_mask.*`);
- `onnx_custom_translation_table()`: the export piece, the op as the standard ONNX `DeformConv`
  (opset 19) for the dynamo exporter. TensorRT: a plugin from a Triton kernel comes later.

Layouts (as DCNv2 and torchvision; stated once):
  input  [N, C_in, H, W]
  offset [N, 2 * dg * kh * kw, H_out, W_out]: for deformable group g and kernel point
         k = i * kw + j, channel 2 * (g * kh * kw + k) is the row offset dy, the next one dx.
         (DCNv2's `conv_offset_mask` output is chunked into o1, o2, m and offset = cat(o1, o2),
         which gives exactly this interleaved layout when read by the kernel.)
  mask   [N, dg * kh * kw, H_out, W_out], modulation in [0, 1] (sigmoid of the third chunk)
  weight [C_out, C_in / groups, kh, kw];  bias [C_out] or None
Sampling point of output (y, x), kernel point (i, j): (y * sh - ph + i * dh + dy,
x * sw - pw + j * dw + dx), bilinear, zero outside the image.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

try:  # torchvision's C++/CUDA kernel is the fast path; the reference is the fallback
    from torchvision.ops import deform_conv2d as _tv_deform_conv2d
except ImportError:  # pragma: no cover - torchvision is in requirements.txt
    _tv_deform_conv2d = None


def _pair(value: int | Sequence[int]) -> list[int]:
    return [int(value), int(value)] if isinstance(value, int) else [int(v) for v in value]


def _output_size(size: int, kernel: int, stride: int, padding: int, dilation: int) -> int:
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


def deform_conv2d_reference(
    input: Tensor,
    offset: Tensor,
    mask: Tensor,
    weight: Tensor,
    bias: Tensor | None,
    stride: Sequence[int],
    padding: Sequence[int],
    dilation: Sequence[int],
    groups: int,
    deformable_groups: int,
) -> Tensor:
    """Pure PyTorch DCNv2 (shapes in the module docstring); differentiable by autograd."""
    n, c_in, h, w = input.shape
    c_out, _, kh, kw = weight.shape
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    h_out, w_out = offset.shape[-2:]
    k, dg = kh * kw, deformable_groups
    dtype, device = input.dtype, input.device

    # Base sampling grid [K, H_out, W_out] per axis, plus learned offsets [N, dg, K, H_out, W_out].
    ki = torch.arange(kh, device=device, dtype=dtype).repeat_interleave(kw) * dh
    kj = torch.arange(kw, device=device, dtype=dtype).repeat(kh) * dw
    oy = torch.arange(h_out, device=device, dtype=dtype) * sh - ph
    ox = torch.arange(w_out, device=device, dtype=dtype) * sw - pw
    offset = offset.reshape(n, dg, k, 2, h_out, w_out)
    y = ki[:, None, None] + oy[None, :, None] + offset[:, :, :, 0]
    x = kj[:, None, None] + ox[None, None, :] + offset[:, :, :, 1]

    # Bilinear weights of the four neighbours; neighbours outside the image contribute zero.
    y0, x0 = torch.floor(y), torch.floor(x)
    inside = (y > -1) & (y < h) & (x > -1) & (x < w)
    flat = input.reshape(n, dg, c_in // dg, h * w)
    sampled = input.new_zeros(n, dg, c_in // dg, k * h_out * w_out)
    for dy_corner in (0, 1):
        for dx_corner in (0, 1):
            yc, xc = y0 + dy_corner, x0 + dx_corner
            corner_weight = (1 - (y - yc).abs()) * (1 - (x - xc).abs())
            valid = inside & (yc >= 0) & (yc <= h - 1) & (xc >= 0) & (xc <= w - 1)
            corner_weight = corner_weight * valid
            index = (yc.clamp(0, h - 1) * w + xc.clamp(0, w - 1)).long()
            index = index.reshape(n, dg, 1, -1).expand(-1, -1, c_in // dg, -1)
            values = torch.gather(flat, 3, index)
            sampled = sampled + values * corner_weight.reshape(n, dg, 1, -1)

    # Modulate, then the convolution is a matmul of [C_out/g, C_in/g * K] by the columns.
    sampled = sampled.reshape(n, dg, c_in // dg, k, h_out * w_out)
    sampled = sampled * mask.reshape(n, dg, 1, k, h_out * w_out)
    columns = sampled.reshape(n, groups, (c_in // groups) * k, h_out * w_out)
    kernels = weight.reshape(groups, c_out // groups, (c_in // groups) * k)
    out = torch.einsum("gok,ngkl->ngol", kernels, columns).reshape(n, c_out, h_out, w_out)
    if bias is not None:
        out = out + bias.reshape(1, -1, 1, 1)
    return out


def _compute(input, offset, mask, weight, bias, stride, padding, dilation, groups, dg):
    if _tv_deform_conv2d is not None:
        return _tv_deform_conv2d(
            input,
            offset,
            weight,
            bias,
            stride=stride,
            padding=padding,
            dilation=dilation,
            mask=mask,
        )
    return deform_conv2d_reference(
        input, offset, mask, weight, bias, stride, padding, dilation, groups, dg
    )


@torch.library.custom_op("segros::modulated_deform_conv2d", mutates_args=())
def _modulated_deform_conv2d_op(
    input: Tensor,
    offset: Tensor,
    mask: Tensor,
    weight: Tensor,
    bias: Tensor | None,
    stride: list[int],
    padding: list[int],
    dilation: list[int],
    groups: int,
    deformable_groups: int,
) -> Tensor:
    return _compute(
        input, offset, mask, weight, bias, stride, padding, dilation, groups, deformable_groups
    ).clone()  # a custom op's output may not alias its inputs


def _check_inputs(
    input, offset, mask, weight, bias, stride, padding, dilation, groups, deformable_groups
) -> tuple[int, int]:
    """Shape checks shared by the fake kernel and the eager wrapper; returns (H_out, W_out)."""
    torch._check(input.dim() == 4, lambda: f"input must be [N, C, H, W], got {input.shape}")
    torch._check(
        weight.dim() == 4, lambda: f"weight must be [Cout, Cin/g, kh, kw], got {weight.shape}"
    )
    n, c_in, h, w = input.shape
    c_out, c_in_g, kh, kw = weight.shape
    torch._check(
        c_in == c_in_g * groups,
        lambda: f"input has {c_in} channels, weight expects {c_in_g} x {groups} groups",
    )
    torch._check(
        c_in % deformable_groups == 0, lambda: "input channels must divide by deformable_groups"
    )
    h_out = _output_size(h, kh, stride[0], padding[0], dilation[0])
    w_out = _output_size(w, kw, stride[1], padding[1], dilation[1])
    k = kh * kw * deformable_groups
    torch._check(
        tuple(offset.shape) == (n, 2 * k, h_out, w_out),
        lambda: f"offset must be {(n, 2 * k, h_out, w_out)}, got {tuple(offset.shape)}",
    )
    torch._check(
        tuple(mask.shape) == (n, k, h_out, w_out),
        lambda: f"mask must be {(n, k, h_out, w_out)}, got {tuple(mask.shape)}",
    )
    if bias is not None:
        torch._check(tuple(bias.shape) == (c_out,), lambda: f"bias must be [{c_out}]")
    return h_out, w_out


@_modulated_deform_conv2d_op.register_fake
def _(input, offset, mask, weight, bias, stride, padding, dilation, groups, deformable_groups):
    h_out, w_out = _check_inputs(
        input, offset, mask, weight, bias, stride, padding, dilation, groups, deformable_groups
    )
    return input.new_empty(input.shape[0], weight.shape[0], h_out, w_out)


def _setup_context(ctx, inputs, output):
    input, offset, mask, weight, bias, *attrs = inputs
    ctx.save_for_backward(input, offset, mask, weight, bias)
    ctx.attrs = attrs


def _backward(ctx, grad_output):
    # Recompute through the differentiable implementation and let autograd do the chain rule:
    # torchvision's kernel has its own backward, the reference is plain autograd.
    saved = ctx.saved_tensors
    leaves = [t.detach().requires_grad_(True) if t is not None else None for t in saved]
    with torch.enable_grad():
        out = _compute(*leaves, *ctx.attrs)
    wanted = [t for t in leaves if t is not None]
    grads = iter(torch.autograd.grad(out, wanted, grad_output, allow_unused=True))
    return (*(next(grads) if t is not None else None for t in leaves), None, None, None, None, None)


_modulated_deform_conv2d_op.register_autograd(_backward, setup_context=_setup_context)


def modulated_deform_conv2d(
    input: Tensor,
    offset: Tensor,
    mask: Tensor,
    weight: Tensor,
    bias: Tensor | None = None,
    *,
    stride: int | Sequence[int] = 1,
    padding: int | Sequence[int] = 0,
    dilation: int | Sequence[int] = 1,
    groups: int = 1,
    deformable_groups: int = 1,
) -> Tensor:
    """DCNv2: returns [N, C_out, H_out, W_out] (layouts in the module docstring)."""
    attrs = (_pair(stride), _pair(padding), _pair(dilation), int(groups), int(deformable_groups))
    h_out, w_out = _check_inputs(input, offset, mask, weight, bias, *attrs)
    if input.shape[0] == 0:  # empty batch: the kernels reject it, the answer is known
        return input.new_zeros(0, weight.shape[0], h_out, w_out)
    return _modulated_deform_conv2d_op(input, offset, mask, weight, bias, *attrs)


class ModulatedDeformConv2d(nn.Module):
    """A DCNv2 layer whose offsets and modulation come from a conv on its own input.

    Parameters are named as the official DCNv2 `DCN` (used by YOLACT++): `weight`, `bias`, and
    `conv_offset_mask` (a conv producing dg * 3 * kh * kw channels: dy/dx chunks and the mask
    logits). Like the official layer, `conv_offset_mask` starts at zero, so an untrained layer is
    a plain convolution whose output is scaled by sigmoid(0) = 0.5.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | Sequence[int],
        *,
        stride: int | Sequence[int] = 1,
        padding: int | Sequence[int] = 0,
        dilation: int | Sequence[int] = 1,
        groups: int = 1,
        deformable_groups: int = 1,
        bias: bool = True,
    ):
        super().__init__()
        if in_channels % groups or out_channels % groups:
            raise ValueError(
                f"channels {in_channels}->{out_channels} must divide by groups={groups}"
            )
        if in_channels % deformable_groups:
            raise ValueError(f"in_channels {in_channels} must divide by deformable_groups")
        self.kernel_size = tuple(_pair(kernel_size))
        self.stride, self.padding = _pair(stride), _pair(padding)
        self.dilation, self.groups = _pair(dilation), groups
        self.deformable_groups = deformable_groups
        kh, kw = self.kernel_size
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels // groups, kh, kw))
        self.bias = nn.Parameter(torch.empty(out_channels)) if bias else None
        self.conv_offset_mask = nn.Conv2d(
            in_channels,
            deformable_groups * 3 * kh * kw,
            self.kernel_size,
            stride=self.stride,
            padding=self.padding,
            dilation=self.dilation,
            bias=True,
        )
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # As the official DCNv2: uniform(-1/sqrt(n), 1/sqrt(n)) with n = C_in * kh * kw.
        stdv = 1.0 / math.sqrt(self.weight.shape[1] * self.groups * math.prod(self.kernel_size))
        nn.init.uniform_(self.weight, -stdv, stdv)
        if self.bias is not None:
            nn.init.zeros_(self.bias)
        nn.init.zeros_(self.conv_offset_mask.weight)
        nn.init.zeros_(self.conv_offset_mask.bias)

    def forward(self, x: Tensor) -> Tensor:
        o1, o2, mask_logits = torch.chunk(self.conv_offset_mask(x), 3, dim=1)
        return modulated_deform_conv2d(
            x,
            torch.cat((o1, o2), dim=1),
            torch.sigmoid(mask_logits),
            self.weight,
            self.bias,
            stride=self.stride,
            padding=self.padding,
            dilation=self.dilation,
            groups=self.groups,
            deformable_groups=self.deformable_groups,
        )


def onnx_custom_translation_table() -> dict:
    """{our op: its ONNX translation} for `torch.onnx.export(..., custom_translation_table=)`:
    the standard `DeformConv` of opset 19 (same offset/mask layout as ours)."""
    from onnxscript import opset19 as op

    def deform_conv(input, offset, mask, weight, bias, stride, padding, dilation, groups, dg):
        pads = [padding[0], padding[1], padding[0], padding[1]]
        return op.DeformConv(
            input,
            weight,
            offset,
            bias,
            mask,
            dilations=dilation,
            group=groups,
            offset_group=dg,
            pads=pads,
            strides=stride,
        )

    return {torch.ops.segros.modulated_deform_conv2d.default: deform_conv}


__all__ = [
    "ModulatedDeformConv2d",
    "deform_conv2d_reference",
    "modulated_deform_conv2d",
    "onnx_custom_translation_table",
]
