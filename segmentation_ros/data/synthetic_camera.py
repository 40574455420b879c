"""The pinhole camera of the synthetic world (`SceneCamera`) and its geometry.

Frames (ROS REP-103, as `segmentation_ros.drivable.camera`):
- camera optical frame: z forward along the optical axis, x right, y down;
- base_link: x forward, y left, z up; the ground is the plane z = 0 and the base_link origin is
  the ground point straight below the camera centre (the camera sits at (0, 0, camera_height)).
Roll and yaw are 0; positive `pitch` tilts the camera down. Angles in radians, lengths in metres.
Intrinsics as OpenCV / sensor_msgs/CameraInfo: K = [[fx, 0, cx], [0, fy, cy], [0, 0, 1]], no
distortion; the centre of pixel (u, v) (column, row) is at image coordinates (u, v).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class SceneCamera:
    """Intrinsics and mounting of the synthetic camera.

    fx, fy, cx, cy: pinhole intrinsics in pixels.
    width, height:  image size in pixels.
    camera_height:  optical centre above the ground plane, metres (> 0).
    pitch:          downward tilt of the optical axis, radians, in (-pi/2, pi/2).
    """

    fx: float
    fy: float
    cx: float
    cy: float
    width: int
    height: int
    camera_height: float
    pitch: float

    def __post_init__(self) -> None:
        for name in ("width", "height"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int | np.integer) or v <= 0:
                raise ValueError(f"{name} must be a positive integer number of pixels, got {v!r}")
            object.__setattr__(self, name, int(v))
        for name in ("fx", "fy", "cx", "cy", "camera_height", "pitch"):
            v = float(getattr(self, name))
            if not math.isfinite(v):
                raise ValueError(f"{name} must be finite, got {v}")
            object.__setattr__(self, name, v)
        if self.fx <= 0 or self.fy <= 0:
            raise ValueError(f"focal lengths must be > 0, got fx={self.fx}, fy={self.fy}")
        if self.camera_height <= 0:
            raise ValueError(f"camera_height must be > 0 m, got {self.camera_height}")
        if not -math.pi / 2 < self.pitch < math.pi / 2:
            raise ValueError(f"pitch must be in (-pi/2, pi/2) rad, got {self.pitch}")

    @staticmethod
    def from_fov(
        width: int, height: int, hfov_deg: float, camera_height: float, pitch: float
    ) -> SceneCamera:
        """Square pixels, principal point at the image centre ((W-1)/2, (H-1)/2)."""
        if not 1.0 <= hfov_deg <= 170.0:
            raise ValueError(f"hfov_deg must be in [1, 170], got {hfov_deg}")
        f = (width / 2) / math.tan(math.radians(hfov_deg) / 2)
        return SceneCamera(
            f, f, (width - 1) / 2, (height - 1) / 2, width, height, camera_height, pitch
        )

    @property
    def K(self) -> np.ndarray:
        """3x3 float64 intrinsic matrix."""
        return np.array([[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]])

    @property
    def rotation(self) -> np.ndarray:
        """3x3 float64 R with d_base = R @ d_optical."""
        c, s = math.cos(self.pitch), math.sin(self.pitch)
        return np.array([[0.0, -s, c], [-1.0, 0.0, 0.0], [0.0, -c, -s]])

    @property
    def camera_to_base(self) -> np.ndarray:
        """4x4 float64 T with p_base = T @ p_optical (tf2: base_link <- camera optical frame)."""
        T = np.eye(4)
        T[:3, :3] = self.rotation
        T[2, 3] = self.camera_height
        return T

    @property
    def horizon_row(self) -> float:
        """Image row (continuous v) of the horizon, the image of ground points at infinity."""
        return self.cy - self.fy * math.tan(self.pitch)

    def rays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per-pixel ray directions in base_link, separable because roll is 0.

        Returns (a [H], b [W], c [H]) float64: the (unnormalised) ray of pixel (u, v) is
        (a[v], b[u], c[v]) from the camera centre (0, 0, camera_height); a is the forward and c
        the upward component (c < 0 for rays that meet the ground), b the leftward one.
        """
        yn = (np.arange(self.height) - self.cy) / self.fy
        xn = (np.arange(self.width) - self.cx) / self.fx
        cp, sp = math.cos(self.pitch), math.sin(self.pitch)
        return cp - yn * sp, -xn, -sp - yn * cp

    def ground_points(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Where each pixel's ray meets the ground z = 0.

        Returns (x [H, W], y [H, W], valid [H, W] bool) in base_link metres; rows at or above
        the horizon are invalid (x, y = inf there).
        """
        a, b, c = self.rays()
        with np.errstate(divide="ignore"):
            t = np.where(c < 0, -self.camera_height / c, np.inf)
        x = np.repeat((t * a)[:, None], self.width, axis=1)
        with np.errstate(invalid="ignore"):
            y = t[:, None] * b[None, :]
        valid = np.repeat((c < 0)[:, None], self.width, axis=1)
        return x, np.where(valid, y, np.inf), valid

    def to_optical(self, points: np.ndarray) -> np.ndarray:
        """[N, 3] base_link points -> [N, 3] camera optical frame."""
        p = np.asarray(points, dtype=np.float64) - (0.0, 0.0, self.camera_height)
        return p @ self.rotation

    def project(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """[N, 3] base_link points -> (uv [N, 2] pixel coordinates, depth [N] optical z, m).

        Points with depth <= 0 are behind the camera; their uv are meaningless.
        """
        p = self.to_optical(points)
        z = p[:, 2]
        with np.errstate(divide="ignore", invalid="ignore"):
            uv = np.stack([self.fx * p[:, 0] / z + self.cx, self.fy * p[:, 1] / z + self.cy], 1)
        return uv, z
