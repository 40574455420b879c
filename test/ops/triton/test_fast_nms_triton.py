"""Triton Fast NMS (interpreted) against `fast_nms_reference`: exact equality."""

import math

import pytest
import torch
from torch._subclasses.fake_tensor import FakeTensorMode

from segmentation_ros.ops.fast_nms import box_iou, fast_nms_reference
from segmentation_ros.ops.triton.fast_nms import BLOCK_J, fast_nms_triton

# 0 / 0 IoUs of degenerate boxes are intended (NaN, as in the reference).
pytestmark = pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")


def random_boxes(gen, shape, dtype=torch.float32):
    """Boxes with continuous coordinates (so IoUs round), many overlaps, a few degenerate
    ones (zero width, zero area, inverted) and a repeated point box (NaN IoU with itself)."""
    xy = torch.rand(*shape, 2, generator=gen) * 0.7
    wh = torch.rand(*shape, 2, generator=gen) * 0.4
    boxes = torch.cat([xy, xy + wh], dim=-1)
    if shape[-1] >= 6:
        boxes[..., 1, 2] = boxes[..., 1, 0]  # zero width
        boxes[..., 3, :] = 0.25  # a point
        boxes[..., 4, :] = 0.25  # the same point: IoU 0 / 0
        boxes[..., 5, 2:] = boxes[..., 5, :2] - 0.1  # inverted
    return boxes.to(dtype)


def sorted_scores(gen, shape, dtype=torch.float32):
    return torch.rand(shape, generator=gen).sort(dim=-1, descending=True).values.to(dtype)


def check(boxes, scores, iou_threshold, score_threshold):
    keep = fast_nms_triton(boxes, scores, iou_threshold, score_threshold)
    expected = fast_nms_reference(boxes, scores, iou_threshold, score_threshold)
    assert keep.dtype == torch.bool and keep.shape == expected.shape
    assert torch.equal(keep, expected)
    return keep


@pytest.mark.parametrize("score_threshold", [-math.inf, 0.3])
@pytest.mark.parametrize("shape", [(1, 1), (3, 12), (2, BLOCK_J + 6)])
def test_matches_reference(shape, score_threshold):
    gen = torch.Generator().manual_seed(shape[1])
    boxes, scores = random_boxes(gen, shape), sorted_scores(gen, shape)
    check(boxes, scores, 0.5, score_threshold)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_dtypes(dtype):
    gen = torch.Generator().manual_seed(7)
    boxes, scores = random_boxes(gen, (2, 20), dtype), sorted_scores(gen, (2, 20), dtype)
    for threshold in (0.3, 0.5, 0.7):
        check(boxes, scores, threshold, 0.2)
    check(boxes, scores.float(), 0.5, 0.2)  # scores may have another dtype


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_bit_exact_at_iou_boundaries(dtype):
    # Thresholds equal to IoUs the reference computes: one ulp off anywhere flips a box.
    gen = torch.Generator().manual_seed(11)
    boxes, scores = random_boxes(gen, (1, 24), dtype), sorted_scores(gen, (1, 24))
    iou = box_iou(boxes, boxes)[0].triu(diagonal=1)
    values = iou[iou > 0].unique()
    assert values.numel() > 20
    for threshold in values[:: max(1, values.numel() // 12)].tolist():
        check(boxes, scores, threshold, -math.inf)


def test_degenerate_boxes_nan_suppresses():
    boxes = torch.tensor([[[0.2, 0.2, 0.2, 0.2], [0.2, 0.2, 0.2, 0.2], [0.0, 0.0, 0.5, 0.5]]])
    scores = torch.tensor([[0.9, 0.8, 0.7]])
    keep = check(boxes, scores, 0.5, -math.inf)
    assert keep.tolist() == [[True, False, True]]  # IoU(0, 1) = 0 / 0 = NaN -> suppressed


def test_minus_inf_padding():
    gen = torch.Generator().manual_seed(3)
    boxes = torch.cat([random_boxes(gen, (2, 7)), torch.zeros(2, 3, 4)], dim=1)
    scores = torch.cat([sorted_scores(gen, (2, 7)), torch.full((2, 3), -math.inf)], dim=1)
    keep = check(boxes, scores, 0.5, 0.0)
    assert not keep[:, 7:].any()


def test_non_contiguous():
    gen = torch.Generator().manual_seed(5)
    boxes = random_boxes(gen, (9, 3)).transpose(0, 1)  # [3, 9, 4] with swapped strides
    scores = sorted_scores(gen, (3, 18))[:, ::2]
    assert not boxes.is_contiguous() and not scores.is_contiguous()
    check(boxes, scores, 0.5, 0.1)
    record = torch.zeros(2, 9, 8)  # boxes as 4 of the 8 fields of a wider record
    record[..., 2:6] = random_boxes(gen, (2, 9))
    check(record[..., 2:6], sorted_scores(gen, (2, 9)), 0.4, -math.inf)


@pytest.mark.parametrize("shape", [(0, 0), (0, 5), (4, 0)])
def test_empty(shape):
    check(torch.zeros(*shape, 4), torch.zeros(shape), 0.5, -math.inf)


def test_output_like_fake_kernel():
    gen = torch.Generator().manual_seed(1)
    boxes, scores = random_boxes(gen, (3, 10)), sorted_scores(gen, (3, 10))
    keep = fast_nms_triton(boxes, scores, 0.5, 0.0)
    with FakeTensorMode() as mode:
        fake = torch.ops.segros.fast_nms(
            mode.from_tensor(boxes), mode.from_tensor(scores), 0.5, 0.0
        )
    assert (keep.shape, keep.dtype, keep.device) == (fake.shape, fake.dtype, fake.device)


def test_rejects_what_the_fake_kernel_rejects():
    with pytest.raises(RuntimeError, match="disagree"):
        fast_nms_triton(torch.zeros(2, 3, 4), torch.zeros(2, 4), 0.5, 0.0)
