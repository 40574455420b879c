"""A drivable mask as a planar laser scan and as obstacle points on the ground. Pure numpy.

Frames as in `drivable.camera` / `projection`: the scan and the points lie in the robot frame
whose z = 0 is the ground (the grid frame, e.g. base_link); ranges and bearings are measured from
its origin. Every (strided) pixel is taken to lie on the ground, exactly as for the grid.

Scan (`sensor_msgs/LaserScan` conventions, REP 117): beam i looks along bearing
`angle_min + i * angle_increment` (rad, counter-clockwise from x) and collects the ground points
of the pixels whose bearing is within half an increment of it (`[b - inc/2, b + inc/2)`) and whose
range is at most `range_max`. Its range is
- the range of the nearest ground point that is labelled and not drivable (an obstacle or a
  surface the robot must not drive on: the first non-drivable ground point along the beam);
- +inf when the beam holds drivable points and no obstacle: the drivable surface reaches the limit
  of what the camera sees (or `range_max`), and Nav2 clears along it;
- NaN when no labelled ground point falls into the beam (nothing measured there).
`range_min` is the nearest ground range the camera sees at all, `range_max` the smaller of the
requested limit and the farthest ground range it sees: both are what the camera can measure.

Obstacle points (`obstacle_points`): the scan's hit points (the non-drivable boundary) and, for
each thing, the ground points below the lowest mask pixel of each of its columns (its footprint's
near edge), as a structured array of `POINT_DTYPE` (the `drivable/obstacles` PointCloud2 layout).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .camera import CameraModel, MountPose
from .ground import pixels_to_ground

__all__ = ["POINT_DTYPE", "Scan", "ScanProjector", "obstacle_points"]

#: One obstacle point: x, y, z float32 metres in the grid frame, then the class id (index into the
#: model's class table) and the instance id (the segment's value in the `instances` image, 0 for
#: none), both uint16; 16 bytes, little-endian, no padding. The PointCloud2 fields say the same.
POINT_DTYPE = np.dtype(
    {
        "names": ["x", "y", "z", "class_id", "instance_id"],
        "formats": ["<f4", "<f4", "<f4", "<u2", "<u2"],
        "offsets": [0, 4, 8, 12, 14],
        "itemsize": 16,
    }
)


@dataclass(frozen=True)
class Scan:
    """One frame's scan (module docstring).

    ranges: [count] float32 metres (+inf free to the limit, NaN unmeasured).
    angle_min, angle_increment: rad; range_min, range_max: metres.
    hit_pixels: [count] int64 flat pixel index (v * W + u) of each beam's hit, -1 where the range
        is not finite.
    hit_xy: [count, 2] float64 ground point of each hit in the grid frame (NaN where none).
    """

    ranges: np.ndarray
    angle_min: float
    angle_increment: float
    range_min: float
    range_max: float
    hit_pixels: np.ndarray
    hit_xy: np.ndarray

    @property
    def angle_max(self) -> float:
        return self.angle_min + (len(self.ranges) - 1) * self.angle_increment

    def angles(self) -> np.ndarray:
        """[count] float64 bearing of each beam (rad)."""
        return self.angle_min + np.arange(len(self.ranges)) * self.angle_increment


class ScanProjector:
    """Per-ray beam lookup for one set of ground rays (built once per camera / mounting).

    ground_xy: [M, 2] float64 ground points of the rays in the grid frame (metres), e.g.
        `GroundProjector.ray_ground`; pixels: [M] int64 flat index of each ray's pixel in the
        mask (`GroundProjector.ray_pixels`).
    angle_increment: beam spacing (rad, > 0). range_max: farthest ground range used (m, > 0).
    Beams span the bearings of the rays in range, on a lattice of multiples of the increment.
    """

    def __init__(
        self, ground_xy: np.ndarray, pixels: np.ndarray, *, angle_increment: float, range_max: float
    ) -> None:
        if not (math.isfinite(angle_increment) and 0.0 < angle_increment <= math.pi):
            raise ValueError(f"angle_increment must be in (0, pi] rad, got {angle_increment}")
        if not (math.isfinite(range_max) and range_max > 0.0):
            raise ValueError(f"range_max must be a positive number of metres, got {range_max}")
        ground_xy = np.asarray(ground_xy, dtype=np.float64).reshape(-1, 2)
        pixels = np.asarray(pixels, dtype=np.int64).reshape(-1)
        if len(ground_xy) != len(pixels):
            raise ValueError(f"{len(ground_xy)} ground points but {len(pixels)} pixels")
        r = np.hypot(ground_xy[:, 0], ground_xy[:, 1])
        keep = np.isfinite(r) & (r <= range_max)
        r, xy, pixels = r[keep], ground_xy[keep], pixels[keep]
        self.angle_increment = float(angle_increment)
        if r.size == 0:  # the camera sees no ground within range_max: one unmeasured beam
            self.angle_min, self.count = 0.0, 1
            self.range_min, self.range_max = 0.0, float(range_max)
        else:
            theta = np.arctan2(xy[:, 1], xy[:, 0])
            lo = math.floor(float(theta.min()) / angle_increment + 0.5)
            hi = math.floor(float(theta.max()) / angle_increment + 0.5)
            self.angle_min, self.count = lo * self.angle_increment, hi - lo + 1
            self.range_min, self.range_max = float(r.min()), float(r.max())
            beam = np.floor(theta / angle_increment + 0.5).astype(np.int64) - lo
            # Sorted by (beam, range) once: per frame the first obstacle of a beam is its hit.
            order = np.lexsort((r, beam))
            self._beam, self._r, self._xy = beam[order], r[order], xy[order]
            self._pixels = pixels[order]
            return
        self._beam = np.zeros(0, np.int64)
        self._r = np.zeros(0)
        self._xy = np.zeros((0, 2))
        self._pixels = np.zeros(0, np.int64)

    def scan(self, drivable: np.ndarray, known: np.ndarray | None = None) -> Scan:
        """drivable: [H, W] bool (the mask the pixels index), known: [H, W] bool or None (all
        labelled). Returns the frame's `Scan`."""
        d = np.asarray(drivable).reshape(-1)[self._pixels].astype(bool, copy=False)
        k = None if known is None else np.asarray(known).reshape(-1)[self._pixels].astype(bool)
        obstacle = ~d if k is None else k & ~d
        free = d if k is None else d & k
        ranges = np.full(self.count, np.nan, dtype=np.float32)
        ranges[np.unique(self._beam[free])] = np.inf
        hits = np.flatnonzero(obstacle)
        beams, first = np.unique(self._beam[hits], return_index=True)
        hits = hits[first]
        ranges[beams] = self._r[hits]
        hit_pixels = np.full(self.count, -1, dtype=np.int64)
        hit_pixels[beams] = self._pixels[hits]
        hit_xy = np.full((self.count, 2), np.nan)
        hit_xy[beams] = self._xy[hits]
        return Scan(
            ranges,
            self.angle_min,
            self.angle_increment,
            self.range_min,
            self.range_max,
            hit_pixels,
            hit_xy,
        )


