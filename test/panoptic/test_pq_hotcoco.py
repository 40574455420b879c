"""PQ of COCO-panoptic files against an independent implementation: hotcoco's `pq_compute`
(panopticapi's protocol and return shape, a kept PyPI library), per class, TP / FP / FN included.

The data set has what the protocol is about: crowd regions (predictions on them ignored), void
pixels (left out of the union; predictions mostly on void ignored), unmatched predictions and
ground truth, a category only predicted, one never seen, IoU exactly 0.5 (no match) and just
above it with void, 24-bit ground-truth ids and small prediction ids. Enough images (26) that
`evaluate_pq_files` runs its worker processes as well as in this process.
"""

import json
from pathlib import Path

import numpy as np
import pytest

from segmentation_ros.panoptic.coco_io import coco_segments_info, write_id_png
from segmentation_ros.panoptic.pq import Category
from segmentation_ros.panoptic.pq_files import evaluate_pq_files

hotcoco_panoptic = pytest.importorskip("hotcoco.panoptic")

CATS = (
    Category(1, "person", True),
    Category(2, "car", True),
    Category(3, "road", False),
    Category(4, "sky", False),
    Category(5, "tree", False),
    Category(6, "bike", True),  # only ever predicted: false positives only
    Category(9, "boat", True),  # never seen: left out of every average
)
H, W = 48, 64


def designed_images():
    """Two 20x20 images worked by hand: (gt map, gt crowd ids, pred map, pred categories)."""
    s, p1, r = 0x10A0B0, 0x0000FF, 0xC0FFEE  # 24-bit ground-truth ids
    gt = np.zeros((20, 20), np.int64)
    gt[0:5] = s  # sky, 100 px
    gt[5:10, 0:10] = p1  # person, 50 px
    gt[10:20] = r  # road, 200 px; rows 5-9 cols 10-19 stay void
    pred = np.zeros((20, 20), np.int64)
    pred[0:2] = 3  # tree on sky: unmatched, a false positive
    pred[2:5] = 2  # sky: 60 px on gt sky ...
    pred[5:10, 10:20] = 2  # ... + 50 on void: IoU 60 / (100 + 110 - 60 - 50) = 0.6
    pred[5:8, 0:10] = 1  # person: 30 px on gt person ...
    pred[10, 0:10] = 1  # ... + 10 on road: IoU 30 / (50 + 40 - 30) = 0.5 exactly, no match
    pred[8:10, 0:10] = 4  # road: the rest
    pred[10, 10:20] = 4
    pred[11:20] = 4
    first = (gt, {s: 4, p1: 1, r: 3}, set(), pred, {1: 1, 2: 4, 3: 5, 4: 3})

    c, r2 = 0xABCDEF, 0x123456
    gt = np.zeros((20, 20), np.int64)
    gt[0:10] = c  # a car crowd region, 200 px
    gt[10:20] = r2
    pred = np.zeros((20, 20), np.int64)
    pred[0:6] = 1  # car entirely on the crowd: ignored
    pred[6:11] = 2  # car, 80 of 100 px on the crowd: ignored
    pred[11:13] = 3  # person on road: a false positive
    pred[13:20] = 4  # road: IoU 140 / 200 = 0.7
    second = (gt, {c: 2, r2: 3}, {c}, pred, {1: 2, 2: 2, 3: 1, 4: 3})
    return [first, second]


