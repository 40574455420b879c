"""Cost of the synthetic world: ms per image for `generate_scene` (one core, one process) at
640x480 and 320x240, per scene kind, and for writing a data set (render + JPEG + PNG + RLE).

python benchmarks/bench_synthetic.py [--num 40]
"""

import argparse
import tempfile
import time
from collections import defaultdict

import cv2
import numpy as np

from segmentation_ros.data.synthetic import generate_scene, write_dataset


def bench_generate(width: int, height: int, num: int) -> None:
    for s in range(3):  # warm-up
        generate_scene(10_000 + s, width=width, height=height)
    times, by_kind = [], defaultdict(list)
    for seed in range(num):
        t0 = time.perf_counter()
        scene = generate_scene(seed, width=width, height=height)
        dt = (time.perf_counter() - t0) * 1000
        times.append(dt)
        by_kind[scene.kind].append(dt)
    t = np.array(times)
    print(
        f"generate_scene {width}x{height}: mean {t.mean():6.1f} ms  p50 {np.median(t):6.1f}"
        f"  p95 {np.percentile(t, 95):6.1f}  ({num} images)"
    )
    for kind, v in sorted(by_kind.items()):
        print(f"    {kind:8s} mean {np.mean(v):6.1f} ms  ({len(v)} images)")


def bench_write(width: int, height: int, num: int) -> None:
    with tempfile.TemporaryDirectory() as d:
        t0 = time.perf_counter()
        write_dataset(d, range(num), width=width, height=height)
        dt = (time.perf_counter() - t0) * 1000 / num
    print(f"write_dataset {width}x{height} (jpg + png + RLE + json): {dt:6.1f} ms/image")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--num", type=int, default=40, help="images per measurement")
    args = p.parse_args()
    cv2.setNumThreads(1)  # one core, as a worker process of a data set writer
    for w, h in ((640, 480), (320, 240)):
        bench_generate(w, h, args.num)
    bench_write(640, 480, max(1, args.num // 2))


if __name__ == "__main__":
    main()
