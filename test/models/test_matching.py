"""Prior matching and box encoding against a slow reference written from the official code
(loops over ground truths and priors)."""

import math

import numpy as np
import pytest
import torch

from segmentation_ros.models import get_config, make_priors, with_input_size
from segmentation_ros.models.matching import (
    box_iou,
    center_size,
    decode,
    encode,
    match_priors,
    point_form,
)
from segmentation_ros.postprocess.decode import decode_boxes

PRIORS = make_priors(with_input_size(get_config("yolact_mobilenetv3"), (64, 64)))


def _iou(a, b, over_a=False):
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    area_a = (a[2] - a[0]) * (a[3] - a[1])
    if over_a:
        return inter / area_a
    return inter / (area_a + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def reference_match(truths, labels, priors, crowd, pos, neg, crowd_thr):
    """The official `match`, element by element in float64 Python."""
    truths = truths.double().tolist()
    priors_l = priors.double().tolist()
    pboxes = [[cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2] for cx, cy, w, h in priors_l]
    n, a = len(truths), len(pboxes)
    overlaps = [[_iou(truths[j], pboxes[i]) for i in range(a)] for j in range(n)]
    best_overlap, best_idx = [], []
    for i in range(a):
        col = [overlaps[j][i] for j in range(n)]
        best_idx.append(max(range(n), key=lambda j: (col[j], -j)))
        best_overlap.append(col[best_idx[-1]])
    for j in range(n):
        i = max(range(a), key=lambda i: (overlaps[j][i], -i))
        for jj in range(n):
            overlaps[jj][i] = 0.0
        best_overlap[i] = 2.0
        best_idx[i] = j
    conf = []
    for i in range(a):
        c = int(labels[best_idx[i]]) + 1
        if best_overlap[i] < pos:
            c = -1
        if best_overlap[i] < neg:
            c = 0
        if crowd is not None and len(crowd) and c <= 0:
            cover = max(_iou(pboxes[i], cb, over_a=True) for cb in crowd.double().tolist())
            if cover > crowd_thr:
                c = -1
        conf.append(c)
    loc = []
    for i in range(a):
        g = truths[best_idx[i]]
        cx, cy, w, h = priors_l[i]
        loc.append(
            [
                ((g[0] + g[2]) / 2 - cx) / (0.1 * w),
                ((g[1] + g[3]) / 2 - cy) / (0.1 * h),
                math.log((g[2] - g[0]) / w) / 0.2,
                math.log((g[3] - g[1]) / h) / 0.2,
            ]
        )
    return torch.tensor(conf), torch.tensor(best_idx), torch.tensor(loc)


def _random_boxes(rng, n, lo=0.05, hi=0.6):
    xy = rng.uniform(0, 1 - hi, (n, 2))
    wh = rng.uniform(lo, hi, (n, 2))
    return torch.tensor(np.concatenate([xy, xy + wh], 1), dtype=torch.float32)


@pytest.mark.parametrize("seed", range(4))
def test_match_equals_the_slow_reference(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 7))
    truths = _random_boxes(rng, n)
    if seed == 3:  # two identical ground truths compete for the same best prior
        truths = torch.cat([truths, truths[:1]])
    labels = torch.tensor(rng.integers(0, 5, truths.shape[0]))
    crowd = _random_boxes(rng, 2, 0.2, 0.5) if seed % 2 else None
    got = match_priors(
        truths,
        labels,
        PRIORS,
        crowd_boxes=crowd,
        pos_threshold=0.5,
        neg_threshold=0.4,
        crowd_iou_threshold=0.7,
    )
    conf, idx, loc = reference_match(truths, labels, PRIORS, crowd, 0.5, 0.4, 0.7)
    torch.testing.assert_close(got.labels, conf)
    pos = conf > 0
    assert pos.sum() >= truths.shape[0]  # every ground truth has at least its best prior
    torch.testing.assert_close(got.gt_index[pos], idx[pos])
    torch.testing.assert_close(got.loc_target[pos], loc[pos].float(), rtol=1e-4, atol=1e-4)
    assert set(got.gt_index[pos].tolist()) == set(range(truths.shape[0]))
    if crowd is not None:
        assert (got.labels == -1).any()


def test_match_without_ground_truth():
    crowd = torch.tensor([[0.0, 0.0, 0.5, 0.5]])
    m = match_priors(torch.zeros(0, 4), torch.zeros(0, dtype=torch.int64), PRIORS)
    assert (m.labels == 0).all() and m.loc_target.shape == PRIORS.shape
    m = match_priors(
        torch.zeros(0, 4), torch.zeros(0, dtype=torch.int64), PRIORS, crowd_boxes=crowd
    )
    inside = (point_form(PRIORS)[:, 2] <= 0.5) & (point_form(PRIORS)[:, 3] <= 0.5)
    assert (m.labels[inside] == -1).all() and (m.labels >= -1).all() and not (m.labels > 0).any()


def test_encode_decode_round_trip():
    rng = np.random.default_rng(0)
    boxes = _random_boxes(rng, PRIORS.shape[0], 0.01, 0.9)
    loc = encode(boxes, PRIORS)
    torch.testing.assert_close(decode(loc, PRIORS), boxes, rtol=1e-5, atol=1e-5)
    # the inference decoder is the same inverse
    torch.testing.assert_close(decode_boxes(loc, PRIORS), boxes, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(center_size(point_form(PRIORS)), PRIORS, rtol=1e-6, atol=1e-6)
    # a box equal to its prior encodes to zeros
    torch.testing.assert_close(
        encode(point_form(PRIORS), PRIORS), torch.zeros_like(PRIORS), rtol=0, atol=1e-4
    )


def test_box_iou():
    a = torch.tensor([[0.0, 0.0, 2.0, 2.0]])
    b = torch.tensor([[1.0, 1.0, 3.0, 3.0], [5.0, 5.0, 6.0, 6.0], [0.0, 0.0, 1.0, 1.0]])
    torch.testing.assert_close(box_iou(a, b), torch.tensor([[1 / 7, 0.0, 0.25]]))
    torch.testing.assert_close(box_iou(a, b, over_a=True), torch.tensor([[0.25, 0.0, 0.25]]))
