"""segmentation-ros-predict: run a model of any family on image files, through the pipeline the
node runs.

    segmentation-ros-predict --model yolact_resnet50 --checkpoint yolact_resnet50_54_800000.pth \
        --output-dir out/ image1.jpg image2.png

For each image writes <stem>.npz and <stem>.png (masks, boxes and labels drawn). The npz holds
the things (detections), in decreasing score order: boxes [N, 4] float32 x1y1x2y2 pixels,
scores [N], mask_scores [N], classes [N] int64 indices into class_names, masks [N, H, W] bool
at the image's size (non-overlapping: where detections overlap, the higher score keeps the
pixel), class_names. Models with stuff classes (panoptic YOLACT, PCV) also write the panoptic
segmentation: id_map [H, W] int32 (0 = void) and, per segment, segment_ids, segment_classes,
segment_is_thing and segment_scores.

Speed, as ultralytics' predict prints it: per image and, at the end, as the mean over the images,
the milliseconds of preprocess (resize, normalise, to the device), inference (the backend at its
precision) and postprocess (decoding, NMS, masks, the segments), measured by the pipeline
(`FrameResult.timings`); reading and writing files are not counted.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np
import torch

from segmentation_ros.models.checkpoint import CheckpointError
from segmentation_ros.pipeline import (
    FrameResult,
    FrameSettings,
    OutputRequest,
    SegmentationPipeline,
    Timings,
    load_model,
)
from segmentation_ros.runtime.backends import BackendUnavailable
from segmentation_ros.runtime.cache import ArtifactCacheError
from segmentation_ros.runtime.names import BACKENDS, DEFAULT_PRECISION, PRECISION_CHOICES


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="segmentation-ros-predict", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--model", help="registry name (required for official checkpoints)")
    parser.add_argument("--checkpoint", required=True, help="our checkpoint or an official .pth")
    parser.add_argument("--score-threshold", type=float, default=None)
    parser.add_argument("--max-detections", type=int, default=None)
    parser.add_argument("--nms", choices=("fast", "cross_class"), default="fast")
    parser.add_argument("--backend", choices=BACKENDS, default="torch")
    parser.add_argument("--precision", choices=PRECISION_CHOICES, default=DEFAULT_PRECISION)
    parser.add_argument("--calibration-data", default="", help="data set spec for int8 calibration")
    parser.add_argument("--engine-cache-dir", help="default ~/.cache/segmentation_ros")
    parser.add_argument(
        "--onnx",
        type=Path,
        help="ONNX file for onnxruntime (exported there when missing; default: the cache)",
    )
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = default)")
    parser.add_argument("--output-dir", type=Path, required=True)
    parser.add_argument("images", nargs="+", type=Path)
    return parser


def draw(image_rgb: np.ndarray, result: FrameResult, class_names) -> np.ndarray:
    """Segments blended in per-segment colours, thing boxes and 'label score' captions (RGB)."""
    seg = result.segments
    colors = np.random.default_rng(0).integers(60, 255, (len(seg) + 1, 3))
    tint = colors[result.id_map - 1]
    covered = result.id_map > 0
    canvas = image_rgb.astype(np.float32)
    canvas[covered] = 0.45 * canvas[covered] + 0.55 * tint[covered]
    canvas = canvas.astype(np.uint8)
    for i in np.flatnonzero(seg.is_thing):
        x1, y1, x2, y2 = (int(round(v)) for v in seg.boxes[i])
        color = tuple(int(c) for c in colors[i])
        cv2.rectangle(canvas, (x1, y1), (x2, y2), color, 2)
        label = f"{class_names[seg.class_ids[i]]} {seg.scores[i]:.2f}"
        cv2.putText(canvas, label, (x1, max(y1 - 4, 10)), cv2.FONT_HERSHEY_SIMPLEX, 0.45,
                    (255, 255, 255), 1, cv2.LINE_AA)  # fmt: skip
    return canvas


def arrays(result: FrameResult, class_names: tuple[str, ...], panoptic: bool) -> dict:
    """The npz contents of one result (see the module docstring)."""
    seg = result.segments
    things = seg[seg.is_thing]
    out = {
        "boxes": things.boxes.astype(np.float32),
        "scores": things.scores.astype(np.float32),
        "mask_scores": things.mask_scores.astype(np.float32),
        "classes": things.class_ids.astype(np.int64),
        "masks": result.id_map[None] == things.ids[:, None, None],
        "class_names": np.array(class_names),
    }
    if panoptic:
        out |= {
            "id_map": result.id_map.astype(np.int32),
            "segment_ids": seg.ids.astype(np.int32),
            "segment_classes": seg.class_ids.astype(np.int64),
            "segment_is_thing": seg.is_thing.astype(bool),
            "segment_scores": seg.scores.astype(np.float32),
        }
    return out


def read_rgb(path: Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError(f"{path}: not a readable image")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def _pipeline(args: argparse.Namespace) -> tuple[SegmentationPipeline, FrameSettings]:
    loaded = load_model(args.checkpoint, args.model or "")
    defaults = loaded.family.postprocess_defaults(loaded.config)
    settings = FrameSettings(
        score_threshold=defaults.score_threshold
        if args.score_threshold is None
        else args.score_threshold,
        nms_threshold=defaults.nms_threshold,
        mask_threshold=defaults.mask_threshold,
        max_detections=defaults.max_detections
        if args.max_detections is None
        else args.max_detections,
        nms=args.nms,
    )
    pipeline = SegmentationPipeline(
        loaded,
        backend=args.backend,
        precision=args.precision,
        engine_path=args.onnx,
        engine_cache_dir=args.engine_cache_dir,
        calibration_data=args.calibration_data,
    )
    return pipeline, settings


def speed(timings: list[Timings]) -> str:
    """'1.2ms preprocess, 20.1ms inference, 3.0ms postprocess' of the mean of `timings`
    (postprocess: the family's postprocess and the result's assembly)."""
    pre = np.mean([t.preprocess_ms for t in timings])
    net = np.mean([t.inference_ms for t in timings])
    post = np.mean([t.postprocess_ms + t.outputs_ms for t in timings])
    return f"{pre:.1f}ms preprocess, {net:.1f}ms inference, {post:.1f}ms postprocess"


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        pipeline, settings = _pipeline(args)
        args.output_dir.mkdir(parents=True, exist_ok=True)
    except (
        CheckpointError,
        FileNotFoundError,
        ValueError,
        BackendUnavailable,
        ArtifactCacheError,
    ) as error:
        print(f"segmentation-ros-predict: {error}", file=sys.stderr)
        return 2
    names = pipeline.classes.names
    panoptic = pipeline.classes.num_stuff > 0
    failures = 0
    timings: list[Timings] = []
    for path in args.images:
        try:
            image = read_rgb(path)
        except ValueError as error:
            print(f"segmentation-ros-predict: {error}", file=sys.stderr)
            failures += 1
            continue
        result = pipeline.process(image, OutputRequest(objects=True), settings)
        np.savez_compressed(args.output_dir / f"{path.stem}.npz", **arrays(result, names, panoptic))
        drawing = cv2.cvtColor(draw(image, result, names), cv2.COLOR_RGB2BGR)
        cv2.imwrite(str(args.output_dir / f"{path.stem}.png"), drawing)
        timings.append(result.timings)
        print(f"{path}: {int(result.segments.is_thing.sum())} detections, {len(result.segments)} "
              f"segments, {speed(timings[-1:])}")  # fmt: skip
    if timings:
        h, w = pipeline.input_size
        print(f"Speed: {speed(timings)} per image at shape (1, 3, {h}, {w}) "
              f"({pipeline.backend_name} {pipeline.precision})")  # fmt: skip
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
