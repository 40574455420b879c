"""YOLACT losses: OHEM selection, the mask loss on hand-made cases and against the official
formula, the masks_to_train cap, crowd / empty images, mask IoU and semantic terms."""

import math

import pytest
import torch
import torch.nn.functional as F

from segmentation_ros.data.transforms import TrainTarget
from segmentation_ros.models import get_config, make_priors, with_input_size
from segmentation_ros.models.config import MaskIoUConfig
from segmentation_ros.models.losses import (
    LossConfig,
    Losses,
    LossWeights,
    class_loss,
    hard_negatives,
    mask_loss,
    mask_targets,
    semantic_term,
    yolact_losses,
)
from segmentation_ros.models.outputs import YolactOutputs
from segmentation_ros.models.pcv_losses import pcv_losses, pcv_targets
from segmentation_ros.models.yolact import FastMaskIoUNet

CONFIG = with_input_size(get_config("yolact_mobilenetv3"), (64, 64))
PRIORS = make_priors(CONFIG)


def _target(boxes, classes, iscrowd=None, size=(64, 64)):
    h, w = size
    boxes = torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4)
    n = boxes.shape[0]
    masks = torch.zeros(n, h, w, dtype=torch.bool)
    for i, (x1, y1, x2, y2) in enumerate(boxes.long().tolist()):
        masks[i, y1:y2, x1:x2] = True
    return TrainTarget(
        boxes=boxes,
        classes=torch.tensor(classes, dtype=torch.int64),
        masks=masks,
        iscrowd=torch.tensor(iscrowd or [False] * n, dtype=torch.bool),
        semantic=torch.zeros(h, w, dtype=torch.int64),
        id_map=torch.zeros(h, w, dtype=torch.int32),
        instance_ids=torch.arange(1, n + 1),
    )


def _outputs(batch=2, num_classes=3, k=4, hp=16, seed=0, requires_grad=True):
    g = torch.Generator().manual_seed(seed)
    a = PRIORS.shape[0]
    tensors = (
        torch.randn(batch, a, 4, generator=g) * 0.5,
        torch.randn(batch, a, num_classes + 1, generator=g),
        torch.tanh(torch.randn(batch, a, k, generator=g)),
        torch.rand(batch, hp, hp, k, generator=g),
    )
    return YolactOutputs(*(t.requires_grad_(requires_grad) for t in tensors))


def test_hard_negatives_pick_three_per_positive_by_background_loss():
    a = 12
    g = torch.Generator().manual_seed(0)
    v = torch.randperm(a, generator=g).float()  # background loss grows with v
    conf = torch.stack([torch.zeros(a), v, torch.full((a,), -30.0)], -1)
    labels = torch.zeros(a, dtype=torch.int64)
    labels[[0, 5]] = 1  # 2 positives -> 6 negatives
    labels[int(v.argmax())] = -1  # the hardest prior is neutral: never a negative
    neg = hard_negatives(conf[None], labels[None], 3)[0]
    candidates = [i for i in range(a) if labels[i] == 0]
    expected = sorted(candidates, key=lambda i: -float(v[i]))[:6]
    assert sorted(torch.nonzero(neg).squeeze(1).tolist()) == sorted(expected)
    # the class loss is the cross-entropy over exactly positives + those negatives
    keep = neg | (labels > 0)
    torch.testing.assert_close(
        class_loss(conf[None], labels[None]),
        F.cross_entropy(conf[keep], labels[keep], reduction="sum"),
    )


def test_hard_negatives_per_image_and_capped():
    conf = torch.randn(2, 5, 3)
    labels = torch.zeros(2, 5, dtype=torch.int64)
    labels[0, 0] = 2  # image 0: 1 positive -> 3 negatives; image 1: none -> no negative
    labels[1, :] = 0
    neg = hard_negatives(conf, labels, 3)
    assert neg[0].sum() == 3 and neg[1].sum() == 0 and not neg[0, 0]
    labels[0, :3] = 1  # 3 positives ask for 9 negatives: only 2 are left
    assert hard_negatives(conf, labels, 3)[0].sum() == 2


