"""Why a thing class is not found (bicycles: thin frames): per truth object of CLASS (>= 300 px
at 640x480) on generated scenes, the best mask IoU of a predicted segment of that class and of
any class, and the IoU that a perfect mask at the model's mask resolution could reach at best
(the truth averaged down to the prototype grid, input / 4, and resized back bilinearly, as the
postprocess does).

    python benchmarks/eval_thin_objects.py [CHECKPOINT|""] [CLASS] [FIRST_SEED] [COUNT]
    # "" bicycle 900000 100: the default model on the validation seeds
"""

import sys

import numpy as np
import torch
import torch.nn.functional as F
from scene_match import best_ious

from segmentation_ros.data.classes import STUFF_NAMES, THING_NAMES
from segmentation_ros.data.synthetic import generate_scene
from segmentation_ros.pipeline import FrameSettings, OutputRequest, SegmentationPipeline

ckpt = sys.argv[1] if len(sys.argv) > 1 else ""
name = sys.argv[2] if len(sys.argv) > 2 else "bicycle"
start = int(sys.argv[3]) if len(sys.argv) > 3 else 900000
count = int(sys.argv[4]) if len(sys.argv) > 4 else 100
p = SegmentationPipeline.from_checkpoint(ckpt, backend="torch")
names = STUFF_NAMES + THING_NAMES
category = names.index(name)
proto = (p.input_size[0] // 4, p.input_size[1] // 4)  # YOLACT's protonet: stride 4
rows = []
for seed in range(start, start + count):
    scene = generate_scene(seed)
    result = p.process(scene.image, OutputRequest(), FrameSettings())
    for truth, area, same, other in best_ious(scene, result, category, min_area=300):
        t = torch.from_numpy(truth[None, None].astype(np.float32))
        low = F.adaptive_avg_pool2d(t, proto)
        up = F.interpolate(low, size=truth.shape, mode="bilinear", align_corners=False)[0, 0]
        up = up.numpy() > 0.5
        bound = (truth & up).sum() / max((truth | up).sum(), 1)
        ys, xs = np.nonzero(truth)
        fill = area / ((np.ptp(xs) + 1) * (np.ptp(ys) + 1))
        rows.append((area, fill, same, other, bound))
r = np.array(rows).reshape(-1, 5)
print(f"{len(r)} {name} objects >= 300 px on seeds {start}..{start + count - 1}")
print(f"  median area {np.median(r[:, 0]):.0f} px, median box fill {np.median(r[:, 1]):.2f}")
found = (r[:, 2] > 0.5).sum()
print(f"  found (right class, IoU > 0.5): {found}; best IoU mean {r[:, 2].mean():.3f}")
print(f"  taken for another class (IoU > 0.5): {(r[:, 3] > 0.5).sum()}")
print(
    f"  a perfect mask at the {proto[1]} x {proto[0]} mask grid: IoU > 0.5 for "
    f"{(r[:, 4] > 0.5).sum()}, mean IoU {r[:, 4].mean():.3f}"
)
