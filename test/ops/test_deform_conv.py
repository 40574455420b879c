"""DCNv2: the pure PyTorch reference against torchvision.ops.deform_conv2d, the registered op
(both kernels, opcheck, gradients, input checks), the layer's official parameter names and
initial behaviour, and ONNX export to DeformConv run by ONNX Runtime."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torchvision.ops import deform_conv2d as tv_deform_conv2d

from segmentation_ros.ops import deform_conv
from segmentation_ros.ops.deform_conv import (
    ModulatedDeformConv2d,
    deform_conv2d_reference,
    modulated_deform_conv2d,
)

OP = torch.ops.segros.modulated_deform_conv2d.default


def _pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


def random_case(n=2, c_in=8, c_out=6, hw=(9, 11), k=3, stride=1, pad=1, dil=1, groups=1, dg=1,
                bias=True, dtype=torch.float64, seed=0):  # fmt: skip
    """Random DCNv2 inputs; offsets of a few pixels so that many samples fall off the image."""
    g = torch.Generator().manual_seed(seed)
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = map(_pair, (k, stride, pad, dil))
    h_out = (hw[0] + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    w_out = (hw[1] + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    x = torch.randn(n, c_in, *hw, generator=g, dtype=dtype)
    offset = torch.randn(n, 2 * dg * kh * kw, h_out, w_out, generator=g, dtype=dtype) * 2.5
    mask = torch.rand(n, dg * kh * kw, h_out, w_out, generator=g, dtype=dtype)
    weight = torch.randn(c_out, c_in // groups, kh, kw, generator=g, dtype=dtype)
    b = torch.randn(c_out, generator=g, dtype=dtype) if bias else None
    attrs = dict(stride=stride, padding=pad, dilation=dil, groups=groups, deformable_groups=dg)
    return (x, offset, mask, weight, b), attrs


def torchvision_expected(inputs, a):
    x, offset, mask, weight, bias = inputs
    return tv_deform_conv2d(x, offset, weight, bias, stride=a["stride"], padding=a["padding"],
                            dilation=a["dilation"], mask=mask)  # fmt: skip


def reference(inputs, a):
    pairs = [list(_pair(a[key])) for key in ("stride", "padding", "dilation")]
    return deform_conv2d_reference(*inputs, *pairs, a["groups"], a["deformable_groups"])


@pytest.fixture(params=["default", "torchvision", "reference"])
def kernel(request, monkeypatch):
    """Runs a test with the kernels chosen for this device (CPU: torchvision forward, reference
    backward), with torchvision's forward and backward kernels, and with the pure PyTorch
    fallback alone."""
    if request.param == "torchvision":
        monkeypatch.setattr(deform_conv, "_torchvision_backward", lambda device: True)
    elif request.param == "reference":
        monkeypatch.setattr(deform_conv, "_torchvision_kernels", lambda: False)
    return request.param


GRID = [
    dict(),
    dict(stride=2),
    dict(pad=0, dil=2),
    dict(groups=2, dg=2),
    dict(dg=4, bias=False),
    dict(k=1, pad=0),
    dict(c_in=4, c_out=4, groups=4),
    dict(k=(3, 1), stride=(2, 1), pad=(2, 0), dil=(1, 3)),
    dict(hw=(1, 1), pad=0, k=1),
]


@pytest.mark.parametrize("case", GRID, ids=lambda c: ",".join(f"{k}={v}" for k, v in c.items()))
def test_matches_torchvision(case, kernel):
    inputs, a = random_case(**case)
    expected = torchvision_expected(inputs, a)
    torch.testing.assert_close(reference(inputs, a), expected)
    torch.testing.assert_close(modulated_deform_conv2d(*inputs, **a), expected)


def test_float32_matches_reference():
    inputs, a = random_case(dtype=torch.float32, groups=2, dg=2)
    torch.testing.assert_close(modulated_deform_conv2d(*inputs, **a), reference(inputs, a))


def test_non_contiguous_inputs(kernel):
    (x, offset, mask, weight, bias), a = random_case()
    x_nc = x.transpose(2, 3).contiguous().transpose(2, 3)
    offset_nc = offset.transpose(2, 3).contiguous().transpose(2, 3)
    weight_nc = weight.transpose(0, 1).contiguous().transpose(0, 1)
    assert not (x_nc.is_contiguous() or offset_nc.is_contiguous() or weight_nc.is_contiguous())
    torch.testing.assert_close(
        modulated_deform_conv2d(x_nc, offset_nc, mask, weight_nc, bias, **a),
        torchvision_expected((x, offset, mask, weight, bias), a),
    )


def test_empty_batch(kernel):
    inputs, a = random_case(n=0)
    for t in inputs:
        t.requires_grad_(True)
    out = modulated_deform_conv2d(*inputs, **a)
    assert out.shape == (0, 6, 9, 11) and out.dtype == torch.float64
    out.sum().backward()
    assert inputs[3].grad is not None and not inputs[3].grad.any()


def test_opcheck():
    """Schema, fake kernel, autograd registration and AOT dispatch (with gradients, bias on)."""
    for bias in (False, True):
        inputs, _ = random_case(n=1, c_in=4, c_out=4, hw=(5, 6), bias=bias, dtype=torch.float32)
        args = (*inputs, [1, 1], [1, 1], [1, 1], 1, 1)
        torch.library.opcheck(OP, args)
    for t in inputs:
        t.requires_grad_(True)
    torch.library.opcheck(OP, args)


def test_gradcheck(kernel):
    inputs, a = random_case(n=1, c_in=2, c_out=2, hw=(3, 4), stride=(1, 2), seed=3)
    inputs = [t.requires_grad_(True) for t in inputs]
    # Full Jacobians for the reference alone; torchvision's forward has a large per-call cost on
    # a busy CPU, so with it the check is along random directions (full Jacobians: next test).
    assert torch.autograd.gradcheck(
        lambda *t: modulated_deform_conv2d(*t, **a),
        inputs,
        eps=1e-6,
        atol=1e-5,
        fast_mode=kernel != "reference",
    )


def test_gradients_match_reference_autograd(monkeypatch):
    """torchvision's backward kernel against autograd through the reference, on a larger case."""
    monkeypatch.setattr(deform_conv, "_torchvision_backward", lambda device: True)
    inputs, a = random_case(groups=2, dg=2, stride=(2, 1))
    leaves = [t.clone().requires_grad_(True) for t in inputs]
    h_out, w_out = reference(inputs, a).shape[2:]
    grad_out = torch.randn(2, 6, w_out, h_out, dtype=torch.float64).transpose(2, 3)  # strided
    expected = torch.autograd.grad(reference(leaves, a), leaves, grad_out)
    got = torch.autograd.grad(modulated_deform_conv2d(*leaves, **a), leaves, grad_out)
    for g, e in zip(got, expected, strict=True):
        torch.testing.assert_close(g, e)


