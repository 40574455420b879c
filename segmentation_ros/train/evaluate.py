"""Evaluate a checkpoint on a panoptic data set: PQ (All / Things / Stuff, per class),
drivable-mask IoU and speed, through the same pipeline the node runs.

The model's classes must be the data set's (by name); the drivable classes are the model's
defaults (`drivable.DEFAULT_DRIVABLE_NAMES`) unless given.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from segmentation_ros.data.datasets import Dataset
from segmentation_ros.drivable import DrivabilityTable, drivable_mask
from segmentation_ros.panoptic.pq import Category, PQAccumulator, PQResult, SegmentsInfo
from segmentation_ros.pipeline import FrameSettings, OutputRequest, SegmentationPipeline


@dataclass(frozen=True)
class CheckpointEvaluation:
    """pq: PQ per class and averaged; drivable_iou: IoU of the drivable masks over all images
    (pixels void in the ground truth left out); ms_per_image: pipeline time (preprocess,
    network, postprocess) per image; num_images."""

    pq: PQResult
    drivable_iou: float
    ms_per_image: float
    num_images: int

    def summary(self) -> dict:
        return {
            **{k: round(v * 100, 2) for k, v in _pq_numbers(self.pq).items()},
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
) -> CheckpointEvaluation:
    """Run `pipeline` over `dataset` (its first `limit` images) and score it."""
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
    count = len(dataset) if limit is None else min(limit, len(dataset))
    for index in range(count):
        sample = dataset[index]
        start = time.perf_counter()
        result = pipeline.process(sample.image, request, settings)
        elapsed += time.perf_counter() - start
        pred = SegmentsInfo(ids=result.segments.ids.astype(np.int64),
                            category_ids=result.segments.class_ids)  # fmt: skip
        accumulator.add(sample.id_map, sample.segments, result.id_map, pred)
        known = sample.semantic != void_label
        truth = drivable_mask(sample.semantic, table, np.isin(sample.semantic, thing_ids),
                              void_label=void_label)  # fmt: skip
        predicted = result.drivable & known
        intersection += int(np.count_nonzero(predicted & truth))
        union += int(np.count_nonzero(predicted | truth))
    return CheckpointEvaluation(
        pq=accumulator.result(),
        drivable_iou=intersection / union if union else 1.0,
        ms_per_image=elapsed / max(count, 1) * 1e3,
        num_images=count,
    )
