"""PQ on hand-worked examples and against a slow per-segment reference (panopticapi's rules)."""

from collections import defaultdict

import numpy as np
import pytest

from segmentation_ros.panoptic.pq import (
    Category,
    PQAccumulator,
    SegmentsInfo,
    pq_single_image,
)

PERSON, CAR, ROAD, SKY, BIKE = 1, 2, 3, 4, 5
CATS = [
    Category(PERSON, "person", True),
    Category(CAR, "car", True),
    Category(ROAD, "road", False),
    Category(SKY, "sky", False),
    Category(BIKE, "bicycle", True),
]


def segs(*rows):
    """segs((id, category, iscrowd), ...) -> SegmentsInfo."""
    ids, cats, crowd = zip(*rows) if rows else ((), (), ())
    return SegmentsInfo(np.array(ids), np.array(cats), np.array(crowd, bool))


def grid(s: str) -> np.ndarray:
    """A 4x5 id map written as 4 rows of 5 digits."""
    return np.array([[int(c) for c in row] for row in s.split()], np.int32)


def per_class(result):
    return {c.category.id: c for c in result.per_class}


def test_perfect_prediction_is_pq_one():
    gt = grid("11222 11222 33333 33333")
    gt_segs = segs((1, PERSON, 0), (2, CAR, 0), (3, ROAD, 0))
    pred = gt * 10  # other ids, same regions
    pred_segs = segs((10, PERSON, 0), (20, CAR, 0), (30, ROAD, 0))
    r = pq_single_image(CATS, gt, gt_segs, pred, pred_segs)
    assert (r.all.pq, r.all.sq, r.all.rq, r.all.n) == (1.0, 1.0, 1.0, 3)
    assert (r.things.n, r.stuff.n) == (2, 1)
    assert r.num_images == 1


def test_thing_with_iou_six_tenths():
    # GT person: 10 px; predicted person: 6 of them, the other 4 predicted void.
    gt = grid("11111 11111 22222 22222")
    pred = grid("77777 70000 88888 88888")
    r = pq_single_image(
        CATS, gt, segs((1, PERSON, 0), (2, ROAD, 0)), pred, segs((7, PERSON, 0), (8, ROAD, 0))
    )
    person = per_class(r)[PERSON]
    assert (person.tp, person.fp, person.fn) == (1, 0, 0)
    assert person.sq == pytest.approx(0.6)
    assert person.rq == 1.0
    assert person.pq == pytest.approx(0.6)
    assert r.things.pq == pytest.approx(0.6) and r.stuff.pq == 1.0


def test_iou_exactly_half_is_not_a_match():
    # GT person 10 px, predicted person = 5 of them: IoU 5 / 10 = 0.5 -> FP + FN.
    gt = grid("11111 11111 22222 22222")
    pred = grid("77777 00000 88888 88888")
    r = pq_single_image(
        CATS, gt, segs((1, PERSON, 0), (2, ROAD, 0)), pred, segs((7, PERSON, 0), (8, ROAD, 0))
    )
    person = per_class(r)[PERSON]
    assert (person.tp, person.fp, person.fn) == (0, 1, 1)
    assert (person.pq, person.sq, person.rq) == (0.0, 0.0, 0.0)
    # One more predicted pixel on the person: 6 / 10 > 0.5 matches.
    pred[1, 0] = 7
    assert (
        per_class(
            pq_single_image(
                CATS,
                gt,
                segs((1, PERSON, 0), (2, ROAD, 0)),
                pred,
                segs((7, PERSON, 0), (8, ROAD, 0)),
            )
        )[PERSON].tp
        == 1
    )


