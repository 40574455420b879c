"""The frame pipeline without ROS: geometry helpers, id maps, ground points, and whole frames
through a real (randomly initialised, light) checkpoint saved with models.checkpoint."""

import dataclasses

import numpy as np
import pytest
import torch

from segmentation_ros.drivable import CameraModel, GridGeometry, MountPose
from segmentation_ros.drivable.ground import pixels_to_ground
from segmentation_ros.models.families.yolact import paint_instances
from segmentation_ros.pipeline import (
    ClassMeta,
    FrameSettings,
    OutputRequest,
    SegmentationPipeline,
    Segments,
    load_model,
    renumber,
    segment_geometry,
)

THINGS = ("person", "car", "cone")
STUFF = ("road", "grass", "sky")
SIZE = (64, 64)  # network input (H, W): small and fast


def test_segment_geometry_rois_centroids_areas():
    id_map = np.zeros((6, 8), dtype=np.int32)
    id_map[1:3, 2:5] = 1  # 2 x 3 block
    id_map[5, 7] = 2  # one pixel in the corner
    g = segment_geometry(id_map, 3)  # segment 3 has no pixel
    np.testing.assert_array_equal(g.rois, [[2, 1, 3, 2], [7, 5, 1, 1], [0, 0, 0, 0]])
    np.testing.assert_array_equal(g.areas, [6, 1, 0])
    np.testing.assert_allclose(g.centroids[:2], [[3.5, 2.0], [7.5, 5.5]])
    assert np.isnan(g.centroids[2]).all()


def _segments(scores, classes=None, is_thing=None):
    n = len(scores)
    return Segments(
        ids=np.arange(1, n + 1, dtype=np.int32),
        class_ids=np.array(classes if classes is not None else [0] * n, dtype=np.int64),
        is_thing=np.array(is_thing if is_thing is not None else [True] * n),
        scores=np.array(scores, dtype=np.float32),
        mask_scores=np.array(scores, dtype=np.float32),
        boxes=np.zeros((n, 4), np.float32),
    )


def test_renumber_orders_by_score_and_drops_empty_and_filtered():
    id_map = np.array([[1, 1, 2], [3, 3, 3]], dtype=np.int32)
    segments = _segments([0.2, 0.9, 0.5, 0.7], classes=[0, 1, 2, 0])  # segment 4 has no pixel
    keep = np.array([True, True, False, True])
    new_map, out = renumber(id_map, segments, keep)
    np.testing.assert_array_equal(out.scores, np.float32([0.9, 0.2]))
    np.testing.assert_array_equal(out.ids, [1, 2])
    np.testing.assert_array_equal(new_map, [[2, 2, 1], [0, 0, 0]])


def test_paint_instances_higher_score_wins_overlap():
    from segmentation_ros.structures import Instances

    probs = torch.zeros(2, 8, 8)
    probs[0, 2:8, 2:8] = 1.0  # high score
    probs[1, 0:6, 0:6] = 1.0  # big, overlapping, low score
    instances = Instances(
        image_size=(8, 8),
        boxes=torch.tensor([[2, 2, 8, 8], [0, 0, 6, 6]], dtype=torch.float32),
        classes=torch.tensor([1, 0]),
        scores=torch.tensor([0.8, 0.3]),
        mask_scores=torch.tensor([0.7, 0.2]),
        mask_probs=probs,
    )
    painted = paint_instances(instances, 0.5).numpy()
    id_map, seg = painted.id_map, painted.segments
    np.testing.assert_array_equal(seg.class_ids, [1, 0])
    np.testing.assert_array_equal(seg.mask_scores, np.float32([0.7, 0.2]))
    assert (id_map[2:8, 2:8] == 1).all()
    assert id_map[0, 0] == 2 and id_map[7, 0] == 0
    assert (id_map == 2).sum() == 36 - 16


