"""segros::assemble_masks, the official crop, and region-restricted upsampling (render_masks)."""

import math

import pytest
import torch
import torch.nn.functional as F

from segmentation_ros.ops.mask_assembly import (
    assemble_masks,
    assemble_masks_reference,
    bilinear_source_indices,
    crop_bounds,
    render_masks,
)


def slow_crop_inside(box, height, width, padding):
    """Official sanitize_coordinates(cast=False) + crop, one pixel at a time."""
    x1, x2 = sorted((box[0] * width, box[2] * width))
    y1, y2 = sorted((box[1] * height, box[3] * height))
    x1, x2 = max(x1 - padding, 0), min(x2 + padding, width)
    y1, y2 = max(y1 - padding, 0), min(y2 + padding, height)
    return [[x1 <= u < x2 and y1 <= v < y2 for u in range(width)] for v in range(height)]


def slow_assemble(proto, coef, boxes, padding):
    height, width, k = proto.shape
    out = torch.zeros(coef.shape[0], height, width, dtype=torch.float64)
    for n in range(coef.shape[0]):
        inside = (
            slow_crop_inside(boxes[n].tolist(), height, width, padding)
            if boxes is not None
            else None
        )
        for v in range(height):
            for u in range(width):
                if inside is None or inside[v][u]:
                    logit = sum(float(proto[v, u, i]) * float(coef[n, i]) for i in range(k))
                    out[n, v, u] = 1 / (1 + math.exp(-logit))
    return out


def random_inputs(seed, n=4, height=9, width=11, k=5):
    gen = torch.Generator().manual_seed(seed)
    proto = torch.relu(torch.randn(height, width, k, generator=gen))
    coef = torch.tanh(torch.randn(n, k, generator=gen))
    # Relative boxes on a 1/16 grid, some reversed, some beyond the image.
    corners = torch.randint(-4, 21, (n, 4), generator=gen).float() / 16
    return proto, coef, corners


@pytest.mark.parametrize("padding", [0, 1, 3])
def test_assemble_matches_slow(padding):
    proto, coef, boxes = random_inputs(padding)
    masks = assemble_masks(proto, coef, boxes, padding=padding)
    assert masks.shape == (4, 9, 11) and masks.dtype == torch.float32
    expected = slow_assemble(proto, coef, boxes, padding)
    torch.testing.assert_close(masks.double(), expected, atol=1e-6, rtol=0)
    assert torch.equal(masks == 0, expected == 0)  # exact zeros outside the crop


def test_assemble_without_crop():
    proto, coef, _ = random_inputs(7)
    masks = assemble_masks(proto, coef, None)
    torch.testing.assert_close(
        masks.double(), slow_assemble(proto, coef, None, 0), atol=1e-6, rtol=0
    )


def test_assemble_close_to_official_layout():
    """Official: sigmoid(proto @ coef^T) [Hp, Wp, N], crop, permute."""
    proto, coef, boxes = random_inputs(11, n=7, height=20, width=24, k=8)
    official = torch.sigmoid(proto @ coef.t()).permute(2, 0, 1)
    x1, x2, y1, y2 = crop_bounds(boxes, 20, 24, 1)
    cols = torch.arange(24.0)
    rows = torch.arange(20.0)
    inside = (
        (cols >= x1[:, None, None])
        & (cols < x2[:, None, None])
        & (rows[:, None] >= y1[:, None, None])
        & (rows[:, None] < y2[:, None, None])
    )
    official = official * inside.float()
    torch.testing.assert_close(assemble_masks(proto, coef, boxes), official, atol=1e-6, rtol=0)


def test_assemble_empty():
    proto = torch.rand(6, 7, 3)
    masks = assemble_masks(proto, torch.zeros(0, 3), torch.zeros(0, 4))
    assert masks.shape == (0, 6, 7) and masks.dtype == torch.float32


def test_assemble_bad_inputs():
    proto = torch.rand(6, 7, 3)
    with pytest.raises(ValueError, match=r"\[Hp, Wp, k\]"):
        assemble_masks(proto[0], torch.zeros(2, 3))
    with pytest.raises(ValueError, match="k=3"):
        assemble_masks(proto, torch.zeros(2, 4))
    with pytest.raises(ValueError, match="boxes must be"):
        assemble_masks(proto, torch.zeros(2, 3), torch.zeros(3, 4))
    with pytest.raises(TypeError, match="dtype"):
        assemble_masks(proto, torch.zeros(2, 3, dtype=torch.float64))


@pytest.mark.parametrize("with_boxes", [True, False])
def test_opcheck(with_boxes):
    proto, coef, boxes = random_inputs(5)
    args = (proto, coef, boxes if with_boxes else None, 1)
    torch.library.opcheck(torch.ops.segros.assemble_masks.default, args)
    assert torch.equal(torch.ops.segros.assemble_masks(*args), assemble_masks_reference(*args))


def test_fake_kernel_checks():
    from torch._subclasses.fake_tensor import FakeTensorMode

    with FakeTensorMode():
        out = torch.ops.segros.assemble_masks(torch.empty(6, 7, 3), torch.empty(5, 3), None, 1)
        assert out.shape == (5, 6, 7)
        with pytest.raises(RuntimeError, match="prototypes"):
            torch.ops.segros.assemble_masks(torch.empty(6, 7, 3), torch.empty(5, 4), None, 1)


# -- region-restricted upsampling ---------------------------------------------------------------


