"""Message helpers (no DDS): masks, objects, results and class tables to arrays and back."""

import numpy as np
import pytest
from std_msgs.msg import Header

from segmentation_ros.ros.messages import (
    ClassTable,
    class_table_from_msg,
    decode_mask,
    decode_mask_full,
    make_class_info,
    make_object,
    make_result,
    result_to_arrays,
)


def sample_objects(rng, image_hw=(48, 64), n=3):
    objects, truth = [], []
    for i in range(n):
        x, y = int(rng.integers(0, 30)), int(rng.integers(0, 20))
        w, h = int(rng.integers(1, 30)), int(rng.integers(1, 25))
        mask = rng.random((h, w)) > 0.4
        ys, xs = np.nonzero(mask)
        centroid = (float(xs.mean() + x + 0.5), float(ys.mean() + y + 0.5)) if xs.size else (0, 0)
        objects.append(
            make_object(
                instance_id=i + 1, class_id=i, class_label=f"c{i}", is_thing=i % 2 == 0,
                score=0.9 - 0.1 * i, mask_score=0.8, roi_xywh=(x, y, w, h), mask=mask,
                centroid_xy=centroid, area=int(mask.sum()),
            )
        )  # fmt: skip
        truth.append((x, y, w, h, mask))
    return objects, truth


def test_mask_bytes_are_mono8_cropped_to_roi():
    rng = np.random.default_rng(1)
    objects, truth = sample_objects(rng)
    for obj, (x, y, w, h, mask) in zip(objects, truth):
        raw = np.frombuffer(obj.mask, np.uint8)
        assert raw.size == w * h and set(np.unique(raw)) <= {0, 255}
        np.testing.assert_array_equal(decode_mask(obj), mask)
        full = decode_mask_full(obj, 48, 64)
        assert full.sum() == mask.sum()
        np.testing.assert_array_equal(full[y : y + h, x : x + w], mask)


def test_result_to_arrays_and_id_image():
    rng = np.random.default_rng(2)
    objects, truth = sample_objects(rng)
    msg = make_result(
        header=Header(frame_id="cam"), image_height=48, image_width=64, model_name="m",
        objects=objects, inference_ms=3.5, total_ms=7.25,
    )  # fmt: skip
    arrays = result_to_arrays(msg)
    assert len(arrays) == 3 and arrays.labels == ["c0", "c1", "c2"]
    np.testing.assert_array_equal(arrays.rois, [t[:4] for t in truth])
    np.testing.assert_allclose(arrays.scores, [0.9, 0.8, 0.7], rtol=1e-6)
    ids = arrays.id_image(48, 64)
    expected = np.zeros((48, 64), np.uint16)
    for i, (x, y, w, h, mask) in enumerate(truth):
        expected[y : y + h, x : x + w][mask] = i + 1
    np.testing.assert_array_equal(ids, expected)


def test_empty_result():
    arrays = result_to_arrays(make_result(
        header=Header(), image_height=4, image_width=4, model_name="m", objects=[],
        inference_ms=0, total_ms=0))  # fmt: skip
    assert len(arrays) == 0 and arrays.rois.shape == (0, 4)
    assert not arrays.id_image(4, 4).any()


def test_bad_masks_are_rejected():
    with pytest.raises(ValueError, match="roi"):
        make_object(
            instance_id=1, class_id=0, class_label="a", is_thing=True, score=1, mask_score=1,
            roi_xywh=(0, 0, 5, 5), mask=np.ones((4, 5), bool), centroid_xy=(0, 0), area=20,
        )  # fmt: skip
    rng = np.random.default_rng(3)
    obj = sample_objects(rng, n=1)[0][0]
    obj.mask = bytes(obj.mask)[:-1]
    with pytest.raises(ValueError, match="mask"):
        decode_mask(obj)


def test_class_table_round_trip_and_validation():
    table = ClassTable(
        names=("road", "person"),
        colors=np.array([[128, 64, 128], [220, 20, 60]], np.uint8),
        is_thing=np.array([False, True]),
        drivable=np.array([True, False]),
    )
    back = class_table_from_msg(make_class_info(table, model_name="m"))
    assert back.names == table.names
    np.testing.assert_array_equal(back.colors, table.colors)
    np.testing.assert_array_equal(back.is_thing, table.is_thing)
    np.testing.assert_array_equal(back.drivable, table.drivable)
    with pytest.raises(ValueError, match="colors"):
        ClassTable(
            ("a",), colors=np.zeros((2, 3), np.uint8), is_thing=np.zeros(1, bool),
            drivable=np.zeros(1, bool),
        )  # fmt: skip


