"""Fusion of the last N frames into one occupancy grid in a fixed frame (e.g. odom).

Each frame's valid rays (ground points in the robot frame, from `GroundProjector.ray_samples`)
are moved into the fixed frame with the robot's planar pose at that frame's time and counted in
the fixed grid. The grid is the mixed-cell rule (`occupancy_from_counts`) applied to the counts
summed over the last `num_frames` frames: no decay, an old frame simply drops out. Planar motion
is assumed (the ground is z = 0 of both frames). Gap filling does not apply here: motion between
frames fills the far field instead.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

import numpy as np

from .projection import GridGeometry, GroundProjector, occupancy_from_counts


class GridFusion:
    """Sliding-window fusion of per-frame observations.

    geometry:   the fixed grid; `geometry.frame_id` is the fixed frame (odom, map).
    num_frames: how many of the latest frames are summed (>= 1).
    """

    def __init__(self, geometry: GridGeometry, num_frames: int) -> None:
        if not isinstance(geometry, GridGeometry):
            raise TypeError(f"geometry must be a GridGeometry, got {type(geometry).__name__}")
        if int(num_frames) != num_frames or num_frames < 1:
            raise ValueError(f"num_frames must be an integer >= 1, got {num_frames}")
        self.geometry = geometry
        self.num_frames = int(num_frames)
        self.reset()

    def reset(self) -> None:
        n = self.geometry.num_cells
        self._frames: deque[tuple[np.ndarray, np.ndarray, np.ndarray]] = deque()
        self._n_drivable = np.zeros(n, dtype=np.int64)
        self._n_known = np.zeros(n, dtype=np.int64)

    def __len__(self) -> int:
        return len(self._frames)

    def add(
        self,
        projector: GroundProjector,
        drivable: np.ndarray,
        known: np.ndarray | None = None,
        *,
        pose: tuple[float, float, float],
    ) -> None:
        """Add one frame.

        drivable, known: as `GroundProjector.counts`.
        pose: (x, y, yaw) of the projector's robot frame in the fixed frame at the image's time
            (m, m, rad).
        """
        x, y, yaw = (float(v) for v in pose)
        if not all(math.isfinite(v) for v in (x, y, yaw)):
            raise ValueError(f"pose must be finite (x, y, yaw), got {pose}")
        ground, d, k = projector.ray_samples(drivable, known)
        c, s = math.cos(yaw), math.sin(yaw)
        fixed = np.empty_like(ground)
        fixed[:, 0] = x + c * ground[:, 0] - s * ground[:, 1]
        fixed[:, 1] = y + s * ground[:, 0] + c * ground[:, 1]
        cells, inside = self.geometry.cell_index(fixed)
        keep = inside & k
        cells, d = cells[keep], d[keep]
        # Sparse per-frame counts: the cells this frame touched and its counts there.
        n = self.geometry.num_cells
        dense_known = np.bincount(cells, minlength=n)
        touched = np.flatnonzero(dense_known)
        frame_known = dense_known[touched]
        frame_drivable = np.bincount(cells[d], minlength=n)[touched]
        self._n_known[touched] += frame_known
        self._n_drivable[touched] += frame_drivable
        self._frames.append((touched, frame_drivable, frame_known))
        if len(self._frames) > self.num_frames:
            old, old_d, old_k = self._frames.popleft()
            self._n_known[old] -= old_k
            self._n_drivable[old] -= old_d

    def counts(self) -> tuple[np.ndarray, np.ndarray]:
        """(n_drivable, n_known), each [height, width] int64, summed over the window."""
        shape = (self.geometry.height, self.geometry.width)
        return self._n_drivable.reshape(shape).copy(), self._n_known.reshape(shape).copy()

    def grid(self, *, occupied_fraction: float = 0.5, min_samples: int = 1) -> np.ndarray:
        """int8 [height, width] in `geometry.frame_id`: 0 free, 100 occupied, -1 unknown."""
        n_drivable, n_known = self.counts()
        return occupancy_from_counts(
            n_drivable, n_known, occupied_fraction=occupied_fraction, min_samples=min_samples
        )


@dataclass(frozen=True)
class PlanarPose:
    """The robot frame's planar pose in a fixed frame at one time: x, y (m), yaw (rad, from the
    fixed x towards its y), `frame_id` the fixed frame (e.g. odom)."""

    x: float
    y: float
    yaw: float
    frame_id: str = "odom"


class RollingGridFusion:
    """`GridFusion` over a square window of the fixed frame that follows the robot.

    resolution: cell size (m). size: the window's side (m). num_frames: as `GridFusion`.
    The window is centred on the robot (on the cell lattice of the fixed frame, so cells never
    shift by a fraction) and recentred when the robot comes within a quarter of `size` of its
    edge; the frames in the sliding window are then counted again into the new one. A new fixed
    frame restarts the fusion.
    """

    def __init__(self, resolution: float, size: float, num_frames: int) -> None:
        if not (math.isfinite(size) and size > 0):
            raise ValueError(f"size must be a positive number of metres, got {size}")
        self.resolution, self.size, self.num_frames = float(resolution), float(size), num_frames
        self.cells = max(1, int(math.ceil(self.size / self.resolution)))
        GridGeometry(self.resolution, self.cells, self.cells)  # validates the resolution
        self._recent: deque = deque(maxlen=num_frames)
        self._fusion: GridFusion | None = None

    @property
    def geometry(self) -> GridGeometry | None:
        """The current window (in the pose's frame_id), None before the first frame."""
        return None if self._fusion is None else self._fusion.geometry

    def _window(self, pose: PlanarPose) -> GridGeometry:
        half = self.cells * self.resolution / 2
        ox = math.floor((pose.x - half) / self.resolution) * self.resolution
        oy = math.floor((pose.y - half) / self.resolution) * self.resolution
        return GridGeometry(self.resolution, self.cells, self.cells, ox, oy, pose.frame_id)

    def _needs_window(self, pose: PlanarPose) -> bool:
        g = self.geometry
        if g is None or g.frame_id != pose.frame_id:
            return True
        margin = self.size / 4
        return not (
            g.origin_x + margin <= pose.x <= g.origin_x + g.width * g.resolution - margin
            and g.origin_y + margin <= pose.y <= g.origin_y + g.height * g.resolution - margin
        )

    def add(
        self,
        projector: GroundProjector,
        drivable: np.ndarray,
        known: np.ndarray | None,
        pose: PlanarPose,
    ) -> None:
        """One frame: masks as `GroundProjector.counts`, `pose` the robot's at the image time."""
        if self.geometry is not None and self.geometry.frame_id != pose.frame_id:
            self._recent.clear()
        frame = (
            projector,
            np.array(drivable, bool),
            None if known is None else np.array(known, bool),
        )
        self._recent.append((frame, pose))
        if self._needs_window(pose):
            self._fusion = GridFusion(self._window(pose), self.num_frames)
            for (p, d, k), past in self._recent:
                self._fusion.add(p, d, k, pose=(past.x, past.y, past.yaw))
        else:
            self._fusion.add(*frame, pose=(pose.x, pose.y, pose.yaw))

    def grid(self, *, occupied_fraction: float = 0.5) -> np.ndarray:
        """int8 [cells, cells] in `geometry` (see `GridFusion.grid`)."""
        assert self._fusion is not None, "no frame added yet"
        return self._fusion.grid(occupied_fraction=occupied_fraction)
