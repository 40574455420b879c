"""YOLACT postprocess time: reference path vs fast path, on synthetic raw outputs.

    .venv/bin/python benchmarks/bench_postprocess.py
    .venv/bin/python benchmarks/bench_postprocess.py --models yolact_mobilenetv3 --iters 20 \
        --image 480x640 --detections 100

For each model config (its priors, class count, prototype count and prototype size at its
input size) it builds random raw outputs with `--objects` anchors that carry an object (a high
class logit; spread evenly over the pyramid levels, so boxes range from small to large), runs
both paths on the same outputs (checking that they agree) and prints median / min ms over
`--iters` runs, `torch.set_num_threads(--threads)` (default 2):

- reference: official dense Fast NMS + full-size upsampling of every mask + id image from
  the N full masks (what the official code does to draw / evaluate a frame);
- fast: sparse Fast NMS + region-restricted upsampling -> compact masks (rois, crops, areas,
  centroids) + id image (what the ROS node publishes).

Both include decode + softmax + mask assembly. Breakdown columns for the fast path: select
(decode, softmax, NMS, assembly: `postprocess_yolact`) and render (compact masks + id image).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from segmentation_ros.models import YolactOutputs, get_config, make_priors
from segmentation_ros.postprocess import (
    YolactPostprocessParams,
    postprocess_yolact,
    reference_id_image,
)
from segmentation_ros.tools.args import input_size


def synthetic_outputs(
    name: str, objects: int, seed: int, protos: str = "smooth"
) -> tuple[YolactOutputs, torch.Tensor]:
    """Raw outputs shaped like model `name`'s, with `objects` confident anchors. Prototypes
    are "smooth" (coarse noise upsampled: blob-like masks, as trained protonets give) or
    "noise" (per-pixel noise: speckled masks)."""
    config = get_config(name)
    priors = make_priors(config)
    stride = config.level_strides[config.protonet.source_level]
    hp = -(-config.input_size[0] // stride) * config.protonet.upsample_factor
    wp = -(-config.input_size[1] // stride) * config.protonet.upsample_factor
    num_anchors, num_classes, k = priors.shape[0], config.num_classes, config.num_prototypes
    gen = torch.Generator().manual_seed(seed)
    conf = torch.randn(1, num_anchors, num_classes + 1, generator=gen)
    conf[..., 0] += 7.0  # background wins almost everywhere
    # Object anchors evenly over the levels (equal share of each level's anchor range).
    bounds = torch.linspace(0, num_anchors, 6).long()
    per_level = objects // 5
    picks = torch.cat(
        [
            lo + torch.randperm(int(hi - lo), generator=gen)[:per_level]
            for lo, hi in zip(bounds[:-1], bounds[1:])
        ]
    )
    cls = torch.randint(1, num_classes + 1, (picks.numel(),), generator=gen)
    conf[0, picks, cls] += 9.0 + 2.0 * torch.randn(picks.numel(), generator=gen)
    conf[0, picks, 0] -= 7.0
    outputs = YolactOutputs(
        loc=0.3 * torch.randn(1, num_anchors, 4, generator=gen),
        conf=conf,
        coef=torch.tanh(torch.randn(1, num_anchors, k, generator=gen)),
        proto=_prototypes(gen, hp, wp, k, protos),
    )
    return outputs, priors


def _prototypes(gen: torch.Generator, hp: int, wp: int, k: int, kind: str) -> torch.Tensor:
    if kind == "noise":
        return torch.relu(torch.randn(1, hp, wp, k, generator=gen))
    coarse = torch.randn(1, k, max(hp // 12, 2), max(wp // 12, 2), generator=gen) * 3
    fine = F.interpolate(coarse, (hp, wp), mode="bilinear", align_corners=False)
    return torch.relu(fine).permute(0, 2, 3, 1).contiguous()


def run_reference(outputs, priors, image_size, params):
    (inst,) = postprocess_yolact(
        outputs, priors, image_size=image_size, params=params, path="reference"
    )
    masks = inst.full_masks(params.mask_threshold)
    ids = reference_id_image(inst, params.mask_threshold)
    return inst, masks, ids


def run_fast(outputs, priors, image_size, params, timings=None):
    start = time.perf_counter()
    (inst,) = postprocess_yolact(outputs, priors, image_size=image_size, params=params)
    mid = time.perf_counter()
    compact = inst.compact_masks(params.mask_threshold)
    ids = compact.id_image()
    if timings is not None:
        timings["select"].append(mid - start)
        timings["render"].append(time.perf_counter() - mid)
    return inst, compact, ids


def _ms(values: list[float]) -> str:
    return f"{1e3 * statistics.median(values):7.2f} / {1e3 * min(values):7.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["yolact_resnet50", "yolact_mobilenetv3"])
    parser.add_argument(
        "--image", type=input_size, default=(480, 640), help="HxW (default 480x640)"
    )
    parser.add_argument("--objects", type=int, default=400, help="confident anchors")
    parser.add_argument("--iters", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--protos", choices=["smooth", "noise"], default="smooth")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    params = YolactPostprocessParams()

    print(
        f"image {args.image[0]}x{args.image[1]}, {args.protos} prototypes, "
        f"threads {args.threads}, ms median / min"
    )
    for name in args.models:
        outputs, priors = synthetic_outputs(name, args.objects, args.seed, args.protos)
        ref_inst, ref_masks, ref_ids = run_reference(outputs, priors, args.image, params)
        inst, compact, ids = run_fast(outputs, priors, args.image, params)
        same = (
            torch.equal(ref_inst.boxes, inst.boxes)
            and torch.equal(ref_inst.classes, inst.classes)
            and torch.equal(ref_ids, ids)
            and torch.equal(ref_masks.sum(dim=(1, 2)), compact.areas)
        )
        pairs = int((outputs.conf.softmax(-1)[..., 1:] > params.score_threshold).sum())
        region = sum(c.numel() for c in compact.crops)
        ref_t, fast_t = [], []
        timings = {"select": [], "render": []}
        for i in range(args.warmup + args.iters):
            start = time.perf_counter()
            run_reference(outputs, priors, args.image, params)
            mid = time.perf_counter()
            run_fast(outputs, priors, args.image, params, timings if i >= args.warmup else None)
            end = time.perf_counter()
            if i >= args.warmup:
                ref_t.append(mid - start)
                fast_t.append(end - mid)
        hp, wp = outputs.proto.shape[1:3]
        print(
            f"{name}: A={priors.shape[0]} proto {hp}x{wp}x{outputs.proto.shape[3]} "
            f"pairs>thr={pairs} detections={len(inst)} mask px={int(compact.areas.sum())} "
            f"(crops {region} px) identical={same}"
        )
        print(
            f"  reference {_ms(ref_t)}   fast {_ms(fast_t)}   "
            f"(fast: select {_ms(timings['select'])}, render {_ms(timings['render'])})"
        )


if __name__ == "__main__":
    main()
