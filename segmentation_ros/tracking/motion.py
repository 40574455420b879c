"""Ground-plane position and velocity of tracked objects in the odometry frame: one constant-
velocity Kalman filter (`filterpy`) per track, fed with the object's ground contact point.

Frames (REP-105): `odom` is fixed to the world; the robot's base_link pose in it is (x, y, yaw)
with p_odom = R(yaw) p_base + (x, y). Ground contacts come in base_link (as
`drivable.ground.ground_contacts` gives them); positions and velocities go out in odom (m, m/s),
so a parked car reads 0 m/s while the robot drives past it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from segmentation_ros.drivable.ground import ground_contacts


def base_to_odom(pose: tuple[float, float, float], xy: np.ndarray) -> np.ndarray:
    """[N, 2] base_link ground points -> [N, 2] odom points for the base_link pose (x, y, yaw)."""
    x, y, yaw = (float(v) for v in pose)
    c, s = math.cos(yaw), math.sin(yaw)
    p = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
    return np.stack([c * p[:, 0] - s * p[:, 1] + x, s * p[:, 0] + c * p[:, 1] + y], 1)


def cut_by_border(
    boxes: np.ndarray, image_size: tuple[int, int], margin: float = 2.0, sides: bool = True
) -> np.ndarray:
    """[N] bool: boxes [N, 4] (x1, y1, x2, y2) pixels within `margin` of the bottom border of an
    image of `image_size` (H, W), or (`sides`) of its left or right border. The object continues
    outside the image, so the bottom edge's middle is not where it touches the ground: give such
    a contact NaN. A box cut only at a side keeps its lowest row, so its contact's range holds
    and only its lateral position is off: good enough to gate a re-association (sides=False)."""
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    h, w = image_size
    cut = b[:, 3] >= h - margin
    return cut | (b[:, 0] <= margin) | (b[:, 2] >= w - margin) if sides else cut


def box_contacts(
    camera,
    mount,
    boxes: np.ndarray,
    image_size: tuple[int, int],
    params: MotionParams,
    bottoms: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Ground contacts in base_link [N, 2] (m) of boxes [N, 4] (x1, y1, x2, y2) pixels of an
    image of `image_size` (H, W): the middle of each box's bottom edge raised by
    `params.contact_inset_px` (`ground_contacts`), for the filters (NaN where a box is cut by
    any border) and for gating re-associations (NaN only where it is cut at the bottom; see
    `cut_by_border`, with `params.border_margin_px`).

    bottoms: [N] the bottom edge (y2, pixels) to project instead of the box's, NaN where there
    is none: the detector's regressed box. The segment boxes of a prototype-mask model snap to
    its prototype grid (a cell is 640 / 96 = 6.7 px at 640 x 480 for the default model), so
    their bottom edge stays put while the object moves a few pixels, then jumps a cell: read
    on the ground at 20 m that is a stationary contact for a moving car, then a metres-long
    step. The regressed edge is continuous: on the validation sequences (seeds 932000..932009,
    cars 15-60 px tall) its median is within 0.5 px of the truth's and its spread (MAD) 0.7-1.2
    px, where the mask box's ends 2-3 px above it with a spread of 2 px. Whether a box is cut
    by the image's border still follows the segment's box: its pixels are what the image shows.
    """
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    edge = b.copy()
    if bottoms is not None:
        y2 = np.asarray(bottoms, dtype=np.float64).reshape(-1)
        edge[:, 3] = np.where(np.isfinite(y2), y2, b[:, 3])
    rois = np.c_[edge[:, :2], edge[:, 2:] - edge[:, :2]]
    xy, _ = ground_contacts(camera, mount, rois, image_size, params.contact_inset_px)
    margin = params.border_margin_px
    gate = np.where(cut_by_border(b, image_size, margin, sides=False)[:, None], np.nan, xy)
    xy[cut_by_border(b, image_size, margin)] = np.nan  # the object continues outside the image
    return xy, gate


