"""Modulated deformable convolution (DCNv2), the op of YOLACT++'s backbone.

Four parts side by side:
- `modulated_deform_conv2d`: the typed, documented wrapper around the registered op
  `segros::modulated_deform_conv2d` (fake kernel with readable shape checks, autograd,
  autocast to float32). Its forward kernel is torchvision's C++/CUDA `deform_conv2d`; gradients
  come from torchvision's `_deform_conv2d_backward` on CUDA and from autograd through the
  reference on the CPU (faster there). Where torchvision's kernels are not built: the reference.
- `deform_conv2d_reference`: pure PyTorch (four vectorised bilinear gathers and one matmul), the
  fallback and the test oracle.
- `ModulatedDeformConv2d`: the layer, parameters named as the official DCNv2 `DCN` class, so
  official YOLACT++ checkpoints load strictly (`conv2.weight`, `conv2.bias`,
  `conv2.conv_offset_mask.weight`, `conv2.conv_offset_mask.bias` in a Bottleneck).
- `onnx_custom_translation_table()`: the export piece. The dynamo exporter is given
  {our op: translation} as `custom_translation_table` (runtime/onnx_export.py does it) and writes
  the standard ONNX `DeformConv` (opset >= 19), which ONNX Runtime runs on the CPU. We keep our op
  in exported programs (rather than swapping in torchvision's op while exporting) so that one
  named node is there for the ONNX and, later, a TensorRT plugin translation.

Layouts (the same in DCNv2, torchvision and ONNX `DeformConv`, whose ONNX Runtime kernel the
export test checks with two offset groups; stated once):
  input  [N, C_in, H, W]
  offset [N, 2 * dg * kh * kw, H_out, W_out]. For deformable group g and kernel point
         k = i * kw + j, channel 2 * (g * kh * kw + k) is the row offset dy and channel
         2 * (g * kh * kw + k) + 1 the column offset dx: (dy, dx) pairs, interleaved per kernel
         point. Read from the sources: CharlesShang's DCNv2 (vendored by dbolya/yolact)
         `data_offset_h_ptr = ((2 * (i * kernel_w + j)) * height_col + h_col) * width_col + w_col`
         (dx at `2 * (i * kernel_w + j) + 1`), per group `data_offset + (b * dg + g) * 2 * kh * kw
         * H_out * W_out`; torchvision's kernel `offset_idx = 2 * (i * weight_w + j)` for dy and
         `offset_idx + 1` for dx with the same group stride. The official `DCN.forward` splits
         its `conv_offset_mask` output with `o1, o2, m = torch.chunk(out, 3, dim=1)` and passes
         `offset = cat(o1, o2)`: that is simply the first 2 * dg * kh * kw channels, which the
         kernel reads in the interleaved layout above (o1 is not "all dy"). So official offsets
         go to torchvision unchanged, no permutation.
  mask   [N, dg * kh * kw, H_out, W_out], channel g * kh * kw + k; the official layer uses
         sigmoid of the last third of `conv_offset_mask`'s output, so the mask is in [0, 1].
  weight [C_out, C_in / groups, kh, kw];  bias [C_out] or None;  output [N, C_out, H_out, W_out]
  H_out = (H + 2 * ph - dh * (kh - 1) - 1) // sh + 1 (likewise W_out).
Output (y, x), kernel point (i, j) samples the input of channel c (deformable group
g = c // (C_in / dg)) at row y * sh - ph + i * dh + dy and column x * sw - pw + j * dw + dx,
bilinearly; each of the four neighbours outside the image counts as zero (a sample at or beyond
one pixel outside the image is zero). The sample is multiplied by the mask, then the weights
are applied as in a grouped convolution, then the bias is added.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

try:  # loads torchvision's registered C++/CUDA ops (torch.ops.torchvision.*)
    import torchvision  # noqa: F401
except ImportError:  # pragma: no cover - torchvision is in requirements.txt
    pass


def _torchvision_kernels() -> bool:
    """Whether torchvision's deform_conv2d forward and backward kernels are registered."""
    ns = torch.ops.torchvision
    return hasattr(ns, "deform_conv2d") and hasattr(ns, "_deform_conv2d_backward")


def _torchvision_backward(device: torch.device) -> bool:
    """Whether gradients come from torchvision's backward kernel: on CUDA. On the CPU autograd
    through the reference is used instead, measured faster here (256 ch 35x35, one thread:
    torchvision's backward kernel 310-640 ms, reference forward + backward 120-235 ms; the op's
    forward + backward 420 ms against 780 ms for torchvision's; benchmarks/bench_deform_conv.py).
    """
    return device.type == "cuda" and _torchvision_kernels()