def test_only_needed_gradients(kernel):
    (x, offset, mask, weight, _), a = random_case(bias=False)
    weight.requires_grad_(True)
    modulated_deform_conv2d(x, offset, mask, weight, None, **a).sum().backward()
    assert weight.grad is not None and x.grad is None and offset.grad is None


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda t: {**t, "offset": t["offset"][:, :-2]}, "offset must be"),
        (lambda t: {**t, "mask": t["mask"][:, :-1]}, "mask must be"),
        (lambda t: {**t, "input": t["input"][:, :-1]}, "input has 7 channels"),
        (lambda t: {**t, "bias": t["bias"][:-1]}, "bias must be"),
        (lambda t: {**t, "mask": t["mask"].float()}, "mask is torch.float32"),
        (lambda t: {**t, "input": t["input"][0]}, "input must be 4-D"),
    ],
)
def test_rejects_bad_inputs(change, message):
    (x, offset, mask, weight, bias), _ = random_case()
    t = change(dict(input=x, offset=offset, mask=mask, weight=weight, bias=bias))
    args = (t["input"], t["offset"], t["mask"], t["weight"], t["bias"], [1, 1], [1, 1], [1, 1])
    with pytest.raises(RuntimeError, match=message):
        OP(*args, 1, 1)
    with (
        torch._subclasses.fake_tensor.FakeTensorMode() as mode,
        pytest.raises(RuntimeError, match=message),
    ):
        OP(*(mode.from_tensor(v) if isinstance(v, torch.Tensor) else v for v in args), 1, 1)


def test_wrapper_rejects_bad_pairs():
    inputs, a = random_case()
    with pytest.raises(ValueError, match="stride"):
        modulated_deform_conv2d(*inputs, **{**a, "stride": (1, 1, 1)})


