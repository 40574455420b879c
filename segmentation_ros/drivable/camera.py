"""Camera intrinsics (from a CameraInfo-like structure) and the camera's mounting on the robot.

Conventions, stated once for the whole `drivable` package (ROS REP-103 / REP-105):
- Camera optical frame (`<camera>_optical_frame`): z forward along the optical axis, x right,
  y down.
- Robot frame (base_link, or base_footprint when base_link is above the floor): x forward, y left,
  z up. The ground is the plane z = 0 of this frame; the robot-centred grid lies in it.
- `camera_to_base`: the 4x4 homogeneous transform T with p_base = T @ p_optical, i.e. the pose of
  the optical frame in base_link (what tf2 `lookup_transform("base_link", "<camera>_optical_frame",
  t)` returns). It can also be given as a `MountPose` (height, roll, pitch, yaw, x, y).
- Angles in radians, lengths in metres.
- Intrinsics as OpenCV and sensor_msgs/CameraInfo: K = [[fx, s, cx], [0, fy, cy], [0, 0, 1]];
  pixel index (u, v) = (column, row) and the centre of that pixel is at image coordinates (u, v).
  Distortion models: "plumb_bob" D = (k1, k2, p1, p2, k3) (empty or all zero: no distortion),
  "rational_polynomial" D = (k1, k2, p1, p2, k3, k4, k5, k6), "equidistant" (fisheye)
  D = (k1, k2, k3, k4). For a rectified image (image_rect) pass P[:3, :3] as K and an empty D.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

_D_LENGTHS = {"plumb_bob": (0, 4, 5), "rational_polynomial": (8,), "equidistant": (4,)}
_D_PADDED = {"plumb_bob": 5, "rational_polynomial": 8, "equidistant": 4}

#: Plausibility bounds of a calibration (`check_plausible`): the largest image side; how far off
#: the optical axis an image edge may be (degrees; a pinhole image plane never reaches 90, a
#: fisheye can see behind itself) and the least field of view; how far the CameraInfo's aspect
#: ratio may differ from the images' (binning or resizing scales both axes alike).
MAX_CAMERA_SIDE = 1 << 16
MIN_FOV_DEG = 0.1
MAX_OFF_AXIS_DEG = {"plumb_bob": 89.5, "rational_polynomial": 89.5, "equidistant": 180.0}
ASPECT_TOLERANCE = 0.01

#: A pixel whose undistorted ray, distorted again, misses the pixel by more than this (pixels) is
#: outside the domain where the distortion model is invertible; it is treated as unknown.
ROUND_TRIP_TOL_PX = 0.05


def _readonly(a: np.ndarray) -> np.ndarray:
    a.setflags(write=False)
    return a


@dataclass(frozen=True, eq=False)
class CameraModel:
    """Intrinsics of one camera, the fields of sensor_msgs/CameraInfo that projection needs.

    K:      3x3 (or the 9 row-major values of CameraInfo.k), float64 after construction.
    D:      distortion coefficients for `distortion_model` (CameraInfo.d), float64.
    width, height: image size in pixels the calibration refers to.
    distortion_model: "plumb_bob", "rational_polynomial" or "equidistant".

    Build from a message: `CameraModel(K=msg.k, D=msg.d, width=msg.width, height=msg.height,
    distortion_model=msg.distortion_model)`. Two models compare equal when every field is equal.
    """

    K: np.ndarray
    D: np.ndarray
    width: int
    height: int
    distortion_model: str = "plumb_bob"

    def __post_init__(self) -> None:
        K = np.array(self.K, dtype=np.float64)
        if K.size != 9:
            raise ValueError(f"K must be 3x3 (or 9 values), got shape {K.shape}")
        K = K.reshape(3, 3)
        if not np.isfinite(K).all():
            raise ValueError(f"K has non-finite values: {K.tolist()}")
        if K[0, 0] <= 0.0 or K[1, 1] <= 0.0:
            raise ValueError(
                f"K is singular or flipped (fx={K[0, 0]}, fy={K[1, 1]}); both focal lengths must "
                "be > 0 (an uncalibrated CameraInfo has K all zero)"
            )
        if not np.allclose(K[2], (0.0, 0.0, 1.0)) or K[1, 0] != 0.0:
            raise ValueError(f"K must be [[fx, s, cx], [0, fy, cy], [0, 0, 1]], got {K.tolist()}")
        model = str(self.distortion_model)
        if model not in _D_LENGTHS:
            raise ValueError(
                f"unsupported distortion_model {model!r}; expected one of {sorted(_D_LENGTHS)}"
            )
        D = np.array(self.D, dtype=np.float64).reshape(-1)
        if D.size not in _D_LENGTHS[model]:
            raise ValueError(
                f"{model} needs {' or '.join(map(str, _D_LENGTHS[model]))} distortion "
                f"coefficients, got {D.size}"
            )
        if not np.isfinite(D).all():
            raise ValueError(f"D has non-finite values: {D.tolist()}")
        D = np.concatenate([D, np.zeros(_D_PADDED[model] - D.size)])
        width, height = int(self.width), int(self.height)
        if width <= 0 or height <= 0:
            raise ValueError(f"image size must be positive, got {width}x{height}")
        object.__setattr__(self, "K", _readonly(K))
        object.__setattr__(self, "D", _readonly(D))
        object.__setattr__(self, "width", width)
        object.__setattr__(self, "height", height)
        object.__setattr__(self, "distortion_model", model)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, CameraModel):
            return NotImplemented
        return (
            self.width == other.width
            and self.height == other.height
            and self.distortion_model == other.distortion_model
            and np.array_equal(self.K, other.K)
            and np.array_equal(self.D, other.D)
        )

    __hash__ = None  # holds arrays

    @property
    def has_distortion(self) -> bool:
        return bool(np.any(self.D != 0.0))

    def resized(self, width: int, height: int) -> CameraModel:
        """The same camera for an image resized to width x height (e.g. a half-size mask).

        Keeps the pixel-centre convention: u' = sx * (u + 0.5) - 0.5. Distortion is unchanged
        (it acts on normalised coordinates).
        """
        sx, sy = width / self.width, height / self.height
        S = np.array([[sx, 0.0, (sx - 1.0) / 2], [0.0, sy, (sy - 1.0) / 2], [0.0, 0.0, 1.0]])
        return CameraModel(S @ self.K, self.D, width, height, self.distortion_model)

    def distort(self, xy: np.ndarray) -> np.ndarray:
        """Normalised undistorted coordinates [N, 2] (x/z, y/z) -> pixel coordinates [N, 2]."""
        x, y = xy[:, 0], xy[:, 1]
        d = self.D
        if self.distortion_model == "equidistant":
            r = np.hypot(x, y)
            th = np.arctan(r)
            th2 = th * th
            th_d = th * (1 + th2 * (d[0] + th2 * (d[1] + th2 * (d[2] + th2 * d[3]))))
            scale = np.divide(th_d, r, out=np.ones_like(r), where=r > 1e-12)
            xd, yd = x * scale, y * scale
        else:
            r2 = x * x + y * y
            radial = 1 + r2 * (d[0] + r2 * (d[1] + r2 * d[4]))
            if self.distortion_model == "rational_polynomial":
                radial = radial / (1 + r2 * (d[5] + r2 * (d[6] + r2 * d[7])))
            xd = x * radial + 2 * d[2] * x * y + d[3] * (r2 + 2 * x * x)
            yd = y * radial + d[2] * (r2 + 2 * y * y) + 2 * d[3] * x * y
        K = self.K
        return np.stack([K[0, 0] * xd + K[0, 1] * yd + K[0, 2], K[1, 1] * yd + K[1, 2]], axis=1)

    def undistort(self, uv: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Pixel coordinates [N, 2] -> (normalised undistorted coordinates [N, 2], ok [N] bool).

        `ok` is False where the distortion model cannot be inverted (the undistorted point does
        not distort back onto the pixel within ROUND_TRIP_TOL_PX).
        """
        uv = np.ascontiguousarray(uv, dtype=np.float64)
        if uv.shape[0] == 0:
            return np.zeros((0, 2)), np.zeros(0, dtype=bool)
        if not self.has_distortion:
            K = self.K
            y = (uv[:, 1] - K[1, 2]) / K[1, 1]
            x = (uv[:, 0] - K[0, 2] - K[0, 1] * y) / K[0, 0]
            return np.stack([x, y], axis=1), np.ones(uv.shape[0], dtype=bool)
        criteria = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 100, 1e-10)
        pts = uv.reshape(-1, 1, 2)
        if self.distortion_model == "equidistant":
            xy = cv2.fisheye.undistortPoints(pts, self.K, self.D, criteria=criteria)
        else:
            xy = cv2.undistortPoints(pts, self.K, self.D, criteria=criteria)
        xy = xy.reshape(-1, 2).astype(np.float64)
        with np.errstate(invalid="ignore", over="ignore"):
            err = np.abs(self.distort(xy) - uv).max(axis=1)
        ok = np.isfinite(xy).all(axis=1) & (err < ROUND_TRIP_TOL_PX)
        return xy, ok


