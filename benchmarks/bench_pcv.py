"""Pixel Consensus Voting at 320x320 (2 threads): ground-truth votes of synthetic objects ->
vote accumulation -> peaks -> back-projection -> panoptic, on the 1/4 grid (80x80) and on a
full 320x320 grid.

    source env.sh && python benchmarks/bench_pcv.py
"""

import time

import numpy as np
import torch
import torch.nn.functional as F

from segmentation_ros.ops.pcv_voting import (
    VoteAccumulator,
    VoteConfig,
    assign_vote_cells,
    find_peak_regions,
    pcv_backproject,
    vote_cells,
)
from segmentation_ros.panoptic.pcv_inference import pcv_panoptic


def ms(fn, repeat=20):
    fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    return float(np.median(times))


def scene(size, objects=30, seed=0):
    rng = np.random.default_rng(seed)
    ids = torch.zeros(size, size, dtype=torch.int64)
    for i in range(1, objects + 1):
        h, w = rng.integers(3, max(4, size // 8), size=2)
        y, x = rng.integers(0, size - h), rng.integers(0, size - w)
        ids[y : y + h, x : x + w] = i
    return ids


def bench(grid, config, accumulate):
    cells_gt = assign_vote_cells(scene(grid), config=config)
    probs = F.one_hot(cells_gt.clamp(0, 17), 18).permute(2, 0, 1)[None].float()
    logits = probs * 20.0
    semantic = torch.randn(12, grid, grid)
    heat = accumulate(probs)
    regions = find_peak_regions(heat, threshold=1.0)
    cells = vote_cells(probs)[0]
    rows = {
        "ground-truth assignment": ms(lambda: assign_vote_cells(scene(grid), config=config)),
        "vote accumulation": ms(lambda: accumulate(probs)),
        "peaks (threshold + components)": ms(lambda: find_peak_regions(heat, threshold=1.0)),
        "back-projection": ms(
            lambda: pcv_backproject(cells, regions.labels, regions.num_regions, config)
        ),
        "pcv_panoptic (all, 320x320 id map)": ms(
            lambda: pcv_panoptic(logits[0], semantic, num_stuff=7, image_size=(320, 320))
        ),
    }
    print(f"grid {grid}x{grid} ({regions.num_regions} peaks)")
    for name, value in rows.items():
        print(f"  {name:38s} {value:8.2f} ms")


def main():
    torch.set_num_threads(2)
    config = VoteConfig()
    accumulate = VoteAccumulator(config)
    for grid in (80, 320):
        bench(grid, config, accumulate)


if __name__ == "__main__":
    main()
