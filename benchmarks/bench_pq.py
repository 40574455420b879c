"""PQ evaluation speed: 100 image pairs at 640x480, about 30 segments each.

    .venv/bin/python benchmarks/bench_pq.py [--images 100] [--workers 2]

Ground truth: Voronoi regions with COCO-like 24-bit ids, void on region borders (~5 %), one crowd
segment per category at most, 133 categories (80 things, 53 stuff). Prediction: the same scene
with jittered seeds (boundaries move), some categories wrong, small ids. Prints the best of
`--repeat` runs, in ms:
- in memory: `PQAccumulator` on arrays, 1 thread and `--workers` threads;
- from files: `evaluate_pq_files` (PNG decode + JSON + PQ), 1 thread and `--workers` threads;
- a panopticapi-style loop (np.unique over 64-bit keys, dicts per pair) for comparison; its PQ
  must equal ours on this data.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np

from segmentation_ros.panoptic.coco_io import (
    CocoPanopticWriter,
    PanopticAnnotation,
    save_panoptic_json,
    write_id_png,
)
from segmentation_ros.panoptic.pq import Category, PQAccumulator, SegmentsInfo
from segmentation_ros.tools.eval import evaluate_pq_files

H, W = 480, 640
CATEGORIES = [Category(i + 1, f"c{i + 1}", i < 80) for i in range(133)]


def voronoi(seeds: np.ndarray) -> np.ndarray:
    """[H, W] index of the nearest seed, computed at 1/8 resolution and upsampled."""
    ys, xs = np.mgrid[0 : H // 8, 0 : W // 8] * 8.0
    d = (ys[..., None] - seeds[:, 1]) ** 2 + (xs[..., None] - seeds[:, 0]) ** 2
    small = d.argmin(-1).astype(np.int32)
    return cv2.resize(small, (W, H), interpolation=cv2.INTER_NEAREST)


def make_pair(rng: np.random.Generator):
    n = int(rng.integers(25, 36))
    seeds = rng.random((n, 2)) * (W, H)
    regions = voronoi(seeds)
    cats = rng.integers(1, 134, n)
    gt_ids = rng.choice(np.arange(1, 256**3), n, replace=False)
    crowd = np.zeros(n, bool)
    for k in np.flatnonzero(rng.random(n) < 0.1):
        if cats[k] <= 80 and not crowd[cats == cats[k]].any():
            crowd[k] = True
    gt_map = gt_ids[regions].astype(np.uint32)
    border = np.zeros((H, W), bool)
    border[:, 1:] |= regions[:, 1:] != regions[:, :-1]
    border[1:, :] |= regions[1:, :] != regions[:-1, :]
    border = cv2.dilate(border.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
    gt_map[border] = 0
    present = np.isin(gt_ids, gt_map)
    gt = SegmentsInfo(gt_ids[present], cats[present], crowd[present])

    pred_regions = voronoi(seeds + rng.normal(0, 12, seeds.shape))
    pred_cats = np.where(rng.random(n) < 0.1, rng.integers(1, 134, n), cats)
    pred_map = (pred_regions + 1).astype(np.int32)
    used = np.unique(pred_map)
    pred = SegmentsInfo(used, pred_cats[used - 1])
    return gt_map, gt, pred_map, pred


def panopticapi_style(categories, pairs):
    """panopticapi's per-image algorithm (np.unique of 64-bit keys, Python loop over pairs)."""
    stats = {c.id: [0.0, 0, 0, 0] for c in categories}  # iou, tp, fp, fn
    for gt_map, gt, pred_map, pred in pairs:
        gt_segms = {
            int(i): {"category_id": int(c), "iscrowd": int(k)}
            for i, c, k in zip(gt.ids, gt.category_ids, gt.iscrowd)
        }
        pred_segms = {int(i): {"category_id": int(c)} for i, c in zip(pred.ids, pred.category_ids)}
        for i, cnt in zip(*np.unique(gt_map, return_counts=True)):
            if int(i) in gt_segms:
                gt_segms[int(i)]["area"] = int(cnt)
        for i, cnt in zip(*np.unique(pred_map, return_counts=True)):
            if int(i) in pred_segms:
                pred_segms[int(i)]["area"] = int(cnt)
        key = gt_map.astype(np.uint64) * np.uint64(256**3) + pred_map.astype(np.uint64)
        labels, counts = np.unique(key, return_counts=True)
        pairs_map = {(int(k) // 256**3, int(k) % 256**3): int(c) for k, c in zip(labels, counts)}
        gt_matched, pred_matched = set(), set()
        for (g, p), inter in pairs_map.items():
            if g not in gt_segms or p not in pred_segms or gt_segms[g]["iscrowd"]:
                continue
            if gt_segms[g]["category_id"] != pred_segms[p]["category_id"]:
                continue
            union = pred_segms[p]["area"] + gt_segms[g]["area"] - inter - pairs_map.get((0, p), 0)
            if inter / union > 0.5:
                s = stats[gt_segms[g]["category_id"]]
                s[0] += inter / union
                s[1] += 1
                gt_matched.add(g)
                pred_matched.add(p)
        crowd = {}
        for g, info in gt_segms.items():
            if g in gt_matched:
                continue
            if info["iscrowd"]:
                crowd[info["category_id"]] = g
                continue
            stats[info["category_id"]][3] += 1
        for p, info in pred_segms.items():
            if p in pred_matched:
                continue
            inter = pairs_map.get((0, p), 0)
            if info["category_id"] in crowd:
                inter += pairs_map.get((crowd[info["category_id"]], p), 0)
            if inter / info["area"] > 0.5:
                continue
            stats[info["category_id"]][2] += 1
    pqs = [s[0] / (s[1] + 0.5 * s[2] + 0.5 * s[3]) for s in stats.values() if s[1] + s[2] + s[3]]
    return sum(pqs) / len(pqs)


def timed(fn, repeat: int = 1):
    """(result, best wall time in ms over `repeat` runs): the machine is shared."""
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, (time.perf_counter() - t0) * 1e3)
    return out, best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", type=int, default=100)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=3, help="best of N runs (3)")
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    pairs = [make_pair(rng) for _ in range(args.images)]
    n_segs = np.mean([len(g) + len(p) for _, g, _, p in pairs]) / 2
    print(f"{args.images} pairs at {W}x{H}, {n_segs:.1f} segments per map on average")

    def in_memory(workers: int) -> float:
        acc = PQAccumulator(CATEGORIES)
        if workers == 1:
            for p in pairs:
                acc.add(*p)
        else:
            with ThreadPoolExecutor(workers) as pool:
                for s in pool.map(lambda p: acc.image_stats(*p), pairs):
                    acc.add_stats(s)
        return acc.result().all.pq

    def report(name: str, ms: float) -> None:
        print(f"{name:<34} {ms:9.1f} ms total {ms / args.images:7.2f} ms/image")

    pq, ms = timed(lambda: in_memory(1), args.repeat)
    report("in memory, 1 thread", ms)
    _, ms = timed(lambda: in_memory(args.workers), args.repeat)
    report(f"in memory, {args.workers} threads", ms)

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "gt").mkdir()
        anns = []
        for i, (gt_map, gt, _, _) in enumerate(pairs):
            write_id_png(tmp / "gt" / f"{i}.png", gt_map)
            info = [
                {"id": int(a), "category_id": int(b), "iscrowd": int(c)}
                for a, b, c in zip(gt.ids, gt.category_ids, gt.iscrowd)
            ]
            anns.append(PanopticAnnotation(i, f"{i}.png", tuple(info)))
        save_panoptic_json(tmp / "gt.json", anns, CATEGORIES)
        with CocoPanopticWriter(tmp / "pred.json", tmp / "pred") as writer:
            for i, (_, _, pred_map, pred) in enumerate(pairs):
                writer.add(i, type("R", (), {"id_map": pred_map, "segments": pred})())
        files = (tmp / "gt.json", tmp / "gt", tmp / "pred.json", tmp / "pred")
        for workers in (1, args.workers):
            res, ms = timed(lambda w=workers: evaluate_pq_files(*files, workers=w), args.repeat)
            assert abs(res.all.pq - pq) < 1e-12
            report(f"from PNG + JSON, {workers} thread(s)", ms)

    ref_pq, ms = timed(lambda: panopticapi_style(CATEGORIES, pairs))
    report("panopticapi-style loop, 1 thread", ms)
    print(f"PQ {100 * pq:.3f} (panopticapi-style {100 * ref_pq:.3f})")
    assert abs(ref_pq - pq) < 1e-12


if __name__ == "__main__":
    main()
