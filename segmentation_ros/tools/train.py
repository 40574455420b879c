"""`segmentation-ros-train`: train (or fine-tune, or resume) a model of any registered family
(YOLACT / YOLACT++, panoptic YOLACT, PCV).

    segmentation-ros-train [--recipe FILE] --model NAME --data SPEC --out DIR --steps N
                           [--batch-size B] [--lr LR] [--precision fp32|bf16|fp16]
                           [--device cpu|cuda] [--resume CKPT] [--finetune-official PTH]
                           [--seed S] [--workers W] [--input-size HxW] [--optimizer sgd|adamw]
                           [--schedule step|cosine|constant] [--warmup-steps K]
                           [--weight-decay WD] [--grad-clip G] [--no-augment]
                           [--batchnorm auto|freeze|train] [--log-every K]
                           [--checkpoint-every K] [--sync-bn] [--progress-bar auto|on|off]
                           [--no-tensorboard] [--mask-target binary|area]
                           [--semantic-class-weights W0,W1,...|sqrt-median-frequency]
    torchrun --nproc-per-node N -m segmentation_ros.tools.train ...     # N processes (DDP)

SPEC (see `segmentation_ros.data.datasets.open_dataset`): `synthetic:DIR`,
`synthetic-live:COUNT[@WxH]`, `coco-panoptic:IMAGE_DIR,PANOPTIC_JSON,PANOPTIC_DIR` or
`cityscapes:ROOT[,SPLIT]`. The model takes the data set's classes (all its categories, stuff
first); with `--resume` the model and its classes come from the checkpoint (NAME, if given,
must match) and training continues at the checkpoint's step with its optimizer state.
`--finetune-official` loads official dbolya/yolact weights where they fit and re-initialises
the class-dependent layers (the report says which).
`--recipe FILE` takes the options from a YAML file (`config/train/*.yaml`,
`train.recipes`); flags on the command line override it.
Under `torchrun` each process trains on its share of the global `--batch-size` (one process per
GPU with `--device cuda`, NCCL; Gloo on the CPU; `train.distributed`); only rank 0 prints and
writes. Shows a progress bar (steps, rate, ETA) on a terminal, prints a progress line every
`--log-every` steps, writes `train_log.csv` and TensorBoard events (`DIR/tensorboard`) and, last,
one JSON line {"step", "losses", "checkpoint", "seconds", "skipped_steps"}. Errors in the
arguments or the data print one line on stderr and return exit status 1.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

import torch

from segmentation_ros.data.datasets import DATA_SPECS, CategoryMapping, open_dataset
from segmentation_ros.models.losses import MASK_TARGETS, LossConfig
from segmentation_ros.tools.args import input_size
from segmentation_ros.train import distributed
from segmentation_ros.train.config import PRECISIONS
from segmentation_ros.train.precision import check_precision
from segmentation_ros.train.recipes import apply_recipe
from segmentation_ros.train.trainer import TrainConfig, Trainer


def _fractions(text: str) -> tuple[float, ...]:
    try:
        values = tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected fractions (0.35,0.75), got {text!r}") from None
    if not values or any(not 0 < v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"lr steps are fractions in (0, 1), got {text!r}")
    return values


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="segmentation-ros-train",
        description="Train a YOLACT / YOLACT++ / panoptic YOLACT / PCV / Mask R-CNN model.",
    )
    p.add_argument("--recipe", type=Path, help="YAML file of options (flags override it)")
    p.add_argument("--model", default="", help="architecture name (optional with --resume)")
    p.add_argument("--data", help=f"data set: {' | '.join(DATA_SPECS)} (required)")
    p.add_argument("--out", type=Path, help="output folder: log, checkpoints (required)")
    p.add_argument("--steps", type=int, help="total optimizer steps (required)")
    p.add_argument("--batch-size", default=8, type=int, help="images per step, all processes")
    p.add_argument("--lr", default=1e-3, type=float, help="base learning rate")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N")
    p.add_argument("--resume", type=Path, help="continue from one of our checkpoints")
    p.add_argument("--finetune-official", type=Path, help="official YOLACT .pth to start from")
    p.add_argument("--seed", default=0, type=int, help="random seed")
    p.add_argument("--workers", default=0, type=int, help="data loader processes")
    p.add_argument("--input-size", type=input_size, help="network input HEIGHTxWIDTH")
    p.add_argument("--optimizer", default="sgd", choices=("sgd", "adamw"))
    p.add_argument("--schedule", default="step", choices=("step", "cosine", "constant"))
    p.add_argument("--warmup-steps", type=int, help="warm-up steps (default min(500, steps / 10))")
    p.add_argument("--warmup-factor", default=0.1, type=float, help="warm-up starts at this x lr")
    p.add_argument(
        "--lr-steps",
        default=(0.35, 0.75, 0.875, 0.9375),
        type=_fractions,
        help="step schedule: x gamma at these fractions of --steps (official YOLACT default)",
    )
    p.add_argument("--gamma", default=0.1, type=float, help="step schedule factor")
    p.add_argument("--momentum", default=0.9, type=float, help="SGD momentum")
    p.add_argument("--weight-decay", default=5e-4, type=float)
    p.add_argument("--grad-clip", default=10.0, type=float, help="max gradient norm (0: off)")
    p.add_argument("--no-augment", action="store_true", help="no photometric / scale / flip")
    p.add_argument(
        "--batchnorm",
        default="auto",
        choices=("auto", "freeze", "train"),
        help="BatchNorm layers: auto = frozen below batch size 6 (official)",
    )
    p.add_argument("--log-every", default=10, type=int, help="progress line period (steps)")
    p.add_argument("--checkpoint-every", default=0, type=int, help="checkpoint period (0: end)")
    p.add_argument(
        "--precision",
        default="fp32",
        choices=PRECISIONS,
        help="autocast of the forward pass: bf16 (CPU, CUDA), fp16 (CUDA, gradient scaler)",
    )
    p.add_argument("--sync-bn", action="store_true", help="SyncBatchNorm over processes (CUDA)")
    p.add_argument(
        "--progress-bar",
        default="auto",
        choices=("auto", "on", "off"),
        help="tqdm bar on stderr (auto: when stderr is a terminal)",
    )
    p.add_argument("--no-tensorboard", action="store_true", help="no TensorBoard events")
    p.add_argument(
        "--mask-target",
        default="binary",
        choices=MASK_TARGETS,
        help="mask loss ground truth at the prototype size: binary (official) or area "
        "(covered fraction; thin objects)",
    )
    p.add_argument(
        "--semantic-class-weights",
        default="",
        help="semantic cross-entropy per-class weights: W0,W1,... (stuff first) or "
        "sqrt-median-frequency (from the training annotations); empty: unweighted",
    )
    return p


def semantic_class_weights(spec: str, dataset, num_classes: int) -> tuple[float, ...]:
    """`--semantic-class-weights`: () for "", computed for sqrt-median-frequency, else parsed."""
    from segmentation_ros.data.datasets import sqrt_median_frequency

    spec = str(spec).strip()
    if not spec:
        return ()
    if spec == "sqrt-median-frequency":
        if not hasattr(dataset, "class_pixel_counts"):
            raise ValueError("sqrt-median-frequency needs a data set with annotations")
        return sqrt_median_frequency(dataset.class_pixel_counts())
    try:
        weights = tuple(float(w) for w in spec.split(","))
    except ValueError:
        raise ValueError(f"--semantic-class-weights: not numbers: {spec!r}") from None
    if len(weights) != num_classes:
        raise ValueError(f"--semantic-class-weights: {len(weights)} for {num_classes} classes")
    return weights


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The arguments, a `--recipe` file's options as defaults under the flags given."""
    parser = build_parser()
    first, _ = parser.parse_known_args(argv)
    if first.recipe is not None:
        try:
            apply_recipe(parser, first.recipe)
        except (ValueError, OSError) as exc:
            parser.error(str(exc))
    args = parser.parse_args(argv)
    missing = [f"--{k}" for k in ("data", "out", "steps") if getattr(args, k) is None]
    if missing:
        parser.error(f"the following arguments are required: {', '.join(missing)}")
    return args


