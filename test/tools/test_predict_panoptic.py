"""segmentation-ros-predict on panoptic YOLACT, PCV and Mask R-CNN checkpoints: the things as
for YOLACT, plus the panoptic id map and its segments, all consistent with each other."""

import cv2
import numpy as np
import pytest

from segmentation_ros.tools.predict import main

THINGS = ("person", "car", "cone")
STUFF = ("road", "grass", "sky")


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    from tiny_models import save_tiny_checkpoints

    return save_tiny_checkpoints(tmp_path_factory.mktemp("ckpt"), input_size=(64, 64))


@pytest.fixture(scope="module")
def image_path(tmp_path_factory):
    rng = np.random.default_rng(0)
    image = cv2.GaussianBlur(rng.integers(0, 255, (90, 120, 3), dtype=np.uint8), (9, 9), 4)
    path = tmp_path_factory.mktemp("img") / "scene.png"
    cv2.imwrite(str(path), image)
    return path


@pytest.mark.parametrize("kind", ["panoptic", "pcv", "mask_rcnn"])
def test_predict_writes_the_panoptic_segmentation(tmp_path, checkpoints, image_path, kind):
    out = tmp_path / kind
    args = ["--checkpoint", str(checkpoints[kind]), "--score-threshold", "0", str(image_path)]
    assert main([*args, "--output-dir", str(out)]) == 0
    data = np.load(out / "scene.npz")
    id_map = data["id_map"]
    assert id_map.shape == (90, 120) and id_map.dtype == np.int32
    assert list(data["class_names"]) == list(STUFF + THINGS)
    ids, classes = data["segment_ids"], data["segment_classes"]
    is_thing, scores = data["segment_is_thing"], data["segment_scores"]
    assert len(ids) > 0 and len(classes) == len(is_thing) == len(scores) == len(ids)
    # The id map holds exactly the listed segments; classes follow stuff-then-things.
    assert sorted(np.unique(id_map[id_map > 0]).tolist()) == sorted(ids.tolist())
    np.testing.assert_array_equal(is_thing, classes >= len(STUFF))
    assert np.all(np.diff(scores) <= 0)
    # The things: one mask per thing segment, its pixels in the id map, its box around them.
    n = int(is_thing.sum())
    assert data["masks"].shape == (n, 90, 120) and data["boxes"].shape == (n, 4)
    np.testing.assert_array_equal(data["classes"], classes[is_thing])
    np.testing.assert_array_equal(data["scores"], scores[is_thing])
    # PCV boxes are the pixel bounds. Panoptic YOLACT and Mask R-CNN keep the detection box; a
    # fusion pixel (16 x 16 grid of the 64 x 64 input: 7.5 x 5.625 image pixels) is the
    # instance's only where its centre is in the box, so its pixels reach at most one cell
    # beyond the box.
    cell = (0.0, 0.0) if kind == "pcv" else (120 / 16, 90 / 16)
    for mask, sid, box in zip(data["masks"], ids[is_thing], data["boxes"]):
        np.testing.assert_array_equal(mask, id_map == sid)
        rows, cols = np.nonzero(mask)
        assert np.isfinite(box).all()
        assert box[0] - cell[0] <= cols.min() and cols.max() + 1 <= box[2] + cell[0] + 1e-3
        assert box[1] - cell[1] <= rows.min() and rows.max() + 1 <= box[3] + cell[1] + 1e-3
    assert (out / "scene.png").stat().st_size > 0