def test_void_pixels_leave_the_union_and_turn_a_miss_into_a_match():
    # GT: person (1) 8 px, void (0) 6 px, road (2) 6 px.
    gt = grid("11110 11110 00002 22222")
    # Pred: person (7) = 5 GT-person px + the 6 void px = 11 px; road (8) = 3 GT-person px + road.
    pred = grid("77787 78877 77778 88888")
    # person: inter 5; plain union 8 + 11 - 5 = 14 -> IoU 5/14 = 0.36, no match;
    #         void removed: union 14 - 6 = 8 -> IoU 5/8 = 0.625, a match.
    # road:   GT 6 px, pred 9 px (3 on person), inter 6, no void: IoU 6/9.
    assert (gt == 1).sum() == 8 and (gt == 0).sum() == 6 and (pred == 7).sum() == 11
    assert ((gt == 1) & (pred == 7)).sum() == 5 and ((gt == 0) & (pred == 7)).sum() == 6
    r = pq_single_image(
        CATS, gt, segs((1, PERSON, 0), (2, ROAD, 0)), pred, segs((7, PERSON, 0), (8, ROAD, 0))
    )
    c = per_class(r)
    assert (c[PERSON].tp, c[PERSON].fp, c[PERSON].fn) == (1, 0, 0)
    assert c[PERSON].sq == pytest.approx(5 / 8)
    assert c[ROAD].sq == pytest.approx(6 / 9)
    assert r.all.pq == pytest.approx((5 / 8 + 6 / 9) / 2)


def test_prediction_mostly_on_void_is_not_a_false_positive():
    gt = grid("00000 00000 22222 22222")
    pred = grid("00777 00777 88888 88888")  # car on void only
    r = pq_single_image(CATS, gt, segs((2, ROAD, 0)), pred, segs((7, CAR, 0), (8, ROAD, 0)))
    assert per_class(r)[CAR].fp == 0 and not per_class(r)[CAR].counted


def test_prediction_mostly_on_same_category_crowd_is_not_a_false_positive():
    # GT: crowd of persons (1, iscrowd) 10 px, road (2) 10 px.
    gt = grid("11111 11111 22222 22222")
    # Pred person (7): 6 px on the crowd + 2 on road = 8 px, 6/8 > 0.5 on crowd -> ignored.
    pred = grid("77777 78888 77888 88888")
    gt_segs = segs((1, PERSON, 1), (2, ROAD, 0))
    pred_segs = segs((7, PERSON, 0), (8, ROAD, 0))
    r = pq_single_image(CATS, gt, gt_segs, pred, pred_segs)
    c = per_class(r)
    assert (c[PERSON].tp, c[PERSON].fp, c[PERSON].fn) == (0, 0, 0)  # crowd is never a FN either
    assert not c[PERSON].counted and r.things.n == 0
    # road: GT 10, pred 12 (4 on crowd), inter 8, crowd pixels stay in the union: 8 / 14.
    assert c[ROAD].tp == 1 and c[ROAD].sq == pytest.approx(8 / 14)

    # A crowd of another category does not excuse the prediction.
    r = pq_single_image(CATS, gt, segs((1, CAR, 1), (2, ROAD, 0)), pred, pred_segs)
    assert per_class(r)[PERSON].fp == 1 and per_class(r)[CAR].fn == 0

    # Exactly half on the crowd (4 of 8) is still a false positive.
    pred2 = grid("77770 77778 88888 88888")
    assert ((pred2 == 7) & (gt == 1)).sum() == 8
    pred2 = grid("77778 88888 77778 88888")  # 4 px on crowd, 4 on road
    r = pq_single_image(CATS, gt, gt_segs, pred2, pred_segs)
    assert per_class(r)[PERSON].fp == 1


def test_things_and_stuff_averages_skip_absent_categories():
    # person perfect (PQ 1), car missed (PQ 0), road IoU 0.6 (PQ 0.6), sky and bicycle absent.
    gt = grid("11222 11222 33333 33333")
    pred = grid("77000 77000 88888 80000")
    gt_segs = segs((1, PERSON, 0), (2, CAR, 0), (3, ROAD, 0))
    pred_segs = segs((7, PERSON, 0), (8, ROAD, 0))
    # road: GT 10 px, pred 6 px all on it -> IoU 6/10 = 0.6
    assert ((gt == 3) & (pred == 8)).sum() == 6 and (pred == 8).sum() == 6
    r = pq_single_image(CATS, gt, gt_segs, pred, pred_segs)
    c = per_class(r)
    assert c[CAR].fn == 1 and c[CAR].pq == 0.0 and c[CAR].counted
    assert not c[SKY].counted and not c[BIKE].counted
    assert r.things.n == 2 and r.things.pq == pytest.approx(0.5)
    assert r.things.sq == pytest.approx(0.5) and r.things.rq == pytest.approx(0.5)
    assert r.stuff.n == 1 and r.stuff.pq == pytest.approx(0.6) and r.stuff.sq == pytest.approx(0.6)
    assert r.all.n == 3 and r.all.pq == pytest.approx((1 + 0 + 0.6) / 3)
    assert r.summary()["Things"] == {"pq": r.things.pq, "sq": r.things.sq, "rq": 0.5, "n": 2}
    assert "bicycle" in r.format_per_class() and "Things" in r.format_summary()


