"""COCO mask AP of instance segmentations through pycocotools (COCOeval, iouType='segm').

Results are COCO "results" dicts {image_id, category_id, segmentation: compressed RLE with
`counts` as str, score}; `instances_to_coco_results` makes them from full-image masks. Class ids
follow our convention (0-based into the model's `class_names`); `category_ids` maps them to the
dataset's category ids (COCO: 1..90 with gaps). No `bbox` is written, so that pycocotools takes a
detection's area from its mask (with a bbox it would use the box area for the size ranges).
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from segmentation_ros.panoptic.pq import to_numpy

_STAT_NAMES = (
    "ap",
    "ap50",
    "ap75",
    "ap_small",
    "ap_medium",
    "ap_large",
    "ar1",
    "ar10",
    "ar100",
    "ar_small",
    "ar_medium",
    "ar_large",
)


def encode_masks(masks: Any, *, threshold: float = 0.5) -> list[dict[str, Any]]:
    """[N, H, W] masks (bool, or float in [0, 1] binarised at `> threshold`) -> N compressed
    RLEs {size: [H, W], counts: str} (pycocotools' encoding, JSON-ready)."""
    from pycocotools import mask as mask_utils

    m = to_numpy(masks)
    if m.ndim != 3:
        raise ValueError(f"masks must be [N, H, W]; got shape {m.shape}")
    if m.dtype != bool:
        m = m > threshold
    if m.shape[0] == 0:
        return []
    rles = mask_utils.encode(np.asfortranarray(m.transpose(1, 2, 0).astype(np.uint8)))
    for r in rles:
        r["counts"] = r["counts"].decode("ascii")
    return rles


def instances_to_coco_results(
    image_id: int,
    masks: Any,
    scores: Any,
    class_ids: Any,
    *,
    category_ids: Sequence[int] | None = None,
    threshold: float = 0.5,
) -> list[dict[str, Any]]:
    """One image's instances -> COCO segm results.

    masks: [N, H, W] full-image masks (bool or float in [0, 1]); scores: [N] float;
    class_ids: [N] int, 0-based class ids; category_ids: dataset category id of each class id
    (None: class ids are written as they are).
    """
    scores_np = to_numpy(scores).astype(np.float64).reshape(-1)
    cls = to_numpy(class_ids).astype(np.int64).reshape(-1)
    rles = encode_masks(masks, threshold=threshold)
    if not (len(rles) == scores_np.shape[0] == cls.shape[0]):
        raise ValueError(
            f"masks ({len(rles)}), scores ({scores_np.shape[0]}) and class_ids ({cls.shape[0]}) "
            "differ in length"
        )
    if category_ids is not None:
        lut = np.asarray(category_ids, np.int64)
        if cls.size and (cls.min() < 0 or cls.max() >= lut.size):
            raise ValueError(f"class ids {cls.tolist()} out of range for {lut.size} categories")
        cls = lut[cls]
    return [
        {"image_id": image_id, "category_id": int(c), "segmentation": r, "score": float(s)}
        for r, c, s in zip(rles, cls, scores_np)
    ]


@dataclass(frozen=True)
class MaskAPResult:
    """COCOeval segm summary (fractions in [0, 1]; -1.0 where COCO finds nothing to average).

    ap: AP@[.5:.95] all areas, 100 dets; ap50, ap75; ap_small/medium/large; ar1, ar10, ar100;
    ar_small/medium/large. per_class: category id -> AP@[.5:.95] (-1.0 without ground truth).
    """

    ap: float
    ap50: float
    ap75: float
    ap_small: float
    ap_medium: float
    ap_large: float
    ar1: float
    ar10: float
    ar100: float
    ar_small: float
    ar_medium: float
    ar_large: float
    per_class: Mapping[int, float]

    def as_dict(self) -> dict[str, float]:
        return {k: getattr(self, k) for k in _STAT_NAMES}


def _load_coco(gt: Any):
    from pycocotools.coco import COCO

    if isinstance(gt, COCO):
        return gt
    if isinstance(gt, str | Path):
        if not Path(gt).is_file():
            raise FileNotFoundError(f"COCO ground-truth JSON {gt} does not exist")
        with contextlib.redirect_stdout(io.StringIO()):
            return COCO(str(gt))
    if isinstance(gt, Mapping):
        coco = COCO()
        coco.dataset = dict(gt)
        with contextlib.redirect_stdout(io.StringIO()):
            coco.createIndex()
        return coco
    raise TypeError(f"gt must be a path, a COCO object or a dict; not {type(gt).__name__}")


def _load_results(results: Any) -> list[dict[str, Any]]:
    import json

    if isinstance(results, str | Path):
        path = Path(results)
        if not path.is_file():
            raise FileNotFoundError(f"results JSON {path} does not exist")
        try:
            results = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise ValueError(f"{path} is not valid JSON: {e}") from e
    if not isinstance(results, list):
        raise ValueError("results must be a list of {image_id, category_id, segmentation, score}")
    out = []
    for r in results:
        if not isinstance(r, Mapping) or not {"image_id", "category_id", "segmentation"} <= set(r):
            raise ValueError(
                "each result needs image_id, category_id, segmentation (RLE) and score; "
                f"got {r if not isinstance(r, Mapping) else sorted(r)}"
            )
        r = {k: v for k, v in r.items() if k != "bbox"}  # area from the mask, see module doc
        out.append(r)
    return out


def evaluate_mask_ap(gt: Any, results: Any, *, verbose: bool = False) -> MaskAPResult:
    """COCO mask AP of `results` against the instance ground truth `gt`.

    gt: path to a COCO instances JSON, a pycocotools COCO, or the JSON as a dict.
    results: list of result dicts (see `instances_to_coco_results`) or a path to their JSON.
    Images of `gt` without any result count as missed detections. verbose: let pycocotools print.
    """
    from pycocotools.cocoeval import COCOeval

    coco_gt = _load_coco(gt)
    dets = _load_results(results)
    unknown = {r["image_id"] for r in dets} - set(coco_gt.getImgIds())
    if unknown:
        raise ValueError(
            f"results for image ids {sorted(unknown)[:10]} absent from the ground truth"
        )
    cat_ids = sorted(coco_gt.getCatIds())
    if not dets:
        zeros = dict.fromkeys(_STAT_NAMES, 0.0)
        return MaskAPResult(**zeros, per_class=dict.fromkeys(cat_ids, 0.0))
    out = io.StringIO() if not verbose else None
    with contextlib.redirect_stdout(out) if out is not None else contextlib.nullcontext():
        coco_dt = coco_gt.loadRes(dets)
        ev = COCOeval(coco_gt, coco_dt, iouType="segm")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    precision = ev.eval["precision"]  # [T, R, K, A, M]; area 'all' = 0, maxDets 100 = -1
    per_class = {}
    for k, cid in enumerate(ev.params.catIds):
        p = precision[:, :, k, 0, -1]
        p = p[p > -1]
        per_class[int(cid)] = float(p.mean()) if p.size else -1.0
    return MaskAPResult(**dict(zip(_STAT_NAMES, map(float, ev.stats))), per_class=per_class)