def edge_angles_deg(camera: CameraModel) -> tuple[tuple[float, float], tuple[float, float]]:
    """Angles in degrees between the optical axis and the rays through the image edges,
    ((left, right), (top, bottom)), distortion ignored: atan(cx / fx), atan((width - cx) / fx)
    for pinhole models (their sum is the field of view of OpenCV's calibrationMatrixValues);
    cx / fx radians for the equidistant model, whose image radius grows with the angle."""
    K = camera.K
    angles = []
    for f, c, side in ((K[0, 0], K[0, 2], camera.width), (K[1, 1], K[1, 2], camera.height)):
        d = np.array([c, side - c], dtype=np.float64)
        with np.errstate(over="ignore", divide="ignore"):
            a = d / f if camera.distortion_model == "equidistant" else np.arctan(d / f)
        angles.append((float(np.degrees(a[0])), float(np.degrees(a[1]))))
    return angles[0], angles[1]


def check_plausible(camera: CameraModel, image_size: tuple[int, int] | None = None) -> None:
    """Raise ValueError naming what makes `camera` implausible as a real calibration.

    Finite and positive values are not enough (fx = 1e-300 turns every ray sideways). Checked:
    the image side is at most MAX_CAMERA_SIDE; the principal point lies in the image
    (0 <= cx <= width, 0 <= cy <= height); along each axis, the image edges are at most
    MAX_OFF_AXIS_DEG[model] off the optical axis and at least MIN_FOV_DEG apart
    (`edge_angles_deg`); and, when `image_size` (width, height) of the images is given, the
    CameraInfo has their aspect ratio within ASPECT_TOLERANCE (it may be a scaled size).
    """
    width, height = camera.width, camera.height
    if max(width, height) > MAX_CAMERA_SIDE:
        raise ValueError(f"image size {width}x{height} is over {MAX_CAMERA_SIDE} pixels a side")
    cx, cy = camera.K[0, 2], camera.K[1, 2]
    if not (0.0 <= cx <= width and 0.0 <= cy <= height):
        raise ValueError(
            f"principal point ({cx:.6g}, {cy:.6g}) is outside the {width}x{height} image"
        )
    low, high = MIN_FOV_DEG, MAX_OFF_AXIS_DEG[camera.distortion_model]
    for axis, (near, far) in zip("xy", edge_angles_deg(camera)):
        focal = camera.K[0, 0] if axis == "x" else camera.K[1, 1]
        if near + far < low or max(near, far) > high:
            raise ValueError(
                f"f{axis} = {focal:.6g} px puts the image edges {near:.4g} and {far:.4g} deg off "
                f"the optical axis; a {camera.distortion_model} camera sees at most {high:g} deg "
                f"off axis and at least {low:g} deg across"
            )
    if image_size is not None:
        image_w, image_h = image_size
        ratio = (width / height) / (image_w / image_h)
        if abs(ratio - 1.0) > ASPECT_TOLERANCE:
            raise ValueError(
                f"camera_info is {width}x{height} but the images are {image_w}x{image_h} "
                "(aspect ratios differ; it describes another camera or resolution)"
            )