def test_ground_fields_survive_serialization():
    """The appended ground fields travel in the CDR bytes (a stale typesupport library with the
    old layout would drop them); a segment without a ground point carries NaN."""
    from rclpy.serialization import deserialize_message, serialize_message
    from segmentation_ros.msg import SegmentationResult

    obj = make_object(
        instance_id=1, class_id=3, class_label="person", is_thing=True, score=0.9,
        mask_score=0.9, roi_xywh=(2, 3, 2, 2), mask=np.ones((2, 2), bool),
        centroid_xy=(3.0, 4.0), area=4, ground_xy=(3.0, -4.0), ground_frame_id="base_link",
    )  # fmt: skip
    stuff = make_object(
        instance_id=2, class_id=0, class_label="road", is_thing=False, score=0.9,
        mask_score=0.9, roi_xywh=(0, 0, 1, 1), mask=np.ones((1, 1), bool),
        centroid_xy=(0.5, 0.5), area=1, ground_frame_id="base_link",
    )  # fmt: skip
    result = make_result(
        header=Header(frame_id="cam"), image_height=8, image_width=8, model_name="m",
        objects=[obj, stuff], inference_ms=1.0, total_ms=2.0,
    )  # fmt: skip
    back = deserialize_message(serialize_message(result), SegmentationResult).objects
    assert back[0].ground_frame_id == "base_link"
    assert (back[0].ground_x, back[0].ground_y, back[0].ground_distance) == (3.0, -4.0, 5.0)
    assert back[0].ground_bearing == pytest.approx(np.arctan2(-4.0, 3.0))
    assert np.isnan([back[1].ground_x, back[1].ground_distance, back[1].ground_bearing]).all()


def test_obstacle_cloud_bytes_follow_the_documented_layout():
    """drivable/obstacles packed as the README says (checked with `struct`), and the generic
    reader reads another layout (big-endian, padded) from its PointFields."""
    import struct

    from sensor_msgs.msg import PointCloud2, PointField

    from segmentation_ros.drivable import POINT_DTYPE
    from segmentation_ros.ros.ground_outputs import obstacles_msg, points_from_cloud

    points = np.zeros(2, POINT_DTYPE)
    points["x"], points["y"], points["z"] = (1.5, -2.0), (0.25, 3.0), 0.1
    points["class_id"], points["instance_id"] = (3, 7), (12, 65535)
    msg = obstacles_msg(points, Header(frame_id="base_link"))
    assert (msg.height, msg.width, msg.point_step, msg.row_step) == (1, 2, 16, 32)
    assert [(f.name, f.offset, f.datatype, f.count) for f in msg.fields] == [
        ("x", 0, PointField.FLOAT32, 1), ("y", 4, PointField.FLOAT32, 1),
        ("z", 8, PointField.FLOAT32, 1), ("class_id", 12, PointField.UINT16, 1),
        ("instance_id", 14, PointField.UINT16, 1),
    ]  # fmt: skip
    assert bytes(msg.data) == struct.pack(
        "<fffHHfffHH", 1.5, 0.25, 0.1, 3, 12, -2.0, 3.0, 0.1, 7, 65535
    )
    other = PointCloud2(height=1, width=2, point_step=12, is_bigendian=True)
    other.fields = [
        PointField(name="x", offset=0, datatype=PointField.FLOAT32, count=1),
        PointField(name="ring", offset=4, datatype=PointField.UINT16, count=1),
        PointField(name="i", offset=8, datatype=PointField.INT32, count=1),
    ]
    other.data = struct.pack(">fHxxi", 1.0, 5, -3) + struct.pack(">fHxxi", 2.0, 6, 4)
    read = points_from_cloud(other)
    assert read["x"].tolist() == [1.0, 2.0] and read["ring"].tolist() == [5, 6]
    assert read["i"].tolist() == [-3, 4]
