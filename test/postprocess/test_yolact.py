"""postprocess_yolact end to end: fast path == reference path, agreement with a transcription
of the official code, YOLACT++ rescoring, batches, empty inputs and input errors."""

import dataclasses

import pytest
import torch
import torch.nn.functional as F

from segmentation_ros.models.outputs import PanopticYolactOutputs, YolactOutputs
from segmentation_ros.postprocess import (
    YolactPostprocessParams,
    postprocess_yolact,
    postprocess_yolact_fast,
    postprocess_yolact_reference,
    reference_full_masks,
    reference_id_image,
)

# H + W > 128 keeps PyTorch on its generic bilinear kernel, whose results the region
# upsampling reproduces bit for bit (see segmentation_ros.ops.mask_assembly).
IMAGE = (96, 128)


def raw_outputs(seed=0, batch=1, anchors=400, classes=6, k=8, proto=(24, 32), objects=60):
    gen = torch.Generator().manual_seed(seed)
    priors = torch.cat(
        [torch.rand(anchors, 2, generator=gen), torch.rand(anchors, 2, generator=gen) * 0.4 + 0.05],
        dim=1,
    )
    conf = torch.randn(batch, anchors, classes + 1, generator=gen)
    conf[..., 0] += 3.0
    for b in range(batch):
        picks = torch.randperm(anchors, generator=gen)[:objects]
        cls = torch.randint(1, classes + 1, (objects,), generator=gen)
        conf[b, picks, cls] += 5.0
    outputs = YolactOutputs(
        loc=0.5 * torch.randn(batch, anchors, 4, generator=gen),
        conf=conf,
        coef=torch.tanh(torch.randn(batch, anchors, k, generator=gen)),
        proto=torch.relu(torch.randn(batch, *proto, k, generator=gen)) * 2,
    )
    return outputs, priors


def assert_same_instances(a, b):
    assert a.image_size == b.image_size and len(a) == len(b)
    for name in ("boxes", "scores", "mask_scores", "classes", "mask_probs"):
        assert torch.equal(getattr(a, name), getattr(b, name)), name


PARAMS = [
    YolactPostprocessParams(),
    YolactPostprocessParams(nms="cross_class"),
    YolactPostprocessParams(crop_masks=False, top_k=10, max_detections=15),
    YolactPostprocessParams(score_threshold=0.3, nms_threshold=0.3, mask_threshold=0.4),
]


@pytest.mark.parametrize("params", PARAMS, ids=["default", "cross", "nocrop", "strict"])
def test_fast_equals_reference(params):
    outputs, priors = raw_outputs(seed=1)
    (fast,) = postprocess_yolact(outputs, priors, image_size=IMAGE, params=params)
    (ref,) = postprocess_yolact(outputs, priors, image_size=IMAGE, params=params, path="reference")
    assert len(fast) > 5
    assert_same_instances(fast, ref)
    threshold = params.mask_threshold
    full = reference_full_masks(ref, threshold)
    assert torch.equal(fast.id_image(threshold), reference_id_image(ref, threshold))
    compact = fast.compact_masks(threshold)
    assert torch.equal(compact.areas, full.sum(dim=(1, 2)))
    for i, ((x, y, w, h), crop) in enumerate(zip(compact.rois.tolist(), compact.crops)):
        pasted = torch.zeros(IMAGE, dtype=torch.bool)
        pasted[y : y + h, x : x + w] = crop > 0
        assert torch.equal(pasted, full[i])


def test_named_paths():
    outputs, priors = raw_outputs(seed=2)
    (fast,) = postprocess_yolact_fast(outputs, priors, image_size=IMAGE)
    (ref,) = postprocess_yolact_reference(outputs, priors, image_size=IMAGE)
    assert_same_instances(fast, ref)


# -- a direct transcription of the official inference (Detect + output_utils.postprocess) --------