@dataclass(frozen=True)
class MountPose:
    """Camera mounting on the robot, an alternative to a 4x4 `camera_to_base`.

    x, y:   position of the camera centre in base_link (m).
    height: camera centre above the ground plane z = 0 (m), > 0.
    roll, pitch, yaw: orientation (rad) of the camera body frame (x along the optical axis,
        y left, z up) in base_link, R = Rz(yaw) @ Ry(pitch) @ Rx(roll). With all zero the camera
        looks along base_link x; positive pitch tilts it down, positive yaw turns it left,
        positive roll turns it about the optical axis (right-hand rule about body x).
    """

    height: float
    pitch: float = 0.0
    roll: float = 0.0
    yaw: float = 0.0
    x: float = 0.0
    y: float = 0.0

    def matrix(self) -> np.ndarray:
        """4x4 float64 `camera_to_base` (p_base = T @ p_optical)."""
        values = (self.height, self.pitch, self.roll, self.yaw, self.x, self.y)
        if not all(math.isfinite(float(v)) for v in values):
            raise ValueError(f"MountPose has non-finite values: {self}")
        cr, sr = math.cos(self.roll), math.sin(self.roll)
        cp, sp = math.cos(self.pitch), math.sin(self.pitch)
        cy, sy = math.cos(self.yaw), math.sin(self.yaw)
        rz = np.array([[cy, -sy, 0.0], [sy, cy, 0.0], [0.0, 0.0, 1.0]])
        ry = np.array([[cp, 0.0, sp], [0.0, 1.0, 0.0], [-sp, 0.0, cp]])
        rx = np.array([[1.0, 0.0, 0.0], [0.0, cr, -sr], [0.0, sr, cr]])
        # Columns: the optical axes x (right), y (down), z (forward) in the camera body frame.
        body_from_optical = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])
        T = np.eye(4)
        T[:3, :3] = rz @ ry @ rx @ body_from_optical
        T[:3, 3] = (self.x, self.y, self.height)
        return T


