"""Image keypoints back to 3D on an upright plane, against the synthetic world's truth: its
people are camera-facing billboards standing at their exact ground point, so the rays of their
exact keypoints meet that plane at the 3D keypoints the renderer projected."""

import numpy as np

from segmentation_ros.data.synthetic import generate_scene
from segmentation_ros.data.synthetic_catalogue import PARAMS
from segmentation_ros.data.synthetic_shapes import (
    Thing,
    bb_points,
    billboard,
    person_keypoints_sz,
)
from segmentation_ros.drivable import CameraModel
from segmentation_ros.drivable.ground import pixels_on_upright_plane


def test_keypoint_rays_meet_the_billboard_at_the_rendered_points():
    checked = 0
    for seed in range(6):
        scene = generate_scene(seed, width=320, height=240)
        cam = scene.camera
        model = CameraModel(K=cam.K, D=[], width=cam.width, height=cam.height)
        rng = np.random.default_rng(seed)
        for x, y in ((4.0, 0.5), (7.0, -1.5), (2.5, 1.0)):
            thing = Thing("person", x, y, 0.0, 0.3, PARAMS["person"](rng))
            origin, right = billboard(x, y)
            truth = bb_points(origin, right, person_keypoints_sz(thing.params))
            uv, depth = cam.project(truth)
            assert (depth > 0).all()
            got = pixels_on_upright_plane(model, cam.camera_to_base, uv, (x, y))
            np.testing.assert_allclose(got, truth, atol=1e-6)
            checked += 1
    assert checked == 18


def test_rays_that_miss_the_plane_are_nan():
    model = CameraModel(K=[[100, 0, 50], [0, 100, 40], [0, 0, 1]], D=[], width=100, height=80)
    mount = np.array([[0, 0, 1, 0], [-1, 0, 0, 0], [0, -1, 0, 1.0], [0, 0, 0, 1]])  # level
    behind = pixels_on_upright_plane(model, mount, [[50, 40]], (-3.0, 0.0))
    assert np.isnan(behind).all()
    ahead = pixels_on_upright_plane(model, mount, [[50, 40]], (3.0, 0.0))
    np.testing.assert_allclose(ahead, [[3.0, 0.0, 1.0]], atol=1e-12)