def detector_bottoms(segments) -> np.ndarray:
    """[things] the bottom edge (y2, pixels) of each thing's detector box, in the order of the
    frame's thing segments (`structures.Segments`): `box_contacts`' bottoms. A family without a
    regressed box (PCV) has its segment's pixel bounds there."""
    return np.asarray(segments.boxes, np.float64)[np.asarray(segments.is_thing, bool), 3]


#: `MotionParams.contact_inset_px` for boxes of the synthetic world's exact labels (OpenCV fills
#: every pixel within half a pixel of a polygon; wheels are strokes >= 1 px wide).
LABEL_CONTACT_INSET_PX = 1.0


@dataclass(frozen=True)
class MotionParams:
    """Filter noise and life time.

    accel_std:    process noise, standard deviation of the (white) acceleration, m/s^2.
    meas_std:     measurement noise at the robot, m; it grows with range r as
                  meas_std + meas_std_per_m2 * r^2 (a fixed pixel error on the ground contact
                  covers ~r^2 / (f h) metres).
    meas_std_per_m2: 1/m; a contact row off by e pixels is off by e r^2 / (f h) m on the ground
                  (focal length f px, camera height h m): 0.0045 is ~2 px for f h = 450.
    init_speed_std: standard deviation of a new track's speed, m/s (it starts at 0 m/s).
    max_age_s:    a filter without measurements is dropped after this long (s).
    max_range:    contacts farther than this (m) from the robot are not used.
    restart_chi2: validation gate (Bar-Shalom): a contact whose innovation d^2 = y^T S^-1 y
                  (2 dof) exceeds it is not used (a box cut by an occluder or the image's side
                  does not end where the object touches the ground). 13.82 = 99.9 % of true
                  contacts pass; 0 turns the gate off.
    restart_after: that many rejected contacts in a row (a box cut at the image's side counts
                  by its gate point, `update`'s gate_xy) mean the filter no longer follows what the
                  track's box shows (the image tracker's box went to another object, or the
                  filter diverged): it restarts at the last one, its velocity unknown again
                  rather than another object's.
    contact_inset_px: where the ground contact lies above the bottom edge that `box_contacts`
                  projects (the detector's box where the model regresses one), pixels
                  (`drivable.ground.ground_contacts`' inset_px); it depends on what draws the
                  boxes. 0.5 for the default model's regressed boxes; LABEL_CONTACT_INSET_PX
                  for the synthetic world's own labels, which reach past the outline.
    border_margin_px: a box that ends within this many pixels of the image's border is cut by
                  it (`cut_by_border`): its contact is not where the object touches the ground.
                  8 covers the default model, whose segment boxes snap to a 6.7 px grid at
                  640 x 480 and can end a cell short of the border (it scales with the image's
                  width over the model's prototype width, 96); 2 would do for exact labels.
                  contact_inset_px, border_margin_px and meas_std_per_m2 were chosen on the
                  validation sequences (seeds 931000..931002, 932000..932009) with
                  `benchmarks/sweep_motion.py`, which is how another model or camera is
                  calibrated.
    """

    accel_std: float = 1.5
    meas_std: float = 0.15
    meas_std_per_m2: float = 0.0045
    init_speed_std: float = 4.0
    max_age_s: float = 1.0
    max_range: float = 40.0
    contact_inset_px: float = 0.5
    border_margin_px: float = 8.0
    restart_chi2: float = 13.82
    restart_after: int = 3

    def __post_init__(self) -> None:
        for name in ("accel_std", "meas_std", "max_range", "init_speed_std"):
            v = getattr(self, name)
            if not (isinstance(v, int | float) and math.isfinite(v) and v > 0):
                raise ValueError(f"{name} must be > 0, got {v!r}")
        if isinstance(self.restart_after, bool) or not (
            isinstance(self.restart_after, int) and self.restart_after >= 1
        ):
            raise ValueError(f"restart_after must be an int >= 1, got {self.restart_after!r}")
        inset = self.contact_inset_px
        if not (isinstance(inset, int | float) and math.isfinite(inset)):
            raise ValueError(f"contact_inset_px must be finite, got {inset!r}")
        for name in ("meas_std_per_m2", "max_age_s", "restart_chi2", "border_margin_px"):
            v = getattr(self, name)
            if not (isinstance(v, int | float) and math.isfinite(v) and v >= 0):
                raise ValueError(f"{name} must be >= 0, got {v!r}")