def camera_to_base_matrix(extrinsics: MountPose | np.ndarray) -> np.ndarray:
    """Validated 4x4 float64 `camera_to_base` from a MountPose or a 4x4 array-like.

    Raises ValueError for a wrong shape, non-finite values, a rotation that is not orthonormal
    with determinant +1, a last row other than (0, 0, 0, 1), or a camera not above the ground.
    """
    if isinstance(extrinsics, MountPose):
        T = extrinsics.matrix()
    else:
        T = np.array(extrinsics, dtype=np.float64)
        if T.shape != (4, 4):
            raise ValueError(f"camera_to_base must be 4x4, got shape {T.shape}")
        if not np.isfinite(T).all():
            raise ValueError(f"camera_to_base has non-finite values: {T.tolist()}")
        if not np.allclose(T[3], (0.0, 0.0, 0.0, 1.0)):
            raise ValueError(f"camera_to_base last row must be (0, 0, 0, 1), got {T[3].tolist()}")
        R = T[:3, :3]
        if not np.allclose(R.T @ R, np.eye(3), atol=1e-6) or np.linalg.det(R) < 0:
            raise ValueError("camera_to_base rotation must be orthonormal with determinant +1")
    if T[2, 3] <= 0.0:
        raise ValueError(f"the camera must be above the ground plane, got height {T[2, 3]} m")
    return T