def test_nothing_to_average_gives_zero_with_n_zero():
    gt = np.zeros((3, 3), np.int32)
    r = pq_single_image(CATS, gt, segs(), gt, segs())
    assert r.all.n == 0 and r.all.pq == 0.0


def test_accumulates_over_images():
    acc = PQAccumulator(CATS)
    gt = grid("11111 11111 22222 22222")
    acc.add(gt, segs((1, PERSON, 0), (2, ROAD, 0)), gt, segs((1, PERSON, 0), (2, ROAD, 0)))
    pred = grid("77777 70000 88888 88888")  # person IoU 0.6
    acc.add(gt, segs((1, PERSON, 0), (2, ROAD, 0)), pred, segs((7, PERSON, 0), (8, ROAD, 0)))
    person = per_class(acc.result())[PERSON]
    assert person.tp == 2 and person.sq == pytest.approx(0.8) and acc.result().num_images == 2


def test_void_category_in_ground_truth_acts_as_void():
    cats = [c for c in CATS if c.id != SKY]
    gt = grid("11110 11110 44444 22222")  # segment 4 has the 'void' category SKY
    pred = grid("77787 78877 77778 88888")
    gt_segs = segs((1, PERSON, 0), (2, ROAD, 0), (4, SKY, 0))
    acc = PQAccumulator(cats, void_category_ids=[SKY])
    acc.add(gt, gt_segs, pred, segs((7, PERSON, 0), (8, ROAD, 0)))
    c = per_class(acc.result())
    # person: GT 8 px; pred 11 px = 5 on person + 2 on void (0) + 4 on sky (void): union
    # 8 + 11 - 5 - 6 = 8 -> 5/8. With sky an ordinary category: 8 + 11 - 5 - 2 = 12 -> no match.
    assert c[PERSON].tp == 1 and c[PERSON].sq == pytest.approx(5 / 8)
    plain = pq_single_image(CATS, gt, gt_segs, pred, segs((7, PERSON, 0), (8, ROAD, 0)))
    assert per_class(plain)[PERSON].tp == 0 and per_class(plain)[SKY].fn == 1
    with pytest.raises(ValueError, match="also evaluated"):
        PQAccumulator(CATS, void_category_ids=[SKY])


def test_accepts_torch_result_segments_for_predictions():
    torch = pytest.importorskip("torch")
    from segmentation_ros.panoptic.result import Segments

    gt = grid("11222 11222 33333 33333")
    gt_segs = segs((1, PERSON, 0), (2, CAR, 0), (3, ROAD, 0))
    pred = Segments(
        ids=torch.tensor([1, 2, 3], dtype=torch.int32),
        class_ids=torch.tensor([PERSON, CAR, ROAD]),
        is_thing=torch.tensor([True, True, False]),
        areas=torch.tensor([4, 6, 10]),
        scores=torch.ones(3),
    )
    r = pq_single_image(CATS, gt, gt_segs, torch.from_numpy(gt), pred)
    assert r.all.pq == 1.0


def test_coco_dict_segments_are_accepted():
    gt = grid("11111 11111 22222 22222")
    info = [{"id": 1, "category_id": PERSON, "iscrowd": 0}, {"id": 2, "category_id": ROAD}]
    assert pq_single_image(CATS, gt, info, gt, info).all.pq == 1.0