def test_pixels_to_ground_looks_down_the_pitch():
    camera = CameraModel(K=[100, 0, 50, 0, 100, 40, 0, 0, 1], D=[], width=100, height=80)
    mount = MountPose(height=1.0, pitch=np.arctan(1.0 / 4.0))  # optical axis hits at 4 m
    pts = pixels_to_ground(camera, mount, np.array([[50.0, 40.0], [50.0, 0.0]]))
    np.testing.assert_allclose(pts[0], [4.0, 0.0], atol=1e-9)
    assert np.isnan(pts[1]).all()  # 22 degrees up: above the horizon


# ---------------------------------------------------------------------------------------------
# Whole frames through real checkpoints


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    from tiny_models import save_tiny_checkpoints

    return save_tiny_checkpoints(tmp_path_factory.mktemp("ckpt"), input_size=SIZE)


def _image(seed=0, size=(48, 80)):
    return np.random.default_rng(seed).integers(0, 255, (*size, 3), dtype=np.uint8)


CAMERA = CameraModel(K=[60, 0, 40, 0, 60, 24, 0, 0, 1], D=[], width=80, height=48)
LOW = FrameSettings(
    score_threshold=0.0,
    max_detections=10,
    mount=MountPose(height=0.5, pitch=0.3),
    grid=GridGeometry(resolution=0.1, width=40, height=40, origin_y=-2.0),
)


def test_load_model_errors_say_what_to_fix(tmp_path, checkpoints):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_model(tmp_path / "missing.pt")
    with pytest.raises(ValueError, match="set model to"):
        load_model(checkpoints["yolact"], "yolact_resnet50")
    bare = tmp_path / "bare.pt"
    torch.save({"a": torch.zeros(1)}, bare)
    with pytest.raises(ValueError, match="set the `model` parameter"):
        load_model(bare)
    from segmentation_ros.runtime.backends import BackendUnavailable

    with pytest.raises(BackendUnavailable, match="tensorrt"):
        SegmentationPipeline.from_checkpoint(checkpoints["yolact"], backend="tensorrt")


def test_yolact_frame_all_outputs(checkpoints):
    torch.manual_seed(0)
    pipeline = SegmentationPipeline.from_checkpoint(checkpoints["yolact"])
    assert pipeline.classes == ClassMeta(THINGS, (True,) * 3)
    assert pipeline.input_size == SIZE
    image = _image()
    result = pipeline.process(image, OutputRequest.all(), LOW, camera=CAMERA)
    n = len(result.segments)
    assert 0 < n <= 10
    assert result.id_map.shape == (48, 80) and result.id_map.max() == n
    assert np.all(np.diff(result.segments.scores) <= 0)
    assert result.semantic.dtype == np.uint8 and result.semantic.shape == (48, 80)
    assert set(np.unique(result.semantic)) <= {0, 1, 2, 255}
    assert result.confidence.dtype == np.float32
    assert result.geometry.areas.sum() == (result.id_map > 0).sum()
    assert result.mask_crop(0).sum() == result.geometry.areas[0]
    # An instance-only model has no surface classes: no drivable mask, no grid; it says why.
    assert result.drivable is None and result.grid is None
    assert any("no stuff (surface) classes" in note for note in result.notes)
    assert result.ground_xy.shape == (n, 2)
    assert (
        result.timings.inference_ms > 0 and result.timings.total_ms >= result.timings.inference_ms
    )
    # Only what is requested is computed.
    small = pipeline.process(image, OutputRequest(instances=True), LOW)
    assert small.semantic is None and small.geometry is None and small.confidence is None
    np.testing.assert_array_equal(small.id_map, result.id_map)
    # Run-time settings: fewer detections, a class filter.
    one = pipeline.process(
        image, OutputRequest(objects=True), dataclasses.replace(LOW, max_detections=1)
    )
    assert len(one.segments) <= 1
    cars = pipeline.process(
        image, OutputRequest(objects=True), dataclasses.replace(LOW, class_filter=("car",))
    )
    assert set(cars.segments.class_ids) <= {1}
    with pytest.raises(ValueError, match="unknown class names"):
        pipeline.process(image, OutputRequest(), dataclasses.replace(LOW, class_filter=("tree",)))


