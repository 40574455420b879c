"""Mask Scoring R-CNN measured: mask AP (pycocotools) and PQ of a trained Mask R-CNN checkpoint on
synthetic scenes, with the masks ranked by class score x predicted mask IoU (`rescore`, the
paper) and by the class score alone (the same weights, only the postprocess differs).

    source env.sh && python benchmarks/bench_mask_scoring.py --checkpoint run/last.pt \
        --data synthetic:/path/to/held_out --num 100
"""

import argparse
import dataclasses
import json
from pathlib import Path

import torch

from segmentation_ros.data.datasets import open_dataset
from segmentation_ros.pipeline import FrameSettings, SegmentationPipeline
from segmentation_ros.pipeline.loading import load_model
from segmentation_ros.train.evaluate import evaluate_checkpoint


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--data", required=True, help="synthetic:DIR (with instances.json)")
    p.add_argument("--num", type=int, default=100)
    p.add_argument("--score-threshold", type=float, default=0.05)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    folder = Path(args.data.split(":", 1)[1])
    loaded = load_model(args.checkpoint)
    if not hasattr(loaded.config, "rescore"):
        raise SystemExit(f"{loaded.name} has no mask re-scoring option")
    dataset = open_dataset(args.data)
    rows = {}
    for rescore in (False, True):
        config = dataclasses.replace(loaded.config, rescore=rescore)
        pipeline = SegmentationPipeline(dataclasses.replace(loaded, config=config))
        evaluation = evaluate_checkpoint(
            pipeline,
            dataset,
            settings=FrameSettings(score_threshold=args.score_threshold),
            limit=args.num,
            instances_json=folder / "instances.json",
        )
        summary = evaluation.summary()
        rows["class x IoU" if rescore else "class score"] = summary
        name = "class score x predicted IoU" if rescore else "class score"
        print(
            f"mask score = {name:28s} mask AP {evaluation.mask_ap * 100:5.1f}  "
            f"PQ {evaluation.pq.all.pq * 100:5.1f}  {evaluation.ms_per_image:.0f} ms/image "
            f"({evaluation.num_images} images)"
        )
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