def official_postprocess(outputs, priors, h, w, conf_thresh=0.05, nms_thresh=0.5, top_k=200):
    loc, conf, coef, proto = outputs.loc[0], outputs.conf[0], outputs.coef[0], outputs.proto[0]
    conf = F.softmax(conf, -1)
    boxes = torch.cat(
        (
            priors[:, :2] + loc[:, :2] * 0.1 * priors[:, 2:],
            priors[:, 2:] * torch.exp(loc[:, 2:] * 0.2),
        ),
        1,
    )
    boxes[:, :2] -= boxes[:, 2:] / 2
    boxes[:, 2:] += boxes[:, :2]
    cur_scores = conf.t()[1:, :]
    conf_scores, _ = torch.max(cur_scores, dim=0)
    keep = conf_scores > conf_thresh
    scores, boxes, masks = cur_scores[:, keep], boxes[keep, :], coef[keep, :]
    scores, idx = scores.sort(1, descending=True)
    idx, scores = idx[:, :top_k].contiguous(), scores[:, :top_k]
    num_classes, num_dets = idx.size()
    boxes = boxes[idx.view(-1), :].view(num_classes, num_dets, 4)
    masks = masks[idx.view(-1), :].view(num_classes, num_dets, -1)
    max_xy = torch.min(boxes[:, :, None, 2:], boxes[:, None, :, 2:])
    min_xy = torch.max(boxes[:, :, None, :2], boxes[:, None, :, :2])
    inter = torch.clamp(max_xy - min_xy, min=0).prod(3)
    area = (boxes[:, :, 2] - boxes[:, :, 0]) * (boxes[:, :, 3] - boxes[:, :, 1])
    iou = inter / (area[:, :, None] + area[:, None, :] - inter)
    iou.triu_(diagonal=1)
    iou_max, _ = iou.max(dim=1)
    keep = (iou_max <= nms_thresh) & (scores > conf_thresh)  # second_threshold=True
    classes = torch.arange(num_classes)[:, None].expand_as(keep)[keep]
    boxes, masks, scores = boxes[keep], masks[keep], scores[keep]
    scores, idx = scores.sort(0, descending=True)
    idx, scores = idx[:100], scores[:100]
    classes, boxes, masks = classes[idx], boxes[idx], masks[idx]
    # output_utils.postprocess
    masks = torch.sigmoid(proto @ masks.t())
    ph, pw, n = masks.size()
    x1 = torch.clamp(torch.min(boxes[:, 0] * pw, boxes[:, 2] * pw) - 1, min=0)
    x2 = torch.clamp(torch.max(boxes[:, 0] * pw, boxes[:, 2] * pw) + 1, max=pw)
    y1 = torch.clamp(torch.min(boxes[:, 1] * ph, boxes[:, 3] * ph) - 1, min=0)
    y2 = torch.clamp(torch.max(boxes[:, 1] * ph, boxes[:, 3] * ph) + 1, max=ph)
    rows = torch.arange(pw, dtype=x1.dtype).view(1, -1, 1).expand(ph, pw, n)
    cols = torch.arange(ph, dtype=x1.dtype).view(-1, 1, 1).expand(ph, pw, n)
    crop = (rows >= x1) * (rows < x2) * (cols >= y1) * (cols < y2)
    masks = (masks * crop.float()).permute(2, 0, 1).contiguous()
    up = F.interpolate(masks.unsqueeze(0), (h, w), mode="bilinear", align_corners=False).squeeze(0)
    out = torch.empty_like(boxes)
    out[:, 0] = torch.clamp(torch.min(boxes[:, 0] * w, boxes[:, 2] * w), min=0)
    out[:, 2] = torch.clamp(torch.max(boxes[:, 0] * w, boxes[:, 2] * w), max=w)
    out[:, 1] = torch.clamp(torch.min(boxes[:, 1] * h, boxes[:, 3] * h), min=0)
    out[:, 3] = torch.clamp(torch.max(boxes[:, 1] * h, boxes[:, 3] * h), max=h)
    return classes, scores, out, masks, up


