"""The embedded default model (segmentation_ros/weights/default.pt) loads through the node's
pipeline and finds the objects and the drivable surface of generated scenes whose seeds the
training never saw (training: 100000..102999, validation: 900000..900199)."""

import numpy as np
import pytest
from scene_checks import find_on_scenes

from segmentation_ros.data.classes import STUFF_NAMES, THING_NAMES
from segmentation_ros.pipeline import (
    DEFAULT_CHECKPOINT,
    SegmentationPipeline,
)

SEEDS = range(777_001, 777_009)
MIN_AREA = 1500  # pixels at 640x480: objects a robot must not miss
# Measured on these seeds with the committed model (stage 3, run at 288 x 384): 14 of 21 large
# objects (0.67) found with the right class at IoU > 0.5 (people over 100 scenes of seeds
# 970000..970099: 77 of 94), drivable IoU 0.954 on average. The bounds sit a little below, so a
# model that regresses fails; the model card says why things are still weak (thin bicycles).
RECALL_MIN = 0.6
DRIVABLE_IOU_MIN = 0.9


@pytest.fixture(scope="module")
def pipeline():
    assert DEFAULT_CHECKPOINT.is_file(), f"{DEFAULT_CHECKPOINT} is missing"
    return SegmentationPipeline.from_checkpoint("")  # empty: the embedded default


def test_default_model_classes_are_the_synthetic_world(pipeline):
    assert pipeline.classes.names == STUFF_NAMES + THING_NAMES


def test_default_model_finds_objects_and_drivable_surface(pipeline):
    seen = find_on_scenes(pipeline, SEEDS, min_area=MIN_AREA, things=True)
    assert seen.total >= 10, "the scenes should hold enough large objects"
    recall = seen.found / seen.total
    assert recall >= RECALL_MIN, f"found {seen.found} of {seen.total} large objects"
    assert np.mean(seen.drivable_ious) >= DRIVABLE_IOU_MIN, seen.drivable_ious
