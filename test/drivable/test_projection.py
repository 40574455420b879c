import math

import numpy as np
import pytest

from segmentation_ros.drivable import (
    CameraModel,
    DrivabilityTable,
    GridGeometry,
    GroundProjector,
    MountPose,
    ProjectorCache,
    occupancy_from_counts,
)

from .ground_scene import GROUND_POINTS, HEIGHT, PITCH, H, K, W, optical_in_base, pinhole_project
from .ground_scene import project_ground as cv_project

PLUMB_BOB = (-0.25, 0.07, 0.001, -0.0008, 0.01)
RATIONAL = (0.3, -0.05, 0.001, -0.0008, 0.0, 0.6, -0.1, 0.01)
EQUIDISTANT = (0.05, -0.02, 0.004, -0.001)
MOUNT = MountPose(height=HEIGHT, pitch=PITCH)


def _label(uv: np.ndarray, stride: int = 1) -> np.ndarray:
    """[H, W] bool, True at the pixels nearest to uv; with stride > 1, at the stride x stride
    block around the sampled pixel (s//2 + i*s, s//2 + j*s) nearest to uv."""
    mask = np.zeros((H, W), dtype=bool)
    o = stride // 2
    # The nearest sample is o + stride * round((uv - o) / stride); its block starts o before it.
    for u, v in np.rint((uv - o) / stride).astype(int) * stride:
        mask[v : v + stride, u : u + stride] = True
    return mask