class OfficialBottleneckPart(torch.nn.Module):
    """YOLACT++'s Bottleneck keys for its DCN: conv2.weight, conv2.bias, conv2.conv_offset_mask.*"""

    def __init__(self, planes):
        super().__init__()
        self.conv2 = ModulatedDeformConv2d(planes, planes, 3, stride=2, padding=1, dilation=1)


def test_official_keys_load_strictly_and_untrained_layer_is_half_conv():
    module = OfficialBottleneckPart(8)
    official = {  # shapes of the official DCN(planes, planes, 3, ..., deformable_groups=1)
        "conv2.weight": torch.randn(8, 8, 3, 3),
        "conv2.bias": torch.randn(8),
        "conv2.conv_offset_mask.weight": torch.zeros(27, 8, 3, 3),
        "conv2.conv_offset_mask.bias": torch.zeros(27),
    }
    assert set(module.state_dict()) == set(official)
    module.load_state_dict(official, strict=True)
    x = torch.randn(1, 8, 9, 9)
    plain = F.conv2d(x, official["conv2.weight"], official["conv2.bias"] * 2, stride=2, padding=1)
    torch.testing.assert_close(module.conv2(x), 0.5 * plain)

    fresh = ModulatedDeformConv2d(8, 6, 3, padding=1)
    assert not fresh.conv_offset_mask.weight.any() and not fresh.conv_offset_mask.bias.any()
    assert not fresh.bias.any() and fresh.weight.abs().max() <= 1 / (8 * 9) ** 0.5
    torch.testing.assert_close(fresh(x), 0.5 * F.conv2d(x, fresh.weight, padding=1))
    assert set(ModulatedDeformConv2d(8, 6, 3, bias=False).state_dict()) == {
        "weight",
        "conv_offset_mask.weight",
        "conv_offset_mask.bias",
    }


def test_layer_offset_layout_dy_dx_interleaved():
    """A bias of +1 on the even offset channels (dy) moves every sample one row down."""
    layer = ModulatedDeformConv2d(4, 5, 3, padding=1)
    with torch.no_grad():
        layer.conv_offset_mask.bias[0:18:2] = 1.0  # dy of the 9 kernel points
        layer.conv_offset_mask.bias[18:] = 30.0  # mask logits: sigmoid = 1
    x = torch.randn(2, 4, 7, 8)
    plain = F.conv2d(x, layer.weight, layer.bias, padding=1)
    out = layer(x)
    torch.testing.assert_close(out[:, :, :-1], plain[:, :, 1:])
    with torch.no_grad():  # dx instead: one column right
        layer.conv_offset_mask.bias[0:18] = torch.tensor([0.0, 1.0]).repeat(9)
    torch.testing.assert_close(layer(x)[..., :-1], plain[..., 1:])


def test_layer_rejects_bad_channels():
    with pytest.raises(ValueError, match="groups"):
        ModulatedDeformConv2d(6, 4, 3, groups=4)
    with pytest.raises(ValueError, match="deformable_groups"):
        ModulatedDeformConv2d(6, 4, 3, deformable_groups=4)


def test_autocast_runs_in_float32():
    layer = ModulatedDeformConv2d(4, 4, 3, padding=1)
    torch.nn.init.normal_(layer.conv_offset_mask.weight, std=0.1)
    x = torch.randn(1, 4, 6, 6)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = layer(x)
    assert out.dtype == torch.float32 and out.shape == (1, 4, 6, 6)


def test_onnx_export_to_deformconv(tmp_path):
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")

    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, padding=1),
        ModulatedDeformConv2d(8, 8, 3, padding=1),
        ModulatedDeformConv2d(8, 6, 3, stride=2, padding=1, deformable_groups=2, bias=False),
    ).eval()
    for layer in model[1:]:  # non-trivial offsets and masks
        torch.nn.init.normal_(layer.conv_offset_mask.weight, std=0.2)
        torch.nn.init.normal_(layer.conv_offset_mask.bias, std=0.5)
    x = torch.randn(1, 3, 12, 15)
    path = tmp_path / "dcn.onnx"
    torch.onnx.export(
        model,
        (x,),
        dynamo=True,
        opset_version=19,
        custom_translation_table=deform_conv.onnx_custom_translation_table(),
    ).save(str(path))
    ops = [node.op_type for node in onnx.load(str(path)).graph.node]
    assert ops.count("DeformConv") == 2
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    with torch.no_grad():
        expected = model(x).numpy()
    np.testing.assert_allclose(got, expected, atol=1e-4, rtol=0)