def _pair(value: int | Sequence[int], name: str) -> list[int]:
    if isinstance(value, int):
        return [value, value]
    pair = [int(v) for v in value]
    if len(pair) != 2:
        raise ValueError(f"{name} must be an int or a pair of ints, got {value!r}")
    return pair


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
    """Pure PyTorch DCNv2 (layouts in the module docstring), differentiable by autograd.

    stride, padding, dilation: (rows, columns) pairs. No input checks: use the op.
    """
    n, c_in, h, w = input.shape
    c_out, _, kh, kw = weight.shape
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    h_out, w_out = offset.shape[-2:]
    k, dg = kh * kw, deformable_groups
    dtype, device = input.dtype, input.device

    # Sampling positions [N, dg, K, H_out, W_out]: kernel point + output position + offset.
    ki = torch.arange(kh, device=device, dtype=dtype).repeat_interleave(kw) * dh
    kj = torch.arange(kw, device=device, dtype=dtype).repeat(kh) * dw
    oy = torch.arange(h_out, device=device, dtype=dtype) * sh - ph
    ox = torch.arange(w_out, device=device, dtype=dtype) * sw - pw
    offset = offset.reshape(n, dg, k, 2, h_out, w_out)
    y = ki[:, None, None] + oy[None, :, None] + offset[:, :, :, 0]
    x = kj[:, None, None] + ox[None, None, :] + offset[:, :, :, 1]

    # Bilinear interpolation: four neighbours, each weighted, each zero outside the image.
    y0, x0 = torch.floor(y), torch.floor(x)
    per_group = input.reshape(n, dg, c_in // dg, h * w)
    columns_shape = (n, dg, 1, k * h_out * w_out)
    sampled = input.new_zeros(n, dg, c_in // dg, k * h_out * w_out)
    for y_corner in (y0, y0 + 1):
        for x_corner in (x0, x0 + 1):
            corner_weight = (1 - (y - y_corner).abs()) * (1 - (x - x_corner).abs())
            inside = (y_corner >= 0) & (y_corner <= h - 1) & (x_corner >= 0) & (x_corner <= w - 1)
            corner_weight = (corner_weight * inside).reshape(columns_shape)
            index = y_corner.clamp(0, h - 1) * w + x_corner.clamp(0, w - 1)
            index = index.long().reshape(columns_shape).expand(-1, -1, c_in // dg, -1)
            sampled = sampled + torch.gather(per_group, 3, index) * corner_weight

    # Modulate, then the convolution is a matmul of [C_out/g, C_in/g * K] by the columns.
    sampled = sampled.reshape(n, dg, c_in // dg, k, h_out * w_out)
    sampled = sampled * mask.reshape(n, dg, 1, k, h_out * w_out)
    columns = sampled.reshape(n, groups, (c_in // groups) * k, h_out * w_out)
    kernels = weight.reshape(groups, c_out // groups, (c_in // groups) * k)
    out = torch.einsum("gok,ngkl->ngol", kernels, columns).reshape(n, c_out, h_out, w_out)
    if bias is not None:
        out = out + bias.reshape(1, -1, 1, 1)
    return out


def _check_inputs(
    input, offset, mask, weight, bias, stride, padding, dilation, groups, deformable_groups
) -> tuple[int, int]:
    """Input checks shared by the fake kernel and the real one; returns (H_out, W_out)."""
    for name, t in (("input", input), ("offset", offset), ("mask", mask), ("weight", weight)):
        torch._check(t.dim() == 4, lambda n=name, t=t: f"{n} must be 4-D, got {tuple(t.shape)}")
    for name, t in (("offset", offset), ("mask", mask), ("weight", weight), ("bias", bias)):
        if t is not None:
            torch._check(
                t.dtype == input.dtype and t.device == input.device,
                lambda n=name, t=t: (
                    f"{n} is {t.dtype} on {t.device}, input is "
                    f"{input.dtype} on {input.device}: they must match"
                ),
            )
    limits = (("stride", stride, 1), ("padding", padding, 0), ("dilation", dilation, 1))
    for name, pair, low in limits:
        torch._check(
            len(pair) == 2 and min(pair) >= low,
            lambda n=name, p=pair, lo=low: f"{n} must be two ints >= {lo}, got {p}",
        )
    torch._check(groups >= 1 and deformable_groups >= 1, lambda: "groups must be >= 1")
    n, c_in, h, w = input.shape
    c_out, c_in_per_group, kh, kw = weight.shape
    torch._check(
        c_in == c_in_per_group * groups,
        lambda: (
            f"input has {c_in} channels but weight {tuple(weight.shape)} with "
            f"groups={groups} expects {c_in_per_group * groups}"
        ),
    )
    torch._check(
        c_out % groups == 0, lambda: f"{c_out} output channels do not divide by groups={groups}"
    )
    torch._check(
        c_in % deformable_groups == 0,
        lambda: f"{c_in} input channels do not divide by deformable_groups={deformable_groups}",
    )
    h_out = _output_size(h, kh, stride[0], padding[0], dilation[0])
    w_out = _output_size(w, kw, stride[1], padding[1], dilation[1])
    torch._check(
        h_out > 0 and w_out > 0,
        lambda: f"input {h}x{w} is smaller than the dilated kernel: output {h_out}x{w_out}",
    )
    k = deformable_groups * kh * kw
    torch._check(
        tuple(offset.shape) == (n, 2 * k, h_out, w_out),
        lambda: (
            f"offset must be [N, 2*dg*kh*kw, H_out, W_out] = {(n, 2 * k, h_out, w_out)}, "
            f"got {tuple(offset.shape)}"
        ),
    )
    torch._check(
        tuple(mask.shape) == (n, k, h_out, w_out),
        lambda: (
            f"mask must be [N, dg*kh*kw, H_out, W_out] = {(n, k, h_out, w_out)}, "
            f"got {tuple(mask.shape)}"
        ),
    )
    if bias is not None:
        torch._check(
            tuple(bias.shape) == (c_out,),
            lambda: f"bias must be [{c_out}], got {tuple(bias.shape)}",
        )
    return h_out, w_out


def _torchvision_args(stride, padding, dilation, groups, deformable_groups) -> tuple:
    return (*stride, *padding, *dilation, groups, deformable_groups, True)  # True: use the mask


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
    attrs = (stride, padding, dilation, groups, deformable_groups)
    _check_inputs(input, offset, mask, weight, bias, *attrs)
    if not _torchvision_kernels():
        return deform_conv2d_reference(input, offset, mask, weight, bias, *attrs)
    if bias is None:
        bias = input.new_zeros(weight.shape[0])
    return torch.ops.torchvision.deform_conv2d(
        input, weight, offset, mask, bias, *_torchvision_args(*attrs)
    )


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
    """First-order gradients for input, offset, mask, weight and bias (no double backward)."""
    input, offset, mask, weight, bias = ctx.saved_tensors
    if _torchvision_backward(input.device):
        grad_input, grad_weight, grad_offset, grad_mask, grad_bias = (
            torch.ops.torchvision._deform_conv2d_backward(
                grad_output,
                input,
                weight,
                offset,
                mask,
                bias if bias is not None else input.new_zeros(weight.shape[0]),
                *_torchvision_args(*ctx.attrs),
            )
        )
        grads = [grad_input, grad_offset, grad_mask, grad_weight, grad_bias]
    else:  # recompute the reference and let autograd do the chain rule
        leaves = [
            None if t is None else t.detach().requires_grad_(need)
            for t, need in zip((input, offset, mask, weight, bias), ctx.needs_input_grad)
        ]
        wanted = [t for t in leaves if t is not None and t.requires_grad]
        with torch.enable_grad():
            out = deform_conv2d_reference(*leaves, *ctx.attrs)
        found = iter(torch.autograd.grad(out, wanted, grad_output) if wanted else ())
        grads = [next(found) if t is not None and t.requires_grad else None for t in leaves]
    grads = [g if need else None for g, need in zip(grads, ctx.needs_input_grad)]
    if bias is None:
        grads[4] = None
    return (*grads, None, None, None, None, None)


_modulated_deform_conv2d_op.register_autograd(_backward, setup_context=_setup_context)
# Under autocast the kernel runs in float32 (as torchvision's own op): offsets from a half
# precision conv meet a float32 weight.
_modulated_deform_conv2d_op.register_autocast("cuda", torch.float32)
_modulated_deform_conv2d_op.register_autocast("cpu", torch.float32)


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
    """DCNv2 with explicit offsets and mask (layouts in the module docstring).

    Args:
        input: [N, C_in, H, W] float.
        offset: [N, 2 * deformable_groups * kh * kw, H_out, W_out], (dy, dx) in input pixels,
            interleaved per kernel point.
        mask: [N, deformable_groups * kh * kw, H_out, W_out], modulation (usually in [0, 1]).
        weight: [C_out, C_in / groups, kh, kw].
        bias: [C_out] or None.
        stride, padding, dilation: int or (rows, columns).
        groups: convolution groups; deformable_groups: channel groups sharing one offset field.

    Returns:
        [N, C_out, H_out, W_out], dtype and device of `input` (float32 under autocast).
        Differentiable with respect to all tensors; an empty batch gives an empty output.
    """
    return _modulated_deform_conv2d_op(
        input,
        offset,
        mask,
        weight,
        bias,
        _pair(stride, "stride"),
        _pair(padding, "padding"),
        _pair(dilation, "dilation"),
        int(groups),
        int(deformable_groups),
    )


class ModulatedDeformConv2d(nn.Module):
    """A DCNv2 layer whose offsets and modulation come from a conv on its own input.

    Parameters are named as the official DCNv2 `DCN` (dbolya/yolact external/DCNv2/dcn_v2.py):
    `weight` [C_out, C_in / groups, kh, kw], `bias` [C_out] (absent with bias=False), and
    `conv_offset_mask`, an nn.Conv2d(C_in, dg * 3 * kh * kw, kernel_size, stride, padding,
    dilation, bias=True) whose output is split into thirds: the first two thirds are the offset
    (read interleaved, see the module docstring), sigmoid of the last third is the mask.
    Initialised as the official layer: weight uniform(+-1/sqrt(C_in * kh * kw)), bias zero and
    `conv_offset_mask` all zero, so an untrained layer is a plain convolution scaled by
    sigmoid(0) = 0.5 (plus the bias).

    Differences from the official `DCN`, none of which changes an official checkpoint's
    meaning: `groups` and `bias=False` are supported (the official has neither), and
    `conv_offset_mask` gets the dilation too (the official omits it, which only works for
    dilation 1, the value YOLACT++ uses: otherwise its offsets would not match the output size).

    forward(x [N, C_in, H, W]) -> [N, C_out, H_out, W_out].
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
        if groups < 1 or in_channels % groups or out_channels % groups:
            raise ValueError(
                f"channels {in_channels}->{out_channels} must divide by groups={groups}"
            )
        if deformable_groups < 1 or in_channels % deformable_groups:
            raise ValueError(
                f"in_channels {in_channels} must divide by deformable_groups={deformable_groups}"
            )
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size = tuple(_pair(kernel_size, "kernel_size"))
        self.stride = tuple(_pair(stride, "stride"))
        self.padding = tuple(_pair(padding, "padding"))
        self.dilation = tuple(_pair(dilation, "dilation"))
        self.groups, self.deformable_groups = groups, deformable_groups
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
        """The official DCNv2 initialisation (see the class docstring)."""
        stdv = 1.0 / math.sqrt(self.in_channels * math.prod(self.kernel_size))
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

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"stride={self.stride}, padding={self.padding}, dilation={self.dilation}, "
            f"groups={self.groups}, deformable_groups={self.deformable_groups}, "
            f"bias={self.bias is not None}"
        )


def onnx_custom_translation_table() -> dict:
    """{torch.ops.segros.modulated_deform_conv2d.default: translation} for
    `torch.onnx.export(..., dynamo=True, opset_version>=19, custom_translation_table=...)`.

    The translation writes one standard ONNX `DeformConv` (inputs X, W, offset, B, mask; B left
    out when there is no bias): its offset and mask layouts are ours, its `pads` are
    [top, left, bottom, right]. Needs onnxscript (imported here, not at module import).
    """
    from onnxscript import opset19 as op

    def modulated_deform_conv2d_to_onnx(
        input, offset, mask, weight, bias, stride, padding, dilation, groups, deformable_groups
    ):
        return op.DeformConv(
            input,
            weight,
            offset,
            bias,
            mask,
            dilations=list(dilation),
            group=groups,
            offset_group=deformable_groups,
            pads=[padding[0], padding[1], padding[0], padding[1]],
            strides=list(stride),
        )

    return {torch.ops.segros.modulated_deform_conv2d.default: modulated_deform_conv2d_to_onnx}


__all__ = [
    "ModulatedDeformConv2d",
    "deform_conv2d_reference",
    "modulated_deform_conv2d",
    "onnx_custom_translation_table",
]
