"""Drivable grid timings: lookup-table build and per-frame projection at 640x480.

Run: `.venv/bin/python benchmarks/bench_grid.py [--repeats 50]`. Prints milliseconds (median over
the repeats) for the full pixel grid and stride 2. OpenCV (undistortion, in the build) is limited
to 2 threads; the numpy per-frame work (gathers, bincounts) is single-threaded anyway. The camera:
fx = fy = 525, plumb_bob distortion, 1.0 m high, pitched down 20 degrees; the grid: 0.05 m cells,
10 m x 10 m ahead of the robot (200 x 200); fusion: a 20 m x 20 m odom grid, 10 frames.
"""

import argparse
import math
import time

import cv2
import numpy as np

from segmentation_ros.drivable import (
    CameraModel,
    DrivabilityTable,
    GridFusion,
    GridGeometry,
    GroundProjector,
    MountPose,
    drivable_mask,
)

W, H = 640, 480


def _median_ms(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1e3 * float(np.median(times))


def _scene(rng: np.random.Generator) -> tuple[np.ndarray, DrivabilityTable]:
    """A semantic map: road below a wavy boundary, wall above, a few void and car blobs."""
    table = DrivabilityTable.from_panoptic(("road", "wall", "sky"), ("person", "car"))
    v = np.arange(H)[:, None]
    boundary = 200 + 30 * np.sin(np.arange(W) / 60.0)[None, :]
    semantic = np.where(v > boundary, 0, 1).astype(np.uint8)
    semantic[:60] = 2
    for _ in range(5):
        u0, v0 = rng.integers(0, W - 80), rng.integers(250, H - 60)
        semantic[v0 : v0 + 60, u0 : u0 + 80] = 4
    semantic[rng.random((H, W)) < 0.01] = 255
    return semantic, table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=50)
    args = parser.parse_args()
    cv2.setNumThreads(2)
    camera = CameraModel(
        K=[525.0, 0.0, 319.5, 0.0, 525.0, 239.5, 0.0, 0.0, 1.0],
        D=[-0.25, 0.07, 0.001, -0.0008, 0.01],
        width=W,
        height=H,
    )
    mount = MountPose(height=1.0, pitch=math.radians(20.0))
    geometry = GridGeometry(resolution=0.05, width=200, height=200, origin_x=0.0, origin_y=-5.0)
    semantic, table = _scene(np.random.default_rng(0))
    mask = drivable_mask(semantic, table)
    known = semantic != 255
    fixed = GridGeometry(0.05, 400, 400, origin_x=-10.0, origin_y=-10.0, frame_id="odom")

    print(
        f"camera {W}x{H} plumb_bob, grid {geometry.width}x{geometry.height} @ "
        f"{geometry.resolution} m, OpenCV 2 threads, median of {args.repeats}"
    )
    print(f"{'':>34}{'stride 1':>10}{'stride 2':>10}")
    rows: dict[str, list[float]] = {}
    for stride in (1, 2):
        build = lambda s=stride: GroundProjector(camera, mount, geometry, stride=s)  # noqa: E731
        p = build()
        fusion = GridFusion(fixed, num_frames=10)
        results = {
            "lookup-table build": _median_ms(build, max(3, args.repeats // 10)),
            "project(drivable mask)": _median_ms(lambda p=p: p.project(mask), args.repeats),
            "project(mask, known)": _median_ms(lambda p=p: p.project(mask, known), args.repeats),
            "project_semantic(map, table)": _median_ms(
                lambda p=p: p.project_semantic(semantic, table), args.repeats
            ),
            "fusion add (10 frames, 400x400)": _median_ms(
                lambda p=p, f=fusion: f.add(p, mask, known, pose=(0.1, 0.0, 0.01)), args.repeats
            ),
        }
        for name, value in results.items():
            rows.setdefault(name, []).append(value)
    for name, values in rows.items():
        print(f"{name:>34}" + "".join(f"{v:>8.2f}ms" for v in values))
    print(
        f"{'drivable_mask (full image)':>34}"
        f"{_median_ms(lambda: drivable_mask(semantic, table), args.repeats):>8.2f}ms"
    )


if __name__ == "__main__":
    main()
