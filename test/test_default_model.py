"""The embedded default model (segmentation_ros/weights/default.pt) loads through the node's
pipeline and finds the objects and the drivable surface of generated scenes whose seeds the
training never saw (training: 100000..102999, validation: 900000..900199)."""

import numpy as np
import pytest

from segmentation_ros.data.classes import DRIVABLE_NAMES, STUFF_NAMES, THING_NAMES
from segmentation_ros.data.synthetic import generate_scene
from segmentation_ros.pipeline import (
    DEFAULT_CHECKPOINT,
    FrameSettings,
    OutputRequest,
    SegmentationPipeline,
)

SEEDS = range(777_001, 777_009)
MIN_AREA = 1500  # pixels at 640x480: objects a robot must not miss
# Measured on these seeds with the committed model: 10 of 21 large objects (0.48) found with the
# right class at IoU > 0.5 (0.62 over the 188 large objects of seeds 555000..555099), drivable
# IoU 0.93 on average. The bounds sit a little below, so a model that regresses fails; the model
# card says why things are still weak (bicycles are never found).
RECALL_MIN = 0.4
DRIVABLE_IOU_MIN = 0.9


@pytest.fixture(scope="module")
def pipeline():
    assert DEFAULT_CHECKPOINT.is_file(), f"{DEFAULT_CHECKPOINT} is missing"
    return SegmentationPipeline.from_checkpoint("")  # empty: the embedded default


def test_default_model_classes_are_the_synthetic_world(pipeline):
    assert pipeline.classes.names == STUFF_NAMES + THING_NAMES


def test_default_model_finds_objects_and_drivable_surface(pipeline):
    found = total = 0
    drivable_ious = []
    drivable_ids = [STUFF_NAMES.index(n) for n in DRIVABLE_NAMES]
    for seed in SEEDS:
        scene = generate_scene(seed)
        result = pipeline.process(scene.image, OutputRequest(drivable_mask=True), FrameSettings())
        segments = scene.segments
        for sid, category, area in zip(segments.ids, segments.category_ids, segments.areas):
            if category < len(STUFF_NAMES) or area < MIN_AREA:
                continue
            total += 1
            truth = scene.id_map == sid
            for pid, pclass in zip(result.segments.ids, result.segments.class_ids):
                pred = result.id_map == pid
                iou = (truth & pred).sum() / (truth | pred).sum()
                if pclass == category and iou > 0.5:
                    found += 1
                    break
        truth = np.isin(scene.semantic_map(), drivable_ids)
        inter = (truth & result.drivable).sum()
        drivable_ious.append(inter / max((truth | result.drivable).sum(), 1))
    assert total >= 10, "the scenes should hold enough large objects"
    recall = found / total
    assert recall >= RECALL_MIN, f"found {found} of {total} large objects"
    assert np.mean(drivable_ious) >= DRIVABLE_IOU_MIN, drivable_ious