def test_mask_loss_hand_made_case():
    # 4 x 4 prototypes, one prototype of ones, coefficient 0: every probability is 0.5.
    proto = torch.ones(4, 4, 1)
    coef = torch.zeros(1, 1)
    gt = torch.zeros(1, 8, 8)
    gt[0, 2:6, 2:6] = 1  # -> prototype pixels (1..2, 1..2)
    box = torch.tensor([[0.25, 0.25, 0.75, 0.75]])  # 2 x 2 prototype pixels
    log2 = math.log(2)
    # padding 0: the crop is the 2 x 2 box: 4 pixels of BCE(0.5) = log 2, / box area 4 * 16
    loss, probs, target = mask_loss(proto, coef, gt, box, padding=0)
    torch.testing.assert_close(loss, torch.tensor(16 * log2))
    assert probs.sum() == 4 * 0.5 and target.sum() == 4
    # padding 1: the crop grows to the whole 4 x 4 map: 16 pixels of log 2
    loss, _, _ = mask_loss(proto, coef, gt, box, padding=1)
    torch.testing.assert_close(loss, torch.tensor(64 * log2))
    # a ground-truth pixel outside the crop costs 100 (PyTorch's BCE log clamp), as official
    gt[0, 0:2, 0:2] = 1
    loss, _, _ = mask_loss(proto, coef, gt, box, padding=0)
    torch.testing.assert_close(loss, torch.tensor((4 * log2 + 100) / 4 * 16))


def test_area_targets_keep_a_thin_stroke_that_the_official_target_drops():
    # A 1-pixel-wide vertical stroke in column 4 of an 8 x 8 mask, at a 2 x 2 prototype grid:
    # each prototype pixel covers a 4 x 4 block, so the stroke fills 4 / 16 of the two right
    # blocks (columns 4..7). Bilinear 4x downsampling (align_corners=False) samples the
    # midpoint of columns 1 / 2 and 5 / 6, so the official binarised target never sees it.
    gt = torch.zeros(1, 8, 8)
    gt[0, :, 4] = 1
    torch.testing.assert_close(mask_targets(gt, (2, 2), "binary"), torch.zeros(1, 2, 2))
    expected = torch.tensor([[[0.0, 0.25], [0.0, 0.25]]])
    torch.testing.assert_close(mask_targets(gt, (2, 2), "area"), expected)
    # A solid block is the same in both.
    block = torch.zeros(1, 8, 8)
    block[0, :4, :] = 1
    torch.testing.assert_close(mask_targets(block, (2, 2), "area"), mask_targets(block, (2, 2)))


def test_mask_loss_with_area_targets_is_bce_against_the_covered_fraction():
    # every probability 0.5 (coefficient 0): BCE(0.5, t) = log 2 whatever t; a probability p
    # on target t costs -(t log p + (1 - t) log(1 - p)).
    gt = torch.zeros(1, 8, 8)
    gt[0, :, 4] = 1  # 1 / 4 of the right prototype column (see the test above)
    box = torch.tensor([[0.0, 0.0, 1.0, 1.0]])
    proto = torch.ones(2, 2, 1)
    p = 0.8
    coef = torch.tensor([[math.log(p / (1 - p))]])
    loss, _, target = mask_loss(proto, coef, gt, box, padding=0, target_kind="area")
    right = -(0.25 * math.log(p) + 0.75 * math.log(1 - p))
    left = -math.log(1 - p)
    # summed over the 4 pixels, / box area 4, x 4 (the prototype area)
    torch.testing.assert_close(loss, torch.tensor(2 * right + 2 * left), rtol=1e-5, atol=1e-5)
    assert target.max() == 0.25
    with pytest.raises(ValueError, match="mask_target"):
        LossConfig(mask_target="soft")


