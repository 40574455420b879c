"""PQ evaluation speed from files against panopticapi (or hotcoco), same workers, same numbers.

    python benchmarks/bench_pq.py [--images 300] [--workers 1 2] [--panopticapi DIR]

Data: `--images` COCO-panoptic pairs at 640x480 written to a temporary folder. Ground truth:
Voronoi regions with COCO-like 24-bit ids, void on region borders (~5 %), one crowd segment per
category at most, 133 categories (80 things, 53 stuff). Prediction: the same scene with jittered
seeds (boundaries move), some categories wrong, small ids.

For each worker count it times (best of `--repeat`, wall clock and CPU seconds of the process
and its children):
- ours: `evaluate_pq_files` (JSON + PNG decoding + PQ) with that many worker processes;
- the reference: panopticapi's `pq_compute` when `--panopticapi DIR` names a folder holding the
  `panopticapi` package (a checkout of github.com/cocodataset/panopticapi; never vendored here),
  with its process count (`multiprocessing.cpu_count()`) set to the worker count; else hotcoco's
  `pq_compute` (same protocol) in a child process with RAYON_NUM_THREADS set to it;
and prints the reference / ours ratio. Exits 1 if the numbers differ (PQ, SQ, RQ per category and
All / Things / Stuff, within 1e-9).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import multiprocessing
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from segmentation_ros.panoptic.coco_io import (
    CocoPanopticWriter,
    PanopticAnnotation,
    coco_segments_info,
    save_panoptic_json,
    write_id_png,
)
from segmentation_ros.panoptic.pq import Category, PQAccumulator, PQResult, SegmentsInfo
from segmentation_ros.panoptic.pq_files import evaluate_pq_files

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


def write_data_set(root: Path, pairs) -> tuple[Path, Path, Path, Path]:
    """COCO-panoptic files; the ground truth's segments carry area and bbox (panopticapi reads
    the area from the JSON)."""
    (root / "gt").mkdir()
    anns = []
    for i, (gt_map, gt, _, _) in enumerate(pairs):
        write_id_png(root / "gt" / f"{i}.png", gt_map)
        anns.append(PanopticAnnotation(i, f"{i}.png", tuple(coco_segments_info(gt_map, gt))))
    save_panoptic_json(root / "gt.json", anns, CATEGORIES)
    with CocoPanopticWriter(root / "pred.json", root / "pred") as writer:
        for i, (_, _, pred_map, pred) in enumerate(pairs):
            writer.add(i, type("R", (), {"id_map": pred_map, "segments": pred})())
    return root / "gt.json", root / "gt", root / "pred.json", root / "pred"


def cpu_seconds() -> float:
    """User + system CPU time of this process and its reaped children."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def timed(fn, repeat: int):
    """(result, best wall ms, CPU s of that run) over `repeat` runs: the machine may be shared."""
    best, best_cpu, out = float("inf"), 0.0, None
    for _ in range(repeat):
        c0, t0 = cpu_seconds(), time.perf_counter()
        out = fn()
        ms, cpu = (time.perf_counter() - t0) * 1e3, cpu_seconds() - c0
        if ms < best:
            best, best_cpu = ms, cpu
    return out, best, best_cpu


def panopticapi_run(path: str, files, workers: int) -> dict:
    sys.path.insert(0, path)
    from panopticapi.evaluation import pq_compute  # noqa: PLC0415 -- from --panopticapi

    gt_json, gt_dir, pred_json, pred_dir = map(str, files)
    saved = multiprocessing.cpu_count
    multiprocessing.cpu_count = lambda: workers  # pq_compute starts cpu_count() processes
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            result = pq_compute(gt_json, pred_json, gt_dir, pred_dir)
    finally:
        multiprocessing.cpu_count = saved
    for worker in multiprocessing.active_children():  # its pool is never closed: reap it, so
        worker.terminate()  # that the CPU time of its processes is counted
        worker.join()
    return result


