"""Per-stage milliseconds of every backend and precision available here, side by side, through
the node's pipeline (image in -> segments out), for the default model and YOLACT-R50 at 550,
with each one's agreement with the torch fp32 reference on the same input.

    source env.sh
    python benchmarks/bench_backends.py [--models default yolact_resnet50] [--device cuda]
        [--repeat 20] [--backends auto,torch,torch_compile,onnxruntime,tensorrt] [--json F]

Stages per 640x480 frame (medians): preprocess (resize + normalise), network (backend.infer),
postprocess (decode, NMS, masks, panoptic fusion), total (wall clock of the whole frame; on
CUDA synchronised after each frame, so the network stage may also show in postprocess, where
the first host read waits for the GPU). Agreement: the largest difference between the
backend's raw outputs and eager torch fp32 on the same preprocessed frame, absolute and
relative to the reference output's largest magnitude (max over the output fields).
Combinations the machine cannot run are listed with the reason (e.g. "tensorrt: tensorrt is
not installed"). "auto" shows what the default resolves to here. YOLACT-R50 has random weights
with the class logits biased so that ~100 detections survive (timing, not accuracy).
Artifacts (ONNX, engines) are built into a temporary cache first; build seconds are printed.
--json writes every row (also the skipped, with their reason) to a file after each row.
Imports no ROS: it runs on a GPU machine with only PyTorch.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

COMBINATIONS = [
    ("auto", "fp32"), ("auto", "auto"),
    ("torch", "fp32"), ("torch", "bf16"), ("torch", "fp16"),
    ("torch_compile", "fp32"), ("torch_compile", "bf16"), ("torch_compile", "fp16"),
    ("onnxruntime", "fp32"), ("onnxruntime", "int8"),
    ("openvino", "fp32"), ("openvino", "bf16"), ("openvino", "int8"),
    ("tensorrt", "fp32"), ("tensorrt", "fp16"), ("tensorrt", "bf16"), ("tensorrt", "int8"),
]  # fmt: skip


def model_checkpoint(name: str, folder: Path) -> str:
    """'' for the embedded default model; a checkpoint file as given (e.g. a trained Mask
    R-CNN: `--models default runs/mrcnn/last.pt`); otherwise a random-weight checkpoint file."""
    if name == "default":
        return ""
    if name.endswith((".pt", ".pth")) and Path(name).is_file():
        return name
    from bench_yolact import make_model

    from segmentation_ros.models import save_checkpoint

    path = folder / f"{name}.pt"
    save_checkpoint(path, make_model(name))
    return str(path)


def measure(pipeline, image: np.ndarray, repeat: int, device: str, threshold: float) -> dict:
    from segmentation_ros.pipeline import FrameSettings, OutputRequest

    request = OutputRequest(objects=True)
    settings = FrameSettings(score_threshold=threshold, max_detections=100)
    rows = []
    for index in range(repeat + 2):
        start = time.perf_counter()
        result = pipeline.process(image, request, settings)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        total = (time.perf_counter() - start) * 1e3
        if index >= 2:  # the first frames allocate, autotune, compile
            t = result.timings
            rows.append((t.preprocess_ms, t.inference_ms, t.postprocess_ms, total))
    pre, net, post, total = np.median(np.array(rows), axis=0)
    return dict(pre=pre, net=net, post=post, total=total, segments=len(result.segments))


def agreement(reference, candidate) -> dict:
    """Largest |candidate - reference| over the output fields, absolute and relative to the
    reference field's largest magnitude."""
    worst_abs = worst_rel = 0.0
    for ref, out in zip(reference, candidate):
        ref, out = ref.float().cpu(), out.float().cpu()
        diff = (out - ref).abs().max().item() if ref.numel() else 0.0
        scale = ref.abs().max().item() if ref.numel() else 0.0
        worst_abs = max(worst_abs, diff)
        worst_rel = max(worst_rel, diff / max(scale, 1e-6))
    return {"max_abs_err": worst_abs, "max_rel_err": worst_rel}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["default", "yolact_resnet50"])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--backends", default="auto,torch,torch_compile,onnxruntime,tensorrt")
    parser.add_argument("--calibration-data", default="synthetic-live:32@640x480")
    parser.add_argument("--json", default="", help="write the rows as JSON to this file")
    args = parser.parse_args(argv)

    from segmentation_ros.models.preprocess import preprocess
    from segmentation_ros.pipeline import SegmentationPipeline, load_model
    from segmentation_ros.runtime.backends import build_backend, check_precision

    wanted = set(args.backends.split(","))
    image = np.random.default_rng(0).integers(0, 255, (480, 640, 3), dtype=np.uint8)
    device_name = torch.cuda.get_device_name() if args.device.startswith("cuda") else "CPU"
    print(f"device: {args.device} ({device_name}), torch threads {torch.get_num_threads()}")
    header = f"{'model':18s} {'backend':14s} {'prec':5s} " + " ".join(
        f"{s:>9s}"
        for s in ("build_s", "preproc", "network", "postproc", "total", "segs", "rel_err")
    )
    rows: list[dict] = []

    def record(row: dict) -> None:
        rows.append(row)
        if args.json:
            Path(args.json).parent.mkdir(parents=True, exist_ok=True)
            Path(args.json).write_text(json.dumps(rows, indent=1))

    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models:
            print(header)
            loaded = load_model(model_checkpoint(name, Path(tmp)), "")
            frame = preprocess(image, loaded.network_config, device=args.device)
            reference = build_backend("torch", loaded.model, device=args.device).infer(frame)
            for kind, precision in COMBINATIONS:
                if kind not in wanted:
                    continue
                label = f"{name:18s} {kind:14s} {precision:5s}"
                row = {"model": name, "backend": kind, "precision": precision}
                try:
                    if "auto" not in (kind, precision):
                        check_precision(kind, precision, args.device)
                    start = time.perf_counter()
                    pipeline = SegmentationPipeline(
                        loaded, backend=kind, precision=precision, device=args.device,
                        engine_cache_dir=tmp, calibration_data=(
                            args.calibration_data if precision == "int8" else ""),
                        warm_up=True,
                    )  # fmt: skip
                    build = time.perf_counter() - start
                    # The node's threshold for the trained model; a low one for random weights
                    # (YOLACT-R50 then keeps ~100 detections, as in bench_yolact.py).
                    threshold = 0.3 if name == "default" else 0.05
                    r = measure(pipeline, image, args.repeat, args.device, threshold)
                    agree = agreement(reference, pipeline.backend.infer(frame))
                except Exception as error:  # report and go on with the next combination
                    reason = f"{type(error).__name__}: {error}"
                    print(f"{label} skipped: {reason}"[:300], flush=True)
                    record({**row, "status": "skipped", "reason": reason[:2000]})
                    continue
                print(f"{label} {build:9.1f} " + " ".join(
                    f"{r[k]:9.1f}" for k in ("pre", "net", "post", "total")
                ) + f" {r['segments']:9d} {agree['max_rel_err']:9.2e}", flush=True)  # fmt: skip
                record({
                    **row, "status": "ok", "resolved": pipeline.backend.name,
                    "engine_precision": pipeline.backend.precision, "build_s": round(build, 2),
                    "ms": {k: round(float(r[k]), 3) for k in ("pre", "net", "post", "total")},
                    "segments": r["segments"], "agreement_with_fp32": agree,
                })  # fmt: skip
                del pipeline
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
