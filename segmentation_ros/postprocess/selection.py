"""Which (anchor, class) pairs survive NMS: the dense official path and the sparse fast path.

All three functions take decoded boxes [A, 4] and class probabilities [A, C] (background
removed) of one image and return a `Selection` sorted by descending score, at most
`max_detections` long.

Ties: every sort here is stable, so equal scores keep anchor order (then class order). The
official code uses unstable sorts, whose order among exactly equal scores is unspecified; ours
is one of the orders it may produce, and it is the same in the dense and the sparse paths.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor

from ..ops.fast_nms import fast_nms
from .params import YolactPostprocessParams

__all__ = [
    "Selection",
    "candidate_anchors",
    "select_cross_class",
    "select_dense",
    "select_sparse",
]


class Selection(NamedTuple):
    """Kept detections: anchor [N] int64, class [N] int64 (0-based), score [N] float."""

    anchors: Tensor
    classes: Tensor
    scores: Tensor


def candidate_anchors(conf: Tensor, score_threshold: float) -> Tensor:
    """Anchors that may have a class probability > score_threshold, from the logits alone.

    conf: [A, C + 1] class logits (column 0 background). softmax_c <= e^l_c / (e^l_c + e^l_0),
    so p_c > t requires l_c - l_0 > log(t / (1 - t)); we test that (less a 1e-3 margin for
    rounding) and return the anchor indices [M] int64, ascending. The softmax of these rows
    alone equals their rows of the full softmax, so only they need computing.
    """
    if score_threshold <= 0.0:
        return torch.arange(conf.shape[0], device=conf.device)
    margin = math.log(score_threshold / (1.0 - score_threshold)) - 1e-3
    gap = conf[:, 1:].amax(dim=1) - conf[:, 0]
    return torch.nonzero(gap > margin).squeeze(1)


def _empty(scores: Tensor) -> Selection:
    index = torch.zeros(0, dtype=torch.int64, device=scores.device)
    return Selection(index, index.clone(), scores.new_zeros(0))


def _top_detections(
    anchors: Tensor, classes: Tensor, scores: Tensor, max_detections: int
) -> Selection:
    order = torch.sort(scores, descending=True, stable=True).indices[:max_detections]
    return Selection(anchors[order], classes[order], scores[order])


def select_dense(boxes: Tensor, scores: Tensor, params: YolactPostprocessParams) -> Selection:
    """Official per-class Fast NMS over all classes (`Detect.detect` + `Detect.fast_nms`).

    Candidates are the anchors whose best class is > score_threshold; every class ranks all
    candidates, keeps its top_k, and runs Fast NMS on them ([C, top_k] boxes). We add the
    second threshold (score > score_threshold) before the final top max_detections.
    """
    best = scores.amax(dim=1) if scores.shape[1] else scores.new_zeros(scores.shape[0])
    candidates = torch.nonzero(best > params.score_threshold).squeeze(1)
    if candidates.numel() == 0 or scores.shape[1] == 0:
        return _empty(scores)
    class_scores = scores[candidates].t()  # [C, M]
    sorted_scores, order = torch.sort(class_scores, dim=1, descending=True, stable=True)
    order = order[:, : params.top_k]
    sorted_scores = sorted_scores[:, : params.top_k]
    num_classes, depth = order.shape
    grouped = boxes[candidates][order.reshape(-1)].view(num_classes, depth, 4)
    keep = fast_nms(
        grouped,
        sorted_scores,
        iou_threshold=params.nms_threshold,
        score_threshold=params.score_threshold,
    )
    classes = torch.arange(num_classes, device=scores.device)[:, None].expand_as(keep)
    return _top_detections(
        candidates[order[keep]], classes[keep], sorted_scores[keep], params.max_detections
    )


def select_sparse(boxes: Tensor, scores: Tensor, params: YolactPostprocessParams) -> Selection:
    """Same result as `select_dense`, computed only on the pairs above the threshold.

    The pairs (anchor, class) with score > score_threshold are grouped by class, ranked by
    (score desc, anchor asc) - the order the dense path gives them -, cut to top_k per class,
    and packed into [G, D] for Fast NMS (G = classes present, D = the largest group, padding
    scores -inf). Pairs at or below the threshold, which the dense path also ranks, sort
    after all of these and can only suppress other such pairs, which the second threshold
    drops anyway, so the kept set is the same.
    """
    pair_anchor, pair_class = torch.nonzero(scores > params.score_threshold, as_tuple=True)
    if pair_anchor.numel() == 0:
        return _empty(scores)
    pair_score = scores[pair_anchor, pair_class]
    # Row-major nonzero gives anchor-ascending pairs; two stable sorts give
    # (class asc, score desc, anchor asc).
    order = torch.sort(pair_score, descending=True, stable=True).indices
    order = order[torch.sort(pair_class[order], stable=True).indices]
    pair_anchor, pair_class, pair_score = pair_anchor[order], pair_class[order], pair_score[order]

    num_classes = scores.shape[1]
    counts = torch.bincount(pair_class, minlength=num_classes)
    starts = torch.cumsum(counts, 0) - counts
    rank = torch.arange(pair_class.shape[0], device=scores.device) - starts[pair_class]
    within = rank < params.top_k
    pair_anchor, pair_class, pair_score, rank = (
        t[within] for t in (pair_anchor, pair_class, pair_score, rank)
    )
    present = counts > 0
    group = (torch.cumsum(present, 0) - 1)[pair_class]
    num_groups = int(present.sum())
    depth = min(int(counts.max()), params.top_k)

    packed_boxes = boxes.new_zeros((num_groups, depth, 4))
    packed_scores = scores.new_full((num_groups, depth), float("-inf"))
    packed_boxes[group, rank] = boxes[pair_anchor]
    packed_scores[group, rank] = pair_score
    keep = fast_nms(
        packed_boxes,
        packed_scores,
        iou_threshold=params.nms_threshold,
        score_threshold=params.score_threshold,
    )[group, rank]
    return _top_detections(
        pair_anchor[keep], pair_class[keep], pair_score[keep], params.max_detections
    )


def select_cross_class(boxes: Tensor, scores: Tensor, params: YolactPostprocessParams) -> Selection:
    """Official cross-class Fast NMS (`Detect.cc_fast_nms`): each candidate anchor takes its
    best class; the top_k anchors by that score run one Fast NMS regardless of class.
    The result is then cut to max_detections (the official code keeps up to top_k)."""
    if scores.shape[1] == 0:
        return _empty(scores)
    best, best_class = scores.max(dim=1)
    candidates = torch.nonzero(best > params.score_threshold).squeeze(1)
    if candidates.numel() == 0:
        return _empty(scores)
    cand_scores = best[candidates]
    order = torch.sort(cand_scores, descending=True, stable=True).indices[: params.top_k]
    anchors = candidates[order]
    keep = fast_nms(
        boxes[anchors][None],
        cand_scores[order][None],
        iou_threshold=params.nms_threshold,
        score_threshold=params.score_threshold,
    )[0]
    return _top_detections(
        anchors[keep], best_class[anchors[keep]], cand_scores[order][keep], params.max_detections
    )
