"""UPSNet panoptic fusion on small hand-made tensors whose answer is worked out below."""

import pytest
import torch

from segmentation_ros.panoptic.fusion import fuse_instances, panoptic_fusion
from segmentation_ros.structures import Instances

S = 2  # stuff s0, s1; things t0, t1 -> semantic channels [s0, s1, t0, t1]
NEG = float("-inf")


def _scene():
    """4 x 6 image, fusion at full resolution.

    Semantic logits X:
      s0 = 0 everywhere;  s1 = -1 on rows 0-1, 0.5 on rows 2-3
      t0 = 1 on rows 0-1 x cols 0-2, else -2
      t1 = 1 on rows 0-2 x cols 2-4, 3 at (3, 5), else -2
    Instance A: thing t0, box x [0, 3) y [0, 2), mask logit +2 inside.
    Instance B: thing t1, box x [2, 5) y [0, 3), mask logit +1 inside, -3 at (2, 4).
    """
    x = torch.zeros(4, 4, 6)
    x[1, :2] = -1.0
    x[1, 2:] = 0.5
    x[2] = -2.0
    x[2, 0:2, 0:3] = 1.0
    x[3] = -2.0
    x[3, 0:3, 2:5] = 1.0
    x[3, 3, 5] = 3.0
    boxes = torch.tensor([[0.0, 0.0, 3.0, 2.0], [2.0, 0.0, 5.0, 3.0]])
    classes = torch.tensor([0, 1])
    scores = torch.tensor([0.9, 0.8])
    y = torch.zeros(2, 4, 6)
    y[0, 0:2, 0:3] = 2.0
    y[1, 0:3, 2:5] = 1.0
    y[1, 2, 4] = -3.0
    return x, boxes, classes, scores, y


# Panoptic logits per pixel (stuff s0, s1 | A = t0 + 2 in box | B = t1 + Y_B in box | unknown
# U = max(t0, t1) - max(Xm_A, Xm_B), UPSNet Sec. 3.3: Xm_i = X[S + c_i] inside box_i, 0 outside.
# No pixel here lies in both boxes with a negative class logit, so the max is never below 0):
#   rows 0-1, cols 0-1: A = 3 beats s0 0, s1 -1, U = 1 - max(1, 0) = 0  -> A
#   rows 0-1, col 2:    A = 3 beats B = 2 (overlap), U = 1 - 1 = 0     -> A
#   rows 0-1, cols 3-4: B = 2, U = 1 - max(0, 1) = 0                   -> B
#   rows 0-1, col 5:    no box, U = -2 - 0; s0 0 > s1 -1               -> s0
#   row 2, cols 2-3:    B = 2                                          -> B
#   row 2, col 4:       B = 1 - 3 = -2 < U 0 < s1 0.5                  -> s1
#   rows 2-3 elsewhere: s1 0.5 > s0 0 > U -2                           -> s1
#   (3, 5):             no box, t1 = 3: U = 3 - 0 > s1 0.5             -> unknown (void)
# Segment ids: stuff first (s0 = 1, s1 = 2) then instances in input order (A = 3, B = 4).
EXPECTED = torch.tensor(
    [
        [3, 3, 3, 4, 4, 1],
        [3, 3, 3, 4, 4, 1],
        [2, 2, 4, 4, 2, 2],
        [2, 2, 2, 2, 2, 0],
    ],
    dtype=torch.int32,
)


def _fuse(x, boxes, classes, scores, y, **kw):
    kw = {"num_stuff": S, "image_size": (4, 6), "min_thing_area": 0, "min_stuff_area": 0} | kw
    return panoptic_fusion(x, boxes, classes, scores, y, **kw)


def test_hand_made_scene_with_unknown():
    res = _fuse(*_scene())
    assert res.id_map.dtype == torch.int32
    torch.testing.assert_close(res.id_map, EXPECTED)
    seg = res.segments
    assert seg.ids.tolist() == [1, 2, 3, 4]
    assert seg.category_ids.tolist() == [0, 1, 2, 3]  # s0, s1, S + 0, S + 1
    assert seg.is_thing.tolist() == [False, False, True, True]
    assert seg.areas.tolist() == [2, 9, 6, 6]
    x = _scene()[0]
    prob = torch.softmax(x, 0)
    torch.testing.assert_close(seg.scores[0], prob[0][EXPECTED == 1].mean())
    torch.testing.assert_close(seg.scores[1], prob[1][EXPECTED == 2].mean())
    torch.testing.assert_close(seg.scores[2:], torch.tensor([0.9, 0.8]))
    sem = res.semantic_map(void_label=255)
    assert sem[3, 5] == 255 and sem[0, 0] == 2 and sem[0, 4] == 3


