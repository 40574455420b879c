"""CameraInfo plausibility (`drivable.camera.check_plausible`): the field-of-view arithmetic
against OpenCV's calibrationMatrixValues, and each implausible calibration refused by name."""

import math

import cv2
import numpy as np
import pytest

from segmentation_ros.drivable import CameraModel
from segmentation_ros.drivable.camera import check_plausible, edge_angles_deg

W, H = 640, 480


def camera(fx=500.0, fy=500.0, cx=320.0, cy=240.0, width=W, height=H, model="plumb_bob"):
    d = [0.0] * (4 if model == "equidistant" else 5)
    k = [fx, 0.0, cx, 0.0, fy, cy, 0.0, 0.0, 1.0]
    return CameraModel(K=k, D=d, width=width, height=height, distortion_model=model)


@pytest.mark.parametrize(
    "fx,fy,cx,cy",
    [(500.0, 500.0, 320.0, 240.0), (320.0, 300.0, 300.0, 256.0), (80.0, 90.0, 10.0, 470.0)],
)
def test_pinhole_field_of_view_matches_opencv(fx, fy, cx, cy):
    cam = camera(fx, fy, cx, cy)
    fovx, fovy, *_ = cv2.calibrationMatrixValues(cam.K, (W, H), 0.0, 0.0)
    (left, right), (top, bottom) = edge_angles_deg(cam)
    assert left + right == pytest.approx(fovx, abs=1e-9)
    assert top + bottom == pytest.approx(fovy, abs=1e-9)


def test_equidistant_edges_are_radius_over_focal():
    # An ideal fisheye (r = f * theta) with f = W / pi spans 180 degrees across the width.
    cam = camera(fx=W / math.pi, fy=W / math.pi, model="equidistant")
    (left, right), _ = edge_angles_deg(cam)
    assert (left, right) == pytest.approx((90.0, 90.0))
    check_plausible(cam)  # a fisheye may see 180 degrees; a pinhole may not
    with pytest.raises(ValueError, match="off the optical axis"):
        check_plausible(camera(fx=W / math.pi / 10.0, model="equidistant"))


def test_real_calibrations_pass():
    check_plausible(camera())  # 65 degrees: a typical webcam
    check_plausible(camera(fx=200.0, fy=200.0))  # 116 degrees wide angle
    check_plausible(camera(fx=30000.0, fy=30000.0))  # 1.2 degrees telephoto
    check_plausible(camera(width=1280, height=960, cx=640, cy=480), image_size=(W, H))  # binned
    check_plausible(camera(cx=0.0, cy=H))  # principal point on the border is still in the image


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"fx": 1e-300, "fy": 1e-300}, "fx = 1e-300 px"),  # every ray sideways: all occupied
        ({"fx": 1e-300, "cx": 0.0}, "fx = 1e-300 px"),  # principal point on the edge
        ({"fy": 1e-3}, "fy = 0.001 px"),
        ({"fx": 1e300}, "fx = 1e"),  # no field of view
        ({"cx": 1e7, "cy": 1e7}, "principal point"),
        ({"cx": -1.0}, "principal point"),
        ({"width": 2**32 - 1, "height": 2**32 - 1}, "over 65536"),
    ],
)
def test_implausible_calibrations_name_the_field(kwargs, match):
    with pytest.raises(ValueError, match=match):
        check_plausible(camera(**kwargs))


def test_size_must_fit_the_images():
    with pytest.raises(ValueError, match="camera_info is 640x480 but the images are 480x640"):
        check_plausible(camera(), image_size=(480, 640))
    with pytest.raises(ValueError, match="aspect"):
        check_plausible(camera(), image_size=(640, 360))
    check_plausible(camera(), image_size=(320, 240))
    check_plausible(camera(), image_size=np.array([641, 480]))  # within 1 %
