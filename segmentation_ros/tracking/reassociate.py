"""Ids through occlusions: a track that ByteTrack starts is given the id of a recently lost track
of the same class when the lost track's ground-plane filter (`GroundMotion`, odom) predicts it
where the new one stands.

ByteTrack keeps a lost track for `max_age_s`, but finds it again only by the IoU of its
image-plane box prediction; a car that passes behind another shrinks to a sliver before it
vanishes, its box velocity is corrupted, and when it comes out the other side the box
prediction does not overlap it: ByteTrack starts a new track. The ground-plane filter does not
see the sliver (a box on the image border or a contact out of range gives no measurement) and
predicts with the object's ground velocity in odom, so the robot's own motion does not move the
prediction. The rule is standard track-to-track gating (Bar-Shalom, "Tracking and Data
Association", ch. 6): the new track's first ground contact z is compared with the lost track's
predicted position x^ (covariance P^, from the filter) under the measurement noise R of z;
d^2 = (z - x^)^T (P^ + R)^-1 (z - x^) is chi-square with 2 degrees of freedom when they are the
same object, so d^2 <= 9.21 accepts 99 % of true pairs. Several new and lost tracks are paired
by the Hungarian algorithm on d^2 (scipy), each pair also within `max_distance` m.

An object that comes out from behind another shows a sliver first (a roof above the occluder's
bonnet): its box bottom is not where it touches the ground, and its contact lies far off. So a
new track that does not gate while a lost track of its class could still be it (lost inside the
view, with a ground contact, and predicted ahead of the robot) and whose box overlaps the box of
an object in front of it (a lower bottom edge on flat ground: it is coming out from behind that)
is held (id 0, no filter update) for up to `hold_s`, and tried again each frame as more of it
shows; then it gets a fresh id.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from segmentation_ros.tracking.motion import GroundMotion, base_to_odom


def behind_other(boxes: np.ndarray) -> np.ndarray:
    """[N] bool: box i of boxes [N, 4] (x1, y1, x2, y2) pixels overlaps a box whose bottom edge
    is lower in the image (on flat ground, an object in front of it that may hide part of it)."""
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    wx = np.minimum(b[:, None, 2], b[None, :, 2]) - np.maximum(b[:, None, 0], b[None, :, 0])
    wy = np.minimum(b[:, None, 3], b[None, :, 3]) - np.maximum(b[:, None, 1], b[None, :, 1])
    return ((wx > 0) & (wy > 0) & (b[None, :, 3] > b[:, None, 3])).any(1)


def _ahead(pose, xy) -> bool:
    """Whether the odom point xy [2] is in front of the robot at pose (x, y, yaw)."""
    return (xy[0] - pose[0]) * math.cos(pose[2]) + (xy[1] - pose[1]) * math.sin(pose[2]) > 0


@dataclass(frozen=True)
class ReassociationParams:
    """gate_chi2:    Mahalanobis gate d^2 (2 dof; 9.21 = 99 %, 5.99 = 95 %).
    max_distance: metric cap (m) on |z - x^| however wide the covariance.
    max_age_s:    a lost track can be taken over this long after it was last seen (s).
    hold_s:       a new track that may be a lost one is held without an id this long (s)."""

    gate_chi2: float = 9.21
    max_distance: float = 5.0
    max_age_s: float = 1.0
    hold_s: float = 0.5

    def __post_init__(self) -> None:
        for name in ("gate_chi2", "max_distance", "max_age_s", "hold_s"):
            v = getattr(self, name)
            if not (isinstance(v, int | float) and math.isfinite(v) and v >= 0):
                raise ValueError(f"{name} must be >= 0, got {v!r}")


class TrackReassociation:
    """Maps the tracker's ids to published ids, carrying lost ids over to new tracks.

    `update(raw_ids, class_ids, ground_xy, pose, stamp, motion, boxes=None)`:
      raw_ids:   [N] int, the tracker's ids (>= 1; 0 = no id yet);
      class_ids: [N] int;
      ground_xy: [N, 2] float ground contacts in base_link (m), NaN where unknown;
      pose:      (x, y, yaw) of base_link in odom, or None (no odometry: nothing is carried);
      stamp:     seconds;
      motion:    the GroundMotion whose filters are keyed by the ids this returns; call
                 `motion.update` with them after this;
      boxes:     [N, 4] float (x1, y1, x2, y2) pixels, or None (no track is held);
      gate_xy:   [N, 2] contacts to gate new tracks with, where they differ from ground_xy (a
                 box cut at the image's side: `cut_by_border(sides=False)`); None: ground_xy.
    Returns [N] int64 published ids: >= 1, unique within a frame, 0 where raw_ids is 0 or the
    track is held (see the module docstring).
    """

    def __init__(self, params: ReassociationParams | None = None) -> None:
        self.params = params or ReassociationParams()
        self.reset()

    def reset(self) -> None:
        self._alias: dict[int, int] = {}  # raw id -> published id
        self._owner: dict[int, int] = {}  # published id -> the raw id that holds it now
        # published id -> (last stamp, class, whether it was last seen with a ground contact)
        self._seen: dict[int, tuple[float, int, bool]] = {}
        self._held: dict[int, float] = {}  # raw id -> stamp it was first held
        self._next = 1
        self.carried = 0  # ids carried over so far (for reports)

    def _fresh(self, raw: int) -> int:
        pid = self._next
        self._next += 1
        self._alias[raw], self._owner[pid] = pid, raw
        return pid

    def update(
        self,
        raw_ids,
        class_ids,
        ground_xy,
        pose,
        stamp: float,
        motion: GroundMotion,
        boxes=None,
        gate_xy=None,
    ) -> np.ndarray:
        raw = np.asarray(raw_ids, dtype=np.int64).reshape(-1)
        cls = np.asarray(class_ids, dtype=np.int64).reshape(-1)
        xy = np.asarray(ground_xy, dtype=np.float64).reshape(-1, 2)
        gate = xy if gate_xy is None else np.asarray(gate_xy, dtype=np.float64).reshape(-1, 2)
        if not len(raw) == len(cls) == len(xy) == len(gate):
            raise ValueError(f"raw_ids [{len(raw)}], class_ids [{len(cls)}], ground_xy differ")
        out = np.zeros(len(raw), np.int64)
        new = []
        for i, r in enumerate(raw.tolist()):
            if r <= 0:
                continue
            pid = self._alias.get(r)
            if pid is not None and self._owner.get(pid) != r:
                pid = self._fresh(r)  # its id went to a newer track: this one is another object
            if pid is None:
                new.append(i)
            else:
                out[i] = pid
        if new:
            behind = np.zeros(len(raw), bool) if boxes is None else behind_other(boxes)
            if len(behind) != len(raw):
                raise ValueError(f"boxes [{len(behind)}, 4] and raw_ids [{len(raw)}] differ")
            self._carry(new, out, raw, cls, gate, pose, stamp, motion, behind)
        for i in np.flatnonzero(out):
            self._seen[int(out[i])] = (stamp, int(cls[i]), bool(np.isfinite(xy[i]).all()))
        for pid in [p for p, v in self._seen.items() if stamp - v[0] > self.params.max_age_s]:
            del self._seen[pid]
            self._alias.pop(self._owner.pop(pid, -1), None)
        for r in [r for r, t in self._held.items() if stamp - t > 2 * self.params.hold_s]:
            del self._held[r]
        return out

    def _carry(self, new, out, raw, cls, xy, pose, stamp, motion, behind) -> None:
        """Pair the new tracks `new` (indices) with lost published ids; the rest get fresh ids."""
        from scipy.optimize import linear_sum_assignment

        present = set(out[out > 0].tolist())
        lost = [
            p
            for p, (t, _, _) in self._seen.items()
            if p not in present and 0 < stamp - t <= self.params.max_age_s
        ]
        pairs: list[tuple[int, int]] = []
        maybe = set()  # new tracks that a lost track of their class could still be
        if lost and pose is not None:
            z = base_to_odom(pose, xy[new])
            r_std = motion.measurement_std(np.hypot(xy[new, 0], xy[new, 1]))
            cost = np.full((len(new), len(lost)), np.inf)
            for a, i in enumerate(new):
                if not np.isfinite(z[a]).all():
                    continue
                for b, p in enumerate(lost):
                    pred = motion.predict(p, stamp)
                    if pred is None or self._seen[p][1] != cls[i]:
                        continue
                    if behind[i] and self._seen[p][2] and _ahead(pose, pred[0]):
                        maybe.add(a)  # lost inside the view (not through its border)
                    d = z[a] - pred[0]
                    s = pred[1] + np.eye(2) * r_std[a] ** 2
                    d2 = float(d @ np.linalg.solve(s, d))
                    if d2 <= self.params.gate_chi2 and math.hypot(*d) <= self.params.max_distance:
                        cost[a, b] = d2
            if np.isfinite(cost).any():
                rows, cols = linear_sum_assignment(np.where(np.isfinite(cost), cost, 1e9))
                pairs = [(a, b) for a, b in zip(rows, cols) if np.isfinite(cost[a, b])]
        taken = {a: lost[b] for a, b in pairs}
        for a, i in enumerate(new):
            r = int(raw[i])
            if a in taken:
                pid = taken[a]
                self._alias.pop(self._owner.get(pid, -1), None)  # the lost raw id is retired
                self._alias[r], self._owner[pid] = pid, r
                self.carried += 1
                out[i] = pid
                self._held.pop(r, None)
            elif a in maybe and stamp - self._held.setdefault(r, stamp) <= self.params.hold_s:
                out[i] = 0  # held: perhaps a lost track coming out from behind something
            else:
                self._held.pop(r, None)
                out[i] = self._fresh(r)
