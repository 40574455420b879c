"""Where image points and segments touch the ground plane z = 0 of the robot frame (flat-ground
assumption; frames as in `drivable.camera`). Pure numpy."""

from __future__ import annotations

import numpy as np

from .camera import CameraModel, MountPose, camera_to_base_matrix

__all__ = ["distance_bearing", "ground_contacts", "mask_ground_contacts", "pixels_to_ground"]


def pixels_to_ground(
    camera: CameraModel, mount: MountPose | np.ndarray, uv: np.ndarray
) -> np.ndarray:
    """Image points [N, 2] (image coordinates: the centre of pixel (u, v) is at (u, v)) -> where
    their rays meet the ground z = 0 of the robot frame: [N, 2] float64 (x, y) metres, NaN for
    rays at or above the horizon or outside the distortion model's domain."""
    uv = np.asarray(uv, dtype=np.float64).reshape(-1, 2)
    xy, ok = camera.undistort(uv)
    transform = camera_to_base_matrix(mount)
    rotation, t = transform[:3, :3], transform[:3, 3]
    rays = xy[:, :1] * rotation[:, 0] + xy[:, 1:] * rotation[:, 1] + rotation[:, 2]
    valid = ok & (rays[:, 2] < -1e-9)
    with np.errstate(divide="ignore", invalid="ignore"):
        ground = t[:2] + (-t[2] / rays[:, 2])[:, None] * rays[:, :2]
    return np.where(valid[:, None], ground, np.nan)


def ground_contacts(
    camera: CameraModel,
    mount: MountPose | np.ndarray,
    rois: np.ndarray,
    image_size: tuple[int, int],
) -> tuple[np.ndarray, np.ndarray]:
    """Where objects touch the ground: the bottom edge of each roi [N, 4] (x, y, w, h) pixels of
    an image of `image_size` (H, W) (the camera is rescaled to it).

    Returns (middle [N, 2] float64 (x, y) metres: the bottom edge's middle on the ground, NaN
    above the horizon; width [N] metres: the bottom edge's length on the ground).
    """
    height, width = image_size
    if (camera.width, camera.height) != (width, height):
        camera = camera.resized(width, height)
    x, y, w, h = np.asarray(rois, dtype=np.float64).reshape(-1, 4).T
    # The roi's bottom edge in image coordinates (pixel (u, v) is centred at (u, v)).
    bottom, left_edge, right_edge = y + h - 0.5, x - 0.5, x + w - 0.5
    left = pixels_to_ground(camera, mount, np.stack([left_edge, bottom], axis=1))
    right = pixels_to_ground(camera, mount, np.stack([right_edge, bottom], axis=1))
    middle = pixels_to_ground(camera, mount, np.stack([(left_edge + right_edge) / 2, bottom], 1))
    return middle, np.linalg.norm(right - left, axis=1)


def mask_ground_contacts(
    camera: CameraModel,
    mount: MountPose | np.ndarray,
    id_map: np.ndarray,
    ids: np.ndarray,
    rois: np.ndarray,
) -> np.ndarray:
    """Where each segment's mask touches the ground: the middle of its lowest mask row (the mean
    of those pixels' centres in u, their bottom edge in v), on the ground z = 0.

    id_map: [H, W] int segment ids (the camera is rescaled to its size). ids: [N] the segments'
    ids; rois: [N, 4] (x, y, w, h) their tight pixel boxes (`structures.segment_geometry`), whose
    last row is the lowest mask row. Returns [N, 2] float64 (x, y) metres in the robot frame, NaN
    for an empty mask or a bottom at or above the horizon.
    """
    height, width = id_map.shape
    if (camera.width, camera.height) != (width, height):
        camera = camera.resized(width, height)
    rois = np.asarray(rois, dtype=np.int64).reshape(-1, 4)
    uv = np.full((len(rois), 2), np.nan)
    for i, (x, y, w, h) in enumerate(rois):
        if w <= 0 or h <= 0:
            continue
        columns = np.flatnonzero(id_map[y + h - 1, x : x + w] == ids[i])
        if columns.size:
            uv[i] = (x + columns.mean(), y + h - 0.5)
    out = np.full((len(rois), 2), np.nan)
    ok = np.isfinite(uv[:, 0])
    if ok.any():
        out[ok] = pixels_to_ground(camera, mount, uv[ok])
    return out


def distance_bearing(xy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Ground points [N, 2] (x, y) metres -> (distance [N] m from the frame origin, bearing [N]
    rad, atan2(y, x): 0 along x, positive to the left); NaN stays NaN."""
    xy = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
    return np.hypot(xy[:, 0], xy[:, 1]), np.arctan2(xy[:, 1], xy[:, 0])