def official_mask_loss(proto, coef, gt_masks, boxes, padding=1):
    """dbolya/yolact lincomb_mask_loss for one image (layout [h, w, n]), for comparison."""
    h, w, _ = proto.shape
    down = F.interpolate(gt_masks[None].float(), (h, w), mode="bilinear", align_corners=False)[0]
    mask_t = down.gt(0.5).float().permute(1, 2, 0)
    pred = torch.sigmoid(proto @ coef.t())
    x1 = torch.clamp(torch.min(boxes[:, 0], boxes[:, 2]) * w - padding, min=0)
    x2 = torch.clamp(torch.max(boxes[:, 0], boxes[:, 2]) * w + padding, max=w)
    y1 = torch.clamp(torch.min(boxes[:, 1], boxes[:, 3]) * h - padding, min=0)
    y2 = torch.clamp(torch.max(boxes[:, 1], boxes[:, 3]) * h + padding, max=h)
    cols = torch.arange(w).view(1, -1, 1).float()
    rows = torch.arange(h).view(-1, 1, 1).float()
    crop = (cols >= x1) & (cols < x2) & (rows >= y1) & (rows < y2)
    pred = pred * crop.float()
    pre = F.binary_cross_entropy(torch.clamp(pred, 0, 1), mask_t, reduction="none")
    bw = (boxes[:, 2] - boxes[:, 0]) * w
    bh = (boxes[:, 3] - boxes[:, 1]) * h
    return (pre.sum(dim=(0, 1)) / bw / bh * (h * w)).sum()


def test_mask_loss_equals_the_official_formula():
    g = torch.Generator().manual_seed(1)
    proto = torch.rand(16, 16, 8, generator=g)
    coef = torch.tanh(torch.randn(5, 8, generator=g))
    boxes = torch.tensor(
        [
            [0.1, 0.1, 0.5, 0.6],
            [0.3, 0.2, 0.9, 0.9],
            [0.0, 0.5, 0.3, 1.0],
            [0.6, 0.0, 1.0, 0.3],
            [0.2, 0.2, 0.8, 0.8],
        ]
    )
    masks = torch.zeros(5, 64, 64)
    for i, (x1, y1, x2, y2) in enumerate((boxes * 64).long().tolist()):
        masks[i, y1:y2, x1:x2] = torch.rand(y2 - y1, x2 - x1, generator=g) > 0.3
    ours, _, _ = mask_loss(proto, coef, masks, boxes)
    torch.testing.assert_close(
        ours, official_mask_loss(proto, coef, masks, boxes), rtol=1e-4, atol=1e-3
    )


def test_yolact_losses_are_finite_and_reach_every_output():
    targets = [
        _target([[4, 4, 30, 40], [30, 20, 60, 60]], [0, 2]),
        _target([[10, 10, 50, 30]], [1]),
    ]
    out = _outputs()
    losses = yolact_losses(out, PRIORS, targets)
    assert isinstance(losses, Losses) and losses.mask_iou is None and losses.semantic is None
    assert int(losses.num_positives) >= 3
    for name, value in losses.items():
        assert value.ndim == 0 and torch.isfinite(value) and value > 0, name
    losses.total.backward()
    for t in out:
        assert t.grad is not None and t.grad.abs().sum() > 0
    # weights scale their term linearly
    double = LossConfig(weights=LossWeights(box=3.0, cls=2.0, mask=12.25))
    again = yolact_losses(_outputs(), PRIORS, targets, double)
    torch.testing.assert_close(again.box, 2 * losses.box.detach())
    torch.testing.assert_close(again.cls, 2 * losses.cls.detach())
    torch.testing.assert_close(again.mask, 2 * losses.mask.detach())


def test_empty_and_crowd_only_images():
    targets = [_target([], []), _target([[0, 0, 64, 64]], [1], iscrowd=[True])]
    losses = yolact_losses(_outputs(), PRIORS, targets)
    assert int(losses.num_positives) == 0
    for _, value in losses.items():
        assert torch.isfinite(value) and value == 0
    losses.total.backward()  # still a graph


def test_masks_to_train_cap_rescales_the_loss():
    # One ground truth, zero coefficients: every positive has the same mask loss, so keeping 1
    # of them and scaling by (positives / 1) gives the full loss back.
    targets = [_target([[8, 8, 56, 56]], [0])]
    out = _outputs(batch=1)
    out = out._replace(coef=torch.zeros_like(out.coef))
    full = yolact_losses(out, PRIORS, targets)
    assert int(full.num_positives) > 1
    capped = yolact_losses(
        out,
        PRIORS,
        targets,
        LossConfig(masks_to_train=1),
        generator=torch.Generator().manual_seed(0),
    )
    torch.testing.assert_close(capped.mask, full.mask)


