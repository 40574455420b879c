"""What the Nav2 outputs add to a frame: `DenseOutputs` (the pipeline's step after the model) on
true-mask synthetic scenes at 640x480 with the node's default settings (grid stride 2, 0.5 deg
beams, 20 m range, 20 m x 20 m fused window of 10 frames), one request at a time.

Run: `python benchmarks/bench_ground_outputs.py [--repeats 30]`. Prints the median and the
minimum milliseconds of each request (the minimum is the steadier figure on a shared machine)
and the minimum's extra over the drivable grid alone. The fused grid is fed a pose moving
0.1 m a frame (recentring its window now and then, as on a robot).
"""

import argparse
import time

import numpy as np

from segmentation_ros.data.classes import SYNTHETIC_CLASSES
from segmentation_ros.data.synthetic import generate_scene
from segmentation_ros.drivable import PlanarPose
from segmentation_ros.pipeline import FrameSettings, OutputRequest
from segmentation_ros.pipeline.dense import DenseOutputs
from segmentation_ros.structures import ClassTable, Segments
from segmentation_ros.train.drivable_eval import scene_camera_model

REQUESTS = {
    "grid": OutputRequest(grid=True),
    "grid + scan": OutputRequest(grid=True, scan=True),
    "grid + scan + obstacles": OutputRequest(grid=True, scan=True, obstacles=True),
    "grid + grid_fused": OutputRequest(grid=True, grid_fused=True),
    "objects (ground contacts)": OutputRequest(objects=True),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args()
    scene = generate_scene(920_003, effects=False)
    camera, mount = scene_camera_model(scene.camera)
    settings = FrameSettings(mount=mount)
    table = ClassTable.panoptic(SYNTHETIC_CLASSES.stuff_names, SYNTHETIC_CLASSES.thing_names)
    s = scene.segments
    segments = Segments(
        ids=s.ids, class_ids=s.category_ids, is_thing=s.is_thing,
        scores=np.ones(len(s), np.float32), areas=s.areas,
    )  # fmt: skip
    results = {}
    for name, request in REQUESTS.items():
        outputs = DenseOutputs(table, "truth")
        times = []
        for k in range(args.repeats + 2):
            pose = PlanarPose(0.1 * k, 0.0, 0.0, "odom")
            t0 = time.perf_counter()
            outputs(scene.id_map, segments.__class__(**vars(segments)), request, settings,
                    camera, pose)  # fmt: skip
            if k >= 2:  # the first frames build the lookup tables
                times.append(time.perf_counter() - t0)
        results[name] = (1e3 * float(np.median(times)), 1e3 * float(np.min(times)))
    base = results["grid"][1]
    for name, (median, best) in results.items():
        print(
            f"{name:28s} median {median:7.2f} ms  min {best:7.2f} ms  "
            f"(+{best - base:6.2f} ms over the grid)"
        )


if __name__ == "__main__":
    main()