@pytest.mark.parametrize("kind", ["panoptic", "mask_rcnn"])
def test_panoptic_frame_drivable_and_grid(checkpoints, kind):
    pipeline = SegmentationPipeline.from_checkpoint(checkpoints[kind])
    assert pipeline.classes.names == STUFF + THINGS and pipeline.classes.num_stuff == 3
    result = pipeline.process(_image(1), OutputRequest.all(), LOW, camera=CAMERA)
    seg = result.segments
    assert len(seg) > 0 and result.id_map.max() == len(seg)
    # Stuff segments have stuff class ids, things thing ids (panoptic category convention).
    np.testing.assert_array_equal(seg.is_thing, seg.class_ids >= 3)
    assert result.drivable is not None and result.drivable.shape == (48, 80)
    # Only "road" is drivable by default; things never are.
    np.testing.assert_array_equal(result.drivable, result.semantic == 0)
    assert result.grid.shape == (40, 40) and result.grid.dtype == np.int8
    assert set(np.unique(result.grid)) <= {-1, 0, 100}
    assert (result.grid != -1).any()
    # No camera: the grid is missing and the result says why.
    no_cam = pipeline.process(_image(1), OutputRequest(grid=True), LOW)
    assert no_cam.grid is None and any("camera_info" in n for n in no_cam.notes)
    # Other drivable classes.
    grass = pipeline.process(
        _image(1),
        OutputRequest(drivable_mask=True),
        dataclasses.replace(LOW, drivable_classes=("grass",)),
    )
    np.testing.assert_array_equal(grass.drivable, grass.semantic == 1)


def test_pcv_frame(checkpoints):
    pipeline = SegmentationPipeline.from_checkpoint(checkpoints["pcv"])
    assert pipeline.loaded.kind == "pcv" and pipeline.classes.names == STUFF + THINGS
    result = pipeline.process(_image(2), OutputRequest.all(), LOW, camera=CAMERA)
    seg = result.segments
    assert len(seg) > 0 and result.id_map.max() == len(seg)
    np.testing.assert_array_equal(seg.is_thing, seg.class_ids >= 3)
    assert np.isfinite(seg.boxes).all()  # pixel bounds, filled with the geometry
    assert result.grid is not None and result.drivable.shape == (48, 80)
    few = pipeline.process(_image(2), OutputRequest(), dataclasses.replace(LOW, max_detections=1))
    assert few.segments.is_thing.sum() <= 1


def test_embedded_default_model_must_match_the_model_parameter(monkeypatch, checkpoints):
    import segmentation_ros.pipeline as pipeline_module

    monkeypatch.setattr(pipeline_module, "DEFAULT_CHECKPOINT", checkpoints["panoptic"])
    assert load_model("").name == "panoptic_yolact_mobilenetv3"
    with pytest.raises(ValueError, match="no embedded weights"):
        load_model("", "pcv_mobilenetv3")


def test_embedded_weights_per_model(monkeypatch, checkpoints, tmp_path):
    """weights/<model>.pt beside the default model is what an empty checkpoint loads for that
    model (the launch files of the shipped light models need no `checkpoint`)."""
    import shutil

    import segmentation_ros.pipeline as pipeline_module

    shutil.copy(checkpoints["panoptic"], tmp_path / "default.pt")
    shutil.copy(checkpoints["pcv"], tmp_path / "pcv_mobilenetv3.pt")
    monkeypatch.setattr(pipeline_module, "DEFAULT_CHECKPOINT", tmp_path / "default.pt")
    loaded = load_model("", "pcv_mobilenetv3")
    assert loaded.name == "pcv_mobilenetv3"
    assert loaded.checkpoint == tmp_path / "pcv_mobilenetv3.pt"
    assert load_model("").checkpoint == tmp_path / "default.pt"
    assert load_model(checkpoints["pcv"], "pcv_mobilenetv3").checkpoint == checkpoints["pcv"]