def _cell_rc(geometry: GridGeometry, xy: np.ndarray) -> np.ndarray:
    flat, inside = geometry.cell_index(np.atleast_2d(xy))
    assert inside.all()
    return np.stack([flat // geometry.width, flat % geometry.width], axis=1)


def _in_image(uv: np.ndarray) -> np.ndarray:
    inside = (uv[:, 0] > 2) & (uv[:, 0] < W - 3) & (uv[:, 1] > 2) & (uv[:, 1] < H - 3)
    assert inside.sum() >= 10
    return inside


def _check_points(projector, uv, geometry, max_cells=1, stride=1):
    """Each ground point labelled alone lands within `max_cells` (Chebyshev) of its true cell,
    and nothing else in the grid is seen."""
    inside = _in_image(uv)
    for xy, p in zip(GROUND_POINTS[inside], uv[inside]):
        mask = _label(p[None], stride)
        grid = projector.project(mask, known=mask)
        free = np.argwhere(grid == 0)
        assert len(free) >= 1 and (grid[grid != 0] == -1).all()
        err = np.abs(free - _cell_rc(geometry, xy)).max()
        assert err <= max_cells, (xy, free)


@pytest.mark.parametrize(
    "model, D",
    [("plumb_bob", []), ("plumb_bob", PLUMB_BOB), ("rational_polynomial", RATIONAL)]
    + [("equidistant", EQUIDISTANT)],
)
def test_known_ground_points_land_in_their_cells(geometry, model, D):
    camera = CameraModel(K=K, D=D, width=W, height=H, distortion_model=model)
    uv = cv_project(GROUND_POINTS, D, model) if len(D) else pinhole_project(GROUND_POINTS)
    projector = GroundProjector(camera, MOUNT, geometry, fill_gaps=False)
    _check_points(projector, uv, geometry)
    # The ray of the labelled pixel hits the ground less than one cell away from the point.
    inside = _in_image(uv)
    for xy, p in zip(GROUND_POINTS[inside], uv[inside]):
        ground, drivable, _ = projector.ray_samples(_label(p[None]))
        assert drivable.sum() == 1
        assert np.abs(ground[drivable][0] - xy).max() < geometry.resolution
        # ... and OpenCV projects that ground point back onto the centre of the pixel.
        back = (
            cv_project(ground[drivable], D, model) if len(D) else pinhole_project(ground[drivable])
        )
        np.testing.assert_allclose(back[0], np.rint(p), atol=1e-3)


def test_strided_lookup(geometry):
    camera = CameraModel(K=K, D=PLUMB_BOB, width=W, height=H)
    uv = cv_project(GROUND_POINTS, PLUMB_BOB)
    projector = GroundProjector(camera, MOUNT, geometry, stride=2, fill_gaps=False)
    assert projector.ray_pixels.size < 0.3 * W * H
    _check_points(projector, uv, geometry, max_cells=2, stride=2)


def test_pixels_above_horizon_are_unknown(camera):
    v_horizon = K[1, 2] - K[1, 1] * math.tan(PITCH)  # 28.5
    around = GridGeometry(resolution=0.5, width=200, height=200, origin_x=-50, origin_y=-50)
    projector = GroundProjector(camera, MOUNT, around)
    assert (projector.ray_pixels // W).min() > v_horizon
    above = np.zeros((H, W), dtype=bool)
    above[: int(v_horizon) + 1] = True
    assert (projector.project(np.zeros((H, W), bool), known=above) == -1).all()
    # All pixels labelled non-drivable: the ground in view is occupied, nothing behind is seen.
    grid = projector.project(np.zeros((H, W), bool))
    assert (grid == 100).any() and (grid[:, : around.width // 2] == -1).all()


def test_things_are_never_free(camera, geometry):
    table = DrivabilityTable.from_panoptic(("road", "wall"), ("person", "car"))
    semantic = np.zeros((H, W), dtype=np.uint8)  # all road
    things = np.zeros((H, W), dtype=np.int32)
    things[H // 2 :] = 7  # an instance over the lower half (the near field)
    projector = GroundProjector(camera, MOUNT, geometry)
    grid = projector.project_semantic(semantic, table, things)
    assert (grid == 0).any()  # the far field (upper half, road) is free
    assert (projector.project_semantic(semantic, table, things > -1) != 0).all()
    near = _cell_rc(geometry, np.array([1.6, 0.0]))[0]  # seen only by the thing's pixels
    assert grid[near[0], near[1]] == 100
    semantic[:] = 2  # a person class everywhere, no instance mask
    assert (projector.project_semantic(semantic, table) != 0).all()
    semantic[:] = 255  # void everywhere: nothing is seen
    assert (projector.project_semantic(semantic, table) == -1).all()


def test_matrix_and_mount_pose_give_the_same_grid(camera, geometry):
    np.testing.assert_allclose(MOUNT.matrix(), optical_in_base(), atol=1e-12)
    rng = np.random.default_rng(0)
    mask = rng.random((H, W)) < 0.5
    a = GroundProjector(camera, MOUNT, geometry).project(mask)
    b = GroundProjector(camera, optical_in_base(), geometry).project(mask)
    np.testing.assert_array_equal(a, b)


def test_mount_pose_yaw_roll_offset():
    c, s = math.cos(0.5), math.sin(0.5)
    rz = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
    expected = np.eye(4)
    expected[:3, :3] = rz @ optical_in_base()[:3, :3]
    expected[:3, 3] = (0.3, -0.2, 1.0)
    pose = MountPose(height=1.0, pitch=PITCH, yaw=0.5, x=0.3, y=-0.2)
    np.testing.assert_allclose(pose.matrix(), expected, atol=1e-12)
    rolled = MountPose(height=1.0, roll=0.4).matrix()
    np.testing.assert_allclose(rolled[:3, 0], (0.0, -math.cos(0.4), -math.sin(0.4)), atol=1e-12)


def test_fill_gaps_covers_the_far_field(geometry):
    far = GridGeometry(resolution=0.05, width=300, height=200, origin_x=0.0, origin_y=-5.0)
    centers = far.cell_centers()
    for D in ([], PLUMB_BOB):
        camera = CameraModel(K=K, D=D, width=W, height=H)
        uv = cv_project(centers, D) if len(D) else pinhole_project(centers)
        in_view = (uv[:, 0] >= 0) & (uv[:, 0] <= W - 1) & (uv[:, 1] >= 0) & (uv[:, 1] <= H - 1)
        in_view = in_view.reshape(far.height, far.width)
        everything = np.ones((H, W), dtype=bool)
        holes = GroundProjector(camera, MOUNT, far, fill_gaps=False).project(everything)
        assert (holes[in_view] == -1).any()
        filled = GroundProjector(camera, MOUNT, far).project(everything)
        assert (filled[in_view] == 0).all()
        assert (filled == 0).sum() <= in_view.sum() * 1.05


def test_max_range(camera, geometry):
    projector = GroundProjector(camera, MOUNT, geometry, max_range=3.0)
    grid = projector.project(np.ones((H, W), dtype=bool))
    xs = geometry.cell_centers()[:, 0].reshape(geometry.height, geometry.width)
    assert (grid[xs > 3.05] == -1).all() and (grid[xs < 2.9] == 0).any()


def test_mixed_cell_rule():
    n_known = np.array([0, 4, 4, 4, 1, 5])
    n_drivable = np.array([0, 4, 2, 3, 0, 3])
    assert occupancy_from_counts(n_drivable, n_known).tolist() == [-1, 0, 100, 0, 100, 0]
    assert occupancy_from_counts(n_drivable, n_known, occupied_fraction=0.2).tolist() == [
        -1,
        0,
        100,
        100,
        100,
        100,
    ]
    assert occupancy_from_counts(n_drivable, n_known, min_samples=2).tolist()[4] == -1
    assert occupancy_from_counts(n_drivable, n_known).dtype == np.int8


def test_cache_rebuilds_only_on_change(geometry):
    cache = ProjectorCache(stride=2)
    cam = CameraModel(K=K, D=[], width=W, height=H)
    p = cache.get(cam, MOUNT, geometry)
    assert cache.get(CameraModel(K=K.copy(), D=[], width=W, height=H), MOUNT, geometry) is p
    assert cache.get(cam, optical_in_base(), geometry) is p
    assert cache.builds == 1
    cache.get(cam, MountPose(height=1.1, pitch=PITCH), geometry)
    cache.get(cam.resized(W // 2, H // 2), MountPose(height=1.1, pitch=PITCH), geometry)
    assert cache.builds == 3


def test_resized_camera():
    half = CameraModel(K=K, D=PLUMB_BOB, width=W, height=H).resized(W // 2, H // 2)
    np.testing.assert_allclose(half.K, [[125.0, 0.0, 79.5], [0.0, 125.0, 59.5], [0.0, 0.0, 1.0]])
    np.testing.assert_array_equal(half.D, PLUMB_BOB)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(K=np.zeros((3, 3))), "singular"),
        (dict(K=np.where(np.eye(3) > 0, np.nan, K)), "non-finite"),
        (dict(K=np.eye(2)), "3x3"),
        (dict(D=[0.1, np.nan, 0, 0, 0]), "non-finite"),
        (dict(D=[0.1, 0.2, 0.3]), "distortion coefficients"),
        (dict(distortion_model="fov"), "unsupported"),
        (dict(width=0), "positive"),
    ],
)
def test_camera_errors(kwargs, match):
    args = dict(K=K, D=[], width=W, height=H) | kwargs
    with pytest.raises(ValueError, match=match):
        CameraModel(**args)


def _bad(T_change):
    T = optical_in_base()
    T_change(T)
    return T


@pytest.mark.parametrize(
    "extrinsics, match",
    [
        (_bad(lambda T: T.__setitem__((0, 3), np.nan)), "non-finite"),
        (optical_in_base()[:3], "4x4"),
        (_bad(lambda T: T.__setitem__((slice(0, 3), 0), 2 * T[:3, 0])), "orthonormal"),
        (_bad(lambda T: T.__setitem__((2, 3), -0.5)), "above the ground"),
        (_bad(lambda T: T.__setitem__((3, 0), 1.0)), "last row"),
        (MountPose(height=1.0, pitch=math.nan), "non-finite"),
    ],
)
def test_extrinsics_errors(camera, geometry, extrinsics, match):
    with pytest.raises(ValueError, match=match):
        GroundProjector(camera, extrinsics, geometry)


def test_grid_and_input_errors(camera, geometry):
    for res in (0.0, -0.1, math.nan):
        with pytest.raises(ValueError, match="resolution"):
            GridGeometry(resolution=res, width=10, height=10)
    with pytest.raises(ValueError, match="grid size"):
        GridGeometry(resolution=0.1, width=0, height=10)
    with pytest.raises(ValueError, match="stride"):
        GroundProjector(camera, MOUNT, geometry, stride=0)
    with pytest.raises(ValueError, match="larger than"):
        GroundProjector(camera, MOUNT, geometry, stride=H + 1)
    with pytest.raises(ValueError, match="max_range"):
        GroundProjector(camera, MOUNT, geometry, max_range=-1.0)
    projector = GroundProjector(camera, MOUNT, geometry, stride=4)
    with pytest.raises(ValueError, match="resized"):
        projector.project(np.ones((H // 2, W // 2), dtype=bool))
    with pytest.raises(ValueError, match="known"):
        projector.project(np.ones((H, W), dtype=bool), known=np.ones((H, W + 1), dtype=bool))
    with pytest.raises(TypeError, match="bool or integer"):
        projector.project(np.ones((H, W), dtype=np.float32))
    with pytest.raises(ValueError, match="occupied_fraction"):
        projector.project(np.ones((H, W), dtype=bool), occupied_fraction=0.0)
    with pytest.raises(ValueError, match="outside the table"):
        table = DrivabilityTable.from_panoptic(("road",), ("car",))
        projector.project_semantic(np.full((H, W), 5, dtype=np.uint8), table)