@dataclass(frozen=True)
class MotionResult:
    """Per input object, its filter's state at the update's stamp: position [N, 2] and velocity
    [N, 2] float64 in odom (m, m/s) with their covariances position_cov [N, 2, 2] (m^2) and
    velocity_cov [N, 2, 2] (m^2/s^2), NaN where unknown; `updates` [N] int64: measurements its
    filter has had (velocity is meaningful from 2 on)."""

    position: np.ndarray
    velocity: np.ndarray
    updates: np.ndarray
    position_cov: np.ndarray
    velocity_cov: np.ndarray

    def __len__(self) -> int:
        return int(self.position.shape[0])


def _transition(dt: float, accel_std: float) -> tuple[np.ndarray, np.ndarray]:
    """Constant-velocity F and Q (white acceleration) of state (x, y, vx, vy) over dt s."""
    from filterpy.common import Q_discrete_white_noise

    f = np.array([[1.0, 0, dt, 0], [0, 1.0, 0, dt], [0, 0, 1.0, 0], [0, 0, 0, 1.0]])
    q = Q_discrete_white_noise(dim=2, dt=dt, var=accel_std**2, block_size=2, order_by_dim=False)
    return f, q


class _Track:
    def __init__(self, xy: np.ndarray, r_std: float, stamp: float, p: MotionParams) -> None:
        from filterpy.kalman import KalmanFilter

        kf = KalmanFilter(dim_x=4, dim_z=2)  # state (x, y, vx, vy), measured (x, y)
        kf.H = np.array([[1.0, 0, 0, 0], [0, 1.0, 0, 0]])
        kf.x = np.array([xy[0], xy[1], 0.0, 0.0])
        v2 = p.init_speed_std**2
        kf.P = np.diag([r_std**2, r_std**2, v2, v2])
        self.kf, self.stamp, self.updates, self.params = kf, stamp, 1, p
        self.rejected = 0  # contacts rejected in a row by the validation gate

    def state_at(self, stamp: float) -> tuple[np.ndarray, np.ndarray]:
        """State (x, y, vx, vy) [4] and its covariance [4, 4] predicted to `stamp`, the filter
        unchanged."""
        x, cov = self.kf.x, self.kf.P
        dt = stamp - self.stamp
        if dt > 0:
            f, q = _transition(dt, self.params.accel_std)
            x, cov = f @ x, f @ cov @ f.T + q
        return np.array(x), np.array(cov)

    def predicted(self, stamp: float) -> tuple[np.ndarray, np.ndarray]:
        """Position [2] and its covariance [2, 2] predicted to `stamp`, the filter unchanged."""
        x, cov = self.state_at(stamp)
        return x[:2], cov[:2, :2]

    def innovation_chi2(self, xy: np.ndarray, r_std: float, stamp: float) -> float:
        """d^2 of the contact xy [2] (odom, std r_std) against the filter predicted to stamp."""
        x, cov = self.predicted(stamp)
        y = np.asarray(xy, np.float64) - x
        return float(y @ np.linalg.solve(cov + np.eye(2) * r_std**2, y))

    def step(self, xy: np.ndarray, r_std: float, stamp: float) -> None:
        dt = stamp - self.stamp
        if dt > 0:
            self.kf.F, self.kf.Q = _transition(dt, self.params.accel_std)
            self.kf.predict()
        self.kf.update(xy, R=np.eye(2) * r_std**2)
        self.stamp = max(self.stamp, stamp)
        self.updates += 1


