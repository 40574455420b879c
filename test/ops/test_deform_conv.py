"""DCNv2: the pure PyTorch reference against torchvision.ops.deform_conv2d, the registered op
(opcheck, gradients), the layer's official parameter names, and ONNX export to DeformConv."""

import numpy as np
import pytest
import torch
from torchvision.ops import deform_conv2d as tv_deform_conv2d

from segmentation_ros.ops.deform_conv import (
    ModulatedDeformConv2d,
    deform_conv2d_reference,
    modulated_deform_conv2d,
)


def random_case(n=2, c_in=8, c_out=6, hw=(9, 11), k=3, stride=1, pad=1, dil=1, groups=1, dg=1,
                bias=True, dtype=torch.float64, seed=0):  # fmt: skip
    g = torch.Generator().manual_seed(seed)
    h_out = (hw[0] + 2 * pad - dil * (k - 1) - 1) // stride + 1
    w_out = (hw[1] + 2 * pad - dil * (k - 1) - 1) // stride + 1
    x = torch.randn(n, c_in, *hw, generator=g, dtype=dtype)
    offset = torch.randn(n, 2 * dg * k * k, h_out, w_out, generator=g, dtype=dtype) * 2.5
    mask = torch.rand(n, dg * k * k, h_out, w_out, generator=g, dtype=dtype)
    weight = torch.randn(c_out, c_in // groups, k, k, generator=g, dtype=dtype)
    b = torch.randn(c_out, generator=g, dtype=dtype) if bias else None
    attrs = dict(stride=stride, padding=pad, dilation=dil, groups=groups, deformable_groups=dg)
    return (x, offset, mask, weight, b), attrs


GRID = [
    dict(),
    dict(stride=2),
    dict(pad=0, dil=2),
    dict(groups=2, dg=2),
    dict(dg=4, bias=False),
    dict(k=1, pad=0),
    dict(c_in=4, c_out=4, groups=4, dg=1),
]


@pytest.mark.parametrize("case", GRID, ids=lambda c: ",".join(f"{k}={v}" for k, v in c.items()))
def test_reference_matches_torchvision(case):
    (x, offset, mask, weight, bias), a = random_case(**case)
    expected = tv_deform_conv2d(x, offset, weight, bias, stride=a["stride"], padding=a["padding"],
                                dilation=a["dilation"], mask=mask)  # fmt: skip
    pairs = [[a[key]] * 2 for key in ("stride", "padding", "dilation")]
    got = deform_conv2d_reference(x, offset, mask, weight, bias, *pairs, a["groups"],
                                  a["deformable_groups"])  # fmt: skip
    torch.testing.assert_close(got, expected)
    torch.testing.assert_close(
        modulated_deform_conv2d(x, offset, mask, weight, bias, **a), expected
    )


def test_non_contiguous_input():
    (x, offset, mask, weight, bias), a = random_case()
    x_nc = x.transpose(2, 3).contiguous().transpose(2, 3)
    assert not x_nc.is_contiguous()
    torch.testing.assert_close(
        modulated_deform_conv2d(x_nc, offset, mask, weight, bias, **a),
        modulated_deform_conv2d(x, offset, mask, weight, bias, **a),
    )


def test_empty_batch():
    (x, offset, mask, weight, bias), a = random_case(n=0)
    out = modulated_deform_conv2d(x, offset, mask, weight, bias, **a)
    assert out.shape == (0, 6, 9, 11)


def test_opcheck():
    (x, offset, mask, weight, bias), a = random_case(n=1, c_in=4, c_out=4, hw=(5, 6),
                                                    dtype=torch.float32)  # fmt: skip
    args = (x, offset, mask, weight, bias, [1, 1], [1, 1], [1, 1], 1, 1)
    torch.library.opcheck(torch.ops.segros.modulated_deform_conv2d.default, args)
    for t in (x, offset, mask, weight, bias):
        t.requires_grad_(True)
    torch.library.opcheck(torch.ops.segros.modulated_deform_conv2d.default, args)


def test_gradients():
    (x, offset, mask, weight, bias), a = random_case(n=1, c_in=2, c_out=2, hw=(4, 5), seed=3)
    inputs = [t.requires_grad_(True) for t in (x, offset, mask, weight, bias)]
    assert torch.autograd.gradcheck(
        lambda *t: modulated_deform_conv2d(*t, **a), inputs, eps=1e-6, atol=1e-5
    )


def test_fake_kernel_rejects_bad_shapes():
    (x, offset, mask, weight, bias), a = random_case()
    with pytest.raises(RuntimeError, match="offset must be"):
        modulated_deform_conv2d(x, offset[:, :-2], mask, weight, bias, **a)
    with pytest.raises(RuntimeError):
        modulated_deform_conv2d(x, offset, mask[:, :-1], weight, bias, **a)


def test_layer_loads_official_keys_and_starts_as_half_conv():
    layer = ModulatedDeformConv2d(8, 6, 3, padding=1)
    official = {
        "weight": torch.randn(6, 8, 3, 3),
        "bias": torch.randn(6),
        "conv_offset_mask.weight": torch.zeros(27, 8, 3, 3),
        "conv_offset_mask.bias": torch.zeros(27),
    }
    layer.load_state_dict(official, strict=True)
    x = torch.randn(1, 8, 7, 7)
    plain = torch.nn.functional.conv2d(x, official["weight"], None, padding=1)
    torch.testing.assert_close(layer(x), 0.5 * plain + official["bias"].reshape(1, -1, 1, 1))
    fresh = ModulatedDeformConv2d(8, 6, 3, padding=1, stride=2)
    assert not fresh.conv_offset_mask.weight.any() and fresh(x).shape == (1, 6, 4, 4)


def test_layer_rejects_bad_channels():
    with pytest.raises(ValueError, match="groups"):
        ModulatedDeformConv2d(6, 4, 3, groups=4)


def test_onnx_export_to_deformconv(tmp_path):
    import onnx
    import onnxruntime as ort

    from segmentation_ros.ops.deform_conv import onnx_custom_translation_table

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1),
                                ModulatedDeformConv2d(8, 8, 3, padding=1)).eval()  # fmt: skip
    torch.nn.init.normal_(model[1].conv_offset_mask.weight, std=0.1)  # non-trivial offsets
    x = torch.randn(1, 3, 16, 20)
    path = tmp_path / "dcn.onnx"
    table = onnx_custom_translation_table()
    program = torch.onnx.export(
        model, (x,), dynamo=True, opset_version=19, custom_translation_table=table
    )
    program.save(str(path))
    ops = {node.op_type for node in onnx.load(str(path)).graph.node}
    assert "DeformConv" in ops
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    with torch.no_grad():
        expected = model(x).numpy()
    np.testing.assert_allclose(got, expected, atol=1e-4, rtol=0)
