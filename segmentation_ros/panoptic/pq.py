"""Panoptic quality (PQ = SQ x RQ) with the COCO-panoptic rules of panopticapi `evaluation.py`.

Inputs, per image (numpy arrays; CPU torch tensors are accepted and converted):
- id map: [H, W] integer array (any int / uint dtype, values >= 0), the segment id of each pixel.
  Id 0 is VOID: unlabelled in the ground truth, "no prediction" in a prediction.
- segments: `SegmentsInfo` (struct of arrays: id >= 1, category id, iscrowd), or the prediction's
  `segmentation_ros.panoptic.result.Segments`, or a COCO `segments_info` list of dicts.
- categories: `Category(id, name, isthing)`; category ids are whatever the dataset uses (COCO:
  1..200, ours: 0..S+T-1), they only have to agree between ground truth and prediction.

Rules (Kirillov et al., "Panoptic Segmentation", and panopticapi):
- A ground-truth segment g and a predicted segment p of the same category match when
  IoU > 0.5 (0.5 itself is no match), where
  IoU = |g & p| / (|g| + |p| - |g & p| - |p & VOID|): predicted pixels on ground-truth void do
  not count; pixels on crowd regions do count (panopticapi's matching subtracts void only).
  Matches are unique because segments do not overlap.
- Crowd ground-truth segments (iscrowd) are never matched and never false negatives.
- An unmatched prediction is a false positive unless more than half of its pixels lie on void or
  on a crowd region of its own category.
- Per category: PQ = sum IoU(TP) / (TP + FP/2 + FN/2), SQ = sum IoU(TP) / TP (0 without TP),
  RQ = TP / (TP + FP/2 + FN/2). All / Things / Stuff average the categories with
  TP + FP + FN > 0; the others get 0.0 and are left out of the average (`n` counts the averaged).

Where we differ from panopticapi, on purpose:
- Ground-truth areas are pixel counts of the id map (panopticapi reads `area` from the JSON; the
  two agree on COCO, whose converters write the pixel count).
- The crowd region of a category is the union of all its crowd segments in the image
  (panopticapi keeps only the last one listed; identical with one crowd segment per category,
  which is how COCO-panoptic is annotated).
- Ground-truth ids in the map but absent from the segments list raise (panopticapi skips them);
  a ground-truth segment can be declared void through `void_category_ids` instead.
- A summary with no category to average gives 0.0 with n = 0 (panopticapi divides by zero).

Speed: one pass over the pixels per image. Each map is turned into dense segment indices (a small
lookup table, or a binary search for COCO's 24-bit ids), the (gt, pred) index pairs are combined
into one integer key and counted with `np.bincount` (`np.unique` when there are thousands of
segments); everything after that works on the short list of overlapping (gt, pred) pairs. No
per-segment masks, no Python loop over pixels or segments.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from segmentation_ros.panoptic.segments import (
    VOID,
    Category,
    SegmentsInfo,
    _as_id_map,
    as_segments_info,
    dense_index,
    to_numpy,
)

__all__ = ["VOID", "Category", "SegmentsInfo", "as_segments_info", "dense_index", "to_numpy"]


def _pair_counts(
    gi: np.ndarray, pi: np.ndarray, n_gt: int, n_pred: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pixel counts of each (gt index, pred index) pair that occurs, 0 = void.

    gi, pi: [H, W] intp dense indices in [0, n_gt] and [0, n_pred]. Returns three [K] int64
    arrays (g, p, count). One pass over the pixels: the pair is one integer key, counted by
    `np.bincount` over the (n_gt + 1) x (n_pred + 1) table, or by `np.unique` when that table
    would be large next to the image (thousands of segments).
    """
    key = gi.ravel() * (n_pred + 1)
    key += pi.ravel()
    n_bins = (n_gt + 1) * (n_pred + 1)
    if n_bins <= max(key.size, 1 << 16):
        counts = np.bincount(key, minlength=n_bins)
        keys = np.flatnonzero(counts)
        counts = counts[keys]
    else:
        keys, counts = np.unique(key, return_counts=True)
    g, p = np.divmod(keys, n_pred + 1)
    return g, p, counts.astype(np.int64)