def test_mask_iou_term_trains_the_head():
    head = FastMaskIoUNet(MaskIoUConfig().layers, 3)
    targets = [_target([[4, 4, 40, 40]], [2]), _target([[20, 16, 60, 60]], [0])]
    out = _outputs(hp=72)
    losses = yolact_losses(
        out, PRIORS, targets, LossConfig(discard_mask_area=4), mask_iou_head=head
    )
    assert losses.mask_iou is not None and losses.mask_iou > 0
    losses.total.backward()
    assert all(p.grad is not None for p in head.parameters())
    # every mask too small: the term is zero, not missing
    small = yolact_losses(
        _outputs(hp=32), PRIORS, targets, LossConfig(discard_mask_area=10**6), mask_iou_head=head
    )
    assert small.mask_iou == 0


def test_semantic_term_ignores_void():
    logits = torch.zeros(1, 3, 4, 4)
    logits[0, 1] = 5.0
    target = _target([], [], size=(8, 8))
    target.semantic[:] = 1
    target.semantic[:4] = 255
    expected = -F.log_softmax(torch.tensor([0.0, 5.0, 0.0]), 0)[1]
    torch.testing.assert_close(semantic_term(logits, [target]), expected)


def test_bad_inputs():
    with pytest.raises(ValueError, match="priors"):
        yolact_losses(_outputs(), PRIORS[:-1], [_target([], [])] * 2)
    with pytest.raises(ValueError, match="targets for a batch"):
        yolact_losses(_outputs(), PRIORS, [_target([], [])])
    with pytest.raises(ValueError, match="thresholds"):
        LossConfig(pos_threshold=0.3, neg_threshold=0.4)
    with pytest.raises(ValueError, match="weight"):
        LossWeights(box=-1.0)


def test_pcv_targets_and_losses():
    from segmentation_ros.models.pcv import PCVOutputs
    from segmentation_ros.models.pcv_losses import vote_weight_mask
    from segmentation_ros.ops.pcv_voting import assign_vote_cells

    t = _target([[0, 0, 4, 4], [4, 4, 8, 8]], [0, 1], iscrowd=[False, True], size=(8, 8))
    t.id_map[:] = 3  # stuff segment
    t.id_map[:4, :4] = 1  # instance 1
    t.id_map[4:, 4:] = 2  # crowd instance 2
    t.id_map[1, 7] = 0  # void
    grid = pcv_targets([t], (4, 4))[0]  # nearest by pixel centres: source rows / cols 1, 3, 5, 7
    expected = torch.tensor([[1, 1, 0, -1], [1, 1, 0, 0], [0, 0, -1, -1], [0, 0, -1, -1]])
    torch.testing.assert_close(grid, expected)
    votes = torch.randn(1, 18, 4, 4, requires_grad=True)
    semantic = torch.randn(1, 5, 4, 4, requires_grad=True)
    losses = pcv_losses(PCVOutputs(votes, semantic), [t])
    assert losses.box is None and losses.pcv > 0 and losses.semantic > 0
    losses.total.backward()
    assert votes.grad.abs().sum() > 0 and semantic.grad.abs().sum() > 0
    # the reference's WeightMask (w-hc/pcv gt_producer.py, power 0.5): 1 / sqrt(segment area)
    # on the grid, 0 on void and crowd; the vote loss is sum(w * ce) / sum(w) ("total")
    a, b = 4**-0.5, 7**-0.5  # instance 1: 4 grid pixels; the stuff segment: 7
    weights = torch.tensor([[a, a, b, 0], [a, a, b, b], [b, b, 0, 0], [b, b, 0, 0]])
    torch.testing.assert_close(vote_weight_mask([t], (4, 4))[0], weights)
    cells = assign_vote_cells(grid)
    ce = F.cross_entropy(votes.detach(), cells.clamp(min=0)[None], reduction="none")[0]
    expected_loss = (ce * weights).sum() / weights.sum()
    torch.testing.assert_close(losses.pcv.detach(), expected_loss)