def _one_detection_scene():
    """2 x 4 image, fusion at full resolution, S = 1 (s0), T = 2 (t0, t1): channels [s0, t0, t1].

    s0 = -0.5 everywhere; t0 = -1 everywhere; t1 = -3 except 0.5 at (0, 1).
    One detection A of class t0, box x [0, 3) y [0, 2) (cols 0-2); mask logit +2 at col 0, -2
    at cols 1-2. Its class logit is negative in its whole box, which no other box covers.
    """
    x = torch.stack([torch.full((2, 4), -0.5), torch.full((2, 4), -1.0), torch.full((2, 4), -3.0)])
    x[2, 0, 1] = 0.5
    y = torch.full((1, 2, 4), -2.0)
    y[0, :, 0] = 2.0
    return x, torch.tensor([[0.0, 0.0, 3.0, 2.0]]), torch.tensor([0]), torch.tensor([0.9]), y


# UPSNet (Sec. 3.3): Z_unknown = max(X_thing) - max(X_mask), X_mask_A = X[t0] in A's box, 0
# outside. A is the only instance, so inside its box max(X_mask) = X[t0] = -1 (no zero enters):
#   col 0:            A = -1 + 2 = 1 > s0 -0.5, U = max(-1, -3) - (-1) = 0       -> A
#   (0, 1):           A = -3, s0 -0.5, U = 0.5 - (-1) = 1.5                       -> void
#   (1, 1), col 2:    A = -3, s0 -0.5, U = -1 - (-1) = 0                           -> void
#   col 3 (outside):  X_mask_A = 0: U = -1 - 0 = -1 < s0 -0.5                     -> s0
# Segment ids: s0 = 1, A = 2. (Clamping max(X_mask) at 0 gives U = -1 inside the box and
# hands (1, 1) and col 2 to s0: [[2, 0, 1, 1], [2, 1, 1, 1]].)
EXPECTED_ONE_DETECTION = torch.tensor([[2, 0, 0, 1], [2, 0, 0, 1]], dtype=torch.int32)


@pytest.mark.parametrize("upsample", ["ids", "logits"])
def test_unknown_is_the_papers_where_one_box_covers_with_negative_class_logits(upsample):
    x, boxes, classes, scores, y = _one_detection_scene()
    res = panoptic_fusion(
        x,
        boxes,
        classes,
        scores,
        y,
        num_stuff=1,
        image_size=(2, 4),
        min_thing_area=0,
        min_stuff_area=0,
        upsample=upsample,
    )
    torch.testing.assert_close(res.id_map, EXPECTED_ONE_DETECTION)
    assert res.segments.category_ids.tolist() == [0, 1]  # s0, S + t0
    assert res.segments.areas.tolist() == [2, 2]


def test_without_unknown_the_missed_thing_pixel_goes_to_stuff():
    res = _fuse(*_scene(), unknown=False)
    expected = EXPECTED.clone()
    expected[3, 5] = 2  # s1 0.5 > s0 0
    torch.testing.assert_close(res.id_map, expected)
    assert res.segments.areas.tolist() == [2, 10, 6, 6]


def test_min_stuff_area_drops_small_stuff_to_void_and_renumbers():
    res = _fuse(*_scene(), min_stuff_area=3)  # s0 has 2 pixels
    expected = EXPECTED.clone()
    expected[EXPECTED == 1] = 0
    expected[EXPECTED > 1] -= 1
    torch.testing.assert_close(res.id_map, expected)
    assert res.segments.category_ids.tolist() == [1, 2, 3]


def test_min_thing_area_drops_small_instances():
    x, boxes, classes, scores, y = _scene()
    y[1, 0:2, 3:5] = -10.0  # B keeps only row 2, cols 2-3 (2 pixels); rows 0-1 go to U 0 vs s0 0
    res = _fuse(x, boxes, classes, scores, y, min_thing_area=3)
    # rows 0-1, cols 3-4: s0 = 0 ties with U = 0 -> the lower channel (stuff s0) wins.
    expected = EXPECTED.clone()
    expected[0:2, 3:5] = 1
    expected[2, 2:4] = 0  # B (2 pixels) dropped to void
    torch.testing.assert_close(res.id_map, expected)
    assert res.segments.category_ids.tolist() == [0, 1, 2]
    assert res.segments.areas.tolist() == [6, 9, 6]


def test_ids_upsampling_is_nearest_and_areas_count_image_pixels():
    x, boxes, classes, scores, y = _scene()
    res = _fuse(x, boxes * 2, classes, scores, y, image_size=(8, 12))
    expected = EXPECTED.repeat_interleave(2, 0).repeat_interleave(2, 1)
    torch.testing.assert_close(res.id_map, expected)
    assert res.segments.areas.tolist() == [8, 36, 24, 24]
    torch.testing.assert_close(res.segments.scores, _fuse(*_scene()).segments.scores)


