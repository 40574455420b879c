"""Network forward time per registered model (PyTorch eager, CPU, random weights).

    .venv/bin/python benchmarks/bench_models.py                       # every model, its own size
    .venv/bin/python benchmarks/bench_models.py --models yolact_mobilenetv3 yolact_resnet18 \
        --sizes 320x320 384x384 288x512 --iters 10

Prints one line per (model, input size): parameters, priors, median / min forward ms over
`--iters` runs after `--warmup` runs, batch 1, `torch.set_num_threads(--threads)` (default 2).
Preprocess and postprocess are not included.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from segmentation_ros.models import available_models, build_model, num_priors
from segmentation_ros.tools.args import input_size


def bench(name: str, size: tuple[int, int] | None, iters: int, warmup: int) -> str:
    overrides = {} if size is None else {"input_size": size}
    model = build_model(name, **overrides).eval()
    config = model.config
    x = torch.randn(1, 3, *config.input_size)
    times = []
    with torch.inference_mode():
        for i in range(warmup + iters):
            start = time.perf_counter()
            model(x)
            if i >= warmup:
                times.append((time.perf_counter() - start) * 1e3)
    params = sum(p.numel() for p in model.parameters()) / 1e6
    h, w = config.input_size
    return (
        f"{name:22s} {h:4d}x{w:<4d} params {params:6.1f} M  priors {num_priors(config):6d}  "
        f"median {statistics.median(times):8.1f} ms  min {min(times):8.1f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="*", default=list(available_models()))
    parser.add_argument("--sizes", nargs="*", type=input_size, default=[None])
    parser.add_argument("--iters", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} threads, eager, batch 1, random weights")
    for name in args.models:
        for size in args.sizes:
            try:
                print(bench(name, size, args.iters, args.warmup), flush=True)
            except ImportError as exc:  # e.g. the DCN op of YOLACT++ not available
                print(f"{name:22s} skipped: {exc}", flush=True)


if __name__ == "__main__":
    main()
