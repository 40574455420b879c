"""`segmentation-ros-compile`: build a model's ONNX file or TensorRT engine ahead of time, so that
robots load it on configure instead of building it at start-up.

    segmentation-ros-compile --backend tensorrt|openvino|onnxruntime [--checkpoint F]
        [--model NAME] [--precision fp16]
        [--device cuda] [--input-size HxW] [--batch-sizes MIN,OPT,MAX]
        [--calibration-data SPEC] [--out FILE | --cache-dir DIR] [--check]

The artifact goes to `--out` (give that path to the node's `engine_path` parameter) or into the
engine cache (default ~/.cache/segmentation_ros/engines, where the node finds it by its key),
with a manifest recording its key: the weights' hash, input shape, precision, GPU and compute
capability, and the torch / TensorRT / torch-tensorrt versions. An artifact already valid for
that key is kept (status "loaded"); a stale or corrupt one is rebuilt and the reason printed.
`--check` builds nothing: exit 0 when a valid artifact exists, 1 (with the reason) otherwise.

Prints the key, the path, the status and the seconds it took; the last line is JSON.
Exit status: 0 ok, 1 build failed or --check found none, 2 bad arguments or missing software
(e.g. TensorRT on a machine without it, also when found only while building: the message names
what is missing).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from segmentation_ros.runtime.names import PRECISIONS


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="segmentation-ros-compile",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--backend", choices=("onnxruntime", "openvino", "tensorrt"), required=True)
    p.add_argument("--checkpoint", default="", help="model file (default: the embedded model)")
    p.add_argument("--model", default="", help="architecture, for official YOLACT weights")
    p.add_argument("--precision", choices=PRECISIONS, default="fp32")
    p.add_argument(
        "--device", default="", help="default: cuda for tensorrt (engines are per GPU), else cpu"
    )
    p.add_argument("--input-size", default="", help="network input HxW (default: the model's)")
    p.add_argument(
        "--batch-sizes", default="", help="TensorRT dynamic batch MIN,OPT,MAX (default: 1)"
    )
    p.add_argument("--calibration-data", default="", help="data set spec for int8")
    target = p.add_mutually_exclusive_group()
    target.add_argument("--out", default="", help="artifact file (default: the cache)")
    target.add_argument("--cache-dir", default="", help="cache folder")
    p.add_argument("--check", action="store_true", help="build nothing; is a valid one there?")
    return p


def _input_size(text: str) -> tuple[int, int] | None:
    if not text:
        return None
    try:
        height, width = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise ValueError(f"--input-size must be HEIGHTxWIDTH, e.g. 240x320, got {text!r}") from None
    if height <= 0 or width <= 0:
        raise ValueError(f"--input-size must be positive, got {text!r}")
    return height, width


def _batch_sizes(text: str) -> tuple[int, int, int] | None:
    if not text:
        return None
    try:
        sizes = tuple(int(v) for v in text.split(","))
    except ValueError:
        sizes = ()
    if len(sizes) != 3 or not 1 <= sizes[0] <= sizes[1] <= sizes[2]:
        raise ValueError(f"--batch-sizes must be MIN,OPT,MAX with 1 <= MIN <= OPT <= MAX: {text!r}")
    return sizes


def _caused_by(error: BaseException, kind: type[BaseException]) -> bool:
    """Whether `error` or an exception it was raised from is a `kind`."""
    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, kind):
            return True
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return False


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.device = args.device or ("cuda" if args.backend == "tensorrt" else "cpu")
    from segmentation_ros.models.checkpoint import CheckpointError
    from segmentation_ros.pipeline import calibration_batches, load_model
    from segmentation_ros.runtime.backends import (
        BackendUnavailable,
        artifact_key,
        artifact_precision,
        build_backend,
        check_precision,
    )
    from segmentation_ros.runtime.cache import ArtifactCache, ArtifactCacheError, check_artifact

    start = time.perf_counter()
    try:
        check_precision(args.backend, args.precision, args.device)  # before loading the model
        if args.precision == "int8" and not args.calibration_data and not args.check:
            raise ValueError("--precision int8 needs --calibration-data (images to calibrate on)")
        input_size = _input_size(args.input_size)
        batch_sizes = _batch_sizes(args.batch_sizes)
        if batch_sizes and args.backend != "tensorrt":
            raise ValueError("--batch-sizes is for tensorrt (ONNX files are exported for batch 1)")
        loaded = load_model(args.checkpoint, args.model)
        size = input_size or tuple(loaded.network_config.input_size)
        cache = ArtifactCache(args.cache_dir or None)
        if args.check:
            if args.backend == "tensorrt":  # the key names the GPU and TensorRT's versions
                from segmentation_ros.runtime.tensorrt.status import require_tensorrt

                require_tensorrt(args.device)
            batch = "-".join(map(str, batch_sizes)) if batch_sizes else "1"
            key = artifact_key(
                args.backend, loaded.model, input_size=size,
                precision=artifact_precision(args.backend, args.precision),
                device=args.device, batch=batch,
            )  # fmt: skip
            suffix = ".engine" if args.backend == "tensorrt" else ".onnx"
            path = Path(args.out) if args.out else cache.path_for(key, suffix)
            reason = check_artifact(path, key)
            print(f"{path}: {'valid' if reason is None else reason}")
            return 0 if reason is None else 1
        calibration = None
        if args.precision == "int8" and args.calibration_data:
            calibration = calibration_batches(args.calibration_data, loaded.network_config, size)
        result = build_backend(
            args.backend,
            loaded.model,
            precision=args.precision,
            device=args.device,
            input_size=size,
            artifact_path=args.out or None,
            cache=cache,
            calibration=calibration,
            batch_sizes=batch_sizes,
        ).artifact
    except (ValueError, FileNotFoundError, CheckpointError, BackendUnavailable) as error:
        print(f"segmentation-ros-compile: {error}", file=sys.stderr)
        return 2
    except ArtifactCacheError as error:
        print(f"segmentation-ros-compile: {error}", file=sys.stderr)
        # Software found missing only while building (ModelOpt for int8, TensorRT plugins, an
        # exporter) is still missing software, whatever the cache wrapped it in.
        return 2 if _caused_by(error, BackendUnavailable) else 1
    seconds = time.perf_counter() - start
    why = f" ({result.reason})" if result.reason else ""
    print(f"key: {json.dumps(result.key.as_dict())}")
    print(f"{result.status}{why}: {result.path} in {seconds:.1f} s")
    print(json.dumps({"path": str(result.path), "status": result.status, "reason": result.reason,
                      "seconds": round(seconds, 1), "digest": result.key.digest}))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