def random_image(rng):
    """Bands of stuff, rectangles of things (one crowd region per category at most), void
    strips; the prediction moves the rectangles, changes some categories, drops and adds some."""
    gt = np.zeros((H, W), np.int64)
    cats, crowd = {}, set()
    ids = iter(rng.choice(np.arange(1 << 16, 1 << 24), 40, replace=False).tolist())
    cuts = np.sort(rng.choice(np.arange(8, H - 8), 2, replace=False))
    for (y0, y1), cat in zip(zip([0, *cuts], [*cuts, H]), rng.permutation([3, 4, 5])):
        gid = next(ids)
        gt[y0:y1] = gid
        cats[gid] = int(cat)
    boxes = []
    for _ in range(rng.integers(2, 6)):
        y, x = rng.integers(0, H - 10), rng.integers(0, W - 10)
        h, w = rng.integers(6, 16), rng.integers(6, 20)
        cat = int(rng.choice([1, 2]))
        gid = next(ids)
        gt[y : y + h, x : x + w] = gid
        cats[gid] = cat
        if rng.random() < 0.2 and not any(cats[g] == cat for g in crowd):
            crowd.add(gid)
        boxes.append((y, x, h, w, cat))
    for _ in range(rng.integers(0, 3)):  # void strips
        y = rng.integers(0, H - 3)
        gt[y : y + rng.integers(1, 4), rng.integers(0, W // 2) :] = 0

    pred = np.zeros((H, W), np.int64)
    pred_cats = {}
    pred[: H // 2], pred[H // 2 :] = 1, 2
    pred_cats[1], pred_cats[2] = int(rng.choice([3, 4, 5])), int(rng.choice([3, 4, 5]))
    shifted = [b for b in boxes if rng.random() > 0.15] + [
        (rng.integers(0, H - 8), rng.integers(0, W - 8), 8, 8, int(rng.choice([1, 2, 6])))
    ]
    for k, (y, x, h, w, cat) in enumerate(shifted):
        dy, dx = rng.integers(-3, 4, 2)
        y, x = max(0, y + dy), max(0, x + dx)
        pred[y : y + h + rng.integers(-2, 3), x : x + w + rng.integers(-2, 3)] = k + 3
        pred_cats[k + 3] = cat if rng.random() > 0.1 else int(rng.choice([1, 2, 6]))
    gt_cats = {g: c for g, c in cats.items() if (gt == g).any()}
    return gt, gt_cats, crowd & set(gt_cats), pred, pred_cats


def write_set(root: Path, images) -> tuple[Path, Path, Path, Path]:
    for d in ("gt", "pred"):
        (root / d).mkdir()
    gt_anns, pred_anns, infos = [], [], []
    for i, (gt, gt_cats, crowd, pred, pred_cats) in enumerate(images):
        name = f"{i:03d}.png"
        write_id_png(root / "gt" / name, gt)
        write_id_png(root / "pred" / name, pred)
        gt_segs = [
            {"id": g, "category_id": c, "iscrowd": int(g in crowd)} for g, c in gt_cats.items()
        ]
        pred_segs = [{"id": p, "category_id": c} for p, c in pred_cats.items()]
        # area and bbox as COCO writes them (panopticapi reads the ground truth's area)
        gt_anns.append(
            {"image_id": i, "file_name": name, "segments_info": coco_segments_info(gt, gt_segs)}
        )
        pred_info = [s for s in coco_segments_info(pred, pred_segs)]
        pred_anns.append({"image_id": i, "file_name": name, "segments_info": pred_info})
        infos.append({"id": i, "file_name": name, "height": gt.shape[0], "width": gt.shape[1]})
    categories = [{"id": c.id, "name": c.name, "isthing": int(c.isthing)} for c in CATS]
    gt_json, pred_json = root / "gt.json", root / "pred.json"
    gt_json.write_text(
        json.dumps({"images": infos, "annotations": gt_anns, "categories": categories})
    )
    pred_json.write_text(json.dumps({"annotations": pred_anns}))
    return gt_json, root / "gt", pred_json, root / "pred"


@pytest.fixture(scope="module")
def data_set(tmp_path_factory):
    rng = np.random.default_rng(13)
    images = designed_images() + [random_image(rng) for _ in range(24)]
    return write_set(tmp_path_factory.mktemp("pq_hotcoco"), images)


@pytest.mark.parametrize("workers", [1, 2])
def test_per_class_pq_equals_hotcoco(data_set, workers):
    gt_json, gt_dir, pred_json, pred_dir = data_set
    ref = hotcoco_panoptic.pq_compute(str(gt_json), str(pred_json), str(gt_dir), str(pred_dir))
    ours = evaluate_pq_files(gt_json, gt_dir, pred_json, pred_dir, workers=workers)

    assert ours.num_images == 26
    for c in ours.per_class:
        r = ref["per_class"][c.category.id]
        assert (c.tp, c.fp, c.fn) == (r["tp"], r["fp"], r["fn"]), c.category.name
        if c.counted:  # an absent category: panopticapi 0.0 (ours too), hotcoco -1.0
            assert (c.pq, c.sq, c.rq) == pytest.approx((r["pq"], r["sq"], r["rq"]), abs=1e-12)
    for name, summary in ours.summary().items():
        assert summary["n"] == ref[name]["n"], name
        for key in ("pq", "sq", "rq"):
            assert summary[key] == pytest.approx(ref[name][key], abs=1e-12), (name, key)
    # The data set exercises every rule: something matched, missed and wrongly predicted in
    # things and in stuff, a predicted-only category, an absent one.
    by_name = {c.category.name: c for c in ours.per_class}
    assert all(by_name[n].tp and by_name[n].fp and by_name[n].fn for n in ("person", "road"))
    assert by_name["bike"].fp and not by_name["bike"].tp and not by_name["boat"].counted


def test_designed_images_give_the_hand_worked_counts(tmp_path):
    """The two hand-made images alone: the numbers worked out in `designed_images`."""
    files = write_set(tmp_path, designed_images())
    ours = {c.category.name: c for c in evaluate_pq_files(*files, workers=1).per_class}
    assert (ours["person"].tp, ours["person"].fp, ours["person"].fn) == (0, 2, 1)  # IoU 0.5
    assert (ours["sky"].tp, ours["sky"].fp, ours["sky"].fn) == (1, 0, 0)
    assert ours["sky"].sq == pytest.approx(0.6)  # void left out of the union
    assert (ours["tree"].tp, ours["tree"].fp) == (0, 1)
    assert (ours["car"].tp, ours["car"].fp, ours["car"].fn) == (0, 0, 0)  # crowd: both ignored
    assert ours["road"].tp == 2
    assert ours["road"].sq == pytest.approx((190 / 220 + 0.7) / 2)