@dataclass
class PQStats:
    """Sufficient statistics per category (index i = i-th category of the accumulator).

    iou: [C] float64 sum of IoU over true positives; tp, fp, fn: [C] int64 counts.
    """

    iou: np.ndarray
    tp: np.ndarray
    fp: np.ndarray
    fn: np.ndarray

    @staticmethod
    def zeros(num_categories: int) -> PQStats:
        z = np.zeros(num_categories, np.int64)
        return PQStats(np.zeros(num_categories, np.float64), z.copy(), z.copy(), z.copy())

    def __iadd__(self, other: PQStats) -> PQStats:
        if other.tp.shape != self.tp.shape:
            raise ValueError("PQStats of different category sets cannot be added")
        self.iou += other.iou
        self.tp += other.tp
        self.fp += other.fp
        self.fn += other.fn
        return self


@dataclass(frozen=True)
class PQClassResult:
    """PQ of one category. pq, sq, rq in [0, 1]; 0.0 for a category without TP + FP + FN."""

    category: Category
    pq: float
    sq: float
    rq: float
    tp: int
    fp: int
    fn: int

    @property
    def counted(self) -> bool:
        """Whether the category enters the All / Things / Stuff averages."""
        return self.tp + self.fp + self.fn > 0


@dataclass(frozen=True)
class PQSummary:
    """Mean PQ, SQ, RQ in [0, 1] over the `n` categories with TP + FP + FN > 0."""

    pq: float
    sq: float
    rq: float
    n: int

    def as_dict(self) -> dict[str, float | int]:
        return {"pq": self.pq, "sq": self.sq, "rq": self.rq, "n": self.n}


@dataclass(frozen=True)
class PQResult:
    """PQ per category and averaged over all categories, things only and stuff only."""

    per_class: tuple[PQClassResult, ...]
    all: PQSummary
    things: PQSummary
    stuff: PQSummary
    num_images: int

    def summary(self) -> dict[str, dict[str, float | int]]:
        """{"All": {pq, sq, rq, n}, "Things": ..., "Stuff": ...} (panopticapi's keys)."""
        return {
            "All": self.all.as_dict(),
            "Things": self.things.as_dict(),
            "Stuff": self.stuff.as_dict(),
        }

    def format_per_class(self) -> str:
        """A text table, one row per category, PQ / SQ / RQ in percent."""
        w = max([len(c.category.name) for c in self.per_class] + [8])
        head = f"{'id':>5} {'category':<{w}} {'kind':<5} {'PQ':>6} {'SQ':>6} {'RQ':>6}"
        lines = [head + f" {'TP':>7} {'FP':>7} {'FN':>7}", "-" * (len(head) + 24)]
        for c in self.per_class:
            kind = "thing" if c.category.isthing else "stuff"
            mark = "" if c.counted else "  (absent)"
            lines.append(
                f"{c.category.id:>5} {c.category.name:<{w}} {kind:<5} {100 * c.pq:6.1f} "
                f"{100 * c.sq:6.1f} {100 * c.rq:6.1f} {c.tp:7d} {c.fp:7d} {c.fn:7d}{mark}"
            )
        return "\n".join(lines)

    def format_summary(self) -> str:
        """panopticapi's summary table: All / Things / Stuff, PQ / SQ / RQ in percent and N."""
        lines = [f"{'':10s}| {'PQ':>5s}  {'SQ':>5s}  {'RQ':>5s} {'N':>5s}", "-" * 38]
        for name, s in (("All", self.all), ("Things", self.things), ("Stuff", self.stuff)):
            lines.append(
                f"{name:10s}| {100 * s.pq:5.1f}  {100 * s.sq:5.1f}  {100 * s.rq:5.1f} {s.n:5d}"
            )
        return "\n".join(lines)


