import math

import numpy as np
import pytest

from segmentation_ros.drivable import GridFusion, GridGeometry, GroundProjector, MountPose

from .ground_scene import PITCH, H, W, pinhole_project

ODOM = GridGeometry(
    resolution=0.1, width=200, height=200, origin_x=-10, origin_y=-10, frame_id="odom"
)


def _pixel_mask(base_xy) -> np.ndarray:
    u, v = np.rint(pinhole_project(np.array([base_xy], dtype=float))[0]).astype(int)
    mask = np.zeros((H, W), dtype=bool)
    mask[v, u] = True
    return mask


def _cell(xy) -> tuple[int, int]:
    flat, inside = ODOM.cell_index(np.array([xy], dtype=float))
    assert inside.all()
    return int(flat[0] // ODOM.width), int(flat[0] % ODOM.width)


@pytest.fixture
def projector(camera, geometry) -> GroundProjector:
    return GroundProjector(camera, MountPose(height=1.0, pitch=PITCH), geometry)


def test_frames_meet_in_the_fixed_frame(projector):
    fusion = GridFusion(ODOM, num_frames=2)
    point = (4.05, 0.55)  # odom, a cell centre
    # Frame 1 at the origin, frame 2 one metre ahead: the same odom point.
    for pose, base in [((0, 0, 0), (4.05, 0.55)), ((1, 0, 0), (3.05, 0.55))]:
        mask = _pixel_mask(base)
        fusion.add(projector, mask, known=mask, pose=pose)
    n_drivable, n_known = fusion.counts()
    r, c = _cell(point)
    assert n_known.sum() == 2 and n_known[r - 1 : r + 2, c - 1 : c + 2].sum() == 2
    assert (n_drivable == n_known).all()
    grid = fusion.grid()
    assert (grid[r - 1 : r + 2, c - 1 : c + 2] == 0).any() and (grid == 0).sum() <= 2

    mask = _pixel_mask((2.05, 0.0))  # frame 3 turned left by 90 degrees
    fusion.add(projector, ~mask, known=mask, pose=(0.5, 0.5, math.pi / 2))  # an obstacle
    assert len(fusion) == 2  # the first frame dropped out
    n_drivable, n_known = fusion.counts()
    assert n_known.sum() == 2 and n_drivable.sum() == 1
    r, c = _cell((0.5, 2.55))
    assert (fusion.grid()[r - 1 : r + 2, c - 1 : c + 2] == 100).any()
    fusion.reset()
    assert len(fusion) == 0 and (fusion.grid() == -1).all()


def test_fusion_errors(projector):
    with pytest.raises(ValueError, match="num_frames"):
        GridFusion(ODOM, num_frames=0)
    fusion = GridFusion(ODOM, num_frames=3)
    with pytest.raises(ValueError, match="pose"):
        fusion.add(projector, np.ones((H, W), bool), pose=(0.0, math.nan, 0.0))
