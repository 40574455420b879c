"""The class table of the synthetic world (`segmentation_ros.data.synthetic`).

Category ids follow `segmentation_ros.panoptic.result`: contiguous, stuff first (0..S-1), then
things (S..S+T-1); the same ids are written as `category_id` in the COCO-panoptic and COCO
instance JSON files of a synthetic data set (so category 0, `road`, is a real class; segment id 0
is void). `drivable` marks the surfaces a ground robot may drive on; it agrees with
`segmentation_ros.drivable.classes.DEFAULT_DRIVABLE_NAMES` (grass is not drivable by default,
terrain is); things are never drivable.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class SyntheticClass:
    """One category of the synthetic world.

    id:       contiguous category id (stuff 0..S-1, things S..S+T-1).
    name:     lower-case name, `_` between words (COCO style).
    isthing:  True for countable objects (one segment per instance), False for stuff (one segment
              per class and image).
    color:    (r, g, b) 0..255 for visualisation.
    drivable: True for surfaces a ground robot may drive on (never for things).
    """

    id: int
    name: str
    isthing: bool
    color: tuple[int, int, int]
    drivable: bool

    def to_coco(self) -> dict[str, Any]:
        """COCO-panoptic `categories` entry, plus our `drivable` flag."""
        return {
            "id": self.id,
            "name": self.name,
            "supercategory": "thing" if self.isthing else "stuff",
            "isthing": int(self.isthing),
            "color": list(self.color),
            "drivable": bool(self.drivable),
        }


@dataclass(frozen=True)
class ClassTable:
    """An ordered, validated list of `SyntheticClass` (index = category id).

    Raises ValueError unless ids are 0..C-1 in order, names are unique, stuff precedes things and
    no thing is drivable.
    """

    classes: tuple[SyntheticClass, ...]

    def __post_init__(self) -> None:
        classes = tuple(self.classes)
        object.__setattr__(self, "classes", classes)
        for i, c in enumerate(classes):
            if c.id != i:
                raise ValueError(f"class {c.name!r} has id {c.id}; ids must be 0..C-1 in order")
            if c.isthing and c.drivable:
                raise ValueError(f"thing class {c.name!r} cannot be drivable")
            if len(c.color) != 3 or not all(0 <= int(v) <= 255 for v in c.color):
                raise ValueError(f"class {c.name!r}: color must be (r, g, b) in 0..255")
        names = [c.name for c in classes]
        if len(set(names)) != len(names):
            raise ValueError(f"class names must be unique, got {names}")
        flags = [c.isthing for c in classes]
        if flags != sorted(flags):
            raise ValueError("stuff classes must come before thing classes")

    def __len__(self) -> int:
        return len(self.classes)

    def __getitem__(self, category_id: int) -> SyntheticClass:
        return self.classes[category_id]

    def __iter__(self):
        return iter(self.classes)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.classes)

    @property
    def stuff_names(self) -> tuple[str, ...]:
        """Names of the stuff classes, ids 0..S-1."""
        return tuple(c.name for c in self.classes if not c.isthing)

    @property
    def thing_names(self) -> tuple[str, ...]:
        """Names of the thing classes, ids S..S+T-1."""
        return tuple(c.name for c in self.classes if c.isthing)

    @property
    def drivable_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.classes if c.drivable)

    @property
    def num_stuff(self) -> int:
        return len(self.stuff_names)

    @property
    def num_things(self) -> int:
        return len(self.thing_names)

    def id_of(self, name: str) -> int:
        """Category id of `name`; ValueError naming the known classes otherwise."""
        for c in self.classes:
            if c.name == name:
                return c.id
        raise ValueError(f"unknown class {name!r}; known: {list(self.names)}")

    def colors(self) -> np.ndarray:
        """[C, 3] uint8 RGB visualisation colours."""
        return np.array([c.color for c in self.classes], dtype=np.uint8).reshape(-1, 3)

    def isthing(self) -> np.ndarray:
        """[C] bool."""
        return np.array([c.isthing for c in self.classes], dtype=bool)

    def drivable(self) -> np.ndarray:
        """[C] bool, `drivable()[category_id]`."""
        return np.array([c.drivable for c in self.classes], dtype=bool)

    def to_coco(self) -> list[dict[str, Any]]:
        """COCO `categories` list (with `drivable` per entry)."""
        return [c.to_coco() for c in self.classes]


def _table(stuff: list[tuple[str, tuple[int, int, int], bool]], things: list) -> ClassTable:
    rows = [(n, False, col, d) for n, col, d in stuff] + [
        (n, True, col, False) for n, col in things
    ]
    return ClassTable(
        tuple(SyntheticClass(i, n, t, col, d) for i, (n, t, col, d) in enumerate(rows))
    )


#: The synthetic world's classes: 10 stuff (0..9), 5 things (10..14).
SYNTHETIC_CLASSES: ClassTable = _table(
    [
        ("road", (128, 64, 128), True),
        ("sidewalk", (244, 35, 232), True),
        ("terrain", (152, 251, 152), True),
        ("floor", (230, 150, 140), True),
        ("grass", (60, 180, 75), False),
        ("vegetation", (107, 142, 35), False),
        ("wall", (102, 102, 156), False),
        ("building", (70, 70, 70), False),
        ("ceiling", (190, 190, 120), False),
        ("sky", (70, 130, 180), False),
    ],
    [
        ("person", (220, 20, 60)),
        ("car", (0, 0, 142)),
        ("bicycle", (119, 11, 32)),
        ("traffic_cone", (255, 128, 0)),
        ("box", (160, 110, 40)),
    ],
)

STUFF_NAMES: tuple[str, ...] = SYNTHETIC_CLASSES.stuff_names
THING_NAMES: tuple[str, ...] = SYNTHETIC_CLASSES.thing_names
DRIVABLE_NAMES: tuple[str, ...] = SYNTHETIC_CLASSES.drivable_names