def test_non_integer_scale_areas_match_the_id_map():
    x, boxes, classes, scores, y = _scene()
    scale = torch.tensor([7 / 6, 5 / 4, 7 / 6, 5 / 4])
    res = _fuse(x, boxes * scale, classes, scores, y, image_size=(5, 7))
    counts = torch.bincount(res.id_map.flatten().long(), minlength=5)
    assert res.segments.areas.tolist() == counts[res.segments.ids.long()].tolist()


def test_logits_mode_matches_ids_mode_at_fusion_resolution_and_crops_boxes():
    torch.testing.assert_close(_fuse(*_scene(), upsample="logits").id_map, EXPECTED)
    x, boxes, classes, scores, y = _scene()
    res = _fuse(x, boxes * 2, classes, scores, y, image_size=(8, 12), upsample="logits")
    assert res.id_map.shape == (8, 12) and res.id_map.dtype == torch.int32
    a = res.segments.ids[res.segments.category_ids == 2]
    assert bool((res.id_map[:, 6:] != a).all()) and bool((res.id_map[4:] != a).all())
    assert res.id_map[1, 1] == a and res.id_map[7, 0] == 2
    counts = torch.bincount(res.id_map.flatten().long(), minlength=5)
    assert res.segments.areas.tolist() == counts[res.segments.ids.long()].tolist()


def test_empty_instances_gives_stuff_and_unknown_only():
    x = _scene()[0]
    empty = (
        torch.zeros(0, 4),
        torch.zeros(0, dtype=torch.long),
        torch.zeros(0),
        torch.zeros(0, 4, 6),
    )
    res = _fuse(x, *empty)
    # Thing pixels of the semantic map: rows 0-1 x cols 0-4 (t = 1 > s0 0) and (3, 5) -> void.
    expected = torch.full((4, 6), 2, dtype=torch.int32)
    expected[0:2, 5] = 1
    expected[0:2, 0:5] = 0
    expected[2, 2:5] = 0  # t1 = 1 > s1 0.5
    expected[3, 5] = 0
    torch.testing.assert_close(res.id_map, expected)
    assert res.segments.is_thing.tolist() == [False, False]
    res = _fuse(x, *empty, unknown=False)
    assert not bool((res.id_map == 0).any())


def test_no_stuff_no_instances_no_unknown_is_all_void():
    x = torch.zeros(2, 3, 3)
    empty = (
        torch.zeros(0, 4),
        torch.zeros(0, dtype=torch.long),
        torch.zeros(0),
        torch.zeros(0, 3, 3),
    )
    res = panoptic_fusion(x, *empty, num_stuff=0, image_size=(3, 3), unknown=False)
    assert res.id_map.shape == (3, 3) and not bool(res.id_map.any()) and len(res.segments) == 0


def _instances(boxes, classes, scores, mask_probs, image_size=(4, 6)):
    return Instances(
        image_size=image_size,
        boxes=boxes,
        scores=scores,
        mask_scores=scores,
        classes=classes,
        mask_probs=mask_probs,
    )


def test_fuse_instances_converts_mask_probs_to_logits():
    x, boxes, classes, scores, y = _scene()
    inst = _instances(boxes, classes, scores, torch.sigmoid(y))
    res = fuse_instances(inst, x, num_stuff=S, min_thing_area=0, min_stuff_area=0)
    torch.testing.assert_close(res.id_map, EXPECTED)  # image size from the instances
    # Prototypes at another resolution are resampled to the fusion frame.
    big = torch.sigmoid(y).repeat_interleave(2, 1).repeat_interleave(2, 2)
    inst = _instances(boxes, classes, scores, big)
    res = fuse_instances(
        inst, x, num_stuff=S, image_size=(4, 6), min_thing_area=0, min_stuff_area=0
    )
    torch.testing.assert_close(res.id_map, EXPECTED)