@pytest.mark.parametrize(
    "gt_map, gt_segs, pred_map, pred_segs, message",
    [
        (
            np.ones((2, 3), int),
            segs((1, ROAD, 0)),
            np.ones((3, 2), int),
            segs((1, ROAD, 0)),
            "shape",
        ),
        (
            np.full((2, 2), 5),
            segs((1, ROAD, 0)),
            np.ones((2, 2), int),
            segs((1, ROAD, 0)),
            r"\[5\]",
        ),
        (
            np.ones((2, 2), int),
            segs((1, ROAD, 0)),
            np.full((2, 2), 9),
            segs((1, ROAD, 0)),
            r"\[9\]",
        ),
        (np.ones((2, 2), int), segs((1, 42, 0)), np.ones((2, 2), int), segs((1, ROAD, 0)), "42"),
        (np.ones((2, 2), int), segs((1, ROAD, 0)), np.ones((2, 2), int), segs((1, 42, 0)), "42"),
        (
            np.ones((2, 2), int),
            segs((1, ROAD, 0)),
            np.ones((2, 2), int),
            segs((1, ROAD, 0), (3, CAR, 0)),
            "no pixel",
        ),
        (np.ones((2, 2), int), segs((1, ROAD, 0)), -np.ones((2, 2), int), segs(), "negative"),
        (np.ones((2, 2, 1), int), segs((1, ROAD, 0)), np.ones((2, 2), int), segs(), r"\[H, W\]"),
    ],
)
def test_bad_inputs_raise_clear_errors(gt_map, gt_segs, pred_map, pred_segs, message):
    with pytest.raises(ValueError, match=message):
        pq_single_image(CATS, gt_map, gt_segs, pred_map, pred_segs)


def test_bad_segments_raise():
    with pytest.raises(ValueError, match="duplicate"):
        segs((1, ROAD, 0), (1, CAR, 0))
    with pytest.raises(ValueError, match=">= 1"):
        segs((0, ROAD, 0))
    with pytest.raises(TypeError, match="integer"):
        pq_single_image(CATS, np.ones((2, 2)), segs((1, ROAD, 0)), np.ones((2, 2)), segs())
    with pytest.raises(ValueError, match="crowd"):
        m = np.ones((2, 2), int)
        pq_single_image(CATS, m, segs((1, ROAD, 0)), m, segs((1, ROAD, 1)))


# ---------------------------------------------------------------- slow reference (per segment)


def reference_stats(categories, gt_map, gt_segs, pred_map, pred_segs):
    """panopticapi's algorithm with one boolean mask per segment (crowd = union per category)."""
    tp, fp, fn, iou_sum = defaultdict(int), defaultdict(int), defaultdict(int), defaultdict(float)
    gt_info = {
        int(i): (int(c), bool(k))
        for i, c, k in zip(gt_segs.ids, gt_segs.category_ids, gt_segs.iscrowd)
    }
    pred_info = {int(i): int(c) for i, c in zip(pred_segs.ids, pred_segs.category_ids)}
    void = gt_map == 0
    gt_masks = {i: gt_map == i for i in gt_info}
    pred_masks = {i: pred_map == i for i in pred_info}
    gt_matched, pred_matched = set(), set()
    for g, (gc, crowd) in gt_info.items():
        if crowd:
            continue
        for p, pc in pred_info.items():
            if pc != gc:
                continue
            inter = np.sum(gt_masks[g] & pred_masks[p])
            union = np.sum(gt_masks[g] | pred_masks[p]) - np.sum(pred_masks[p] & void)
            if inter / union > 0.5:
                tp[gc] += 1
                iou_sum[gc] += inter / union
                gt_matched.add(g)
                pred_matched.add(p)
    for g, (gc, crowd) in gt_info.items():
        if g not in gt_matched and not crowd:
            fn[gc] += 1
    for p, pc in pred_info.items():
        if p in pred_matched:
            continue
        crowd_region = np.zeros_like(void)
        for g, (gc, crowd) in gt_info.items():
            if crowd and gc == pc:
                crowd_region |= gt_masks[g]
        ignored = np.sum(pred_masks[p] & (void | crowd_region)) / np.sum(pred_masks[p])
        if ignored <= 0.5:
            fp[pc] += 1
    return tp, fp, fn, iou_sum


