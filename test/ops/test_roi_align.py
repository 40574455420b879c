"""RoIAlign versus RoI pooling (Mask R-CNN, He et al. 2017, Sec. 3): RoIAlign samples the
feature map bilinearly at regularly spaced points of each bin, with no quantisation of the box or
the bins, so a sub-pixel shift of a box moves its features smoothly; RoI pooling rounds the box
and the bins to the pixel grid and jumps.

Checked against a slow reference written from that definition (plain Python loops, bilinear
interpolation) and against the exact values on a linear image: there bilinear interpolation is
exact and the mean of a bin's sample grid is the value at the bin's centre.
"""

import math

import pytest
import torch
from torchvision.ops import MultiScaleRoIAlign, roi_align, roi_pool

A, B, C = 0.75, -0.5, 3.0  # f(x, y) = A x + B y + C at pixel (column x, row y)
H, W = 24, 32


def linear_image() -> torch.Tensor:
    ys, xs = torch.meshgrid(torch.arange(H), torch.arange(W), indexing="ij")
    return (A * xs + B * ys + C).to(torch.float64)[None, None]


def bilinear(image: torch.Tensor, y: float, x: float) -> float:
    """Bilinear interpolation of a [H, W] map at (y, x) in pixel-index coordinates (value of
    pixel (i, j) at (i, j)); points outside [-1, H] x [-1, W] are 0 (Mask R-CNN's convention,
    as the reference implementations), coordinates in [-1, 0) clamp to 0."""
    h, w = image.shape
    if y < -1.0 or y > h or x < -1.0 or x > w:
        return 0.0
    y, x = max(y, 0.0), max(x, 0.0)
    y0, x0 = min(int(math.floor(y)), h - 1), min(int(math.floor(x)), w - 1)
    y1, x1 = min(y0 + 1, h - 1), min(x0 + 1, w - 1)
    y, x = (float(y0) if y0 == h - 1 else y), (float(x0) if x0 == w - 1 else x)
    ly, lx = y - y0, x - x0
    return (
        (1 - ly) * (1 - lx) * float(image[y0, x0])
        + (1 - ly) * lx * float(image[y0, x1])
        + ly * (1 - lx) * float(image[y1, x0])
        + ly * lx * float(image[y1, x1])
    )


def roi_align_reference(image, box, out_size, sampling_ratio, aligned):
    """RoIAlign of one box from its definition: the box in continuous coordinates (shifted by
    half a pixel when `aligned`), out_size x out_size bins, sampling_ratio^2 regularly spaced
    bilinear samples per bin, averaged."""
    offset = 0.5 if aligned else 0.0
    x1, y1, x2, y2 = (v - offset for v in box)
    bin_w, bin_h = (x2 - x1) / out_size, (y2 - y1) / out_size
    out = torch.zeros(out_size, out_size, dtype=torch.float64)
    for ph in range(out_size):
        for pw in range(out_size):
            total = 0.0
            for iy in range(sampling_ratio):
                for ix in range(sampling_ratio):
                    y = y1 + ph * bin_h + (iy + 0.5) * bin_h / sampling_ratio
                    x = x1 + pw * bin_w + (ix + 0.5) * bin_w / sampling_ratio
                    total += bilinear(image, y, x)
            out[ph, pw] = total / sampling_ratio**2
    return out


def exact_linear(box, out_size):
    """The RoIAlign (aligned) value of every bin on the linear image: f at the bin centre."""
    x1, y1, x2, y2 = box
    centres = (torch.arange(out_size, dtype=torch.float64) + 0.5) / out_size
    xs = x1 + centres * (x2 - x1) - 0.5
    ys = y1 + centres * (y2 - y1) - 0.5
    return A * xs[None, :] + B * ys[:, None] + C


@pytest.mark.parametrize("aligned", [True, False])
@pytest.mark.parametrize("box", [(4.3, 3.7, 17.9, 15.2), (10.0, 6.0, 12.5, 9.25)])
def test_roi_align_matches_the_definition(box, aligned):
    image = linear_image()
    rois = torch.tensor([[0.0, *box]], dtype=torch.float64)
    got = roi_align(
        image, rois, output_size=7, spatial_scale=1.0, sampling_ratio=2, aligned=aligned
    )
    expected = roi_align_reference(image[0, 0], box, 7, 2, aligned)
    torch.testing.assert_close(got[0, 0], expected, rtol=0, atol=1e-9)
    if aligned:  # interior box on a linear image: exactly f at each bin centre
        torch.testing.assert_close(got[0, 0], exact_linear(box, 7), rtol=0, atol=1e-9)


def test_sub_pixel_shifts_move_roi_align_smoothly_and_roi_pool_in_jumps():
    image = linear_image()
    base = torch.tensor([6.0, 5.0, 20.0, 16.0], dtype=torch.float64)
    shifts = torch.linspace(0.0, 0.9, 10, dtype=torch.float64)
    along_x = torch.tensor([1.0, 0.0, 1.0, 0.0], dtype=torch.float64)  # move right
    aligned_means, pooled = [], []
    for dx in shifts.tolist():
        rois = torch.cat(
            [torch.zeros(1, 1, dtype=torch.float64), (base + dx * along_x)[None]], dim=1
        )
        a = roi_align(image, rois, output_size=7, sampling_ratio=2, aligned=True)[0, 0]
        p = roi_pool(image.float(), rois.float(), output_size=7)[0, 0]
        torch.testing.assert_close(
            a, exact_linear((base + dx * along_x).tolist(), 7), rtol=0, atol=1e-9
        )
        aligned_means.append(float(a.mean()))
        pooled.append(p.double())
    # RoIAlign: every bin follows the box, linearly in the shift (slope A per pixel).
    steps = torch.diff(torch.tensor(aligned_means, dtype=torch.float64))
    torch.testing.assert_close(steps, torch.full_like(steps, A * 0.1), rtol=0, atol=1e-9)
    # RoI pooling: the box is rounded to whole pixels, so the output is frozen for shifts below
    # half a pixel and then jumps by a whole pixel's worth (A) at once.
    distinct = {tuple(p.flatten().tolist()) for p in pooled}
    assert len(distinct) == 2, distinct
    torch.testing.assert_close(pooled[0], pooled[4], rtol=0, atol=0)
    jump = (pooled[6] - pooled[4]).mean()
    assert abs(float(jump) - A) < 1e-6, float(jump)


def test_mask_rcnn_samples_rois_with_roi_align():
    """The family's box and mask heads pool with `MultiScaleRoIAlign` (torchvision's RoIAlign,
    bilinear sampling), never RoI pooling."""
    from segmentation_ros.models import build_model

    model = build_model("mask_rcnn_mobilenetv3")
    heads = model.detector.roi_heads
    assert isinstance(heads.box_roi_pool, MultiScaleRoIAlign)
    assert isinstance(heads.mask_roi_pool, MultiScaleRoIAlign)
    assert heads.mask_roi_pool.sampling_ratio == 2 and heads.mask_roi_pool.output_size == (14, 14)
