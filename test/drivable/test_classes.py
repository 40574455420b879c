import dataclasses

import numpy as np
import pytest

from segmentation_ros.drivable import DrivabilityTable, drivable_mask, known_mask

STUFF = ("road", "floor-wood", "pavement-merged", "grass-merged", "wall-other-merged", "sky")
THINGS = ("person", "car", "parking meter")


def test_default_names_and_things():
    table = DrivabilityTable.from_panoptic(STUFF, THINGS)
    assert table.drivable_names == ("road", "floor-wood", "pavement-merged")
    assert table.is_thing == (False,) * 6 + (True,) * 3
    assert table.lut.dtype == bool and table.lut.tolist() == [1, 1, 1, 0, 0, 0, 0, 0, 0]
    with pytest.raises(ValueError):
        table.lut[0] = False  # read-only


def test_grass_configurable_and_custom_names():
    table = DrivabilityTable.from_panoptic(STUFF, THINGS, grass_drivable=True)
    assert "grass-merged" in table.drivable_names
    table = DrivabilityTable.from_panoptic(STUFF, THINGS, ["Sky"])
    assert table.drivable_names == ("sky",)


def test_thing_named_like_a_surface_is_never_drivable():
    table = DrivabilityTable.from_panoptic(("wall", "floor"), ("road", "person"))
    assert table.drivable_names == ("floor",)
    with pytest.raises(ValueError, match="never drivable"):
        dataclasses.replace(table, drivable=(False, True, True, False))


def test_no_match_and_length_errors():
    with pytest.raises(ValueError, match="matches the drivable names"):
        DrivabilityTable.from_panoptic(STUFF, THINGS, ["raod"])
    with pytest.raises(ValueError, match="entries"):
        DrivabilityTable.from_names(STUFF, [False])
    with pytest.raises(ValueError, match="equal lengths"):
        DrivabilityTable(("a", "b"), (True,), (False, False))


def test_drivable_mask_void_and_instances():
    table = DrivabilityTable.from_panoptic(STUFF, THINGS)
    sem = np.array([[0, 1, 4], [255, 7, 0]], dtype=np.uint8)
    inst = np.array([[0, 3, 0], [0, 0, 0]], dtype=np.int32)
    assert drivable_mask(sem, table).tolist() == [[1, 1, 0], [0, 0, 1]]
    assert drivable_mask(sem, table, inst).tolist() == [[1, 0, 0], [0, 0, 1]]
    assert known_mask(sem).tolist() == [[1, 1, 1], [0, 1, 1]]
    assert drivable_mask(np.zeros((0, 4), np.int64), table).shape == (0, 4)


def test_drivable_mask_errors():
    table = DrivabilityTable.from_panoptic(STUFF, THINGS)
    with pytest.raises(ValueError, match="outside the table"):
        drivable_mask(np.array([[0, 9]]), table)
    with pytest.raises(ValueError, match="outside the table"):
        drivable_mask(np.array([[0, -1]]), table)
    with pytest.raises(ValueError, match="void_label"):
        drivable_mask(np.array([[0, 1]]), table, void_label=3)
    with pytest.raises(TypeError, match="integer"):
        drivable_mask(np.zeros((2, 2), np.float32), table)
    with pytest.raises(ValueError, match=r"\[H, W\]"):
        drivable_mask(np.zeros((2, 2, 1), np.int64), table)
    with pytest.raises(ValueError, match="instance_mask"):
        drivable_mask(np.zeros((2, 2), np.int64), table, np.zeros((2, 3), bool))
