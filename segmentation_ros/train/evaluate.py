"""Evaluate a checkpoint on a panoptic data set: PQ (All / Things / Stuff, per class),
drivable-mask IoU and speed, through the same pipeline the node runs.

The model's classes must be the data set's (by name); the drivable classes are the model's
defaults (`drivable.DEFAULT_DRIVABLE_NAMES`) unless given.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from segmentation_ros.data.datasets import Dataset
from segmentation_ros.drivable import DrivabilityTable, drivable_mask
from segmentation_ros.panoptic.keypoint_ap import evaluate_keypoint_ap, keypoints_to_coco_results
from segmentation_ros.panoptic.mask_ap import evaluate_mask_ap, instances_to_coco_results
from segmentation_ros.panoptic.pq import Category, PQAccumulator, PQResult, SegmentsInfo
from segmentation_ros.pipeline import FrameSettings, OutputRequest, SegmentationPipeline
from segmentation_ros.structures.keypoints import keypoint_set_of


@dataclass(frozen=True)
class CheckpointEvaluation:
    """pq: PQ per class and averaged; drivable_iou: IoU of the drivable masks over all images
    (pixels void in the ground truth left out); ms_per_image: pipeline time (preprocess,
    network, postprocess) per image; num_images."""

    pq: PQResult
    drivable_iou: float
    ms_per_image: float
    num_images: int
    mask_ap: float | None = None  # COCO mask AP (0..1) when instance ground truth was given
    # COCO keypoint AP by OKS (0..1) for a model with keypoints, with instance ground truth
    keypoint_ap: float | None = None

    def summary(self) -> dict:
        return {
            **{k: round(v * 100, 2) for k, v in _pq_numbers(self.pq).items()},
            **({"mask_ap": round(self.mask_ap * 100, 2)} if self.mask_ap is not None else {}),
            **(
                {"keypoint_ap": round(self.keypoint_ap * 100, 2)}
                if self.keypoint_ap is not None
                else {}
            ),
            "drivable_iou": round(self.drivable_iou, 4),
            "ms_per_image": round(self.ms_per_image, 2),
            "images": self.num_images,
        }


def _pq_numbers(result: PQResult) -> dict[str, float]:
    return {
        "pq_all": result.all.pq,
        "pq_things": result.things.pq,
        "pq_stuff": result.stuff.pq,
        "sq_all": result.all.sq,
        "rq_all": result.all.rq,
    }


def evaluate_checkpoint(
    pipeline: SegmentationPipeline,
    dataset: Dataset,
    *,
    settings: FrameSettings = FrameSettings(),  # noqa: B008 - frozen
    limit: int | None = None,
    void_label: int = 255,
    instances_json: str | Path | None = None,
) -> CheckpointEvaluation:
    """Run `pipeline` over `dataset` (its first `limit` images) and score it.

    instances_json: COCO instance ground truth of the same images (category ids = the model's
    class ids, as the synthetic world writes them) to also compute mask AP (pycocotools) of the
    thing segments, and for a model with keypoints their keypoint AP by OKS (pycocotools, the
    sigmas of the model's keypoint set, `structures.keypoints`; ranked by detection score)."""
    classes = pipeline.classes
    categories = [
        Category(i, n, t) for i, (n, t) in enumerate(zip(classes.names, classes.is_thing))
    ]
    accumulator = PQAccumulator(categories)
    table = pipeline.drivability(settings.drivable_classes)
    if not isinstance(table, DrivabilityTable):
        raise ValueError(f"no drivable classes: {table}")
    thing_ids = np.flatnonzero(np.array(classes.is_thing))
    request = OutputRequest(drivable_mask=True)
    intersection = union = 0
    elapsed = 0.0
    detections: list[dict] = []
    keypoint_results: list[dict] = []
    sigmas = _keypoint_sigmas(pipeline) if instances_json is not None else None
    image_ids = []
    count = len(dataset) if limit is None else min(limit, len(dataset))
    for index in range(count):
        sample = dataset[index]
        start = time.perf_counter()
        result = pipeline.process(sample.image, request, settings)
        elapsed += time.perf_counter() - start
        pred = SegmentsInfo(ids=result.segments.ids.astype(np.int64),
                            category_ids=result.segments.class_ids)  # fmt: skip
        accumulator.add(sample.id_map, sample.segments, result.id_map, pred)
        if instances_json is not None:
            image_ids.append(sample.image_id)
            things = result.segments[result.segments.is_thing]
            masks = result.id_map[None] == things.ids[:, None, None]
            # Masks rank by their mask score (YOLACT++ / Mask Scoring R-CNN: class score x
            # predicted IoU; the class score for models without a mask-IoU head).
            detections += instances_to_coco_results(sample.image_id, masks, things.mask_scores,
                                                    things.class_ids,
                                                    category_ids=range(len(classes)))  # fmt: skip
            if sigmas is not None:
                keypoint_results += _keypoint_results(sample.image_id, things)
        known = sample.semantic != void_label
        truth = drivable_mask(sample.semantic, table, np.isin(sample.semantic, thing_ids),
                              void_label=void_label)  # fmt: skip
        predicted = result.drivable & known
        intersection += int(np.count_nonzero(predicted & truth))
        union += int(np.count_nonzero(predicted | truth))
    mask_ap = keypoint_ap = None
    if instances_json is not None:
        gt = json.loads(Path(instances_json).read_text())
        keep = set(image_ids)
        gt["images"] = [im for im in gt["images"] if im["id"] in keep]
        gt["annotations"] = [a for a in gt["annotations"] if a["image_id"] in keep]
        mask_ap = evaluate_mask_ap(gt, detections).ap if detections else 0.0
        if sigmas is not None:
            keypoint_ap = evaluate_keypoint_ap(gt, keypoint_results, sigmas).ap
    return CheckpointEvaluation(
        mask_ap=mask_ap,
        keypoint_ap=keypoint_ap,
        pq=accumulator.result(),
        drivable_iou=intersection / union if union else 1.0,
        ms_per_image=elapsed / max(count, 1) * 1e3,
        num_images=count,
    )


def _keypoint_sigmas(pipeline: SegmentationPipeline) -> tuple[float, ...] | None:
    """OKS sigmas of the model's keypoints; None for a model without keypoints."""
    names = pipeline.keypoint_names
    if not names:
        return None
    known = keypoint_set_of(names)
    if known is None:
        raise ValueError(f"no OKS sigmas known for the keypoints {names} (structures.keypoints)")
    return known.sigmas


def _keypoint_results(image_id: int, things) -> list[dict]:
    """COCO keypoint results of the thing segments that carry keypoints (numpy `Segments`)."""
    out: list[dict] = []
    has = np.isfinite(things.keypoints).all(axis=(1, 2)) & (things.keypoints.shape[1] > 0)
    for cls in np.unique(things.class_ids[has]):
        pick = has & (things.class_ids == cls)
        kp, scores = things.keypoints[pick], things.scores[pick]
        out += keypoints_to_coco_results(image_id, kp, scores, int(cls))
    return out


def plot_per_class(result: PQResult, path: str | Path) -> Path:
    """A bar chart of PQ / SQ / RQ per class as PNG (OpenCV drawing; no plotting library)."""
    import cv2

    rows = result.per_class
    row_h, left, width = 22, 140, 420
    image = np.full((row_h * (len(rows) + 2), left + width + 80, 3), 255, np.uint8)
    cv2.putText(image, "PQ (bar), SQ (line), RQ (tick), %", (8, 16), cv2.FONT_HERSHEY_SIMPLEX,
                0.45, (0, 0, 0), 1, cv2.LINE_AA)  # fmt: skip
    for i, row in enumerate(rows):
        y = row_h * (i + 1) + 4
        color = (60, 120, 220) if row.category.isthing else (80, 170, 80)
        cv2.putText(image, row.category.name[:18], (8, y + 14), cv2.FONT_HERSHEY_SIMPLEX, 0.45,
                    (0, 0, 0), 1, cv2.LINE_AA)  # fmt: skip
        cv2.rectangle(image, (left, y + 3), (left + int(width * row.pq), y + row_h - 5), color, -1)
        cv2.line(image, (left, y + row_h // 2), (left + int(width * row.sq), y + row_h // 2),
                 (0, 0, 0), 1)  # fmt: skip
        x = left + int(width * row.rq)
        cv2.line(image, (x, y + 2), (x, y + row_h - 4), (0, 0, 200), 2)
        cv2.putText(image, f"{row.pq * 100:.1f}", (left + width + 8, y + 14),
                    cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)  # fmt: skip
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR)):
        raise OSError(f"cannot write {path}")
    return path
