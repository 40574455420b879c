"""The Triton DCNv2 forward (run by Triton's interpreter on CPU tensors, see conftest.py) against
the op's pure PyTorch reference and torchvision: strides, paddings, dilations, groups,
deformable groups, kernel sizes, bias, samples on and beyond the image border, zero mask,
empty inputs, non-contiguous views, several tiles, chunked batches, float16 / bfloat16 /
float64, and the output's shape and dtype against the op's fake kernel. Sizes are tiny: the
interpreter is slow.
"""

import itertools

import pytest
import torch
from torchvision.ops import deform_conv2d as tv_deform_conv2d

from segmentation_ros.ops.deform_conv import deform_conv2d_reference
from segmentation_ros.ops.triton import deform_conv as triton_deform_conv
from segmentation_ros.ops.triton.deform_conv import modulated_deform_conv2d_triton

OP = torch.ops.segros.modulated_deform_conv2d.default
TOL = dict(rtol=1e-4, atol=1e-4)


def _pair(v):
    return [v, v] if isinstance(v, int) else list(v)


def random_case(n=1, c_in=4, c_out=4, hw=(6, 7), k=3, stride=1, pad=1, dil=1, groups=1, dg=1,
                bias=True, offset_scale=2.5, dtype=torch.float32, seed=0):  # fmt: skip
    """Random inputs and the op's attributes; offsets of a few pixels send many samples off the
    image."""
    g = torch.Generator().manual_seed(seed)
    (kh, kw), stride, pad, dil = map(_pair, (k, stride, pad, dil))
    h_out = (hw[0] + 2 * pad[0] - dil[0] * (kh - 1) - 1) // stride[0] + 1
    w_out = (hw[1] + 2 * pad[1] - dil[1] * (kw - 1) - 1) // stride[1] + 1
    x = torch.randn(n, c_in, *hw, generator=g)
    offset = torch.randn(n, 2 * dg * kh * kw, h_out, w_out, generator=g) * offset_scale
    mask = torch.rand(n, dg * kh * kw, h_out, w_out, generator=g)
    weight = torch.randn(c_out, c_in // groups, kh, kw, generator=g)
    b = torch.randn(c_out, generator=g) if bias else None
    tensors = [t if t is None else t.to(dtype) for t in (x, offset, mask, weight, b)]
    return tensors, [stride, pad, dil, groups, dg]


def _name(case):
    return ",".join(f"{k}={v}" for k, v in case.items())


# Every stride x padding x dilation for a 3x3 kernel, each with one of the (groups,
# deformable_groups) pairs and bias on or off in turn; then 1x1 and non-square kernels.
PAIRS = [(1, 1), (2, 1), (1, 2), (2, 2)]  # (groups, deformable_groups)
GRID = [
    dict(stride=s, pad=p, dil=d, groups=PAIRS[i % 4][0], dg=PAIRS[i % 4][1], bias=i % 3 != 0)
    for i, (s, p, d) in enumerate(itertools.product((1, 2), (0, 1), (1, 2)))
] + [
    dict(k=1, pad=0, groups=gr, dg=dg, bias=bias)
    for (gr, dg), bias in [((1, 1), True), ((2, 2), False), ((1, 2), True)]
] + [
    dict(c_in=8, c_out=6, groups=2, dg=4, n=2),
    dict(c_in=4, c_out=4, groups=4, dg=2, bias=False),
    dict(k=(3, 1), stride=(2, 1), pad=(2, 0), dil=(1, 3), hw=(7, 8)),
    dict(k=(1, 3), stride=(1, 2), pad=(0, 1), hw=(5, 9)),
]  # fmt: skip


@pytest.mark.parametrize("case", GRID, ids=_name)
def test_matches_reference(case):
    tensors, attrs = random_case(**case)
    expected = deform_conv2d_reference(*tensors, *attrs)
    got = modulated_deform_conv2d_triton(*tensors, *attrs)
    assert got.shape == expected.shape and got.dtype == torch.float32
    torch.testing.assert_close(got, expected, **TOL)


def test_samples_on_and_beyond_the_border_match_torchvision():
    """A 1x1 kernel samples exactly at (y + dy, x + dx): put the samples on the edges of the
    validity rule (-1 < p < size), on the last row/column, between the last pixel and the edge
    and far outside, each with a different mask value, in float64 against torchvision."""
    h, w = 5, 6
    (x, _, mask, weight, bias), attrs = random_case(
        n=2, c_in=3, c_out=2, hw=(h, w), k=1, pad=0, dtype=torch.float64
    )
    g = torch.Generator().manual_seed(1)

    def targets(size):  # [2, 1, h, w] sample coordinates along an axis of this size
        values = [-7.0, -1.0, -0.999, -0.5, 0.0, 2.25, size - 1, size - 0.75, size - 0.001, size]
        values = torch.tensor(values, dtype=torch.float64)
        return values[torch.randint(len(values), (2, 1, h, w), generator=g)]

    ty, tx = targets(h), targets(w)
    rows = torch.arange(h, dtype=torch.float64).view(1, 1, h, 1)
    cols = torch.arange(w, dtype=torch.float64).view(1, 1, 1, w)
    offset = torch.cat((ty - rows, tx - cols), dim=1)
    got = modulated_deform_conv2d_triton(x, offset, mask, weight, bias, *attrs)
    expected = tv_deform_conv2d(x, offset, weight, bias, mask=mask)
    torch.testing.assert_close(got, expected)
    torch.testing.assert_close(got, deform_conv2d_reference(x, offset, mask, weight, bias, *attrs))


def test_all_samples_outside_or_zero_mask_give_the_bias():
    (x, offset, mask, weight, bias), attrs = random_case(dg=2)
    far = torch.full_like(offset, 50.0)
    expected = bias.view(1, -1, 1, 1).expand(1, -1, 6, 7)
    torch.testing.assert_close(
        modulated_deform_conv2d_triton(x, far, mask, weight, bias, *attrs), expected
    )
    zero = torch.zeros_like(mask)
    torch.testing.assert_close(
        modulated_deform_conv2d_triton(x, offset, zero, weight, bias, *attrs), expected
    )


def test_empty_inputs_return_without_launching():
    (x, offset, mask, weight, bias), attrs = random_case(n=0, c_out=6, bias=True)
    out = modulated_deform_conv2d_triton(x, offset, mask, weight, bias, *attrs)
    assert out.shape == (0, 6, 6, 7) and out.dtype == torch.float32
    (x, offset, mask, _, _), attrs = random_case(n=2)
    out = modulated_deform_conv2d_triton(x, offset, mask, weight[:0], None, *attrs)
    assert out.shape == (2, 0, 6, 7)
    # No input channels: the output is the bias.
    out = modulated_deform_conv2d_triton(x[:, :0], offset, mask, weight[:, :0], bias, *attrs)
    torch.testing.assert_close(out, bias.view(1, -1, 1, 1).expand(2, -1, 6, 7))


def test_non_contiguous_inputs():
    """A channel slice of the input, a transposed offset, a mask sliced from a bigger tensor
    and a transposed weight are read through their strides."""
    (x, offset, mask, weight, bias), attrs = random_case(n=2, c_in=4, groups=2, dg=2)
    x_view = torch.cat((x, x[:, :2]), dim=1)[:, :4]
    offset_view = offset.transpose(2, 3).contiguous().transpose(2, 3)
    mask_view = torch.cat((mask, mask), dim=3)[..., : mask.shape[3]]
    weight_view = weight.transpose(2, 3).contiguous().transpose(2, 3)
    views = (x_view, offset_view, mask_view, weight_view)
    assert not any(t.is_contiguous() for t in views)
    torch.testing.assert_close(
        modulated_deform_conv2d_triton(*views, bias, *attrs),
        deform_conv2d_reference(x, offset, mask, weight, bias, *attrs),
        **TOL,
    )


def test_several_pixel_and_channel_blocks(monkeypatch):
    """Small tiles: 30 output pixels in blocks of 16 and 3 channels per deformable group in
    blocks of 2, both with a partial last block."""
    monkeypatch.setattr(triton_deform_conv, "BLOCK_L", 16)
    monkeypatch.setattr(triton_deform_conv, "MAX_BLOCK_C", 2)
    tensors, attrs = random_case(c_in=6, c_out=4, hw=(5, 6), groups=2, dg=2)
    torch.testing.assert_close(
        modulated_deform_conv2d_triton(*tensors, *attrs),
        deform_conv2d_reference(*tensors, *attrs),
        **TOL,
    )


@pytest.mark.parametrize("images_per_chunk", [1, 2])
def test_batch_chunks(monkeypatch, images_per_chunk):
    """The column budget splits a batch of 3 into chunks of 1 or 2 (last chunk shorter)."""
    (x, offset, mask, weight, bias), attrs = random_case(n=3, hw=(5, 5), dg=2)
    column_bytes = 4 * 4 * 9 * 5 * 5  # float32 x C_in x kh*kw x H_out*W_out
    monkeypatch.setattr(triton_deform_conv, "COLUMN_BUDGET_BYTES", images_per_chunk * column_bytes)
    torch.testing.assert_close(
        modulated_deform_conv2d_triton(x, offset, mask, weight, bias, *attrs),
        deform_conv2d_reference(x, offset, mask, weight, bias, *attrs),
        **TOL,
    )


@pytest.mark.parametrize(
    "dtype, tol",
    [
        (torch.float16, dict(rtol=1e-2, atol=1e-2)),
        (torch.bfloat16, dict(rtol=2e-2, atol=5e-2)),
        (torch.float64, dict(rtol=1e-10, atol=1e-10)),
    ],
)
def test_dtypes(dtype, tol):
    """Computed in float32 (float64 for float64) and returned in the input's dtype; the expected
    value is the reference run in float64 on the same (rounded) inputs."""
    tensors, attrs = random_case(groups=2, dg=2, dtype=dtype)
    got = modulated_deform_conv2d_triton(*tensors, *attrs)
    assert got.dtype == dtype
    wide = [t.double() for t in tensors]
    expected = deform_conv2d_reference(*wide, *attrs)
    torch.testing.assert_close(got.double(), expected, **tol)


@pytest.mark.parametrize(
    "case",
    [
        dict(),
        dict(k=(3, 1), stride=(2, 1), pad=(2, 0), dil=(1, 3), bias=False, dtype=torch.float16),
    ],
    ids=_name,
)
def test_shape_and_dtype_match_fake_kernel(case):
    tensors, attrs = random_case(**case)
    with torch._subclasses.fake_tensor.FakeTensorMode() as mode:
        fake = OP(*(mode.from_tensor(t) if t is not None else None for t in tensors), *attrs)
    got = modulated_deform_conv2d_triton(*tensors, *attrs)
    assert got.shape == fake.shape and got.dtype == fake.dtype and got.device == fake.device


def test_rejects_bad_inputs_like_the_op():
    (x, offset, mask, weight, bias), attrs = random_case()
    with pytest.raises(RuntimeError, match="offset must be"):
        modulated_deform_conv2d_triton(x, offset[:, :-2], mask, weight, bias, *attrs)
    with pytest.raises(RuntimeError, match="mask is torch.float64"):
        modulated_deform_conv2d_triton(x, offset, mask.double(), weight, bias, *attrs)