def obstacle_points(
    scan: Scan,
    camera: CameraModel,
    mount: MountPose | np.ndarray,
    id_map: np.ndarray,
    class_ids: np.ndarray,
    is_thing: np.ndarray,
    *,
    height: float,
    column_stride: int = 1,
) -> np.ndarray:
    """Ground points of the non-drivable boundary and of the things' footprints.

    scan: this frame's scan (its hits are the boundary). camera: intrinsics of the image (its
    size = id_map's). mount: camera_to_base. id_map: [H, W] int segment ids (0 none).
    class_ids, is_thing: [N] per segment id 1..N. height: z of every point (m).
    column_stride: footprints use every n-th image column.
    Returns [K] `POINT_DTYPE`: the hits first (beam order), then the footprints (by segment id,
    then column); points beyond `scan.range_max` or above the horizon are left out.
    """
    id_map = np.asarray(id_map)
    h, w = id_map.shape
    class_lut = np.concatenate([[0], np.asarray(class_ids, dtype=np.int64)])
    thing_lut = np.concatenate([[False], np.asarray(is_thing, dtype=bool)])
    flat_ids = id_map.reshape(-1)
    hit = scan.hit_pixels >= 0
    hit_ids = flat_ids[scan.hit_pixels[hit]]
    hit_xy = scan.hit_xy[hit]
    # Footprints: the lowest pixel of each (thing, column), every column_stride-th column.
    sub = id_map[:, column_stride // 2 :: column_stride]
    rows, cols = np.nonzero(thing_lut[sub])
    ids = sub[rows, cols].astype(np.int64)
    last = np.unique((ids * sub.shape[1] + cols)[::-1], return_index=True)[1]
    pick = len(ids) - 1 - last  # raster order is by row: the last hit of a key is its lowest
    rows, cols, ids = rows[pick], cols[pick] * column_stride + column_stride // 2, ids[pick]
    if (camera.width, camera.height) != (w, h):
        camera = camera.resized(w, h)
    # The bottom edge of the pixel: where its column meets the ground nearest to the camera.
    foot_xy = pixels_to_ground(camera, mount, np.stack([cols, rows + 0.5], axis=1))
    xy = np.concatenate([hit_xy, foot_xy])
    seg = np.concatenate([hit_ids, ids]).astype(np.int64)
    ok = np.isfinite(xy).all(axis=1) & (np.hypot(xy[:, 0], xy[:, 1]) <= scan.range_max)
    points = np.zeros(int(ok.sum()), dtype=POINT_DTYPE)
    points["x"], points["y"] = xy[ok, 0], xy[ok, 1]
    points["z"] = height
    points["class_id"] = class_lut[seg[ok]]
    points["instance_id"] = np.minimum(seg[ok], 65535)
    return points