def random_image(rng, h=24, w=32):
    """Blocky GT with COCO-like 24-bit ids, void and crowd; a prediction that mostly follows it."""
    cat_ids = [c.id for c in CATS]
    n_gt = int(rng.integers(1, 12))
    gt_ids = rng.choice(np.arange(1, 256**3), n_gt, replace=False)
    labels = rng.integers(0, n_gt + 1, (h // 4, w // 4))  # 0 = void
    gt_map = np.where(labels > 0, gt_ids[np.maximum(labels - 1, 0)], 0).repeat(4, 0).repeat(4, 1)
    gt_cats = rng.choice(cat_ids, n_gt)
    gt_crowd = rng.random(n_gt) < 0.2
    gt_segs = SegmentsInfo(gt_ids, gt_cats, gt_crowd)
    present = np.isin(gt_ids, gt_map)
    gt_segs = gt_segs[present | (rng.random(n_gt) < 0.5)]  # some listed segments have no pixel

    # Prediction: shifted GT regions with noise, relabelled with small ids and some wrong classes.
    shifted = np.roll(gt_map, (int(rng.integers(-2, 3)), int(rng.integers(-2, 3))), (0, 1))
    noise = rng.random((h, w)) < 0.15
    shifted[noise] = rng.choice(np.concatenate([[0], gt_ids]), noise.sum())
    uniq = np.unique(shifted)
    uniq = uniq[uniq > 0]
    pred_ids = rng.permutation(np.arange(1, uniq.size + 1))
    lut = dict(zip(uniq.tolist(), pred_ids.tolist()))
    pred_map = np.vectorize(lambda v: lut.get(int(v), 0))(shifted).astype(np.int32)
    gt_cat_of = dict(zip(gt_ids.tolist(), gt_cats.tolist()))
    pred_cats = np.array([gt_cat_of[int(u)] for u in uniq], np.int64)
    flip = rng.random(uniq.size) < 0.2
    pred_cats[flip] = rng.choice(cat_ids, flip.sum())
    pred_segs = SegmentsInfo(np.array([lut[int(u)] for u in uniq]), pred_cats)
    return gt_map, gt_segs, pred_map, pred_segs


def test_matches_slow_reference_on_random_maps():
    rng = np.random.default_rng(0)
    acc = PQAccumulator(CATS)
    tp, fp, fn, iou = defaultdict(int), defaultdict(int), defaultdict(int), defaultdict(float)
    n_pred = 0
    for _ in range(50):
        image = random_image(rng)
        n_pred += len(image[3])
        s = acc.image_stats(*image)
        rtp, rfp, rfn, riou = reference_stats(CATS, *image)
        for i, c in enumerate(CATS):
            assert (s.tp[i], s.fp[i], s.fn[i]) == (rtp[c.id], rfp[c.id], rfn[c.id])
            assert s.iou[i] == pytest.approx(riou[c.id])
            tp[c.id] += rtp[c.id]
            fp[c.id] += rfp[c.id]
            fn[c.id] += rfn[c.id]
            iou[c.id] += riou[c.id]
        acc.add_stats(s)
    # The test goes through matches, false positives and predictions excused by void / crowd.
    assert sum(tp.values()) > 10 and sum(fp.values()) > 10
    assert n_pred - sum(tp.values()) - sum(fp.values()) > 10
    r = per_class(acc.result())
    for c in CATS:
        d = tp[c.id] + 0.5 * fp[c.id] + 0.5 * fn[c.id]
        assert r[c.id].pq == pytest.approx(iou[c.id] / d if d else 0.0)


def test_thousands_of_segments_use_a_sparse_count():
    # 1200 one-pixel segments: the dense (G+1) x (P+1) table would have 1.4 M bins > 1200 pixels.
    rng = np.random.default_rng(1)
    gt = np.arange(1, 1201).reshape(30, 40)
    cats = rng.choice([PERSON, CAR, ROAD], 1200)
    perm = rng.permutation(1200) + 1
    pred = perm[gt - 1]
    pred[:, :20] = 0  # left half predicted void: 600 FN
    kept = np.isin(perm, pred)
    acc = PQAccumulator(CATS)
    acc.add(
        gt,
        segs(*zip(gt.ravel(), cats, [0] * 1200)),
        pred,
        segs(*zip(perm[kept], cats[kept], [0] * 600)),
    )
    s = acc.stats
    assert s.tp.sum() == 600 and s.fn.sum() == 600 and s.fp.sum() == 0 and s.iou.sum() == 600