def test_fusion_returns_the_detection_of_every_kept_instance():
    """A detection that wins no pixel is dropped; the kept ones say which detection they are.

    Detection 0 (C) is a t0 box on pixel (3, 0) with mask logit -8: its panoptic logit there is
    X[t0] - 8 = -10 < s1 0.5, so it owns no pixel and is dropped. C has A's class and score, so
    class and score alone cannot tell them apart. A and B are detections 1 and 2: the id map is
    EXPECTED (C does not change the unknown logit: at (3, 0) A's and B's zero padding keep
    max_i Xm_i at 0 > X[t0] = -2)."""
    x, boxes, classes, scores, y = _scene()
    boxes = torch.cat([torch.tensor([[0.0, 3.0, 1.0, 4.0]]), boxes])
    classes = torch.cat([torch.tensor([0]), classes])
    scores = torch.cat([torch.tensor([0.9]), scores])
    y = torch.cat([torch.full((1, 4, 6), -8.0), y])
    inst = Instances(
        image_size=(4, 6),
        boxes=boxes,
        scores=scores,
        mask_scores=torch.tensor([0.5, 0.7, 0.6]),
        classes=classes,
        mask_probs=torch.sigmoid(y),
    )
    res = fuse_instances(inst, x, num_stuff=S, min_thing_area=0, min_stuff_area=0)
    torch.testing.assert_close(res.id_map, EXPECTED)
    assert res.detections.tolist() == [-1, -1, 1, 2]  # s0, s1, A, B
    seg = res.segments
    torch.testing.assert_close(seg.boxes[2:], boxes[1:])
    torch.testing.assert_close(seg.mask_scores[2:], torch.tensor([0.7, 0.6]))
    assert torch.isnan(seg.boxes[:2]).all()  # stuff has no detection box
    # panoptic_fusion (no Instances) gives the same indices.
    direct = _fuse(x, boxes, classes, scores, torch.logit(torch.sigmoid(y), eps=1e-4))
    assert direct.detections.tolist() == [-1, -1, 1, 2]


def test_fuse_instances_empty():
    x = _scene()[0]
    res = fuse_instances(Instances.empty((8, 12)), x, num_stuff=S, min_stuff_area=0)
    assert res.id_map.shape == (8, 12)
    assert not bool(res.segments.is_thing.any())


@pytest.mark.parametrize(
    ("change", "error", "match"),
    [
        ({"y": torch.zeros(2, 4, 5)}, ValueError, "mask_logits must be"),
        ({"classes": torch.tensor([0, 2])}, ValueError, "thing class ids in"),
        ({"classes": torch.tensor([-1, 0])}, ValueError, "thing class ids in"),
        ({"classes": torch.tensor([0.0, 1.0])}, TypeError, "integer"),
        ({"x": torch.full((4, 4, 6), float("nan"))}, ValueError, "NaN"),
        ({"y": torch.full((2, 4, 6), float("nan"))}, ValueError, "NaN"),
        ({"x": torch.zeros(1, 4, 4, 6)}, ValueError, "semantic_logits must be"),
        ({"boxes": torch.zeros(2, 5)}, ValueError, "boxes must be"),
        ({"scores": torch.zeros(3)}, ValueError, "classes and scores"),
        ({"num_stuff": 5}, ValueError, "num_stuff"),
        ({"upsample": "bicubic"}, ValueError, "upsample"),
        ({"image_size": (0, 6)}, ValueError, "image_size"),
        ({"min_stuff_area": -1}, ValueError, "min_"),
    ],
)
def test_clear_errors(change, error, match):
    x, boxes, classes, scores, y = _scene()
    args = {"x": x, "boxes": boxes, "classes": classes, "scores": scores, "y": y}
    kw = {k: v for k, v in change.items() if k not in args}
    args |= {k: v for k, v in change.items() if k in args}
    with pytest.raises(error, match=match):
        _fuse(args["x"], args["boxes"], args["classes"], args["scores"], args["y"], **kw)


@pytest.mark.parametrize("image_size", [(97, 131), (60, 80), (30, 40), (20, 25)])
@pytest.mark.parametrize(("num_stuff", "unknown"), [(3, True), (3, False), (0, False)])
def test_fast_logits_upsampling_equals_full_interpolation(image_size, num_stuff, unknown):
    """The 'logits' mode interpolates only near coarse borders; it must equal the brute force."""
    from segmentation_ros.panoptic import fusion, fusion_upsample

    gen = torch.Generator().manual_seed(0)
    sem = torch.nn.functional.interpolate(
        torch.randn(1, 7, 6, 8, generator=gen) * 3, size=(30, 40), mode="bilinear"
    )[0]
    n = 6
    height, width = image_size
    xy = torch.rand(n, 2, generator=gen) * torch.tensor([width * 0.7, height * 0.7])
    boxes = torch.cat([xy, xy + torch.tensor([width * 0.3, height * 0.3])], 1)
    classes = torch.randint(0, 7 - num_stuff, (n,), generator=gen)
    y = torch.randn(n, 30, 40, generator=gen) * 2
    logits = fusion._panoptic_logits(sem, boxes, classes, y, num_stuff, image_size, unknown)
    fast = fusion_upsample.upsampled_argmax(logits, logits.argmax(0), boxes, num_stuff, image_size)
    ref = fusion_upsample.argmax_full_resolution(logits, boxes, num_stuff, n, image_size)
    torch.testing.assert_close(fast, ref)
