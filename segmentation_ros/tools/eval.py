"""`segmentation-ros-eval`: evaluate segmentation results stored in COCO formats.

    segmentation-ros-eval pq --gt-json F --gt-dir D --pred-json F --pred-dir D [--workers N]
    segmentation-ros-eval mask-ap --gt-json F --pred-json F
    segmentation-ros-eval checkpoint --data SPEC [--checkpoint F] [--backend B]
    segmentation-ros-eval backend --data SPEC --backend B [--precision P] [--checkpoint F]
    segmentation-ros-eval tracking --data DIR [--gt-detections] [--checkpoint F]

`backend` compares a backend at a precision with the torch fp32 reference (box agreement, mask
IoU, pixel agreement, PQ delta) and exits 1 when one exceeds its tolerance.

`pq` prints the per-category table, the All / Things / Stuff summary (as panopticapi) and, last,
one JSON line: {"All": {"pq", "sq", "rq", "n"}, "Things": ..., "Stuff": ..., "images": N}.
`mask-ap` prints pycocotools' summary and, last, one JSON line with AP, AP50, ... AR100.
Errors in the data print one line on stderr and return exit status 1.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

# Torch-free at import: `pq` and `mask-ap` never load torch; the other subcommands import what
# they need when they run (test/tools/test_eval_imports.py).
from segmentation_ros.panoptic.pq_files import default_workers, evaluate_pq_files
from segmentation_ros.tools.args import input_size

__all__ = ["build_parser", "evaluate_pq_files", "main"]


def _run_pq(args: argparse.Namespace) -> int:
    t0 = time.perf_counter()
    result = evaluate_pq_files(
        args.gt_json,
        args.gt_dir,
        args.pred_json,
        args.pred_dir,
        workers=args.workers,
        void_category_ids=args.void_category,
    )
    elapsed = time.perf_counter() - t0
    print(result.format_per_class())
    print()
    print(result.format_summary())
    print(f"{result.num_images} images in {elapsed:.2f} s")
    print(json.dumps({**result.summary(), "images": result.num_images}))
    return 0


def _run_mask_ap(args: argparse.Namespace) -> int:
    from segmentation_ros.panoptic.mask_ap import evaluate_mask_ap

    result = evaluate_mask_ap(args.gt_json, args.pred_json, verbose=True)
    print(json.dumps(result.as_dict()))
    return 0


def _add_pq(subparsers) -> None:
    p = subparsers.add_parser(
        "pq",
        help="panoptic quality (COCO-panoptic JSON + PNG folders)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--gt-json", required=True, help="ground-truth COCO-panoptic JSON")
    p.add_argument("--gt-dir", required=True, help="folder of the ground-truth PNGs")
    p.add_argument("--pred-json", required=True, help="prediction COCO-panoptic JSON")
    p.add_argument("--pred-dir", required=True, help="folder of the prediction PNGs")
    p.add_argument(
        "--workers",
        type=int,
        default=default_workers(),
        help="processes decoding and counting (default: the usable CPUs, at most 8)",
    )
    p.add_argument(
        "--void-category",
        type=int,
        action="append",
        default=[],
        metavar="ID",
        help="ground-truth category id treated as void (repeatable)",
    )
    p.set_defaults(func=_run_pq)


def _add_mask_ap(subparsers) -> None:
    p = subparsers.add_parser(
        "mask-ap",
        help="COCO mask AP (pycocotools, iouType=segm)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--gt-json", required=True, help="COCO instances ground-truth JSON")
    p.add_argument("--pred-json", required=True, help="COCO results JSON (RLE segmentations)")
    p.set_defaults(func=_run_mask_ap)


def build_parser() -> argparse.ArgumentParser:
    # Each subcommand is an `_add_<name>(subparsers)` function that sets `func` (returning the
    # exit status); a new evaluation (e.g. of a checkpoint) adds its own call below.
    parser = argparse.ArgumentParser(
        prog="segmentation-ros-eval",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_pq(subparsers)
    _add_mask_ap(subparsers)
    _add_checkpoint(subparsers)
    _add_backend(subparsers)
    _add_drivable(subparsers)
    _add_tracking(subparsers)
    return parser


def _add_tracking(subparsers) -> None:
    from segmentation_ros.train.tracking_eval import add_arguments, run

    p = subparsers.add_parser(
        "tracking", help="HOTA, MOTA, IDF1, ID switches and velocity error on sequences"
    )
    add_arguments(p)
    p.set_defaults(func=run)


def _add_checkpoint(subparsers) -> None:
    p = subparsers.add_parser(
        "checkpoint",
        help="PQ, drivable IoU and speed of a checkpoint on a data set (the node's pipeline)",
    )
    p.add_argument("--checkpoint", default="", help="our checkpoint (empty: the default model)")
    p.add_argument("--data", required=True, help="data set spec, e.g. synthetic:DIR")
    p.add_argument("--num", type=int, default=None, help="evaluate the first N images")
    p.add_argument("--score-threshold", type=float, default=0.3)
    p.add_argument(
        "--backend", choices=("torch", "onnxruntime", "openvino", "auto"), default="torch"
    )
    p.add_argument(
        "--precision",
        choices=("fp32", "bf16", "auto"),
        default="auto",
        help="auto: what the node runs with this backend (bf16 with openvino on a bf16 CPU)",
    )
    p.add_argument(
        "--instances-json",
        help="COCO instance ground truth for mask AP and, for a model with keypoints, keypoint "
        "AP by OKS (default: DIR/instances.json of a synthetic:DIR data set when present)",
    )
    p.add_argument(
        "--input-size",
        type=input_size,
        help="network input HEIGHTxWIDTH, as the node's input_height / input_width (default: "
        "the model's)",
    )
    p.add_argument("--plots", help="folder for per-class plots (PNG)")
    p.set_defaults(func=_run_checkpoint)


def _run_checkpoint(args: argparse.Namespace) -> int:
    from segmentation_ros.data.datasets import open_dataset
    from segmentation_ros.pipeline import FrameSettings, SegmentationPipeline
    from segmentation_ros.train.evaluate import evaluate_checkpoint, plot_per_class

    instances_json = args.instances_json
    if instances_json is None and args.data.startswith("synthetic:"):
        candidate = Path(args.data.split(":", 1)[1]) / "instances.json"
        instances_json = candidate if candidate.is_file() else None
    pipeline = SegmentationPipeline.from_checkpoint(
        args.checkpoint, backend=args.backend, precision=args.precision, input_size=args.input_size
    )
    evaluation = evaluate_checkpoint(
        pipeline,
        open_dataset(args.data),
        settings=FrameSettings(score_threshold=args.score_threshold),
        limit=args.num,
        instances_json=instances_json,
    )
    print(evaluation.pq.format_per_class())
    print(evaluation.pq.format_summary())
    if evaluation.mask_ap is not None:
        print(f"mask AP {evaluation.mask_ap * 100:.1f}")
    if evaluation.keypoint_ap is not None:
        print(f"keypoint AP (OKS) {evaluation.keypoint_ap * 100:.1f}")
    print(f"drivable IoU {evaluation.drivable_iou:.4f}, {evaluation.ms_per_image:.1f} ms/image")
    if args.plots:
        print(f"plot: {plot_per_class(evaluation.pq, Path(args.plots) / 'pq_per_class.png')}")
    print(json.dumps(evaluation.summary()))
    return 0


def _add_backend(subparsers) -> None:
    from segmentation_ros.runtime.names import BACKENDS, PRECISION_CHOICES  # torch-free

    p = subparsers.add_parser(
        "backend",
        help="compare a backend / precision with the torch fp32 reference (exit 1 above a "
        "tolerance)",
    )
    p.add_argument("--checkpoint", default="", help="our checkpoint (empty: the default model)")
    p.add_argument("--model", default="", help="architecture, for official YOLACT weights")
    p.add_argument(
        "--data", required=True, help="data set spec with ground truth, e.g. synthetic:DIR"
    )
    p.add_argument("--num", type=int, default=20, help="compare on the first N images")
    p.add_argument("--backend", choices=BACKENDS, required=True)
    p.add_argument("--precision", choices=PRECISION_CHOICES, default="fp32")
    p.add_argument("--device", default="cpu")
    p.add_argument("--calibration-data", default="", help="data set for int8 calibration")
    p.add_argument("--engine-cache-dir", default="", help="default ~/.cache/segmentation_ros")
    p.add_argument("--score-threshold", type=float, default=0.3)
    # Defaults (None) are `Tolerances()`'s, read when the command runs: they live beside torch.
    default = "(default: train.backend_agreement.Tolerances)"
    p.add_argument("--min-box-agreement", type=float, help=default)
    p.add_argument("--min-mask-iou", type=float, help=default)
    p.add_argument("--min-pixel-agreement", type=float, help=default)
    p.add_argument("--max-pq-drop", type=float, help=f"PQ points {default}")
    p.set_defaults(func=_run_backend)


def _run_backend(args: argparse.Namespace) -> int:
    from segmentation_ros.data.datasets import open_dataset
    from segmentation_ros.pipeline import FrameSettings, SegmentationPipeline, load_model
    from segmentation_ros.train.backend_agreement import Tolerances, compare_backends

    loaded = load_model(args.checkpoint, args.model)
    # The candidate first: what it lacks (TensorRT, a GPU) is the message worth reading.
    candidate = SegmentationPipeline(
        loaded,
        backend=args.backend,
        precision=args.precision,
        device=args.device,
        calibration_data=args.calibration_data,
        engine_cache_dir=args.engine_cache_dir or None,
    )
    reference = SegmentationPipeline(loaded, backend="torch", device=args.device)
    agreement = compare_backends(
        reference,
        candidate,
        open_dataset(args.data),
        settings=FrameSettings(score_threshold=args.score_threshold),
        limit=args.num,
    )
    given = {
        name: getattr(args, name)
        for name in ("min_box_agreement", "min_mask_iou", "min_pixel_agreement", "max_pq_drop")
        if getattr(args, name) is not None
    }
    tolerances = Tolerances(**given)
    failures = tolerances.check(agreement)
    ran = f"{candidate.backend_name} {candidate.precision}"
    print(f"{ran} vs torch fp32 on {agreement.num_images} images:")
    print(json.dumps(agreement.summary()))
    for line in failures:
        print(f"FAIL: {line}")
    print("PASS" if not failures else f"{len(failures)} tolerance(s) exceeded")
    return 1 if failures else 0


def _add_drivable(subparsers) -> None:
    from segmentation_ros.train.drivable_eval import add_arguments, run

    p = subparsers.add_parser(
        "drivable",
        help="drivable/scan range error, object ground positions and the fused grid against "
        "the synthetic world's truth",
    )
    add_arguments(p)
    p.set_defaults(func=run)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, OSError, RuntimeError) as e:  # BackendUnavailable, ArtifactCacheError
        print(f"segmentation-ros-eval {args.command}: error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