@pytest.mark.parametrize(("out_size", "in_size"), [(480, 138), (7, 3), (5, 5), (3, 8)])
def test_bilinear_source_indices_match_formula(out_size, in_size):
    i0, i1, w0, w1 = bilinear_source_indices(out_size, in_size)
    if out_size == in_size:  # PyTorch copies: each output reads its own input only
        assert i0.tolist() == i1.tolist() == list(range(out_size))
        assert w0.tolist() == [1.0] * out_size and w1.tolist() == [0.0] * out_size
        return
    for d in range(out_size):
        src = max((d + 0.5) * in_size / out_size - 0.5, 0.0)
        lo = min(int(math.floor(src)), in_size - 1)
        assert i0[d] == lo and i1[d] == min(lo + 1, in_size - 1)
        assert abs(float(w1[d]) - (src - lo)) < 1e-5
        assert abs(float(w0[d]) + float(w1[d]) - 1) < 1e-6


def paste(rendered, image_size):
    full = torch.zeros(len(rendered.crops), *image_size, dtype=torch.bool)
    for i, ((x, y, w, h), crop) in enumerate(zip(rendered.rois.tolist(), rendered.crops)):
        full[i, y : y + h, x : x + w] = crop
    return full


def cropped_masks(seed, n, proto_size, k=6):
    proto, coef, _ = random_inputs(seed, n=n, height=proto_size[0], width=proto_size[1], k=k)
    gen = torch.Generator().manual_seed(seed)
    centre = torch.rand(n, 2, generator=gen)
    size = torch.rand(n, 2, generator=gen) * 0.5 + 0.05
    boxes = torch.cat([centre - size / 2, centre + size / 2], dim=1)
    return assemble_masks(proto * 3, coef, boxes)


# Sizes with H + W > 128 so that PyTorch uses its generic bilinear kernel (see module doc).
@pytest.mark.parametrize(
    ("n", "proto_size", "image_size"),
    [(6, (20, 24), (120, 160)), (4, (30, 30), (97, 211)), (5, (16, 12), (200, 64))],
)
def test_render_equals_official_upsampling(n, proto_size, image_size):
    masks = cropped_masks(n, n, proto_size)
    official = F.interpolate(masks[None], image_size, mode="bilinear", align_corners=False)[0]
    for threshold in (0.5, 0.3):
        rendered = render_masks(masks, image_size, threshold)
        expected = official > threshold
        assert torch.equal(paste(rendered, image_size), expected)
        assert rendered.areas.tolist() == expected.sum(dim=(1, 2)).tolist()


def test_render_rois_tight_and_centroids():
    masks = cropped_masks(3, 5, (20, 24))
    image_size = (120, 160)
    rendered = render_masks(masks, image_size)
    full = paste(rendered, image_size)
    for i in range(5):
        ys, xs = torch.nonzero(full[i], as_tuple=True)
        if ys.numel() == 0:
            assert rendered.rois[i].tolist() == [0, 0, 0, 0]
            assert torch.isnan(rendered.centroids[i]).all()
            continue
        x0, y0, x1, y1 = int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1
        assert rendered.rois[i].tolist() == [x0, y0, x1 - x0, y1 - y0]
        expected = [xs.double().mean() + 0.5, ys.double().mean() + 0.5]
        torch.testing.assert_close(rendered.centroids[i].double(), torch.stack(expected))


def test_render_exactness_near_threshold():
    """Values built to land within float32 rounding of 0.5 after blending."""
    gen = torch.Generator().manual_seed(0)
    masks = (0.5 + (torch.rand(4, 16, 16, generator=gen) - 0.5) * 1e-6).float()
    image_size = (100, 90)
    official = F.interpolate(masks[None], image_size, mode="bilinear", align_corners=False)[0]
    rendered = render_masks(masks, image_size)
    assert torch.equal(paste(rendered, image_size), official > 0.5)


def test_render_uint8_crops_and_chunks():
    masks = cropped_masks(4, 9, (24, 24))
    small = render_masks(masks, (150, 140), chunk_pixels=64, uint8=True)
    big = render_masks(masks, (150, 140), chunk_pixels=1 << 20)
    assert torch.equal(small.rois, big.rois) and torch.equal(small.areas, big.areas)
    for a, b, u8 in zip(small.crops, big.crops, small.crops_u8):
        assert torch.equal(a, b)
        assert u8.dtype == torch.uint8 and torch.equal(u8, a.to(torch.uint8) * 255)


def test_render_empty_and_blank():
    empty = render_masks(torch.zeros(0, 8, 8), (50, 60))
    assert empty.rois.shape == (0, 4) and empty.areas.shape == (0,) and empty.crops == []
    blank = render_masks(torch.zeros(2, 8, 8), (50, 60))
    assert blank.rois.tolist() == [[0, 0, 0, 0]] * 2 and blank.areas.tolist() == [0, 0]
    assert [tuple(c.shape) for c in blank.crops] == [(0, 0), (0, 0)]
    assert torch.isnan(blank.centroids).all()


def test_render_bad_inputs():
    with pytest.raises(ValueError, match=r"\[N, Hp, Wp\]"):
        render_masks(torch.zeros(8, 8), (10, 10))
    with pytest.raises(ValueError, match="threshold"):
        render_masks(torch.zeros(1, 8, 8), (10, 10), 1.0)
    with pytest.raises(ValueError, match="image_size"):
        render_masks(torch.zeros(1, 8, 8), (0, 10))
