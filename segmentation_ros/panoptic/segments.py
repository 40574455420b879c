"""Panoptic segments as the evaluators see them: id maps, segment tables and categories.

An id map is [H, W] integer ids (0 = VOID); `SegmentsInfo` lists each id's category and crowd
flag; `dense_index` turns ids into dense indices in one pass (a lookup table, or a binary search
for COCO's 24-bit ids). Shared by PQ (`pq.py`), the COCO-panoptic reader and the data sets.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

VOID = 0
"""Id-map value of void / unlabelled pixels."""

_LUT_MAX_ID = 1 << 16  # ids below this are looked up in a table, larger ones by binary search


def to_numpy(x: Any) -> np.ndarray:
    """A numpy view of an array-like; torch tensors are detached and moved to the CPU."""
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


@dataclass(frozen=True)
class Category:
    """One panoptic category.

    id: the dataset's category id (COCO: 1..200; ours: 0..S+T-1).
    name: readable name.
    isthing: True for countable things, False for stuff.
    color: (r, g, b) 0..255 used for visualisation, or None.
    """

    id: int
    name: str
    isthing: bool
    color: tuple[int, int, int] | None = None

    @staticmethod
    def from_coco(d: Mapping[str, Any]) -> Category:
        """From a COCO-panoptic `categories` entry {id, name, isthing, color}."""
        try:
            color = d.get("color")
            return Category(
                id=int(d["id"]),
                name=str(d.get("name", d["id"])),
                isthing=bool(d["isthing"]),
                color=None if color is None else (int(color[0]), int(color[1]), int(color[2])),
            )
        except (KeyError, TypeError, IndexError, ValueError) as e:
            raise ValueError(
                f"bad category entry {dict(d)!r}: expected keys id, name, isthing[, color]"
            ) from e

    def to_coco(self) -> dict[str, Any]:
        d: dict[str, Any] = {"id": self.id, "name": self.name, "isthing": int(self.isthing)}
        if self.color is not None:
            d["color"] = list(self.color)
        return d


@dataclass
class SegmentsInfo:
    """Segments of one id map, struct of arrays (the COCO `segments_info` without the geometry).

    ids:          [N] int64, the segment's value in the id map, >= 1, unique.
    category_ids: [N] int64, dataset category id.
    iscrowd:      [N] bool, crowd region (ground truth only; predictions are never crowd).
    """

    ids: np.ndarray
    category_ids: np.ndarray
    iscrowd: np.ndarray = field(default=None)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        self.ids = np.asarray(to_numpy(self.ids), dtype=np.int64).reshape(-1)
        self.category_ids = np.asarray(to_numpy(self.category_ids), dtype=np.int64).reshape(-1)
        if self.iscrowd is None:
            self.iscrowd = np.zeros(self.ids.shape, dtype=bool)
        self.iscrowd = np.asarray(to_numpy(self.iscrowd)).astype(bool).reshape(-1)
        n = self.ids.shape[0]
        if self.category_ids.shape[0] != n or self.iscrowd.shape[0] != n:
            raise ValueError(
                f"segments fields differ in length: ids {n}, category_ids "
                f"{self.category_ids.shape[0]}, iscrowd {self.iscrowd.shape[0]}"
            )
        if n and self.ids.min() < 1:
            raise ValueError(f"segment ids must be >= 1 (0 is void); got {self.ids.min()}")
        if np.unique(self.ids).shape[0] != n:
            ids, counts = np.unique(self.ids, return_counts=True)
            raise ValueError(f"duplicate segment ids {ids[counts > 1].tolist()}")

    def __len__(self) -> int:
        return int(self.ids.shape[0])

    def __getitem__(self, item) -> SegmentsInfo:
        return SegmentsInfo(self.ids[item], self.category_ids[item], self.iscrowd[item])

    @staticmethod
    def from_coco(segments_info: Iterable[Mapping[str, Any]]) -> SegmentsInfo:
        """From a COCO `segments_info` list of {id, category_id, iscrowd?, ...} dicts."""
        segs = list(segments_info)
        try:
            ids = [int(s["id"]) for s in segs]
            cats = [int(s["category_id"]) for s in segs]
            crowd = [bool(s.get("iscrowd", 0)) for s in segs]
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(
                "segments_info entries need integer 'id' and 'category_id' (and optional "
                f"'iscrowd'): {e!r}"
            ) from e
        return SegmentsInfo(np.array(ids, np.int64), np.array(cats, np.int64), np.array(crowd))


def as_segments_info(segments: Any) -> SegmentsInfo:
    """`SegmentsInfo`, a `result.Segments` (ids, category_ids: never crowd) or COCO dicts."""
    if isinstance(segments, SegmentsInfo):
        return segments
    if hasattr(segments, "ids") and hasattr(segments, "category_ids"):
        return SegmentsInfo(segments.ids, segments.category_ids, getattr(segments, "iscrowd", None))
    if isinstance(segments, Iterable) and not isinstance(segments, str | bytes | np.ndarray):
        return SegmentsInfo.from_coco(segments)
    raise TypeError(
        f"segments must be SegmentsInfo, result.Segments or a list of COCO segment dicts, "
        f"not {type(segments).__name__}"
    )


def _as_id_map(id_map: Any, what: str) -> np.ndarray:
    m = to_numpy(id_map)
    if m.ndim != 2:
        raise ValueError(f"{what} id map must be [H, W]; got shape {tuple(m.shape)}")
    if not np.issubdtype(m.dtype, np.integer):
        raise TypeError(f"{what} id map must have an integer dtype; got {m.dtype}")
    return m


# Odd 32-bit multipliers for the multiply-shift hash of `dense_index` (fixed: results and speed
# do not depend on a seed).
_MULTIPLIERS = tuple(
    np.uint32(m | 1) for m in np.random.default_rng(0x9E3779B9).integers(1, 1 << 32, 16)
)
_HASH_MAX_BITS = 20  # largest hash table (2**20 slots); more segments use a binary search


def _perfect_hash(keys: np.ndarray) -> tuple[np.uint32, int] | None:
    """(a, bits) such that `(k * a mod 2**32) >> (32 - bits)` differs for every key, or None.

    keys: [N] unique uint32. A table of >= 4 N**2 slots makes a random multiplier collision-free
    with probability >= 3/4 (multiply-shift is 2-universal), so one of 16 almost always is.
    """
    bits = max((4 * keys.size * keys.size).bit_length(), 8)
    if bits > _HASH_MAX_BITS:
        return None
    shift = np.uint32(32 - bits)
    for a in _MULTIPLIERS:
        if np.unique((keys * a) >> shift).size == keys.size:
            return a, bits
    return None


def dense_index(id_map: np.ndarray, ids: np.ndarray, values: np.ndarray, what: str) -> np.ndarray:
    """Replace each pixel's segment id by `values[k]` where `ids[k]` is that id; VOID -> 0.

    id_map: [H, W] integer ids >= 0. ids: [N] unique ids >= 1. values: [N] intp.
    Returns [H, W] intp. Raises ValueError naming the ids of `id_map` missing from `ids`.

    Small ids (< 2**16) go through a lookup table; larger ones (COCO's 24-bit ids) through a
    collision-free multiply-shift hash of the listed ids (a few cheap passes, no per-pixel search),
    verified pixel by pixel; a binary search where no such hash is found.
    """
    keys = np.concatenate([[VOID], ids]).astype(np.int64)
    vals = np.concatenate([[0], values]).astype(np.intp)
    if id_map.size == 0:
        return np.zeros(id_map.shape, np.intp)
    lo, hi = int(id_map.min()), int(id_map.max())
    if lo < 0:
        raise ValueError(f"{what} id map has negative ids (min {lo}); ids must be >= 0")
    hashed = None
    if _LUT_MAX_ID <= hi < 1 << 32:
        hashed = _perfect_hash(keys[keys < 1 << 32].astype(np.uint32))
    if hi < _LUT_MAX_ID:
        lut = np.full(hi + 1, -1, np.intp)
        inside = keys <= hi
        lut[keys[inside]] = vals[inside]
        out = np.take(lut, id_map.astype(np.intp))  # intp: take's fast path
        bad = out < 0
    elif hashed is not None:
        a, bits = hashed
        shift = np.uint32(32 - bits)
        keep = keys < 1 << 32  # a larger key has no pixel in this map
        keys32, vals = keys[keep].astype(np.uint32), vals[keep]
        slots = np.zeros(1 << bits, np.intp)  # empty slots point at VOID: the check catches them
        slots[(keys32 * a) >> shift] = np.arange(keys32.size)
        ids32 = id_map.astype(np.uint32, copy=False)
        h = ids32 * a
        h >>= shift
        k = np.take(slots, h.astype(np.intp))  # intp index: take's fast path
        bad = np.take(keys32, k) != ids32
        out = np.take(vals, k)
    else:
        # Keys in the map's own dtype: searchsorted is 2-3x faster without casting the map. A
        # key beyond the map's range has no pixel anyway.
        order = np.argsort(keys)
        keys, vals = keys[order], vals[order]
        fits = keys <= np.iinfo(id_map.dtype).max
        keys, vals = keys[fits].astype(id_map.dtype), vals[fits]
        pos = np.searchsorted(keys, id_map)
        np.minimum(pos, keys.shape[0] - 1, out=pos)
        bad = keys[pos] != id_map
        out = vals[pos]
    if bad.any():
        missing = np.unique(id_map[bad])
        raise ValueError(
            f"{what} id map contains segment ids {missing[:10].tolist()}"
            f"{' ...' if missing.size > 10 else ''} that are not in its segments list"
        )
    return out
