"""Ground-plane projection of a drivable mask into a bird's-eye occupancy grid.

Frames and camera conventions: see `segmentation_ros.drivable.camera`.

Grid (as nav_msgs/OccupancyGrid): `GridGeometry` cells of `resolution` metres, `width` cells
along the grid frame's x, `height` cells along its y; `origin_x, origin_y` is the corner of cell
(0, 0) (the message's `info.origin.position`, orientation identity). Cell (row iy, column ix)
covers x in [origin_x + ix * res, origin_x + (ix + 1) * res) and the same for y with iy. The grid is
int8 [height, width], row-major, row = y index (row 0 at origin_y, the bottom when drawn with y
up): exactly `OccupancyGrid.data` once flattened.

Values: 0 free (seen, drivable), 100 occupied (seen, not drivable), -1 unknown (not seen: outside
the view, above the horizon, beyond `max_range`, or only void pixels).

Mixed cells: a cell with n known samples of which k are not drivable is unknown if n <
`min_samples`, occupied if k >= `occupied_fraction` * n, free otherwise. The default
occupied_fraction = 0.5 is a majority vote with ties going to occupied; lower it to be more
cautious (0.2: occupied when a fifth of its pixels see an obstacle).

Method: each (strided) pixel's ray is undistorted and intersected with the ground z = 0 once per
(camera, camera_to_base, geometry, stride); a frame is then a gather of the mask at the valid
pixels and two `bincount`s over their precomputed cells. Far away a cell can fall between the
rays of neighbouring pixels; with `fill_gaps` such a cell takes the label of the pixel its centre
projects to, so the far field has no holes. Every pixel is assumed to lie on the ground: an
obstacle marks the cells its rays reach on the ground, i.e. its footprint and the ground behind
it as seen from the camera. With `stride` s > 1 only the pixels (s//2 + i*s, s//2 + j*s) are
read; structures thinner than s pixels may be missed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .camera import CameraModel, MountPose, camera_to_base_matrix
from .classes import DrivabilityTable, drivable_mask, known_mask

FREE = 0
OCCUPIED = 100
UNKNOWN = -1


@dataclass(frozen=True)
class GridGeometry:
    """Occupancy grid layout (nav_msgs/MapMetaData); see the module docstring.

    resolution: metres per cell, > 0.
    width, height: number of cells along the grid frame's x and y.
    origin_x, origin_y: corner of cell (0, 0) in `frame_id`, metres.
    frame_id: the frame the grid lies in (base_link for a robot-centred grid; its z = 0 is the
        ground).
    """

    resolution: float
    width: int
    height: int
    origin_x: float = 0.0
    origin_y: float = 0.0
    frame_id: str = "base_link"

    def __post_init__(self) -> None:
        res = float(self.resolution)
        if not (math.isfinite(res) and res > 0.0):
            raise ValueError(f"resolution must be a positive number of metres, got {res}")
        if int(self.width) <= 0 or int(self.height) <= 0:
            raise ValueError(f"grid size must be positive, got {self.width}x{self.height} cells")
        ox, oy = float(self.origin_x), float(self.origin_y)
        if not (math.isfinite(ox) and math.isfinite(oy)):
            raise ValueError(f"origin must be finite, got ({ox}, {oy})")
        object.__setattr__(self, "resolution", res)
        object.__setattr__(self, "width", int(self.width))
        object.__setattr__(self, "height", int(self.height))
        object.__setattr__(self, "origin_x", ox)
        object.__setattr__(self, "origin_y", oy)

    @property
    def num_cells(self) -> int:
        return self.width * self.height

    def cell_index(self, xy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Points [N, 2] (x, y in frame_id) -> (flat cell index iy * width + ix [N] int64,
        inside [N] bool). Indices of points outside the grid are meaningless."""
        ix = np.floor((xy[:, 0] - self.origin_x) / self.resolution)
        iy = np.floor((xy[:, 1] - self.origin_y) / self.resolution)
        inside = (ix >= 0) & (ix < self.width) & (iy >= 0) & (iy < self.height)
        flat = np.where(inside, iy * self.width + ix, 0).astype(np.int64)
        return flat, inside

    def cell_centers(self) -> np.ndarray:
        """[height * width, 2] float64 (x, y) of every cell centre, in flat-index order."""
        xs = self.origin_x + (np.arange(self.width) + 0.5) * self.resolution
        ys = self.origin_y + (np.arange(self.height) + 0.5) * self.resolution
        gx, gy = np.meshgrid(xs, ys)
        return np.stack([gx.ravel(), gy.ravel()], axis=1)