HOTCOCO = """
import json, sys, time
from hotcoco.panoptic import pq_compute
import contextlib, io
t0 = time.perf_counter()
with contextlib.redirect_stdout(io.StringIO()):
    r = pq_compute(*sys.argv[1:5])
ms = (time.perf_counter() - t0) * 1e3
print(json.dumps({"ms": ms, "result": {k: r[k] for k in ("All", "Things", "Stuff", "per_class")}}))
"""


def hotcoco_run(files, workers: int) -> tuple[dict, float]:
    """hotcoco in a child process (its thread pool is sized once per process): (result, ms)."""
    gt_json, gt_dir, pred_json, pred_dir = map(str, files)
    env = {**os.environ, "RAYON_NUM_THREADS": str(workers)}
    proc = subprocess.run(
        [sys.executable, "-c", HOTCOCO, gt_json, pred_json, gt_dir, pred_dir],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    return out["result"], out["ms"]


def differences(ours: PQResult, ref: dict) -> list[str]:
    """Where our numbers and the reference's differ by more than 1e-9 (empty: equal)."""
    bad = []
    for name, summary in ours.summary().items():
        for key in ("pq", "sq", "rq", "n"):
            if abs(summary[key] - ref[name][key]) > 1e-9:
                bad.append(f"{name} {key}: ours {summary[key]}, reference {ref[name][key]}")
    per_class = {int(k): v for k, v in ref["per_class"].items()}
    for c in ours.per_class:
        if not c.counted:  # absent: panopticapi 0.0, hotcoco -1.0
            continue
        r = per_class[c.category.id]
        for key in ("pq", "sq", "rq"):
            if abs(getattr(c, key) - r[key]) > 1e-9:
                bad.append(f"category {c.category.id} {key}: ours {getattr(c, key)}, ref {r[key]}")
    return bad


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", type=int, default=300)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--repeat", type=int, default=3, help="best of N runs (3)")
    ap.add_argument("--panopticapi", help="folder holding the panopticapi package (import path)")
    args = ap.parse_args()
    ref_name = "panopticapi" if args.panopticapi else "hotcoco"
    rng = np.random.default_rng(0)
    pairs = [make_pair(rng) for _ in range(args.images)]
    n_segs = np.mean([len(g) + len(p) for _, g, _, p in pairs]) / 2
    print(f"{args.images} pairs at {W}x{H}, {n_segs:.1f} segments per map on average")

    acc = PQAccumulator(CATEGORIES)
    t0 = time.process_time()
    for p in pairs:
        acc.add(*p)
    ms = (time.process_time() - t0) * 1e3
    print(f"counting only (arrays in memory, 1 thread): {ms / args.images:.2f} ms CPU per image")

    failures = []
    with tempfile.TemporaryDirectory() as tmp:
        files = write_data_set(Path(tmp), pairs)
        for workers in args.workers:
            ours, ms, cpu = timed(
                lambda w=workers: evaluate_pq_files(*files, workers=w), args.repeat
            )
            if args.panopticapi:
                ref, ref_ms, ref_cpu = timed(
                    lambda w=workers: panopticapi_run(args.panopticapi, files, w), args.repeat
                )
            else:
                runs = [hotcoco_run(files, workers) for _ in range(args.repeat)]
                ref, ref_ms, ref_cpu = runs[0][0], min(r[1] for r in runs), float("nan")
            bad = differences(ours, ref)
            failures += bad
            print(
                f"{workers} worker(s): ours {ms:8.1f} ms ({cpu:5.2f} s CPU), {ref_name} "
                f"{ref_ms:8.1f} ms ({ref_cpu:5.2f} s CPU): {ref_ms / ms:4.2f}x; "
                f"numbers {'equal' if not bad else 'DIFFER'}"
            )
    print(f"PQ {100 * ours.all.pq:.3f}, SQ {100 * ours.all.sq:.3f}, RQ {100 * ours.all.rq:.3f}")
    for line in failures[:20]:
        print("DIFFERENCE:", line)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