@pytest.mark.parametrize("seed", [3, 4])
def test_matches_official_transcription(seed):
    outputs, priors = raw_outputs(seed=seed)
    classes, scores, boxes, masks, up = official_postprocess(outputs, priors, *IMAGE)
    (inst,) = postprocess_yolact(outputs, priors, image_size=IMAGE)
    assert torch.equal(inst.classes, classes)
    assert torch.equal(inst.scores, scores) and torch.equal(inst.mask_scores, scores)
    # Boxes that overlap the image are the official ones (see boxes_to_image).
    inside = (boxes[:, 0] <= IMAGE[1]) & (boxes[:, 2] >= 0)
    inside &= (boxes[:, 1] <= IMAGE[0]) & (boxes[:, 3] >= 0)
    assert torch.equal(inst.boxes[inside], boxes[inside])
    assert torch.equal(inst.int_boxes()[inside], boxes[inside].long())
    # Masks: the matmul runs in another layout (last-bit differences allowed).
    torch.testing.assert_close(inst.mask_probs, masks, atol=1e-6, rtol=0)
    full = inst.full_masks()
    differ = full != (up > 0.5)
    assert not differ[(up - 0.5).abs() > 1e-5].any()


# -- YOLACT++ rescoring ----------------------------------------------------------------------


class FakeMaskIoU:
    """Stands in for the maskiou net: [N, 1, Hp, Wp] -> [N, C] (records its input)."""

    def __init__(self, classes):
        self.classes = classes
        self.seen = None

    def __call__(self, masks):
        self.seen = masks
        base = masks.mean(dim=(1, 2, 3))[:, None]
        return base + torch.arange(self.classes) / 10


@pytest.mark.parametrize("rescore_bbox", [False, True])
def test_mask_iou_rescoring(rescore_bbox):
    outputs, priors = raw_outputs(seed=5)
    params = YolactPostprocessParams(rescore_bbox=rescore_bbox)
    (plain,) = postprocess_yolact(outputs, priors, image_size=IMAGE, params=params)
    head = FakeMaskIoU(6)
    for path in ("fast", "reference"):
        (inst,) = postprocess_yolact(
            outputs, priors, image_size=IMAGE, params=params, mask_iou_head=head, path=path
        )
        assert torch.equal(head.seen, plain.mask_probs[:, None])
        predicted = head(plain.mask_probs[:, None])
        expected = plain.scores * predicted[torch.arange(len(plain)), plain.classes]
        assert torch.equal(inst.mask_scores, expected)
        assert torch.equal(inst.scores, expected if rescore_bbox else plain.scores)
        assert torch.equal(inst.classes, plain.classes)


def test_mask_iou_head_bad_output():
    outputs, priors = raw_outputs(seed=5)
    with pytest.raises(ValueError, match="mask_iou_head"):
        postprocess_yolact(
            outputs, priors, image_size=IMAGE, mask_iou_head=lambda m: m.new_zeros(len(m), 3)
        )


# -- batches, empty outputs, input checks ------------------------------------------------------


def test_batch_with_sizes_per_image():
    outputs, priors = raw_outputs(seed=6, batch=2)
    sizes = [IMAGE, (120, 90)]
    results = postprocess_yolact(outputs, priors, image_size=sizes)
    assert [r.image_size for r in results] == sizes
    for b in range(2):
        single = YolactOutputs(*(t[b : b + 1] for t in outputs))
        (alone,) = postprocess_yolact(single, priors, image_size=sizes[b])
        assert_same_instances(results[b], alone)
    assert results[1].boxes[:, 2].max() <= 90 and results[1].boxes[:, 3].max() <= 120


def test_panoptic_outputs_are_accepted():
    outputs, priors = raw_outputs(seed=7)
    panoptic = PanopticYolactOutputs(*outputs, semantic=torch.zeros(1, 3, 8, 8))
    (a,) = postprocess_yolact(panoptic, priors, image_size=IMAGE)
    (b,) = postprocess_yolact(outputs, priors, image_size=IMAGE)
    assert_same_instances(a, b)


