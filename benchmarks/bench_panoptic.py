"""Time UPSNet panoptic fusion: 30 instances, 640 x 480 image, semantic logits at 1/4 (160 x 120).

Usage: .venv/bin/python benchmarks/bench_panoptic.py [--threads 2] [--repeats 50]
Prints the minimum, median and 90th percentile in ms for both upsampling modes and two class sets
(COCO-panoptic 53 stuff + 80 things; a small robot set 11 stuff + 8 things). Inputs are random but
spatially smooth like a network's logits (the "logits" mode interpolates only near borders).
"""

from __future__ import annotations

import argparse
import statistics
import time
from functools import partial

import torch
import torch.nn.functional as F

from segmentation_ros.panoptic import fusion
from segmentation_ros.panoptic.fusion import fuse_instances, panoptic_fusion
from segmentation_ros.structures import Instances

IMAGE = (480, 640)  # H, W
STRIDE = 4


def _inputs(num_stuff: int, num_things: int, num_inst: int, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    h, w = IMAGE[0] // STRIDE, IMAGE[1] // STRIDE
    # Spatially smooth logits, as a network's: noise at 1/32 upsampled to 1/4.
    coarse = torch.randn(1, num_stuff + num_things, h // 8, w // 8, generator=gen) * 3
    sem = F.interpolate(coarse, size=(h, w), mode="bilinear", align_corners=False)[0]
    xy = torch.rand(num_inst, 2, generator=gen) * torch.tensor([IMAGE[1] * 0.8, IMAGE[0] * 0.8])
    wh = 20 + torch.rand(num_inst, 2, generator=gen) * torch.tensor([200.0, 150.0])
    boxes = torch.cat([xy, (xy + wh).minimum(torch.tensor([IMAGE[1], IMAGE[0]]))], 1)
    classes = torch.randint(0, num_things, (num_inst,), generator=gen)
    scores = torch.rand(num_inst, generator=gen)
    coarse = torch.randn(1, num_inst, h // 8, w // 8, generator=gen) * 4
    logits = F.interpolate(coarse, size=(h, w), mode="bilinear", align_corners=False)[0]
    probs = torch.sigmoid(logits)  # not cropped: the fusion crops to the boxes anyway
    return sem, boxes, classes, scores, probs


def _time(fn, repeats: int) -> tuple[float, float, float]:
    for _ in range(3):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    times.sort()
    return times[0], statistics.median(times), times[int(0.9 * (len(times) - 1))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--instances", type=int, default=30)
    opts = parser.parse_args()
    torch.set_num_threads(opts.threads)
    print(
        f"panoptic fusion, {opts.instances} instances, image {IMAGE[1]}x{IMAGE[0]}, "
        f"logits 1/{STRIDE}, {opts.threads} threads, torch {torch.__version__}"
    )
    for num_stuff, num_things in ((53, 80), (11, 8)):
        sem, boxes, classes, scores, probs = _inputs(num_stuff, num_things, opts.instances)
        mask_logits = torch.logit(probs, eps=1e-4)
        inst = Instances(
            image_size=IMAGE,
            boxes=boxes,
            scores=scores,
            mask_scores=scores,
            classes=classes,
            mask_probs=probs,
        )
        common = {"num_stuff": num_stuff, "image_size": IMAGE}
        args = (sem, boxes, classes, scores, mask_logits)
        cases = {
            "panoptic_fusion ids": partial(panoptic_fusion, *args, **common),
            "panoptic_fusion logits": partial(panoptic_fusion, *args, **common, upsample="logits"),
            "fuse_instances ids": partial(fuse_instances, inst, sem, **common),
        }
        for name, fn in cases.items():
            best, med, p90 = _time(fn, opts.repeats)
            res = fn()
            print(
                f"S={num_stuff:3d} T={num_things:3d}  {name:24s} min {best:6.2f}  median "
                f"{med:6.2f}  p90 {p90:6.2f} ms  ({len(res.segments)} segments)"
            )
        # The "logits" argmax alone: selective interpolation vs. upsampling every channel.
        logits = fusion._panoptic_logits(
            sem, boxes, classes, mask_logits, num_stuff, IMAGE, unknown=True
        )
        coarse = logits.argmax(0)
        for name, fn in {
            "argmax selective": partial(
                fusion._upsampled_argmax, logits, coarse, boxes, num_stuff, IMAGE
            ),
            "argmax full upsample": partial(
                fusion._argmax_full_resolution, logits, boxes, num_stuff, len(boxes), IMAGE
            ),
        }.items():
            best, med, p90 = _time(fn, max(opts.repeats // 5, 3))
            print(
                f"S={num_stuff:3d} T={num_things:3d}  {name:24s} min {best:6.2f}  median "
                f"{med:6.2f}  p90 {p90:6.2f} ms"
            )


if __name__ == "__main__":
    main()
