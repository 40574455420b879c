"""COCO keypoint AP by OKS through pycocotools (COCOeval, iouType='keypoints').

OKS (COCO's object keypoint similarity) of a detection with a ground-truth object of area s
(its segment's pixel count): mean over the labelled ground-truth keypoints (v > 0) of
exp(-d_i^2 / (2 s k_i^2)), d_i the pixel distance, k_i = 2 sigma_i (pycocotools' `vars`). The
sigmas are the keypoint set's (`structures.keypoints.KeypointSet.sigmas`: for the synthetic
world CrowdPose's, i.e. COCO's for the 12 body joints and 0.079 for head and neck), set on
`COCOeval.params.kpt_oks_sigmas`; AP averages precision over OKS thresholds .50:.05:.95 as
COCO's keypoint challenge does. Ground-truth objects without a labelled keypoint are ignored
(pycocotools' rule).

Results are COCO keypoint results {image_id, category_id, keypoints: [x1, y1, v1, ...], score}
(v is not read for detections); pixels in COCO's continuous frame, as `structures.keypoints`.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from segmentation_ros.panoptic.mask_ap import _load_coco
from segmentation_ros.panoptic.pq import to_numpy

_STAT_NAMES = ("ap", "ap50", "ap75", "ap_medium", "ap_large", "ar", "ar50", "ar75")
_STAT_NAMES += ("ar_medium", "ar_large")


@dataclass(frozen=True)
class KeypointAPResult:
    """COCOeval keypoints summary (fractions in [0, 1]; -1.0 where COCO finds nothing): ap
    (OKS .50:.95), ap50, ap75, ap_medium, ap_large, ar, ar50, ar75, ar_medium, ar_large (20
    detections per image, COCO's keypoint setting)."""

    ap: float
    ap50: float
    ap75: float
    ap_medium: float
    ap_large: float
    ar: float
    ar50: float
    ar75: float
    ar_medium: float
    ar_large: float

    def as_dict(self) -> dict[str, float]:
        return {k: getattr(self, k) for k in _STAT_NAMES}


def keypoints_to_coco_results(
    image_id: int, keypoints: Any, scores: Any, category_id: int
) -> list[dict[str, Any]]:
    """One image's detections -> COCO keypoint results.

    keypoints: [N, K, 2 or 3] (x, y[, score]) pixels; scores: [N] detection scores (what
    COCOeval ranks by); category_id: the dataset category they belong to. Rows with a NaN are
    left out (objects without keypoints)."""
    kp = to_numpy(keypoints).astype(np.float64)
    sc = to_numpy(scores).astype(np.float64).reshape(-1)
    if kp.ndim != 3 or kp.shape[0] != sc.shape[0] or kp.shape[2] not in (2, 3):
        raise ValueError(f"keypoints must be [N, K, 2|3] with N scores; got {kp.shape}, {sc.shape}")
    out = []
    for points, score in zip(kp, sc):
        if not np.isfinite(points[:, :2]).all():
            continue
        flat = np.concatenate([points[:, :2], np.ones((len(points), 1))], axis=1)
        out.append(
            {
                "image_id": int(image_id),
                "category_id": int(category_id),
                "keypoints": [float(v) for v in flat.reshape(-1)],
                "score": float(score),
            }
        )
    return out


def evaluate_keypoint_ap(
    gt: Any,
    results: Sequence[dict[str, Any]],
    sigmas: Sequence[float],
    *,
    category_ids: Sequence[int] | None = None,
    verbose: bool = False,
) -> KeypointAPResult:
    """COCO keypoint AP of `results` against the ground truth `gt` (a COCO instances JSON path,
    a pycocotools COCO, or the JSON as a dict, whose keypoint objects carry `keypoints` and
    `num_keypoints`). sigmas: K per-keypoint OKS sigmas. category_ids: the categories to score
    (default: those whose category entry names keypoints). Images of `gt` without results count
    as misses."""
    from pycocotools.cocoeval import COCOeval

    coco_gt = _load_coco(gt)
    if category_ids is None:
        category_ids = [c["id"] for c in coco_gt.loadCats(coco_gt.getCatIds()) if "keypoints" in c]
    if not category_ids:
        raise ValueError("the ground truth has no category with keypoints")
    dets = [r for r in results if r["category_id"] in set(category_ids)]
    for r in dets:
        if len(r["keypoints"]) != 3 * len(sigmas):
            raise ValueError(
                f"a result has {len(r['keypoints']) // 3} keypoints, sigmas {len(sigmas)}"
            )
    if not dets:
        return KeypointAPResult(**dict.fromkeys(_STAT_NAMES, 0.0))
    out = io.StringIO() if not verbose else None
    with contextlib.redirect_stdout(out) if out is not None else contextlib.nullcontext():
        coco_dt = coco_gt.loadRes(list(dets))
        ev = COCOeval(coco_gt, coco_dt, iouType="keypoints")
        ev.params.kpt_oks_sigmas = np.asarray(sigmas, dtype=np.float64)
        ev.params.catIds = sorted(int(c) for c in category_ids)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return KeypointAPResult(**dict(zip(_STAT_NAMES, map(float, ev.stats))))
