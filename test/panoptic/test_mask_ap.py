"""Mask AP through pycocotools on tiny hand-made cases, and the `mask-ap` command."""

import json

import numpy as np
import pytest

pytest.importorskip("pycocotools")

from pycocotools import mask as mask_utils  # noqa: E402

from segmentation_ros.panoptic.mask_ap import (  # noqa: E402
    encode_masks,
    evaluate_mask_ap,
    instances_to_coco_results,
)
from segmentation_ros.tools.eval import main  # noqa: E402

H, W = 40, 48


def masks_of_image():
    """Three objects: two of COCO category 1 ('person'), one of category 3 ('car')."""
    m = np.zeros((3, H, W), bool)
    m[0, 2:20, 3:15] = True
    m[1, 22:38, 5:25] = True
    m[2, 5:30, 30:46] = True
    return m, np.array([0, 0, 1])  # our class ids; category_ids=[1, 3] maps them


def ground_truth():
    masks, classes = masks_of_image()
    anns = []
    for k, (m, c) in enumerate(zip(masks, classes)):
        rle = encode_masks(m[None])[0]
        anns.append(
            {
                "id": k + 1,
                "image_id": 7,
                "category_id": [1, 3][c],
                "segmentation": rle,
                "area": int(m.sum()),
                "bbox": mask_utils.toBbox(rle).tolist(),
                "iscrowd": 0,
            }
        )
    return {
        "images": [{"id": 7, "width": W, "height": H, "file_name": "7.jpg"}],
        "annotations": anns,
        "categories": [{"id": 1, "name": "person"}, {"id": 3, "name": "car"}],
    }


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # pycocotools' decode on numpy 2
def test_encode_masks_round_trip():
    masks, _ = masks_of_image()
    rles = encode_masks(masks.astype(np.float32) * 0.9)  # float masks binarised at 0.5
    assert all(isinstance(r["counts"], str) for r in rles)
    decoded = mask_utils.decode([{**r, "counts": r["counts"].encode()} for r in rles])
    np.testing.assert_array_equal(decoded.transpose(2, 0, 1), masks)
    assert encode_masks(np.zeros((0, H, W), bool)) == []


def test_perfect_predictions_give_ap_one():
    masks, classes = masks_of_image()
    results = instances_to_coco_results(
        7, masks, np.array([0.9, 0.8, 0.7]), classes, category_ids=[1, 3]
    )
    assert [r["category_id"] for r in results] == [1, 1, 3]
    r = evaluate_mask_ap(ground_truth(), results)
    assert r.ap == pytest.approx(1.0) and r.ap50 == pytest.approx(1.0)
    assert r.per_class == {1: pytest.approx(1.0), 3: pytest.approx(1.0)}
    assert r.ap_large == -1.0  # no large object in the ground truth


def test_one_missed_object_halves_recall():
    masks, classes = masks_of_image()
    results = instances_to_coco_results(
        7, masks[[0, 2]], np.array([0.9, 0.7]), classes[[0, 2]], category_ids=[1, 3]
    )
    r = evaluate_mask_ap(ground_truth(), results)
    # person: precision 1 up to recall 0.5 -> 51 of COCO's 101 recall points; car: 1.
    assert r.per_class[1] == pytest.approx(51 / 101)
    assert r.ap == pytest.approx((51 / 101 + 1) / 2)


def test_no_results_and_bad_inputs():
    assert evaluate_mask_ap(ground_truth(), []).ap == 0.0
    masks, classes = masks_of_image()
    with pytest.raises(ValueError, match="differ in length"):
        instances_to_coco_results(7, masks, np.ones(2), classes)
    with pytest.raises(ValueError, match="out of range"):
        instances_to_coco_results(7, masks, np.ones(3), classes, category_ids=[1])
    with pytest.raises(ValueError, match="absent from the ground truth"):
        evaluate_mask_ap(ground_truth(), instances_to_coco_results(99, masks, np.ones(3), classes))
    with pytest.raises(ValueError, match="segmentation"):
        evaluate_mask_ap(ground_truth(), [{"image_id": 7, "score": 1.0}])
    with pytest.raises(ValueError, match=r"\[N, H, W\]"):
        encode_masks(np.zeros((H, W), bool))


def test_mask_ap_command(tmp_path, capsys):
    masks, classes = masks_of_image()
    (tmp_path / "gt.json").write_text(json.dumps(ground_truth()))
    results = instances_to_coco_results(7, masks, np.ones(3), classes, category_ids=[1, 3])
    (tmp_path / "res.json").write_text(json.dumps(results))
    argv = ["mask-ap", "--gt-json", str(tmp_path / "gt.json"), "--pred-json"]
    assert main([*argv, str(tmp_path / "res.json")]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["ap"] == pytest.approx(1.0) and summary["ap75"] == pytest.approx(1.0)
    assert main([*argv, str(tmp_path / "missing.json")]) == 1
    assert "missing.json" in capsys.readouterr().err
