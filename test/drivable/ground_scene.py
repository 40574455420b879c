"""Helpers for the drivable tests: a synthetic 320x240 pinhole camera 1.0 m above the ground,
pitched down 20 degrees, its geometry written out independently of the library."""

import math

import cv2
import numpy as np

W, H = 320, 240
K = np.array([[250.0, 0.0, 159.5], [0.0, 250.0, 119.5], [0.0, 0.0, 1.0]])
PITCH = math.radians(20.0)
HEIGHT = 1.0


def optical_in_base(pitch: float = PITCH, height: float = HEIGHT) -> np.ndarray:
    """4x4 base_link <- optical for a camera at (0, 0, height) looking along x, tilted down."""
    c, s = math.cos(pitch), math.sin(pitch)
    T = np.eye(4)
    T[:3, 0] = (0.0, -1.0, 0.0)  # image right = robot right
    T[:3, 1] = (-s, 0.0, -c)  # image down
    T[:3, 2] = (c, 0.0, -s)  # optical axis, forward and down
    T[:3, 3] = (0.0, 0.0, height)
    return T


def project_ground(points_xy: np.ndarray, D=None, model: str = "plumb_bob") -> np.ndarray:
    """Ground points (x, y, 0) in base_link -> pixel coordinates [N, 2] through OpenCV."""
    T = optical_in_base()
    R, t = T[:3, :3], T[:3, 3]
    pts = np.concatenate([points_xy, np.zeros((len(points_xy), 1))], axis=1)
    rvec, _ = cv2.Rodrigues(R.T)
    tvec = -R.T @ t
    if model == "equidistant":
        uv, _ = cv2.fisheye.projectPoints(pts[None], rvec, tvec, K, np.asarray(D, float))
    else:
        dist = np.zeros(5) if D is None else np.asarray(D, float)
        uv, _ = cv2.projectPoints(pts, rvec, tvec, K, dist)
    return uv.reshape(-1, 2)


def pinhole_project(points_xy: np.ndarray) -> np.ndarray:
    """The same without distortion, by hand: u = fx X / Z + cx."""
    T = optical_in_base()
    pts = np.concatenate([points_xy, np.zeros((len(points_xy), 1))], axis=1)
    p = (pts - T[:3, 3]) @ T[:3, :3]
    return np.stack(
        [K[0, 0] * p[:, 0] / p[:, 2] + K[0, 2], K[1, 1] * p[:, 1] / p[:, 2] + K[1, 2]], 1
    )


GROUND_POINTS = np.array(
    [(x, y) for x in (1.6, 2.5, 4.0, 6.0) for y in (-0.8, 0.0, 0.7)], dtype=np.float64
)
