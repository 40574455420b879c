"""Triton mask assembly (interpreted) against `assemble_masks_reference`."""

import pytest
import torch
from torch._subclasses.fake_tensor import FakeTensorMode

from segmentation_ros.ops.mask_assembly import assemble_masks_reference
from segmentation_ros.ops.triton.mask_assembly import (
    BLOCK_N,
    BLOCK_P,
    MAX_BLOCK_K,
    assemble_masks_triton,
)

# Absolute tolerance per dtype: summation order differs from the BLAS (float32, float64);
# one unit in the last place near 1 for the half types.
ATOL = {torch.float32: 1e-5, torch.float64: 1e-12, torch.float16: 2e-3, torch.bfloat16: 8e-3}


def make_inputs(gen, n, height, width, k, dtype=torch.float32):
    proto = torch.relu(torch.randn(height, width, k, generator=gen))
    coef = torch.tanh(torch.randn(n, k, generator=gen))
    # Relative boxes, some reaching outside the image, a few inverted (x2 < x1).
    xy = torch.rand(n, 2, generator=gen) * 1.2 - 0.2
    boxes = torch.cat([xy, xy + torch.rand(n, 2, generator=gen) * 0.8 - 0.1], dim=1)
    return proto.to(dtype), coef.to(dtype), boxes.to(dtype)


def check(proto, coef, boxes, padding):
    masks = assemble_masks_triton(proto, coef, boxes, padding)
    expected = assemble_masks_reference(proto, coef, boxes, padding)
    assert masks.dtype == expected.dtype and masks.shape == expected.shape
    torch.testing.assert_close(masks, expected, atol=ATOL[proto.dtype], rtol=0)
    assert torch.equal(masks == 0, expected == 0)  # the same crop windows
    return masks


@pytest.mark.parametrize("with_boxes", [True, False])
@pytest.mark.parametrize(
    "n, height, width, k",
    [
        (1, 1, 1, 1),
        (3, 10, 13, 32),  # pixels not a multiple of BLOCK_P
        (BLOCK_N + 4, 9, 7, 5),  # two mask blocks, small k
        (2, 12, BLOCK_P // 12 + 3, MAX_BLOCK_K + 6),  # two k steps, two pixel blocks
        (2, 3, 3, 0),  # k = 0: logits 0, probabilities 0.5
    ],
)
def test_matches_reference(n, height, width, k, with_boxes):
    gen = torch.Generator().manual_seed(n * 100 + k)
    proto, coef, boxes = make_inputs(gen, n, height, width, k)
    check(proto, coef, boxes if with_boxes else None, 1)


@pytest.mark.parametrize("padding", [0, 2])
def test_padding(padding):
    gen = torch.Generator().manual_seed(padding)
    check(*make_inputs(gen, 5, 11, 8, 16), padding)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_dtypes(dtype):
    gen = torch.Generator().manual_seed(4)
    check(*make_inputs(gen, 6, 8, 9, 32, dtype), 1)


def test_crop_edge_cases():
    proto = torch.rand(6, 6, 4)
    coef = torch.rand(4, 4)
    boxes = torch.tensor(
        [
            [0.0, 0.0, 1.0, 1.0],  # whole image
            [0.5, 0.5, 0.5, 0.5],  # a point: window of the padding only
            [2.0, 2.0, 3.0, 3.0],  # outside: empty window
            [0.8, 0.9, 0.1, 0.2],  # inverted: ordered like the official code
        ]
    )
    masks = check(proto, coef, boxes, 1)
    assert (masks[0] > 0).all() and not masks[2].any()
    check(proto, coef, boxes, 0)


def test_non_contiguous():
    gen = torch.Generator().manual_seed(9)
    proto, coef, boxes = make_inputs(gen, 5, 7, 10, 24)
    proto_cf = proto.permute(2, 0, 1).contiguous().permute(1, 2, 0)  # channels-first storage
    coef_t = coef.t().contiguous().t()
    boxes_wide = torch.cat([boxes, torch.zeros(5, 2)], dim=1)[:, :4]
    assert not (proto_cf.is_contiguous() or coef_t.is_contiguous())
    check(proto_cf, coef_t, boxes_wide, 1)
    check(proto[:, ::2], coef[::2], boxes[::2], 1)  # strided slices


def test_empty():
    gen = torch.Generator().manual_seed(0)
    proto, coef, boxes = make_inputs(gen, 0, 4, 4, 8)
    check(proto, coef, boxes, 1)
    check(proto, coef, None, 1)


@pytest.mark.parametrize("height, width", [(0, 5), (4, 0)])
def test_empty_prototype_plane(height, width):
    # The reference cannot take Hp = 0 or Wp = 0 (its `view(-1, Hp, Wp)` of 0 elements is
    # ambiguous); the launcher returns the [N, Hp, Wp] of the fake kernel.
    gen = torch.Generator().manual_seed(0)
    proto, coef, boxes = make_inputs(gen, 3, height, width, 8)
    for crop in (boxes, None):
        masks = assemble_masks_triton(proto, coef, crop, 1)
        assert masks.shape == (3, height, width) and masks.dtype == proto.dtype


def test_output_like_fake_kernel():
    gen = torch.Generator().manual_seed(1)
    proto, coef, boxes = make_inputs(gen, 3, 5, 6, 16, torch.float16)
    masks = assemble_masks_triton(proto, coef, boxes, 1)
    with FakeTensorMode() as mode:
        fake = torch.ops.segros.assemble_masks(
            mode.from_tensor(proto), mode.from_tensor(coef), mode.from_tensor(boxes), 1
        )
    assert (masks.shape, masks.dtype, masks.device) == (fake.shape, fake.dtype, fake.device)


def test_rejects_what_the_fake_kernel_rejects():
    with pytest.raises(RuntimeError, match="prototypes"):
        assemble_masks_triton(torch.zeros(4, 4, 8), torch.zeros(2, 7), None, 1)