class PQAccumulator:
    """Accumulates PQ statistics image by image; `result()` gives the COCO-panoptic PQ.

    categories: the evaluated categories (unique ids). void_category_ids: ground-truth categories
    whose segments are treated as void pixels (a dataset's 'void' / 'unlabelled' label); they must
    not be among `categories`.

    `image_stats` is a pure function of its inputs (safe to call from several threads);
    `add` = `add_stats(image_stats(...))`.
    """

    def __init__(
        self, categories: Sequence[Category], *, void_category_ids: Iterable[int] = ()
    ) -> None:
        self.categories = tuple(categories)
        ids = np.array([c.id for c in self.categories], np.int64)
        if np.unique(ids).shape[0] != ids.shape[0]:
            raise ValueError(f"duplicate category ids in {ids.tolist()}")
        self.void_category_ids = np.array(sorted(set(void_category_ids)), np.int64)
        both = np.intersect1d(ids, self.void_category_ids)
        if both.size:
            raise ValueError(f"void categories {both.tolist()} are also evaluated categories")
        self._order = np.argsort(ids)
        self._sorted_ids = ids[self._order]
        self._stats = PQStats.zeros(len(self.categories))
        self.num_images = 0

    def _category_index(self, category_ids: np.ndarray, what: str) -> np.ndarray:
        pos = np.searchsorted(self._sorted_ids, category_ids)
        pos = np.minimum(pos, max(self._sorted_ids.shape[0] - 1, 0))
        ok = self._sorted_ids[pos] == category_ids if self._sorted_ids.size else pos < 0
        if not np.all(ok):
            raise ValueError(
                f"{what} segments have unknown category ids {np.unique(category_ids[~ok]).tolist()}"
                f"; known: {self._sorted_ids.tolist()}"
            )
        return self._order[pos]

    def image_stats(
        self, gt_id_map: Any, gt_segments: Any, pred_id_map: Any, pred_segments: Any
    ) -> PQStats:
        """Statistics of one image (see the module docstring for the rules).

        gt_id_map, pred_id_map: [H, W] integer ids (0 = void), same shape.
        gt_segments, pred_segments: SegmentsInfo / result.Segments / COCO segments_info.
        Raises ValueError on different shapes, ids in a map missing from its segments, listed
        predicted segments with no pixel (as panopticapi), unknown category ids.
        """
        gt_map = _as_id_map(gt_id_map, "ground-truth")
        pred_map = _as_id_map(pred_id_map, "prediction")
        if gt_map.shape != pred_map.shape:
            raise ValueError(
                f"ground-truth id map {gt_map.shape} and prediction id map {pred_map.shape} "
                "differ in shape; predictions must be at the ground truth's resolution"
            )
        gt, pred = as_segments_info(gt_segments), as_segments_info(pred_segments)
        if pred.iscrowd.any():
            raise ValueError("predicted segments cannot be crowd regions (iscrowd)")

        is_void = np.isin(gt.category_ids, self.void_category_ids)
        gt_kept = gt[~is_void]
        gt_cat = self._category_index(gt_kept.category_ids, "ground-truth")
        pred_cat = self._category_index(pred.category_ids, "prediction")
        n_gt, n_pred = len(gt_kept), len(pred)

        # Dense indices: row 0 / column 0 is void, void-category gt segments fold into row 0.
        gt_rows = np.zeros(len(gt), np.intp)
        gt_rows[~is_void] = np.arange(1, n_gt + 1)
        gi = dense_index(gt_map, gt.ids, gt_rows, "ground-truth")
        pi = dense_index(pred_map, pred.ids, np.arange(1, n_pred + 1), "prediction")
        g, p, inter = _pair_counts(gi, pi, n_gt, n_pred)  # nonzero (gt, pred) overlaps

        gt_area = np.bincount(g, inter, n_gt + 1)[1:].astype(np.int64)  # incl. predicted void
        pred_area = np.bincount(p, inter, n_pred + 1)[1:].astype(np.int64)
        if n_pred and (pred_area == 0).any():
            raise ValueError(
                f"predicted segments {pred.ids[pred_area == 0].tolist()} are listed but have no "
                "pixel in the prediction id map"
            )
        pred_void = np.bincount(p[g == 0], inter[g == 0], n_pred + 1)[1:].astype(np.int64)
        # From here on: overlaps of a ground-truth segment with a predicted segment (0-based).
        both = (g > 0) & (p > 0)
        g, p, inter = g[both] - 1, p[both] - 1, inter[both]
        same_cat = gt_cat[g] == pred_cat[p]
        crowd = gt_kept.iscrowd

        # Matching: the integer test 2 * inter > union is exactly IoU > 0.5.
        union = pred_area[p] + gt_area[g] - inter - pred_void[p]
        match = same_cat & ~crowd[g] & (2 * inter > union)
        gm, pm = g[match], p[match]
        assert np.unique(gm).size == gm.size and np.unique(pm).size == pm.size, "non-unique match"

        stats = PQStats.zeros(len(self.categories))
        np.add.at(stats.tp, gt_cat[gm], 1)
        np.add.at(stats.iou, gt_cat[gm], inter[match] / union[match])
        gt_matched = np.zeros(n_gt, bool)
        gt_matched[gm] = True
        np.add.at(stats.fn, gt_cat[~gt_matched & ~crowd], 1)

        pred_matched = np.zeros(n_pred, bool)
        pred_matched[pm] = True
        on_crowd_pair = same_cat & crowd[g]
        on_crowd = np.bincount(p[on_crowd_pair], inter[on_crowd_pair], n_pred).astype(np.int64)
        ignored = 2 * (pred_void + on_crowd) > pred_area
        np.add.at(stats.fp, pred_cat[~pred_matched & ~ignored], 1)
        return stats

    def add_stats(self, stats: PQStats, *, num_images: int = 1) -> None:
        """Add the statistics of one image (from `image_stats`, possibly computed in a thread or
        another process), or the sum of `num_images` images' statistics."""
        self._stats += stats
        self.num_images += num_images

    def add(self, gt_id_map: Any, gt_segments: Any, pred_id_map: Any, pred_segments: Any) -> None:
        """Evaluate one image; arguments as `image_stats`."""
        self.add_stats(self.image_stats(gt_id_map, gt_segments, pred_id_map, pred_segments))

    @property
    def stats(self) -> PQStats:
        """The accumulated statistics (a copy)."""
        s = self._stats
        return PQStats(s.iou.copy(), s.tp.copy(), s.fp.copy(), s.fn.copy())

    def result(self) -> PQResult:
        """PQ / SQ / RQ per category and the All / Things / Stuff averages."""
        s = self._stats
        denom = s.tp + 0.5 * s.fp + 0.5 * s.fn
        counted = denom > 0
        safe = np.where(counted, denom, 1.0)
        pq = np.where(counted, s.iou / safe, 0.0)
        rq = np.where(counted, s.tp / safe, 0.0)
        sq = np.where(s.tp > 0, s.iou / np.maximum(s.tp, 1), 0.0)
        per_class = tuple(
            PQClassResult(
                c,
                float(pq[i]),
                float(sq[i]),
                float(rq[i]),
                int(s.tp[i]),
                int(s.fp[i]),
                int(s.fn[i]),
            )
            for i, c in enumerate(self.categories)
        )
        isthing = np.array([c.isthing for c in self.categories], bool)

        def average(select: np.ndarray) -> PQSummary:
            sel = select & counted
            n = int(sel.sum())
            if n == 0:
                return PQSummary(0.0, 0.0, 0.0, 0)
            return PQSummary(
                float(pq[sel].sum() / n), float(sq[sel].sum() / n), float(rq[sel].sum() / n), n
            )

        everything = np.ones_like(isthing)
        return PQResult(
            per_class, average(everything), average(isthing), average(~isthing), self.num_images
        )


def pq_single_image(
    categories: Sequence[Category],
    gt_id_map: Any,
    gt_segments: Any,
    pred_id_map: Any,
    pred_segments: Any,
) -> PQResult:
    """PQ of a single image (convenience around `PQAccumulator`)."""
    acc = PQAccumulator(categories)
    acc.add(gt_id_map, gt_segments, pred_id_map, pred_segments)
    return acc.result()
