"""Class -> drivability, and the per-pixel drivable mask.

Category ids follow `segmentation_ros.panoptic.result`: 0-based indices into the model's category
list (panoptic models: stuff classes first, then thing classes); one extra id, `void_label`
(default 255, outside the table), marks void / unknown pixels.

Name matching: a class is drivable when its normalised name (lower case, `_` -> space, runs of
spaces collapsed) or the part of it before the first `-` is one of the drivable names. So the
COCO-panoptic names `floor-wood`, `floor-other-merged`, `pavement-merged`, `dirt-merged` match
`floor`, `pavement`, `dirt`, and Mapillary's `Lane Marking - General` matches `lane marking`;
`parking meter` does not match `parking` (spaces are not split). Thing classes (people, cars, any
countable object) are never drivable, whatever their name.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np

#: Drivable by default: road-like, floor-like and walkable ground classes of COCO-panoptic,
#: Cityscapes, ADE20K and Mapillary Vistas.
DEFAULT_DRIVABLE_NAMES: tuple[str, ...] = (
    "road",
    "sidewalk",
    "pavement",
    "floor",
    "flooring",
    "terrain",
    "path",
    "parking",
    "ground",
    "earth",
    "dirt",
    "dirt track",
    "gravel",
    "playingfield",
    "rug",
    "carpet",
    "driveway",
    "crosswalk",
    "lane marking",
    "bike lane",
    "service lane",
    "pedestrian area",
    "runway",
)

#: Added to the drivable names by `grass_drivable=True` (lawn-mowing or off-road robots).
GRASS_NAMES: tuple[str, ...] = ("grass", "lawn")


def normalize_class_name(name: str) -> str:
    """Lower case, `_` -> space, whitespace runs collapsed, stripped."""
    return re.sub(r"\s+", " ", name.replace("_", " ")).strip().lower()


def _name_matches(name: str, wanted: frozenset[str]) -> bool:
    norm = normalize_class_name(name)
    return norm in wanted or norm.split("-", 1)[0].strip() in wanted


@dataclass(frozen=True)
class DrivabilityTable:
    """Which category ids a robot may drive on.

    class_names: the model's category names, index = category id (C entries).
    drivable:    [C] bool, True where the category is drivable surface.
    is_thing:    [C] bool, True for thing (instance) categories; a thing is never drivable.

    Build it with `from_names` / `from_panoptic`; vary it with `dataclasses.replace`.
    """

    class_names: tuple[str, ...]
    drivable: tuple[bool, ...]
    is_thing: tuple[bool, ...]

    def __post_init__(self) -> None:
        names = tuple(str(n) for n in self.class_names)
        drivable = tuple(bool(d) for d in self.drivable)
        is_thing = tuple(bool(t) for t in self.is_thing)
        if not (len(names) == len(drivable) == len(is_thing)):
            raise ValueError(
                f"class_names, drivable and is_thing must have equal lengths, got "
                f"{len(names)}, {len(drivable)}, {len(is_thing)}"
            )
        bad = [n for n, d, t in zip(names, drivable, is_thing) if d and t]
        if bad:
            raise ValueError(f"thing classes are never drivable; unmark {bad}")
        object.__setattr__(self, "class_names", names)
        object.__setattr__(self, "drivable", drivable)
        object.__setattr__(self, "is_thing", is_thing)

    @classmethod
    def from_names(
        cls,
        class_names: Sequence[str],
        is_thing: Sequence[bool],
        drivable_names: Iterable[str] = DEFAULT_DRIVABLE_NAMES,
        *,
        grass_drivable: bool = False,
    ) -> DrivabilityTable:
        """Mark the stuff classes whose name matches `drivable_names` (see module docstring).

        Raises ValueError when no class matches: the grid would be all obstacles, which is a
        misspelt name or a model without surface classes (an instance-only YOLACT).
        """
        wanted = {normalize_class_name(n) for n in drivable_names}
        if grass_drivable:
            wanted |= set(GRASS_NAMES)
        wanted_f = frozenset(wanted)
        is_thing = tuple(bool(t) for t in is_thing)
        if len(is_thing) != len(class_names):
            raise ValueError(
                f"is_thing has {len(is_thing)} entries for {len(class_names)} class names"
            )
        drivable = tuple(
            (not t) and _name_matches(n, wanted_f) for n, t in zip(class_names, is_thing)
        )
        if not any(drivable):
            raise ValueError(
                f"none of the stuff classes {[n for n, t in zip(class_names, is_thing) if not t]}"
                f" matches the drivable names {sorted(wanted_f)}; pass the surface class names "
                "of this model as drivable_names"
            )
        return cls(tuple(class_names), drivable, is_thing)

    @classmethod
    def from_panoptic(
        cls,
        stuff_names: Sequence[str],
        thing_names: Sequence[str],
        drivable_names: Iterable[str] = DEFAULT_DRIVABLE_NAMES,
        *,
        grass_drivable: bool = False,
    ) -> DrivabilityTable:
        """Panoptic category list: ids 0..S-1 the stuff, S..S+T-1 the things."""
        names = tuple(stuff_names) + tuple(thing_names)
        is_thing = (False,) * len(stuff_names) + (True,) * len(thing_names)
        return cls.from_names(names, is_thing, drivable_names, grass_drivable=grass_drivable)

    def __len__(self) -> int:
        return len(self.class_names)

    @property
    def drivable_names(self) -> tuple[str, ...]:
        """Names of the drivable classes, in id order (for the class-metadata message)."""
        return tuple(n for n, d in zip(self.class_names, self.drivable) if d)

    @cached_property
    def lut(self) -> np.ndarray:
        """[C] bool, read-only: `lut[category_id]` is True for drivable categories."""
        lut = np.array(self.drivable, dtype=bool)
        lut.setflags(write=False)
        return lut


def _check_semantic_map(semantic_map, num_classes: int, void_label: int) -> np.ndarray:
    ids = np.asarray(semantic_map)
    if ids.ndim != 2:
        raise ValueError(f"semantic_map must be [H, W], got shape {ids.shape}")
    if not np.issubdtype(ids.dtype, np.integer):
        raise TypeError(f"semantic_map must hold integer category ids, got dtype {ids.dtype}")
    if 0 <= void_label < num_classes:
        raise ValueError(
            f"void_label {void_label} is a class id of the table (0..{num_classes - 1}); "
            "use an id outside the table, e.g. 255"
        )
    return ids


def _in_table(ids: np.ndarray, num_classes: int, void_label: int) -> np.ndarray | None:
    """None when every id is a table id; else the [H, W] bool of table ids (void excluded).

    Raises ValueError for ids that are neither a table id nor `void_label`.
    """
    if ids.size == 0 or (ids.min() >= 0 and ids.max() < num_classes):
        return None
    inside = (ids >= 0) & (ids < num_classes)
    bad = ~inside & (ids != void_label)
    if bad.any():
        values = np.unique(ids[bad])[:5].tolist()
        raise ValueError(
            f"semantic_map holds ids {values} outside the table's 0..{num_classes - 1} that "
            f"are not void_label={void_label}; the table does not match the model's classes"
        )
    return inside


def _thing_pixels(instance_mask, shape: tuple[int, ...]) -> np.ndarray:
    inst = np.asarray(instance_mask)
    if inst.shape != shape:
        raise ValueError(f"instance_mask has shape {inst.shape}, semantic_map {shape}")
    return inst if inst.dtype == bool else inst != 0


def drivable_mask(
    semantic_map: np.ndarray,
    table: DrivabilityTable,
    instance_mask: np.ndarray | None = None,
    *,
    void_label: int = 255,
) -> np.ndarray:
    """Per-pixel drivability.

    semantic_map:  [H, W] integer category ids (ids of `table`, or `void_label`).
    instance_mask: optional [H, W], bool or integer instance ids (non-zero = covered by a thing
                   instance); those pixels are never drivable, whatever the semantic label.
    Returns [H, W] bool: True where the pixel is drivable surface. Void pixels are False (use
    `known_mask` to tell them from obstacles).
    """
    ids = _check_semantic_map(semantic_map, len(table), void_label)
    inside = _in_table(ids, len(table), void_label)
    if inside is None:
        mask = table.lut[ids]
    else:
        mask = np.zeros(ids.shape, dtype=bool)
        mask[inside] = table.lut[ids[inside]]
    if instance_mask is not None:
        mask &= ~_thing_pixels(instance_mask, ids.shape)
    return mask


def known_mask(semantic_map: np.ndarray, *, void_label: int = 255) -> np.ndarray:
    """[H, W] bool: True where the pixel has a label (is not `void_label`)."""
    ids = np.asarray(semantic_map)
    if ids.ndim != 2:
        raise ValueError(f"semantic_map must be [H, W], got shape {ids.shape}")
    return ids != void_label
