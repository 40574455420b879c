"""Fixtures: the synthetic camera of ground_scene.py and a 10 m x 10 m grid ahead of it."""

import pytest

from segmentation_ros.drivable import CameraModel, GridGeometry

from .ground_scene import H, K, W


@pytest.fixture
def camera() -> CameraModel:
    return CameraModel(K=K, D=[], width=W, height=H)


@pytest.fixture
def geometry() -> GridGeometry:
    return GridGeometry(resolution=0.1, width=100, height=100, origin_x=0.0, origin_y=-5.0)
