"""PQ of COCO-panoptic files: the equivalent of panopticapi's `pq_compute`, in worker processes.

Each worker decodes its share of the PNG pairs and returns the summed `PQStats` of its images
(a few arrays of category length), so what crosses processes is small. Decoding is most of the
cost (see `coco_io.read_id_png`); counting is `PQAccumulator.image_stats`, one pass over pixels.
Torch-free: `segmentation-ros-eval pq` imports only numpy, OpenCV (and pyspng when installed).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import multiprocessing
import os
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from pathlib import Path

import numpy as np

from segmentation_ros.panoptic.coco_io import PanopticPairs, open_panoptic_pairs
from segmentation_ros.panoptic.pq import PQAccumulator, PQResult, PQStats

_MIN_IMAGES_PER_WORKER = 8  # below this a process costs more than it saves


def default_workers() -> int:
    """Worker processes when not told: the CPUs this process may use, at most 8."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    return max(1, min(cpus, 8))


def _keep_freed_memory() -> None:
    """Worker initializer: let glibc keep freed memory instead of returning it to the system.

    Every image allocates some 20 MB of temporaries; by default glibc hands the top of the heap
    back after each image and the next one page-faults it in again: 590k page faults and 1.4 s
    of system time for 300 pairs at 640x480, against 13k and 0.07 s with these settings
    (measured here). A no-op where the C library is not glibc.
    """
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return
    m_trim_threshold, m_mmap_threshold = -1, -3  # glibc's malloc.h
    mallopt(m_trim_threshold, 512 << 20)
    mallopt(m_mmap_threshold, 64 << 20)


def _chunk_stats(acc: PQAccumulator, pairs: PanopticPairs) -> tuple[PQStats, int]:
    """Summed statistics of every pair in `pairs` (run in a worker) and the number of images."""
    total = PQStats.zeros(len(acc.categories))
    for i in range(len(pairs)):
        gt, pred = pairs.load(i, validate=False)  # image_stats validates the ids itself
        try:
            total += acc.image_stats(gt.id_map, gt.segments, pred.id_map, pred.segments)
        except ValueError as e:
            raise ValueError(
                f"image_id {gt.image_id!r} (gt {gt.file_name}, prediction {pred.file_name}): {e}"
            ) from e
    return total, len(pairs)


def _pool_context() -> multiprocessing.context.BaseContext:
    # fork starts a worker in milliseconds and the workers need nothing the parent lacks; where
    # there is no fork (macOS, Windows) the platform's default.
    if "fork" in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("fork")
    return multiprocessing.get_context()


def evaluate_pq_files(
    gt_json: str | Path,
    gt_dir: str | Path,
    pred_json: str | Path,
    pred_dir: str | Path,
    *,
    workers: int | None = None,
    void_category_ids: Sequence[int] = (),
) -> PQResult:
    """COCO-panoptic PQ of a prediction JSON + PNG folder against the ground truth.

    workers: processes that decode and count (None: `default_workers()`). Fewer are started when
    there are fewer than 8 images per worker; fewer than 8 images are counted in this process.
    Categories come from the ground-truth JSON; `void_category_ids` are dropped from them and
    treated as void. Raises ValueError naming the image on bad data (`PQAccumulator.image_stats`).
    """
    workers = default_workers() if workers is None else workers
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be an int >= 1, got {workers!r}")
    pairs = open_panoptic_pairs(gt_json, gt_dir, pred_json, pred_dir)
    void = set(void_category_ids)
    acc = PQAccumulator([c for c in pairs.categories if c.id not in void], void_category_ids=void)
    workers = min(workers, len(pairs) // _MIN_IMAGES_PER_WORKER)
    if workers == 0:
        parts = [_chunk_stats(acc, pairs)]
    else:
        # Worker processes even for one: they may tune their allocator (`_keep_freed_memory`)
        # without touching the caller's. A few chunks per worker balance uneven images.
        chunks = [c for c in np.array_split(np.arange(len(pairs)), 4 * workers) if c.size]
        subsets = [replace(pairs, pairs=tuple(pairs.pairs[i] for i in c)) for c in chunks]
        with ProcessPoolExecutor(
            workers, mp_context=_pool_context(), initializer=_keep_freed_memory
        ) as pool:
            parts = list(pool.map(_chunk_stats, [acc] * len(subsets), subsets))
    for stats, num_images in parts:
        acc.add_stats(stats, num_images=num_images)
    return acc.result()
