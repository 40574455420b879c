"""Every kind of object of the synthetic world: how it draws itself, how its parameters are
drawn at random, and its footprint radius for placement."""

from __future__ import annotations

import math

from segmentation_ros.data.synthetic_props import (
    box_params,
    bush_params,
    cone_params,
    draw_box,
    draw_bush,
    draw_cone,
    draw_pillar,
    draw_tree,
    pillar_params,
    tree_params,
)
from segmentation_ros.data.synthetic_shapes import (
    bicycle_params,
    car_params,
    draw_bicycle,
    draw_car,
    draw_person,
    person_params,
)

DRAW = {
    "person": draw_person,
    "car": draw_car,
    "bicycle": draw_bicycle,
    "traffic_cone": draw_cone,
    "box": draw_box,
    "tree": draw_tree,
    "bush": draw_bush,
    "pillar": draw_pillar,
}
PARAMS = {
    "person": person_params,
    "car": car_params,
    "bicycle": bicycle_params,
    "traffic_cone": cone_params,
    "box": box_params,
    "tree": tree_params,
    "bush": bush_params,
    "pillar": pillar_params,
}
#: footprint radius (m) of each kind for placement, from its params
RADIUS = {
    "person": lambda p: 0.3,
    "car": lambda p: 0.5 * math.hypot(p["length"], p["width"]),
    "bicycle": lambda p: 0.6,
    "traffic_cone": lambda p: 0.3,
    "box": lambda p: 0.5 * math.hypot(p["size"][0], p["size"][1]),
    "tree": lambda p: 0.4,
    "bush": lambda p: 1.0,
    "pillar": lambda p: p["size"] * 0.75,
}
