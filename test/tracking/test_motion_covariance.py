"""The published covariances of `GroundMotion` against Monte Carlo truth: targets that move as the
filter's own model says (constant velocity driven by white acceleration, Bar-Shalom's discrete
white-noise-acceleration model, written out here) and contacts with the filter's stated noise.
Then the normalised estimation error squared e^T P^-1 e of a 2-vector is chi-square with 2
degrees of freedom: its mean is 2, for the velocity and for a position predicted over a frame
whose contact is missing. The noise does not grow with range here: the filter takes a contact's
noise at the contact's own range, which trusts contacts that came out short a little more than
those that came out long (in this simulation with the default growth the position's NEES ends
near 2.7); at the predicted range it is calibrated, but the validation sequences' velocity
median went 0.41 -> 0.45 m/s with it, so the filter keeps the contact's."""

import numpy as np

from segmentation_ros.tracking import GroundMotion, MotionParams

RUNS, STEPS, DT = 400, 15, 0.1


def _white_acceleration(dt: float, var: float) -> np.ndarray:
    """Q of state (x, y, vx, vy): per axis var * [[dt^4 / 4, dt^3 / 2], [dt^3 / 2, dt^2]]."""
    a = var * np.array([[dt**4 / 4, dt**3 / 2], [dt**3 / 2, dt**2]])
    q = np.zeros((4, 4))
    for axis in (0, 1):
        idx = np.ix_([axis, axis + 2], [axis, axis + 2])
        q[idx] = a
    return q


def test_velocity_and_predicted_position_covariances_are_calibrated():
    # No gate (every contact is used); a contact's noise 0.5 m at any range.
    p = MotionParams(max_range=100.0, restart_chi2=0.0, meas_std=0.5, meas_std_per_m2=0.0)
    rng = np.random.default_rng(16)
    f = np.eye(4)
    f[0, 2] = f[1, 3] = DT
    q = _white_acceleration(DT, p.accel_std**2)
    nees_v, nees_p = [], []
    for _ in range(RUNS):
        motion = GroundMotion(p)
        state = np.r_[rng.uniform(8, 20), rng.uniform(-4, 4), rng.normal(0, p.init_speed_std, 2)]
        for k in range(STEPS):
            if k:
                state = f @ state + rng.multivariate_normal(np.zeros(4), q)
            std = float(motion.measurement_std(np.hypot(*state[:2])))
            contact = state[:2] + rng.normal(0, std, 2)
            if k == STEPS - 1:
                contact[:] = np.nan  # the last frame has no contact: the filter predicts
            est = motion.update([1], contact[None], (0.0, 0.0, 0.0), k * DT)
        e_v = est.velocity[0] - state[2:]
        e_p = est.position[0] - state[:2]
        nees_v.append(e_v @ np.linalg.solve(est.velocity_cov[0], e_v))
        nees_p.append(e_p @ np.linalg.solve(est.position_cov[0], e_p))
    # The mean of 400 chi-square(2) draws: 2 with a standard error of 0.1.
    assert 1.7 < np.mean(nees_v) < 2.3, np.mean(nees_v)
    assert 1.7 < np.mean(nees_p) < 2.3, np.mean(nees_p)
    assert 0.92 < np.mean(np.array(nees_v) <= 5.991) < 0.98
