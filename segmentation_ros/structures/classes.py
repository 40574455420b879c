"""A model's class table: the one type the pipeline, the evaluation and the messages share."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["ClassTable"]


@dataclass(frozen=True, eq=False)
class ClassTable:
    """A model's classes, indexed by class id.

    names: class names (unique); is_thing: per class, thing (True) or stuff (False).
    colors: [C, 3] uint8 RGB display colours, None until a display assigns them.
    drivable: per class, part of the drivable surface (the node's `drivable_classes`); None until
        a drivability is chosen.
    Sequences are stored as tuples (colors as an array), so tables compare by value.
    """

    names: tuple[str, ...]
    is_thing: tuple[bool, ...]
    colors: np.ndarray | None = None
    drivable: tuple[bool, ...] | None = None

    def __post_init__(self) -> None:
        n = len(self.names)
        object.__setattr__(self, "names", tuple(str(name) for name in self.names))
        if self.colors is not None:
            colors = np.asarray(self.colors)
            if colors.shape != (n, 3):
                raise ValueError(f"colors must be [{n}, 3] for {n} classes, got {colors.shape}")
            object.__setattr__(self, "colors", colors.astype(np.uint8, copy=False))
        for field in ("is_thing", "drivable"):
            value = getattr(self, field)
            if value is None:
                continue
            flags = tuple(bool(v) for v in np.asarray(value).ravel())
            if np.shape(value) != (n,):
                raise ValueError(f"{field} must have {n} entries, got {np.shape(value)}")
            object.__setattr__(self, field, flags)

    @classmethod
    def panoptic(cls, stuff_names: Sequence[str], thing_names: Sequence[str]) -> ClassTable:
        """Stuff classes 0..S-1 then thing classes S..S+T-1 (the panoptic convention)."""
        return cls(
            tuple(stuff_names) + tuple(thing_names),
            (False,) * len(stuff_names) + (True,) * len(thing_names),
        )

    def __len__(self) -> int:
        return len(self.names)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ClassTable):
            return NotImplemented
        same_colors = (self.colors is None and other.colors is None) or (
            self.colors is not None
            and other.colors is not None
            and np.array_equal(self.colors, other.colors)
        )
        return (self.names, self.is_thing, self.drivable) == (
            other.names,
            other.is_thing,
            other.drivable,
        ) and same_colors

    __hash__ = None  # type: ignore[assignment]  (colors are an array)

    @property
    def num_stuff(self) -> int:
        return sum(not t for t in self.is_thing)

    def ids_of(self, names: Sequence[str]) -> np.ndarray:
        """Class ids of `names` (ValueError naming the unknown ones)."""
        index = {n: i for i, n in enumerate(self.names)}
        unknown = [n for n in names if n not in index]
        if unknown:
            raise ValueError(f"unknown class names {unknown}; the model's classes: {self.names}")
        return np.array([index[n] for n in names], dtype=np.int64)
