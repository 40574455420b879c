"""Training step time per precision (the trainer's own step: forward under autocast, float32
losses, backward, optimizer), on synthetic scenes.

    .venv/bin/python benchmarks/bench_train.py                       # default model, CPU
    .venv/bin/python benchmarks/bench_train.py --precisions fp32 bf16 --input-size 240x320 \
        --batch-size 8 --steps 6 --threads 2
    .venv/bin/python benchmarks/bench_train.py --device cuda --precisions fp32 bf16 fp16

Prints one line per precision: median and min seconds per step over the steps after the first
(`--warmup` steps are not counted), images per second, and the last step's total loss. Data
loading runs in the process (`workers 0`) and is included, as in a training run without loader
workers. The figures depend on the machine's load: run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import torch

from segmentation_ros.data.datasets import SyntheticSceneDataset
from segmentation_ros.tools.args import input_size
from segmentation_ros.train.models import build_training_model
from segmentation_ros.train.trainer import TrainConfig, Trainer


def bench(args: argparse.Namespace, precision: str) -> str:
    torch.manual_seed(0)
    dataset = SyntheticSceneDataset(range(args.batch_size * 2), width=320, height=240)
    model = build_training_model(args.model, dataset.categories, args.input_size)
    config = TrainConfig(
        steps=args.warmup + args.steps,
        batch_size=args.batch_size,
        lr=1e-3,
        optimizer="adamw",
        warmup_steps=0,
        schedule="constant",
        freeze_bn=False,
        precision=precision,
        log_every=0,
    )
    with tempfile.TemporaryDirectory() as out:
        trainer = Trainer(
            model,
            dataset,
            out_dir=out,
            config=config,
            device=args.device,
            progress_bar=False,
            tensorboard=False,
        )
        times = []
        trainer.model.train()
        for batch in trainer._loader():
            start = time.perf_counter()
            trainer.train_step(batch)
            if trainer.device.type == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - start)
        loss = trainer.last_logged.get("total", float("nan"))
    counted = times[args.warmup :]
    med = statistics.median(counted)
    return (
        f"{args.model:32s} {args.input_size[0]}x{args.input_size[1]} batch {args.batch_size} "
        f"{precision:5s} {args.device:6s}: {med:6.3f} s/step median, {min(counted):6.3f} min, "
        f"{args.batch_size / med:6.1f} img/s, loss {loss:.3f}"
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="panoptic_yolact_mobilenetv3")
    p.add_argument("--input-size", type=input_size, default=(240, 320))
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--steps", type=int, default=5, help="timed steps")
    p.add_argument("--warmup", type=int, default=1, help="untimed first steps")
    p.add_argument("--precisions", nargs="+", default=["fp32", "bf16"])
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    for precision in args.precisions:
        print(bench(args, precision), flush=True)


if __name__ == "__main__":
    main()
