"""NMS selection: dense (official) and sparse (fast) paths against a slow transcription of the
official `Detect.detect` + `fast_nms` / `cc_fast_nms`."""

import pytest
import torch

from segmentation_ros.postprocess import (
    YolactPostprocessParams,
    candidate_anchors,
    class_softmax,
    select_cross_class,
    select_dense,
    select_sparse,
)


def slow_iou(a, b):
    iw = max(min(a[2], b[2]) - max(a[0], b[0]), 0.0)
    ih = max(min(a[3], b[3]) - max(a[1], b[1]), 0.0)
    inter = iw * ih
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def slow_official(boxes, scores, p, second_threshold=True):
    """Per-class Fast NMS as the official code, ties broken by anchor index."""
    num_classes = len(scores[0])
    candidates = [a for a, row in enumerate(scores) if max(row) > p.score_threshold]
    dets = []
    for c in range(num_classes):
        ranked = sorted(candidates, key=lambda a: (-scores[a][c], a))[: p.top_k]
        for j, a in enumerate(ranked):
            if any(slow_iou(boxes[ranked[i]], boxes[a]) > p.nms_threshold for i in range(j)):
                continue
            if second_threshold and not scores[a][c] > p.score_threshold:
                continue
            dets.append((a, c, scores[a][c]))
    dets = sorted(dets, key=lambda d: -d[2])[: p.max_detections]  # stable
    return [(a, c) for a, c, _ in dets], [s for _, _, s in dets]


def slow_cross_class(boxes, scores, p):
    best = [(max(row), row.index(max(row))) for row in scores]
    candidates = [a for a in range(len(scores)) if best[a][0] > p.score_threshold]
    ranked = sorted(candidates, key=lambda a: (-best[a][0], a))[: p.top_k]
    kept = [
        a
        for j, a in enumerate(ranked)
        if not any(slow_iou(boxes[ranked[i]], boxes[a]) > p.nms_threshold for i in range(j))
    ][: p.max_detections]
    return [(a, best[a][1]) for a in kept], [best[a][0] for a in kept]


def random_problem(seed, anchors=60, classes=4, cells=16, quantize=None):
    """Boxes on a 1/cells grid (a power of two: exact in float32, and every IoU is a ratio of
    small integers, never within rounding of a threshold) and softmax scores."""
    gen = torch.Generator().manual_seed(seed)
    xy = torch.randint(0, cells - 1, (anchors, 2), generator=gen)
    wh = torch.randint(1, cells // 2, (anchors, 2), generator=gen)
    boxes = torch.cat([xy, (xy + wh).clamp(max=cells)], dim=1).float() / cells
    logits = torch.randn(anchors, classes + 1, generator=gen) * 2
    logits[:, 0] += 1.5
    probs = class_softmax(logits)[:, 1:]
    if quantize:
        probs = (probs * quantize).round() / quantize  # many exact ties
    return boxes, probs, logits


def as_lists(selection):
    pairs = list(zip(selection.anchors.tolist(), selection.classes.tolist()))
    return pairs, selection.scores.tolist()


PARAMS = [
    YolactPostprocessParams(),
    YolactPostprocessParams(score_threshold=0.2, nms_threshold=0.3, top_k=5, max_detections=7),
    YolactPostprocessParams(score_threshold=0.01, nms_threshold=0.7, top_k=3, max_detections=100),
]


@pytest.mark.parametrize("params", PARAMS)
@pytest.mark.parametrize("seed", [0, 1])
def test_dense_and_sparse_match_slow_official(params, seed):
    boxes, probs, _ = random_problem(seed)
    expected_pairs, expected_scores = slow_official(boxes.tolist(), probs.tolist(), params)
    assert expected_pairs, "the problem should keep something"
    for select in (select_dense, select_sparse):
        pairs, scores = as_lists(select(boxes, probs, params))
        assert pairs == expected_pairs, select.__name__
        assert scores == pytest.approx(expected_scores, abs=0)


@pytest.mark.parametrize("params", PARAMS)
def test_second_threshold_is_official_filtered(params):
    """Ours == the official output (no second threshold) with score <= threshold removed."""
    boxes, probs, _ = random_problem(5, anchors=80)
    official_pairs, official_scores = slow_official(
        boxes.tolist(), probs.tolist(), params, second_threshold=False
    )
    filtered = [
        pair for pair, s in zip(official_pairs, official_scores) if s > params.score_threshold
    ]
    assert as_lists(select_sparse(boxes, probs, params))[0] == filtered


def test_sparse_equals_dense_with_ties():
    params = YolactPostprocessParams(score_threshold=0.1, top_k=4, max_detections=9)
    for seed in range(4):
        boxes, probs, _ = random_problem(seed, anchors=50, quantize=10)
        dense = select_dense(boxes, probs, params)
        sparse = select_sparse(boxes, probs, params)
        for a, b in zip(dense, sparse):
            assert torch.equal(a, b)
        assert as_lists(dense)[0] == slow_official(boxes.tolist(), probs.tolist(), params)[0]


@pytest.mark.parametrize("params", PARAMS)
def test_cross_class_matches_slow(params):
    boxes, probs, _ = random_problem(2)
    pairs, scores = as_lists(select_cross_class(boxes, probs, params))
    expected_pairs, expected_scores = slow_cross_class(boxes.tolist(), probs.tolist(), params)
    assert pairs == expected_pairs and scores == expected_scores


def test_candidate_anchors_keep_every_pair_above_threshold():
    for threshold in (0.05, 0.3, 0.0):
        _, probs, logits = random_problem(4, anchors=200)
        anchors = candidate_anchors(logits, threshold)
        needed = torch.nonzero((probs > threshold).any(dim=1)).squeeze(1)
        assert set(needed.tolist()) <= set(anchors.tolist())
        assert anchors.tolist() == sorted(anchors.tolist())
        # The softmax of the candidate rows alone is bit-identical to their full rows.
        assert torch.equal(class_softmax(logits[anchors]), class_softmax(logits)[anchors])


@pytest.mark.parametrize("classes", [5, 21, 81])
def test_softmax_of_row_subset_is_bit_identical(classes):
    gen = torch.Generator().manual_seed(classes)
    logits = torch.randn(1, 700, classes, generator=gen) * 3
    rows = torch.randperm(700, generator=gen)[:37].sort().values
    assert torch.equal(class_softmax(logits[0, rows]), class_softmax(logits)[0, rows])


@pytest.mark.parametrize("select", [select_dense, select_sparse, select_cross_class])
def test_nothing_above_threshold(select):
    boxes, probs, _ = random_problem(0)
    selection = select(boxes, probs * 0, YolactPostprocessParams())
    assert all(t.numel() == 0 for t in selection)
    assert selection.anchors.dtype == torch.int64 and selection.scores.dtype == torch.float32
    empty = select(boxes[:0], probs[:0], YolactPostprocessParams())
    assert all(t.numel() == 0 for t in empty)