def occupancy_from_counts(
    n_drivable: np.ndarray,
    n_known: np.ndarray,
    *,
    occupied_fraction: float = 0.5,
    min_samples: int = 1,
) -> np.ndarray:
    """Apply the mixed-cell rule (module docstring) to per-cell counts of the same shape.

    Returns int8 of that shape: 0 free, 100 occupied, -1 unknown.
    """
    if not 0.0 < occupied_fraction <= 1.0:
        raise ValueError(f"occupied_fraction must be in (0, 1], got {occupied_fraction}")
    if min_samples < 1:
        raise ValueError(f"min_samples must be >= 1, got {min_samples}")
    n_known = np.asarray(n_known)
    n_obstacle = n_known - np.asarray(n_drivable)
    grid = np.full(n_known.shape, UNKNOWN, dtype=np.int8)
    seen = n_known >= min_samples
    grid[seen] = FREE
    grid[seen & (n_obstacle >= occupied_fraction * n_known)] = OCCUPIED
    return grid


def _as_mask(image, shape: tuple[int, int], name: str) -> np.ndarray:
    """[H, W] bool or integer (non-zero = True) -> flat contiguous bool [H * W]."""
    a = np.asarray(image)
    if a.shape != shape:
        raise ValueError(
            f"{name} has shape {a.shape} but the camera is {shape[1]}x{shape[0]} (W x H); "
            "resize the mask or use CameraModel.resized"
        )
    if a.dtype != bool:
        if not np.issubdtype(a.dtype, np.integer):
            raise TypeError(f"{name} must be bool or integer, got dtype {a.dtype}")
        a = a != 0
    return np.ascontiguousarray(a).reshape(-1)


