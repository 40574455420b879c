"""segros::fast_nms and box_iou against slow Python references (official Fast NMS semantics)."""

import math
import random

import pytest
import torch

from segmentation_ros.ops.fast_nms import box_iou, fast_nms, fast_nms_reference


def slow_iou(a, b):
    """IoU of two (x1, y1, x2, y2) boxes in Python floats."""
    iw = max(min(a[2], b[2]) - max(a[0], b[0]), 0.0)
    ih = max(min(a[3], b[3]) - max(a[1], b[1]), 0.0)
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union


def slow_fast_nms(boxes, scores, iou_threshold, score_threshold):
    """Official Fast NMS: j is dropped if ANY earlier box of its group (suppressed or not)
    overlaps it by more than the threshold; plus the optional second threshold."""
    keep = []
    for group_boxes, group_scores in zip(boxes, scores):
        row = []
        for j, box in enumerate(group_boxes):
            suppressed = any(slow_iou(group_boxes[i], box) > iou_threshold for i in range(j))
            row.append(not suppressed and group_scores[j] > score_threshold)
        keep.append(row)
    return keep


def grid_boxes(gen, shape, cells=64):
    """Boxes on a 1/cells grid: every IoU is a ratio of small integers, so float32 and
    float64 agree on which side of a threshold it lies."""
    xy = torch.randint(0, cells - 1, (*shape, 2), generator=gen)
    wh = torch.randint(1, cells // 2, (*shape, 2), generator=gen)
    boxes = torch.cat([xy, (xy + wh).clamp(max=cells)], dim=-1).float() / cells
    return boxes


def sorted_scores(gen, shape):
    return torch.rand(shape, generator=gen).sort(dim=-1, descending=True).values


def test_box_iou_matches_slow():
    gen = torch.Generator().manual_seed(0)
    a = grid_boxes(gen, (2, 7))
    b = grid_boxes(gen, (2, 5))
    iou = box_iou(a, b)
    assert iou.shape == (2, 7, 5)
    expected = torch.tensor(
        [[[slow_iou(x.tolist(), y.tolist()) for y in b[g]] for x in a[g]] for g in range(2)]
    )
    torch.testing.assert_close(iou, expected)


@pytest.mark.parametrize("score_threshold", [-math.inf, 0.3])
@pytest.mark.parametrize("shape", [(1, 1), (3, 12), (5, 40)])
def test_fast_nms_matches_slow(shape, score_threshold):
    gen = torch.Generator().manual_seed(shape[1])
    boxes = grid_boxes(gen, shape, cells=16)  # coarse grid: many overlaps
    scores = sorted_scores(gen, shape)
    keep = fast_nms(boxes, scores, iou_threshold=0.5, score_threshold=score_threshold)
    expected = slow_fast_nms(boxes.tolist(), scores.tolist(), 0.5, score_threshold)
    assert keep.dtype == torch.bool and keep.tolist() == expected


def test_suppressed_boxes_still_suppress():
    # a overlaps b (IoU 0.6), b overlaps c (IoU 0.6), a does not overlap c: greedy NMS keeps
    # a and c, the official Fast NMS keeps only a.
    boxes = torch.tensor([[[0.0, 0, 10, 1], [2.5, 0, 12.5, 1], [5.0, 0, 15, 1]]])
    scores = torch.tensor([[0.9, 0.8, 0.7]])
    assert slow_iou(boxes[0, 0].tolist(), boxes[0, 2].tolist()) < 0.5
    assert fast_nms(boxes, scores, iou_threshold=0.5).tolist() == [[True, False, False]]


def test_padding_with_minus_inf_is_inert():
    gen = torch.Generator().manual_seed(3)
    boxes = grid_boxes(gen, (1, 6), cells=16)
    scores = sorted_scores(gen, (1, 6))
    keep = fast_nms(boxes, scores, iou_threshold=0.5, score_threshold=0.0)
    padded_boxes = torch.cat([boxes, torch.zeros(1, 3, 4)], dim=1)
    padded_scores = torch.cat([scores, torch.full((1, 3), -math.inf)], dim=1)
    padded = fast_nms(padded_boxes, padded_scores, iou_threshold=0.5, score_threshold=0.0)
    assert padded[:, :6].tolist() == keep.tolist()
    assert not padded[:, 6:].any()


@pytest.mark.parametrize("shape", [(0, 0), (0, 5), (4, 0)])
def test_empty(shape):
    keep = fast_nms(torch.zeros(*shape, 4), torch.zeros(shape), iou_threshold=0.5)
    assert keep.shape == shape and keep.dtype == torch.bool


def test_bad_inputs():
    with pytest.raises(ValueError, match=r"\[G, D, 4\]"):
        fast_nms(torch.zeros(3, 4), torch.zeros(3))
    with pytest.raises(ValueError, match="scores must be"):
        fast_nms(torch.zeros(2, 3, 4), torch.zeros(2, 4))
    with pytest.raises(TypeError, match="floating"):
        fast_nms(torch.zeros(2, 3, 4, dtype=torch.int64), torch.zeros(2, 3))
    with pytest.raises(ValueError, match="iou_threshold"):
        fast_nms(torch.zeros(2, 3, 4), torch.zeros(2, 3), iou_threshold=1.5)


def test_op_is_registered_and_matches_reference():
    gen = torch.Generator().manual_seed(1)
    boxes = grid_boxes(gen, (2, 9), cells=16)
    scores = sorted_scores(gen, (2, 9))
    op = torch.ops.segros.fast_nms(boxes, scores, 0.5, 0.1)
    assert torch.equal(op, fast_nms_reference(boxes, scores, 0.5, 0.1))


@pytest.mark.parametrize("contiguous", [True, False])
def test_opcheck(contiguous):
    gen = torch.Generator().manual_seed(2)
    boxes = grid_boxes(gen, (3, 8))
    scores = sorted_scores(gen, (3, 8))
    if not contiguous:
        boxes = boxes.transpose(0, 1).contiguous().transpose(0, 1)
        scores = scores.t().contiguous().t()
    torch.library.opcheck(torch.ops.segros.fast_nms.default, (boxes, scores, 0.5, -math.inf))


def test_fake_kernel_shapes():
    from torch._subclasses.fake_tensor import FakeTensorMode

    with FakeTensorMode():
        keep = torch.ops.segros.fast_nms(torch.empty(4, 7, 4), torch.empty(4, 7), 0.5, 0.0)
        assert keep.shape == (4, 7) and keep.dtype == torch.bool
        with pytest.raises(RuntimeError, match="disagree"):
            torch.ops.segros.fast_nms(torch.empty(4, 7, 4), torch.empty(4, 6), 0.5, 0.0)


def test_random_slow_equivalence_many_seeds():
    rng = random.Random(0)
    for seed in range(5):
        gen = torch.Generator().manual_seed(seed)
        groups, depth = rng.randint(1, 4), rng.randint(1, 20)
        boxes = grid_boxes(gen, (groups, depth), cells=8)
        scores = sorted_scores(gen, (groups, depth))
        threshold = rng.choice([0.3, 0.5, 0.7])
        keep = fast_nms(boxes, scores, iou_threshold=threshold, score_threshold=0.2)
        assert keep.tolist() == slow_fast_nms(boxes.tolist(), scores.tolist(), threshold, 0.2)
