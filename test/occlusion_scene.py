"""Constructed sequences with a real occlusion, for the tracking tests, on seed 930777's street:
- `occlusion_world`: the camera creeps along the right lane (0.5 m/s); a car stands across the
  road 7 m ahead (the occluder); a second car crosses the road 10 m ahead at 3 m/s and passes
  behind it;
- `passing_world`: the camera drives at 4 m/s; an oncoming van passes through the line of sight
  to a car parked on the far side (what the default model detects well enough for a DDS test).
Only the world's own drawing decides what is visible: the tests read the occlusion from the
exact annotations."""

import dataclasses
import math

import numpy as np

from segmentation_ros.data.sequence_world import Agent, build_world
from segmentation_ros.data.synthetic_catalogue import PARAMS, RADIUS

OCCLUDER, HIDDEN = 1, 2  # agent ids: the one in front, the one it hides


def _car(rng, paint) -> dict:
    p = PARAMS["car"](rng)
    # A saloon (not a van) of a fixed paint, so that the crosser is hidden under the occluder's
    # roof line and both are plain to a detector.
    return {**p, "length": 4.4, "width": 1.8, "height": 1.45, "cab_back": 0.3, "rake": 0.12,
            "cab_front": 0.15, "paint": np.asarray(paint, float)}  # fmt: skip


def occlusion_world(
    num_frames: int = 40,
    occ_x: float = 7.0,
    cross_x: float = 10.0,
    cross_y0: float = -8.0,
    speed: float = 3.0,
):
    """The SequenceWorld (10 Hz, 640x480): agents OCCLUDER (static, across the camera's lane at
    x = occ_x m) and HIDDEN (x = cross_x m, from y = cross_y0 m at +speed m/s, heading +y),
    odom metres."""
    base = build_world(930_777, kind="drive", num_frames=num_frames)
    rng = np.random.default_rng(930_777)
    cam = dataclasses.replace(base.camera, camera_height=1.3)
    occ = _car(rng, (160, 20, 25))
    cross = _car(rng, (25, 55, 140))
    y_lane = base.y0
    agents = (
        Agent(OCCLUDER, "car", occ_x, y_lane, 0.0, 0.0, math.pi / 2, RADIUS["car"](occ), occ),
        Agent(HIDDEN, "car", cross_x, cross_y0, 0.0, speed, math.pi / 2, RADIUS["car"](cross),
              cross),
    )  # fmt: skip
    return dataclasses.replace(base, camera=cam, speed=0.5, weave=0.0, agents=agents)


def passing_world(
    num_frames: int = 40, parked_x: float = 20.0, van_x: float = 23.1, van_v: float = -8.0
):
    """The camera drives at 4 m/s in the right lane; a car is parked on the far left at
    x = parked_x m (HIDDEN); a van comes the other way in the inner left lane (x = van_x m at
    t = 0, van_v m/s) and passes through the line of sight to it (OCCLUDER)."""
    base = build_world(930_777, kind="drive", num_frames=num_frames)
    rng = np.random.default_rng(930_778)
    cam = dataclasses.replace(base.camera, camera_height=1.3)
    parked = _car(rng, (210, 180, 40))
    van = {**_car(rng, (235, 235, 235)), "length": 5.0, "height": 2.05, "cab_back": 0.45,
           "cab_front": 0.28, "rake": 0.08}  # fmt: skip
    rw = base.street.road_width
    lane = rw / base.street.lanes
    agents = (
        Agent(OCCLUDER, "car", van_x, lane / 2, van_v, 0.0, math.pi, RADIUS["car"](van), van),
        Agent(HIDDEN, "car", parked_x, rw / 2 + 0.9, 0.0, 0.0, math.pi, RADIUS["car"](parked),
              parked),
    )  # fmt: skip
    return dataclasses.replace(base, camera=cam, speed=4.0, weave=0.0, agents=agents)