class GroundProjector:
    """Pixel -> grid-cell lookup table for one (camera, camera_to_base, geometry, stride).

    camera:         intrinsics of the images the masks come from (mask size = camera size).
    camera_to_base: `MountPose` or 4x4 transform, p_base = T @ p_optical (see `camera`).
    geometry:       the grid, in the robot frame whose z = 0 is the ground.
    stride:         read every stride-th pixel in u and v (1 = every pixel).
    max_range:      ground points farther than this (m, horizontal, from the camera) are unknown;
                    None: only the grid bounds limit the range.
    fill_gaps:      cells no pixel ray reaches but whose centre is in view take the label of the
                    (sampled) pixel their centre projects to, counted as one sample.

    Building takes about 170 ms at 640x480 with distortion (45 ms at stride 2) on this machine;
    build once and keep it (`ProjectorCache`).
    """

    def __init__(
        self,
        camera: CameraModel,
        camera_to_base: MountPose | np.ndarray,
        geometry: GridGeometry,
        *,
        stride: int = 1,
        max_range: float | None = None,
        fill_gaps: bool = True,
    ) -> None:
        if not isinstance(camera, CameraModel):
            raise TypeError(f"camera must be a CameraModel, got {type(camera).__name__}")
        if not isinstance(geometry, GridGeometry):
            raise TypeError(f"geometry must be a GridGeometry, got {type(geometry).__name__}")
        if int(stride) != stride or stride < 1:
            raise ValueError(f"stride must be an integer >= 1, got {stride}")
        if max_range is not None and not (math.isfinite(max_range) and max_range > 0):
            raise ValueError(
                f"max_range must be a positive number of metres or None, got {max_range}"
            )
        if stride > min(camera.width, camera.height):
            raise ValueError(
                f"stride {stride} is larger than the {camera.width}x{camera.height} image"
            )
        self.camera = camera
        self.camera_to_base = camera_to_base_matrix(camera_to_base)
        self.camera_to_base.setflags(write=False)
        self.geometry = geometry
        self.stride = int(stride)
        self.max_range = None if max_range is None else float(max_range)
        self.fill_gaps = bool(fill_gaps)
        self._build()

    # -- lookup table -------------------------------------------------------------------------

    def _sample_grid(self) -> tuple[np.ndarray, np.ndarray]:
        s, o = self.stride, self.stride // 2
        us = np.arange(o, self.camera.width, s)
        vs = np.arange(o, self.camera.height, s)
        uu, vv = np.meshgrid(us, vs)
        flat = (vv * self.camera.width + uu).reshape(-1)
        return np.stack([uu.ravel(), vv.ravel()], axis=1).astype(np.float64), flat

    def _build(self) -> None:
        uv, flat = self._sample_grid()
        xy, ok = self.camera.undistort(uv)
        R, t = self.camera_to_base[:3, :3], self.camera_to_base[:3, 3]
        # Elementwise rather than `@`: a multithreaded BLAS on N x 3 arrays only adds contention.
        rays = xy[:, :1] * R[:, 0] + xy[:, 1:] * R[:, 1] + R[:, 2]  # R @ (x, y, 1)
        valid = ok & (rays[:, 2] < 0.0)  # at or above the horizon: never reaches the ground
        with np.errstate(divide="ignore", invalid="ignore"):
            ground = t[:2] + (-t[2] / rays[:, 2])[:, None] * rays[:, :2]
        if self.max_range is not None:
            valid &= np.hypot(*(ground - t[:2]).T) <= self.max_range
        self._sample_xy, self._sample_valid = xy, valid
        self.ray_pixels = flat[valid]
        self.ray_ground = ground[valid]
        cells, inside = self.geometry.cell_index(self.ray_ground)
        self._pix = self.ray_pixels[inside]
        self._cell = cells[inside]
        self._seen = np.bincount(self._cell, minlength=self.geometry.num_cells)
        self._fill_cells = np.zeros(0, dtype=np.int64)
        self._fill_pix = np.zeros(0, dtype=np.int64)
        if self.fill_gaps:
            self._build_fill(flat)
        for a in (self.ray_pixels, self.ray_ground):
            a.setflags(write=False)

    def _build_fill(self, flat: np.ndarray) -> None:
        """Cells without a ray: the sample pixel nearest to where their centre projects."""
        cand = np.flatnonzero(self._seen == 0)
        if flat.size == 0 or cand.size == 0:
            return
        R, t = self.camera_to_base[:3, :3], self.camera_to_base[:3, 3]
        centers = self.geometry.cell_centers()[cand]
        d = centers - t[:2]
        p_cam = d[:, :1] * R[0] + d[:, 1:] * R[1] - t[2] * R[2]  # R.T @ ((x, y, 0) - t)
        keep = p_cam[:, 2] > 1e-6
        if self.max_range is not None:
            keep &= np.hypot(*(centers - t[:2]).T) <= self.max_range
        cand, p_cam = cand[keep], p_cam[keep]
        xn = p_cam[:, :2] / p_cam[:, 2:]
        uv = self.camera.distort(xn)
        s, o = self.stride, self.stride // 2
        nu = len(range(o, self.camera.width, s))
        nv = len(range(o, self.camera.height, s))
        iu = np.rint((uv[:, 0] - o) / s)
        iv = np.rint((uv[:, 1] - o) / s)
        in_img = (uv[:, 0] >= -0.5) & (uv[:, 0] < self.camera.width - 0.5)
        in_img &= (uv[:, 1] >= -0.5) & (uv[:, 1] < self.camera.height - 0.5)
        sample = (np.clip(iv, 0, nv - 1) * nu + np.clip(iu, 0, nu - 1)).astype(np.int64)
        good = in_img & self._sample_valid[sample]
        if self.camera.has_distortion:
            # A cell centre on a folded branch of the distortion polynomial lands in the image
            # although it is out of view: its pixel's ray points somewhere else.
            miss = np.linalg.norm(self._sample_xy[sample] - xn, axis=1)
            good &= miss <= 1.5 * self._max_sample_spacing(nu, nv)
        self._fill_cells = cand[good]
        self._fill_pix = flat[sample[good]]

    def _max_sample_spacing(self, nu: int, nv: int) -> float:
        """Largest distance in normalised coordinates between neighbouring valid samples."""
        xy = self._sample_xy.reshape(nv, nu, 2)
        ok = self._sample_valid.reshape(nv, nu)
        spacing = 0.0
        for d, both in (
            (xy[:, 1:] - xy[:, :-1], ok[:, 1:] & ok[:, :-1]),
            (xy[1:] - xy[:-1], ok[1:] & ok[:-1]),
        ):
            if both.any():
                spacing = max(spacing, float(np.linalg.norm(d[both], axis=-1).max()))
        K = self.camera.K
        return max(spacing, self.stride / min(K[0, 0], K[1, 1]))

    # -- per frame ----------------------------------------------------------------------------

    def matches(
        self,
        camera: CameraModel,
        camera_to_base: MountPose | np.ndarray,
        geometry: GridGeometry,
    ) -> bool:
        """True when this lookup table is valid for these inputs (no rebuild needed)."""
        return (
            camera == self.camera
            and geometry == self.geometry
            and np.array_equal(camera_to_base_matrix(camera_to_base), self.camera_to_base)
        )

    def _masks(self, drivable, known) -> tuple[np.ndarray, np.ndarray | None]:
        shape = (self.camera.height, self.camera.width)
        d = _as_mask(drivable, shape, "drivable")
        k = None if known is None else _as_mask(known, shape, "known")
        return d, k

    def counts(
        self, drivable: np.ndarray, known: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Per-cell sample counts: (n_drivable, n_known), each [height, width] int64.

        drivable: [H, W] bool (or integer, non-zero = drivable), H x W = the camera size.
        known:    optional [H, W] bool, False for void / unlabelled pixels (ignored); None: all
                  pixels are labelled.
        """
        d, k = self._masks(drivable, known)
        n = self.geometry.num_cells
        md = d[self._pix]
        if k is None:
            n_known = self._seen.copy()
        else:
            mk = k[self._pix]
            md &= mk
            n_known = np.bincount(self._cell[mk], minlength=n)
        n_drivable = np.bincount(self._cell[md], minlength=n)
        if self._fill_cells.size:
            fk = True if k is None else k[self._fill_pix]
            n_known[self._fill_cells] = fk
            n_drivable[self._fill_cells] = d[self._fill_pix] & fk
        shape = (self.geometry.height, self.geometry.width)
        return n_drivable.reshape(shape), n_known.reshape(shape)

    def project(
        self,
        drivable: np.ndarray,
        known: np.ndarray | None = None,
        *,
        occupied_fraction: float = 0.5,
        min_samples: int = 1,
    ) -> np.ndarray:
        """Drivable mask -> occupancy grid int8 [height, width] (0 free, 100 occupied, -1
        unknown); arguments as `counts` and `occupancy_from_counts`."""
        n_drivable, n_known = self.counts(drivable, known)
        return occupancy_from_counts(
            n_drivable, n_known, occupied_fraction=occupied_fraction, min_samples=min_samples
        )

    def project_semantic(
        self,
        semantic_map: np.ndarray,
        table: DrivabilityTable,
        instance_mask: np.ndarray | None = None,
        *,
        void_label: int = 255,
        occupied_fraction: float = 0.5,
        min_samples: int = 1,
    ) -> np.ndarray:
        """Semantic map [H, W] (category ids) -> occupancy grid; see `drivable_mask`.

        Void pixels are unknown; thing pixels (`instance_mask`) are obstacles.
        """
        mask = drivable_mask(semantic_map, table, instance_mask, void_label=void_label)
        return self.project(
            mask,
            known_mask(semantic_map, void_label=void_label),
            occupied_fraction=occupied_fraction,
            min_samples=min_samples,
        )

    def ray_samples(
        self, drivable: np.ndarray, known: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Every valid ray (not only those in the grid): (ground_xy [M, 2] float64 in the robot
        frame, drivable [M] bool, known [M] bool). Used by `GridFusion`."""
        d, k = self._masks(drivable, known)
        mk = np.ones(self.ray_pixels.size, dtype=bool) if k is None else k[self.ray_pixels]
        return self.ray_ground, d[self.ray_pixels] & mk, mk


class ProjectorCache:
    """Holds one `GroundProjector` and rebuilds it only when the camera, the extrinsics or the
    grid geometry change (the node calls `get` every frame with the latest CameraInfo and tf).

    `builds` counts the lookup tables built so far.
    """

    def __init__(
        self, *, stride: int = 1, max_range: float | None = None, fill_gaps: bool = True
    ) -> None:
        self.stride = stride
        self.max_range = max_range
        self.fill_gaps = fill_gaps
        self.builds = 0
        self._projector: GroundProjector | None = None

    def get(
        self,
        camera: CameraModel,
        camera_to_base: MountPose | np.ndarray,
        geometry: GridGeometry,
    ) -> GroundProjector:
        p = self._projector
        if p is None or not p.matches(camera, camera_to_base, geometry):
            p = GroundProjector(
                camera,
                camera_to_base,
                geometry,
                stride=self.stride,
                max_range=self.max_range,
                fill_gaps=self.fill_gaps,
            )
            self._projector = p
            self.builds += 1
        return p
