"""The default model (or CHECKPOINT) on generated scenes: their large people (>= 1500 px at
640x480) found (person, mask IoU > 0.5), found with a poor mask (person, 0.2..0.5), taken for
another class (IoU > 0.5) or missed; by size.

    python benchmarks/eval_people.py [CHECKPOINT|""] [FIRST_SEED] [COUNT]   # 900000 60
"""

import sys

import numpy as np
from scene_match import best_ious

from segmentation_ros.data.classes import STUFF_NAMES, THING_NAMES
from segmentation_ros.data.synthetic import generate_scene
from segmentation_ros.pipeline import FrameSettings, OutputRequest, SegmentationPipeline

ckpt = sys.argv[1] if len(sys.argv) > 1 else ""
p = SegmentationPipeline.from_checkpoint(ckpt, backend="torch")
person = len(STUFF_NAMES) + THING_NAMES.index("person")
rows = []
start = int(sys.argv[2]) if len(sys.argv) > 2 else 900000
for seed in range(start, start + (int(sys.argv[3]) if len(sys.argv) > 3 else 60)):
    sc = generate_scene(seed)
    res = p.process(sc.image, OutputRequest(), FrameSettings())
    for truth, area, same, other in best_ious(sc, res, person, min_area=1500):
        ys, xs = np.nonzero(truth)
        rows.append((area, np.ptp(xs) + 1, np.ptp(ys) + 1, same, other))
r = np.array(rows)
found = r[:, 3] > 0.5
poor = (~found) & (r[:, 3] > 0.2)
conf = (~found) & (~poor) & (r[:, 4] > 0.5)
print(
    f"{len(r)} people >= 1500 px: found {found.sum()}, poor mask {poor.sum()}, "
    f"other class {conf.sum()}, missed {(~found & ~poor & ~conf).sum()}"
)
for lo, hi in ((1500, 3000), (3000, 6000), (6000, 1e9)):
    m = (r[:, 0] >= lo) & (r[:, 0] < hi)
    print(
        f"  area {lo}..{hi}: {m.sum()} people, found {found[m].sum()}, poor {poor[m].sum()}, "
        f"median w x h {np.median(r[m, 1]):.0f} x {np.median(r[m, 2]):.0f}"
    )
