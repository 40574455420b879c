"""segmentation-ros-predict: run a YOLACT model on image files.

    segmentation-ros-predict --model yolact_resnet50 --checkpoint yolact_resnet50_54_800000.pth \
        --output-dir out/ image1.jpg image2.png

For each image writes <stem>.npz (boxes [N,4] float32 x1y1x2y2 pixels, scores [N], mask_scores
[N], classes [N] int64 indices into the model's class list, masks [N,H,W] bool at the image's
size, class_names) and <stem>.png with the masks, boxes and labels drawn.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np
import torch

from segmentation_ros.models.checkpoint import CheckpointError, load_for_inference
from segmentation_ros.models.preprocess import preprocess
from segmentation_ros.postprocess import YolactPostprocessParams, postprocess_yolact
from segmentation_ros.runtime.backends import BackendUnavailable, build_backend
from segmentation_ros.runtime.cache import ArtifactCacheError
from segmentation_ros.structures import Instances


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="segmentation-ros-predict", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--model", help="registry name (required for official checkpoints)")
    parser.add_argument("--checkpoint", required=True, help="our checkpoint or an official .pth")
    parser.add_argument("--score-threshold", type=float, default=None)
    parser.add_argument("--max-detections", type=int, default=None)
    parser.add_argument("--nms", choices=("fast", "cross_class"), default="fast")
    parser.add_argument("--backend", choices=("torch", "onnxruntime"), default="torch")
    parser.add_argument(
        "--onnx",
        type=Path,
        help="ONNX file for onnxruntime (exported there when missing; default: the cache)",
    )
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = default)")
    parser.add_argument("--output-dir", type=Path, required=True)
    parser.add_argument("images", nargs="+", type=Path)
    return parser


def draw(image_rgb: np.ndarray, instances: Instances, class_names) -> np.ndarray:
    """Masks blended in per-instance colours, boxes and 'label score' captions (RGB)."""
    canvas = image_rgb.astype(np.float32)
    masks = instances.full_masks().cpu().numpy()
    rng = np.random.default_rng(0)
    colors = rng.integers(60, 255, (max(len(instances), 1), 3))
    for mask, color in zip(masks[::-1], colors[: len(masks)][::-1]):  # best on top
        canvas[mask] = 0.45 * canvas[mask] + 0.55 * color
    canvas = canvas.astype(np.uint8)
    for box, cls, score, color in zip(
        instances.boxes.cpu().numpy(), instances.classes.tolist(), instances.scores.tolist(), colors
    ):
        x1, y1, x2, y2 = (int(round(v)) for v in box)
        cv2.rectangle(canvas, (x1, y1), (x2, y2), tuple(int(c) for c in color), 2)
        label = f"{class_names[cls]} {score:.2f}"
        cv2.putText(canvas, label, (x1, max(y1 - 4, 10)), cv2.FONT_HERSHEY_SIMPLEX, 0.45,
                    (255, 255, 255), 1, cv2.LINE_AA)  # fmt: skip
    return canvas


def read_rgb(path: Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError(f"{path}: not a readable image")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        model, config = load_for_inference(args.checkpoint, args.model)
        overrides = {"nms": args.nms}
        if args.score_threshold is not None:
            overrides["score_threshold"] = args.score_threshold
        if args.max_detections is not None:
            overrides["max_detections"] = args.max_detections
        params = YolactPostprocessParams.from_config(config.postprocess, **overrides)
        args.output_dir.mkdir(parents=True, exist_ok=True)
        backend = build_backend(args.backend, model, artifact_path=args.onnx,
                                input_size=config.input_size)  # fmt: skip
    except (
        CheckpointError,
        FileNotFoundError,
        ValueError,
        BackendUnavailable,
        ArtifactCacheError,
    ) as error:
        print(f"segmentation-ros-predict: {error}", file=sys.stderr)
        return 2
    failures = 0
    for path in args.images:
        try:
            image = read_rgb(path)
        except ValueError as error:
            print(f"segmentation-ros-predict: {error}", file=sys.stderr)
            failures += 1
            continue
        outputs = backend.infer(preprocess(image, config))
        (instances,) = postprocess_yolact(
            outputs, model.priors, image_size=image.shape[:2], params=params,
            mask_iou_head=model.mask_iou_head,
        )  # fmt: skip
        np.savez_compressed(
            args.output_dir / f"{path.stem}.npz",
            boxes=instances.boxes.numpy().astype(np.float32),
            scores=instances.scores.numpy(),
            mask_scores=instances.mask_scores.numpy(),
            classes=instances.classes.numpy().astype(np.int64),
            masks=instances.full_masks().numpy(),
            class_names=np.array(config.class_names),
        )
        drawing = draw(image, instances, config.class_names)
        cv2.imwrite(
            str(args.output_dir / f"{path.stem}.png"), cv2.cvtColor(drawing, cv2.COLOR_RGB2BGR)
        )
        print(f"{path}: {len(instances)} detections")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
