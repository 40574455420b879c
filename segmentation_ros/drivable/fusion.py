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