class GroundMotion:
    """Kalman filters of tracked objects' ground motion, keyed by track id.

    `update(track_ids, ground_xy, pose, stamp, gate_xy=None)`:
      track_ids: [N] int, >= 1 (0 = untracked: no estimate);
      ground_xy: [N, 2] float ground contacts in base_link (m), NaN where unknown;
      gate_xy:   [N, 2] points that only validate a filter where ground_xy is NaN (a box cut
                 at the image's side: `box_contacts`' gate points); None: ground_xy;
      pose:      (x, y, yaw) of base_link in odom at the image's stamp (odometry);
      stamp:     seconds.
    Returns a `MotionResult` for the N objects.
    """

    def __init__(self, params: MotionParams | None = None) -> None:
        self.params = params or MotionParams()
        self.tracks: dict[int, _Track] = {}

    def reset(self) -> None:
        self.tracks.clear()

    def measurement_std(self, ground_range: np.ndarray) -> np.ndarray:
        """[N] std (m) of a ground contact measured at `ground_range` [N] m from the robot."""
        r = np.asarray(ground_range, dtype=np.float64)
        return self.params.meas_std + self.params.meas_std_per_m2 * r**2

    def predict(self, track_id: int, stamp: float) -> tuple[np.ndarray, np.ndarray] | None:
        """The filter of `track_id` predicted to `stamp` without changing it: (position [2],
        covariance [2, 2]) in odom (m, m^2); None when the track has no filter."""
        track = self.tracks.get(int(track_id))
        return None if track is None else track.predicted(stamp)

    def update(self, track_ids, ground_xy, pose, stamp: float, gate_xy=None) -> MotionResult:
        ids = np.asarray(track_ids, dtype=np.int64).reshape(-1)
        xy = np.asarray(ground_xy, dtype=np.float64).reshape(-1, 2)
        gate = xy if gate_xy is None else np.asarray(gate_xy, np.float64).reshape(-1, 2)
        if not len(xy) == len(ids) == len(gate):
            raise ValueError(f"track_ids [{len(ids)}] and ground_xy [{len(xy)}, 2] differ")
        if len(pose) != 3 or not all(math.isfinite(float(v)) for v in pose):
            raise ValueError(f"pose must be finite (x, y, yaw), got {pose!r}")
        p = self.params
        gate = np.where(np.isfinite(xy), xy, gate)  # a contact is its own gate point
        rng, gate_rng = np.hypot(xy[:, 0], xy[:, 1]), np.hypot(gate[:, 0], gate[:, 1])
        odom, gate_odom = base_to_odom(pose, xy), base_to_odom(pose, gate)
        n = len(ids)
        pos, vel = np.full((n, 2), np.nan), np.full((n, 2), np.nan)
        pos_cov, vel_cov = np.full((n, 2, 2), np.nan), np.full((n, 2, 2), np.nan)
        updates = np.zeros(n, np.int64)
        for i in range(n):
            tid = int(ids[i])
            if tid <= 0:
                continue
            ok = bool(np.isfinite(odom[i]).all() and rng[i] <= p.max_range)
            r_std = float(self.measurement_std(rng[i])) if ok else 0.0
            track = self.tracks.get(tid)
            if track is not None and p.restart_chi2 > 0:
                z, zr = gate_odom[i], gate_rng[i]
                if np.isfinite(z).all() and zr <= p.max_range:
                    d2 = track.innovation_chi2(z, float(self.measurement_std(zr)), stamp)
                    if d2 <= p.restart_chi2:
                        track.rejected = 0
                    else:
                        track.rejected += 1
                        if track.rejected < p.restart_after:
                            ok = False  # an outlier: not used
                        else:  # another object now: a new filter at its contact, if any
                            del self.tracks[tid]
                            track = None
            if ok and track is None:
                track = self.tracks[tid] = _Track(odom[i], r_std, stamp, p)
            elif ok:
                track.step(odom[i], r_std, stamp)
            if track is not None:  # at this stamp, also when its contact was not used
                x, cov = track.state_at(stamp)
                pos[i], vel[i], pos_cov[i], vel_cov[i] = x[:2], x[2:], cov[:2, :2], cov[2:, 2:]
                updates[i] = track.updates
        for tid in [t for t, tr in self.tracks.items() if stamp - tr.stamp > p.max_age_s]:
            del self.tracks[tid]
        return MotionResult(pos, vel, updates, pos_cov, vel_cov)