def _categories_of(config) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(stuff names, thing names) a resumed model predicts, to map a data set by name."""
    from segmentation_ros.models.family import family_of

    classes = family_of(config).classes(config)
    kinds = tuple(zip(classes.names, classes.is_thing))
    return tuple(n for n, t in kinds if not t), tuple(n for n, t in kinds if t)


def _run(args: argparse.Namespace) -> int:
    check_precision(args.precision, torch.device(args.device))
    context, device = distributed.init_from_environment(args.device)
    try:
        code = _train(args, context, device)
    except BaseException:
        distributed.shutdown(context, wait=False)  # the others may be inside a collective
        raise
    distributed.shutdown(context)
    return code


def _train(args: argparse.Namespace, context: distributed.DistContext, device) -> int:
    from segmentation_ros.models.checkpoint import read_checkpoint
    from segmentation_ros.train.finetune import load_for_finetuning
    from segmentation_ros.train.models import build_from_config, build_training_model

    if args.steps < 1 or args.batch_size < 1:
        raise ValueError("--steps and --batch-size must be >= 1")
    if args.resume and args.finetune_official:
        raise ValueError("use either --resume or --finetune-official, not both")
    say = print if context.is_main else _quiet
    context.share(args.batch_size)
    torch.manual_seed(args.seed)
    dataset = open_dataset(args.data)
    categories = dataset.categories
    if args.resume:
        config = read_checkpoint(args.resume).config
        if args.model and args.model != config.name:
            raise ValueError(
                f"--model {args.model} but {args.resume} holds {config.name}; drop --model"
            )
        stuff, things = _categories_of(config)
        if (stuff and stuff != categories.stuff_names) or things != categories.thing_names:
            json_cats = getattr(dataset, "json_categories", None)
            if json_cats is None:
                raise ValueError(f"{args.resume} predicts other classes than the data set")
            dataset = open_dataset(
                args.data, CategoryMapping.by_names(json_cats, stuff or (), things)
            )
            categories = dataset.categories
        model = build_from_config(config)
    else:
        if not args.model:
            raise ValueError("--model is required (unless --resume)")
        model = build_training_model(args.model, categories, args.input_size)
        if args.finetune_official:
            report = load_for_finetuning(model, args.finetune_official)
            say(report.summary())
    warmup = args.warmup_steps if args.warmup_steps is not None else min(500, args.steps // 10)
    config = TrainConfig(
        steps=args.steps,
        batch_size=args.batch_size,
        lr=args.lr,
        optimizer=args.optimizer,
        weight_decay=args.weight_decay,
        warmup_steps=warmup,
        warmup_factor=args.warmup_factor,
        schedule=args.schedule,
        lr_steps=args.lr_steps,
        gamma=args.gamma,
        momentum=args.momentum,
        grad_clip=args.grad_clip or None,
        log_every=args.log_every,
        checkpoint_every=args.checkpoint_every,
        seed=args.seed,
        workers=args.workers,
        augment=not args.no_augment,
        freeze_bn={"auto": None, "freeze": True, "train": False}[args.batchnorm],
        sync_bn=args.sync_bn,
        precision=args.precision,
    )
    loss_config = LossConfig(
        mask_target=args.mask_target,
        semantic_class_weights=semantic_class_weights(
            args.semantic_class_weights, dataset, categories.num_stuff + categories.num_things
        ),
    )
    trainer = Trainer(
        model,
        dataset,
        out_dir=args.out,
        config=config,
        loss_config=loss_config,
        device=device,
        extra={  # no path: the checkpoint resumes on other machines
            "dataset_category_ids": list(categories.dataset_ids),
            "data_kind": args.data.split(":", 1)[0],
        },
        log=say,
        context=context,
        progress_bar={"auto": None, "on": True, "off": False}[args.progress_bar],
        tensorboard=not args.no_tensorboard,
    )
    if args.resume:
        step = trainer.resume(args.resume)
        say(f"resumed from {args.resume} at step {step}")
    procs = f", {context.world_size} processes" if context.active else ""
    say(
        f"training {model.config.name} on {len(dataset)} images ({args.data}), "
        f"{categories.num_stuff} stuff + {categories.num_things} thing classes, "
        f"input {model.config.input_size[0]}x{model.config.input_size[1]}, device {device}{procs}, "
        f"{args.precision}"
    )
    if loss_config.semantic_class_weights:
        pairs = zip(categories.names, loss_config.semantic_class_weights)
        say("semantic class weights: " + ", ".join(f"{n} {w:.2f}" for n, w in pairs))
    if loss_config.mask_target != "binary":
        say(f"mask target: {loss_config.mask_target}")
    result = trainer.fit()
    say(
        json.dumps(
            {
                "step": result.step,
                "losses": {k: round(v, 6) for k, v in result.losses.items()},
                "checkpoint": str(result.checkpoint),
                "seconds": round(result.seconds, 3),
                "skipped_steps": result.skipped_steps,
                "stopped_by": result.stopped_by,
            }
        )
    )
    # stopped by a signal (last.pt written): the shell's 128 + signal number, as if killed
    return 128 + signal.Signals[result.stopped_by].value if result.stopped_by else 0


def _quiet(*args, **kwargs) -> None:
    """print of the processes other than rank 0."""


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        return _run(args)
    except (ValueError, TypeError, OSError) as e:
        print(f"segmentation-ros-train: error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