@pytest.mark.parametrize("path", ["fast", "reference"])
@pytest.mark.parametrize("nms", ["fast", "cross_class"])
def test_nothing_detected(path, nms):
    outputs, priors = raw_outputs(seed=8)
    conf = outputs.conf.clone()
    conf[..., 0] = 50.0
    quiet = outputs._replace(conf=conf)
    params = YolactPostprocessParams(nms=nms)
    (inst,) = postprocess_yolact(quiet, priors, image_size=IMAGE, params=params, path=path)
    assert len(inst) == 0 and inst.mask_probs.shape == (0, 24, 32)
    assert torch.equal(inst.id_image(), torch.zeros(IMAGE, dtype=torch.int32))
    assert len(inst.compact_masks()) == 0


def test_zero_anchors():
    outputs, priors = raw_outputs(seed=8)
    empty = YolactOutputs(
        outputs.loc[:, :0], outputs.conf[:, :0], outputs.coef[:, :0], outputs.proto
    )
    for path in ("fast", "reference"):
        (inst,) = postprocess_yolact(empty, priors[:0], image_size=IMAGE, path=path)
        assert len(inst) == 0


def test_inputs_are_not_modified():
    outputs, priors = raw_outputs(seed=9)
    copies = [t.clone() for t in outputs], priors.clone()
    for path in ("fast", "reference"):
        postprocess_yolact(
            outputs, priors, image_size=IMAGE, path=path, mask_iou_head=FakeMaskIoU(6)
        )
    assert all(torch.equal(a, b) for a, b in zip(outputs, copies[0]))
    assert torch.equal(priors, copies[1])


def test_bad_inputs():
    outputs, priors = raw_outputs(seed=10)
    run = postprocess_yolact
    with pytest.raises(ValueError, match="priors must be"):
        run(outputs, priors[:-1], image_size=IMAGE)
    with pytest.raises(ValueError, match="conf must be"):
        run(outputs._replace(conf=outputs.conf[..., :1]), priors, image_size=IMAGE)
    with pytest.raises(ValueError, match="coef must be"):
        run(outputs._replace(coef=outputs.coef[..., :-1]), priors, image_size=IMAGE)
    with pytest.raises(ValueError, match="proto must be"):
        run(outputs._replace(proto=outputs.proto[0]), priors, image_size=IMAGE)
    with pytest.raises(ValueError, match="loc must be"):
        run(outputs._replace(loc=outputs.loc[..., :3]), priors, image_size=IMAGE)
    with pytest.raises(TypeError, match="loc, conf, coef and proto"):
        run({"loc": outputs.loc}, priors, image_size=IMAGE)
    with pytest.raises(TypeError, match="floating"):
        run(outputs._replace(conf=outputs.conf.long()), priors, image_size=IMAGE)
    with pytest.raises(ValueError, match="image sizes"):
        run(outputs, priors, image_size=[IMAGE, IMAGE])
    with pytest.raises(ValueError, match="image_size"):
        run(outputs, priors, image_size=(0, 10))
    with pytest.raises(ValueError, match="path"):
        run(outputs, priors, image_size=IMAGE, path="slow")
    with pytest.raises(TypeError, match="params"):
        run(outputs, priors, image_size=IMAGE, params={"top_k": 5})


def test_params_validation_and_from_config():
    with pytest.raises(ValueError, match="nms"):
        YolactPostprocessParams(nms="greedy")
    with pytest.raises(ValueError, match="score_threshold"):
        YolactPostprocessParams(score_threshold=1.0)
    with pytest.raises(ValueError, match="top_k"):
        YolactPostprocessParams(top_k=0)
    with pytest.raises(ValueError, match="mask_threshold"):
        YolactPostprocessParams(mask_threshold=0.0)

    @dataclasses.dataclass
    class Config:  # any object with some of the field names (e.g. the model config's)
        score_threshold: float = 0.2
        rescore_bbox: bool = True
        discard_mask_area: int = 25

    params = YolactPostprocessParams.from_config(Config(), top_k=50)
    assert params.score_threshold == 0.2 and params.rescore_bbox and params.top_k == 50
    assert params.nms_threshold == 0.5
