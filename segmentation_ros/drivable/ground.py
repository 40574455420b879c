"""Where image points and segments touch the ground plane z = 0 of the robot frame (flat-ground
assumption; frames as in `drivable.camera`). Pure numpy."""

from __future__ import annotations

import numpy as np

from .camera import CameraModel, MountPose, camera_to_base_matrix

__all__ = [
    "distance_bearing",
    "ground_contacts",
    "mask_ground_contacts",
    "pixels_on_upright_plane",
    "pixels_to_ground",
    "upright_keypoints",
]


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


def pixels_on_upright_plane(
    camera: CameraModel, mount: MountPose | np.ndarray, uv: np.ndarray, ground_xy: np.ndarray
) -> np.ndarray:
    """Image points [N, 2] (pixel (u, v) centred at (u, v)) of an upright object standing at
    `ground_xy` [2] (robot frame, m) -> where their rays meet the vertical plane through that
    point facing the camera (normal: the horizontal direction from the camera to it): [N, 3]
    float64 (x, y, z) metres, NaN where a ray misses the plane in front of the camera. What a
    person's keypoints are in 3D under the assumption that the person is flat and upright."""
    uv = np.asarray(uv, dtype=np.float64).reshape(-1, 2)
    out = np.full((uv.shape[0], 3), np.nan)
    g = np.array([*np.asarray(ground_xy, dtype=np.float64).reshape(2), 0.0])
    transform = camera_to_base_matrix(mount)
    rotation, t = transform[:3, :3], transform[:3, 3]
    normal = np.array([g[0] - t[0], g[1] - t[1], 0.0])
    if not np.isfinite(g).all() or np.linalg.norm(normal) < 1e-9:
        return out
    xy, ok = camera.undistort(uv)
    rays = xy[:, :1] * rotation[:, 0] + xy[:, 1:] * rotation[:, 1] + rotation[:, 2]
    along = rays @ normal
    with np.errstate(divide="ignore", invalid="ignore"):
        lam = float(normal @ (g - t)) / along
    valid = ok & (along > 1e-12) & (lam > 0)
    return np.where(valid[:, None], t + lam[:, None] * rays, np.nan)


def upright_keypoints(
    camera: CameraModel,
    mount: MountPose | np.ndarray,
    keypoints: np.ndarray,
    ground_xy: np.ndarray,
    image_size: tuple[int, int],
) -> np.ndarray:
    """Keypoints [N, K, 2+] (x, y, ...) in COCO pixels (pixel (u, v) covers [u, u + 1)) of N
    objects standing at `ground_xy` [N, 2] (m) in an image of `image_size` (H, W) -> [N, K, 3]
    float64 robot-frame points on each object's upright plane (`pixels_on_upright_plane`); NaN
    rows for objects without keypoints or ground point."""
    height, width = image_size
    if (camera.width, camera.height) != (width, height):
        camera = camera.resized(width, height)
    kp = np.asarray(keypoints, dtype=np.float64)
    out = np.full((*kp.shape[:2], 3), np.nan)
    has = np.isfinite(kp[..., :2]).all(axis=(1, 2)) & np.isfinite(ground_xy).all(axis=1)
    for i in np.flatnonzero(has):
        out[i] = pixels_on_upright_plane(camera, mount, kp[i, :, :2] - 0.5, ground_xy[i])
    return out


def ground_contacts(
    camera: CameraModel,
    mount: MountPose | np.ndarray,
    rois: np.ndarray,
    image_size: tuple[int, int],
    inset_px: float = 0.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Where objects touch the ground: the bottom edge of each roi [N, 4] (x, y, w, h) pixels of
    an image of `image_size` (H, W) (the camera is rescaled to it), raised by `inset_px`.

    inset_px: how far above the roi's bottom edge the contact lies, pixels of `image_size`. 0
    when a pixel is labelled by the object covering its centre. Labels that reach past the
    outline (the synthetic world's OpenCV rasterisation fills every pixel within half a pixel of
    a polygon and strokes wheels >= 1 px wide) put the bottom edge below the contact, and the
    error in metres grows with range squared, which biases the speed of approaching objects.

    Returns (middle [N, 2] float64 (x, y) metres: the bottom edge's middle on the ground, NaN
    above the horizon; width [N] metres: the bottom edge's length on the ground).
    """
    height, width = image_size
    if (camera.width, camera.height) != (width, height):
        camera = camera.resized(width, height)
    x, y, w, h = np.asarray(rois, dtype=np.float64).reshape(-1, 4).T
    # The roi's bottom edge in image coordinates (pixel (u, v) is centred at (u, v)).
    bottom, left_edge, right_edge = y + h - 0.5 - inset_px, x - 0.5, x + w - 0.5
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
