"""Our keypoint AP call against pycocotools on hand-built cases whose answers follow from COCO's
OKS definition (cocodataset.org, keypoint evaluation): OKS = mean_i exp(-d_i^2 / (2 s k_i^2)),
k_i = 2 sigma_i, s the object's area; AP averages over OKS thresholds .50:.05:.95."""

import math

import numpy as np
import pytest

from segmentation_ros.panoptic.keypoint_ap import evaluate_keypoint_ap, keypoints_to_coco_results
from segmentation_ros.structures.keypoints import SYNTHETIC_KEYPOINTS

SIGMAS = np.asarray(SYNTHETIC_KEYPOINTS.sigmas)
K = len(SIGMAS)
AREA = 60.0 * 120.0
PERSON = 10


def _truth(rng):
    """Two images, two people each: keypoints inside 60 x 120 boxes, all labelled."""
    images, anns, people = [], [], {}
    for image_id in (1, 2):
        images.append({"id": image_id, "width": 320, "height": 240})
        for j in range(2):
            x0, y0 = 20 + 150 * j, 40
            kp = np.stack(
                [x0 + rng.uniform(0, 60, K), y0 + rng.uniform(0, 120, K), np.full(K, 2)], 1
            )
            people[(image_id, j)] = kp
            anns.append({"id": len(anns) + 1, "image_id": image_id, "category_id": PERSON,
                         "bbox": [x0, y0, 60, 120], "area": AREA, "iscrowd": 0,
                         "keypoints": kp.reshape(-1).tolist(), "num_keypoints": K})  # fmt: skip
    person = {"id": PERSON, "name": "person", "keypoints": list(SYNTHETIC_KEYPOINTS.names)}
    gt = {"images": images, "annotations": anns, "categories": [person, {"id": 11, "name": "car"}]}
    return gt, people


def _results(people, shift_of):
    out = []
    for (image_id, j), kp in people.items():
        moved = kp.copy()
        moved[:, 0] += shift_of(image_id, j)
        out += keypoints_to_coco_results(image_id, moved[None], [0.9 - 0.1 * j], PERSON)
    return out


def test_perfect_keypoints_give_ap_one():
    gt, people = _truth(np.random.default_rng(0))
    result = evaluate_keypoint_ap(gt, _results(people, lambda i, j: 0.0), SIGMAS)
    assert result.ap == pytest.approx(1.0) and result.ar == pytest.approx(1.0)


@pytest.mark.parametrize("oks", [0.72, 0.87])
def test_shift_with_known_oks_gives_the_fraction_of_thresholds_below_it(oks):
    """Every keypoint moved so that its similarity is `oks`: d_i = k_i sqrt(2 s ln(1/oks)).
    Each detection then matches at the thresholds t <= oks only, so AP = #{t <= oks} / 10."""
    gt, people = _truth(np.random.default_rng(1))
    k = 2 * SIGMAS
    d = k * math.sqrt(2 * AREA * math.log(1 / oks))
    results = []
    for (image_id, _), kp in people.items():
        moved = kp.copy()
        moved[:, 0] += d
        results += keypoints_to_coco_results(image_id, moved[None], [0.9], PERSON)
    result = evaluate_keypoint_ap(gt, results, SIGMAS)
    thresholds = np.linspace(0.5, 0.95, 10)
    assert result.ap == pytest.approx(np.mean(thresholds <= oks + 1e-9), abs=1e-6)
    assert result.ap50 == pytest.approx(1.0)
    assert result.ap75 == pytest.approx(1.0 if oks >= 0.75 else 0.0)


def test_shifted_keypoints_score_lower_and_missing_people_lower_recall():
    gt, people = _truth(np.random.default_rng(2))
    perfect = evaluate_keypoint_ap(gt, _results(people, lambda i, j: 0.0), SIGMAS)
    shifted = evaluate_keypoint_ap(gt, _results(people, lambda i, j: 6.0), SIGMAS)
    assert shifted.ap < perfect.ap
    half = [r for r in _results(people, lambda i, j: 0.0) if r["image_id"] == 1]
    assert evaluate_keypoint_ap(gt, half, SIGMAS).ar == pytest.approx(0.5)


def test_rows_without_keypoints_are_left_out_and_bad_input_is_named():
    kp = np.full((2, K, 3), np.nan)
    kp[0] = 1.0
    assert len(keypoints_to_coco_results(3, kp, [0.5, 0.4], PERSON)) == 1
    gt, _ = _truth(np.random.default_rng(3))
    bad = keypoints_to_coco_results(1, np.ones((1, 3, 3)), [0.5], PERSON)
    with pytest.raises(ValueError, match="keypoints"):
        evaluate_keypoint_ap(gt, bad, SIGMAS)
