"""The training loop: any registered model family (YOLACT / YOLACT++, panoptic YOLACT, PCV; the
family gives the targets and losses) on any `PanopticSample` data set, on the CPU or CUDA (the
device is an argument; data and priors follow the model's device).

    trainer = Trainer(model, dataset, out_dir="runs/a", config=TrainConfig(steps=2000))
    trainer.fit()                         # prints a progress line every `log_every` steps

What it does (official dbolya/yolact `train.py` choices where they apply):
- SGD (momentum 0.9, weight decay 5e-4) or AdamW; linear warm-up from `warmup_factor * lr` over
  `warmup_steps`, then step decay (x gamma at the `lr_steps` fractions of `steps`), cosine decay
  to `min_lr_factor * lr`, or a constant rate;
- BatchNorm frozen (eval statistics, no gradient) when the batch is smaller than 6, as the
  official code does (`freeze_bn`); gradient-norm clipping; a step whose loss is not finite is
  skipped (official), and counted;
- deterministic: the data order, the augmentations (`TrainingSet`, seeded per (epoch, index))
  and the masks_to_train draw (seeded per step) depend on `seed` only, so resuming from a
  checkpoint continues the same sequence of batches;
- writes `out_dir/train_log.csv` (one row per step: step, lr, loss terms, positives, seconds),
  checkpoints `out_dir/checkpoint_<step>.pt` every `checkpoint_every` steps and
  `out_dir/last.pt` at the end, in our checkpoint format (`models.checkpoint`: config with the
  class names, weights, and in `extra` the step, optimizer state and training settings).
"""

from __future__ import annotations

import csv
import dataclasses
import math
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, Sampler

from segmentation_ros.data.transforms import (
    TrainBatch,
    TrainingSet,
    TrainTransform,
    collate,
    default_augmentation,
)
from segmentation_ros.models.checkpoint import TRAINING_ONLY_PREFIXES
from segmentation_ros.models.family import family_of
from segmentation_ros.models.losses import LossConfig, Losses

__all__ = [
    "CSV_FIELDS",
    "TrainConfig",
    "TrainResult",
    "Trainer",
    "freeze_batchnorm",
    "learning_rate",
    "read_training_checkpoint",
    "save_training_checkpoint",
]

CSV_FIELDS = (
    "step",
    "lr",
    "total",
    "box",
    "cls",
    "mask",
    "mask_iou",
    "semantic",
    "pcv",
    "num_positives",
    "seconds",
    "semantic_aux",
)
OPTIMIZERS = ("sgd", "adamw")
SCHEDULES = ("step", "cosine", "constant")


@dataclass(frozen=True)
class TrainConfig:
    """Training settings.

    steps: optimizer steps in total (a resumed run continues up to it).
    batch_size: images per step.
    lr: base learning rate (official SGD: 1e-3).
    optimizer: "sgd" (momentum, official) or "adamw". weight_decay: for both.
    warmup_steps / warmup_factor: linear warm-up from warmup_factor * lr (official 1e-4 / 1e-3
        over 500 iterations).
    schedule: "step" (x gamma at each `lr_steps` fraction of `steps`; official 280k, 600k,
        700k, 750k of 800k), "cosine" (to min_lr_factor * lr at `steps`) or "constant".
    grad_clip: max gradient norm (None: no clipping).
    freeze_bn: freeze BatchNorm layers; None = official rule (frozen when batch_size < 6).
    log_every: a progress line every this many steps (0: none).
    checkpoint_every: a numbered checkpoint every this many steps (0: only `last.pt`).
    seed: seeds data order, augmentations and the mask subsampling.
    workers: DataLoader worker processes (0: load in this process).
    augment: photometric distortion + random scale / crop + flip (False: resize only).
    """

    steps: int = 1000
    batch_size: int = 8
    lr: float = 1e-3
    optimizer: str = "sgd"
    momentum: float = 0.9
    weight_decay: float = 5e-4
    warmup_steps: int = 500
    warmup_factor: float = 0.1
    schedule: str = "step"
    lr_steps: tuple[float, ...] = (0.35, 0.75, 0.875, 0.9375)
    gamma: float = 0.1
    min_lr_factor: float = 0.0
    grad_clip: float | None = 10.0
    freeze_bn: bool | None = None
    log_every: int = 10
    checkpoint_every: int = 0
    seed: int = 0
    workers: int = 0
    augment: bool = True

    def __post_init__(self) -> None:
        if self.steps < 1 or self.batch_size < 1:
            raise ValueError(
                f"steps and batch_size must be >= 1, got {self.steps}, {self.batch_size}"
            )
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        if self.warmup_steps < 0 or not 0 < self.warmup_factor <= 1:
            raise ValueError("warmup_steps must be >= 0 and warmup_factor in (0, 1]")
        if any(not 0 < f < 1 for f in self.lr_steps):
            raise ValueError(f"lr_steps are fractions of `steps` in (0, 1), got {self.lr_steps}")
        if self.grad_clip is not None and self.grad_clip <= 0:
            raise ValueError(f"grad_clip must be > 0 or None, got {self.grad_clip}")
        if min(self.log_every, self.checkpoint_every, self.workers) < 0:
            raise ValueError("log_every, checkpoint_every and workers must be >= 0")

    @property
    def bn_frozen(self) -> bool:
        return self.batch_size < 6 if self.freeze_bn is None else self.freeze_bn


def learning_rate(step: int, config: TrainConfig) -> float:
    """The learning rate of optimizer step `step` (0-based)."""
    lr = config.lr
    if step < config.warmup_steps:
        start = lr * config.warmup_factor
        return start + (lr - start) * step / config.warmup_steps
    if config.schedule == "step":
        passed = sum(step >= round(f * config.steps) for f in config.lr_steps)
        return lr * config.gamma**passed
    if config.schedule == "cosine":
        span = max(config.steps - config.warmup_steps, 1)
        t = min((step - config.warmup_steps) / span, 1.0)
        low = lr * config.min_lr_factor
        return low + (lr - low) * 0.5 * (1 + math.cos(math.pi * t))
    return lr


def freeze_batchnorm(model: nn.Module) -> int:
    """Put every BatchNorm layer in eval mode with frozen affine parameters; returns how many."""
    count = 0
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eval()
            for p in m.parameters():
                p.requires_grad_(False)
            count += 1
    return count


class _StepBatches(Sampler):
    """Batches of (epoch, index) keys for steps start..end-1: the data set is walked in a fresh
    seeded permutation each epoch; step s takes samples s*B .. s*B + B - 1 of that stream."""

    def __init__(self, size: int, batch_size: int, seed: int, start: int, end: int) -> None:
        self.size, self.batch_size, self.seed = size, batch_size, seed
        self.start, self.end = start, end

    def __len__(self) -> int:
        return max(self.end - self.start, 0)

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        epoch, perm = -1, None
        for step in range(self.start, self.end):
            keys = []
            for k in range(step * self.batch_size, (step + 1) * self.batch_size):
                e, pos = divmod(k, self.size)
                if e != epoch:
                    epoch, perm = e, np.random.default_rng([self.seed, 2, e]).permutation(self.size)
                keys.append((e, int(perm[pos])))
            yield keys


@dataclass(frozen=True)
class TrainResult:
    """End of `fit`: the step reached, the last step's losses (floats), the last checkpoint, the
    number of skipped (non-finite) steps and the wall time."""

    step: int
    losses: dict[str, float]
    checkpoint: Path
    skipped_steps: int
    seconds: float


def save_training_checkpoint(
    path: str | os.PathLike, model: nn.Module, extra: dict[str, Any]
) -> None:
    """Our checkpoint (`models.checkpoint.save_checkpoint`: format, config with class names,
    weights) with `extra` (step, optimizer state, ...). Written atomically (temp + rename)."""
    from segmentation_ros.models import checkpoint as ckpt

    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    ckpt.save_checkpoint(tmp, model, model.config, extra)
    tmp.replace(path)


def read_training_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """The raw dict of one of our checkpoints: {"format", "config", "state_dict", "extra"}."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    data = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(data, dict) or not {"format", "config", "state_dict"} <= set(data):
        raise ValueError(f"{path} is not a segmentation_ros checkpoint (official weights?)")
    return data


class Trainer:
    """Trains `model` on `dataset` (a data set of `PanopticSample`).

    Args:
        model: `Yolact`, `PanopticYolact` or `PCVModel` (built with the data set's classes, e.g.
            by `train.models.build_training_model`); it has `config`.
        dataset: `PanopticSample` data set (`data.datasets`) whose categories match the model.
        out_dir: where the CSV log and checkpoints go (created).
        config: `TrainConfig`. loss_config: `LossConfig`.
        device: "cpu", "cuda", "cuda:1", ... (the model is moved there; batches follow).
        augmentation: override of the augmentation (default `default_augmentation()` when
            `config.augment`, else none).
        extra: plain data stored in every checkpoint's `extra` (e.g. the data set's category
            ids), beside the step and optimizer state.
        log: where progress lines go (default print).
    """

    def __init__(
        self,
        model: nn.Module,
        dataset: Dataset,
        *,
        out_dir: str | os.PathLike,
        config: TrainConfig = TrainConfig(),  # noqa: B008 (frozen)
        loss_config: LossConfig = LossConfig(),  # noqa: B008 (frozen)
        device: torch.device | str = "cpu",
        augmentation: Callable | None = None,
        extra: dict[str, Any] | None = None,
        log: Callable[[str], None] = print,
    ) -> None:
        if len(dataset) == 0:  # type: ignore[arg-type]
            raise ValueError("the training data set is empty")
        self.device = torch.device(device)
        self.model = model.to(self.device)
        self.model_config = model.config
        self.config = config
        self.loss_config = loss_config
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.extra = dict(extra or {})
        self.log = log
        if augmentation is None and config.augment:
            augmentation = default_augmentation()
        self.training_set = TrainingSet(
            dataset, TrainTransform(self.model_config, augmentation), seed=config.seed
        )
        #: The model's family: its training targets and losses.
        self.family = family_of(self.model_config)
        self.priors = self.family.training_priors(self.model_config, self.device)
        self.optimizer = self._make_optimizer()
        self.step = 0
        self.skipped_steps = 0

    # -- set-up --------------------------------------------------------------------------------

    def _make_optimizer(self) -> torch.optim.Optimizer:
        c = self.config
        if c.bn_frozen:
            freeze_batchnorm(self.model)
        params = [p for p in self.model.parameters() if p.requires_grad]
        if c.optimizer == "sgd":
            return torch.optim.SGD(
                params, lr=c.lr, momentum=c.momentum, weight_decay=c.weight_decay
            )
        return torch.optim.AdamW(params, lr=c.lr, weight_decay=c.weight_decay)

    def resume(self, path: str | os.PathLike) -> int:
        """Load weights, optimizer state and step from one of our checkpoints; returns the step.

        A checkpoint without the model's training-only heads (YOLACT's auxiliary semantic head,
        added later) resumes with those heads freshly initialised (logged).
        Raises ValueError if the checkpoint's model differs from this trainer's model."""
        data = read_training_checkpoint(path)
        state = data["state_dict"]
        new = [k for k in self.model.state_dict() if k not in state and _training_only(k)]
        try:
            self.model.load_state_dict({**state, **self._current(new)}, strict=True)
        except RuntimeError as exc:
            raise ValueError(f"{path} does not fit the model being trained: {exc}") from exc
        extra = data.get("extra") or {}
        if new:
            self.log(
                f"{path} has no {', '.join(sorted({k.rpartition('.')[0] for k in new}))} "
                "(training-only head, added since): initialised it"
            )
        if "optimizer" in extra:
            saved = extra["optimizer"]
            if new:
                saved = _with_new_params(saved, self.optimizer)
            self.optimizer.load_state_dict(saved)
        self.step = int(extra.get("step", 0))
        self.skipped_steps = int(extra.get("skipped_steps", 0))
        return self.step

    def _current(self, keys: list[str]) -> dict[str, Tensor]:
        own = self.model.state_dict()
        return {k: own[k] for k in keys}

    def checkpoint_extra(self) -> dict[str, Any]:
        return {
            **self.extra,
            "step": self.step,
            "skipped_steps": self.skipped_steps,
            "optimizer": self.optimizer.state_dict(),
            "train_config": _plain(dataclasses.asdict(self.config)),
            "loss_config": _plain(dataclasses.asdict(self.loss_config)),
        }

    def save(self, path: str | os.PathLike) -> Path:
        """Write a checkpoint of the current state (see `save_training_checkpoint`)."""
        save_training_checkpoint(path, self.model, self.checkpoint_extra())
        return Path(path)

    def _loader(self) -> DataLoader:
        c = self.config
        sampler = _StepBatches(len(self.training_set), c.batch_size, c.seed, self.step, c.steps)
        return DataLoader(
            self.training_set,
            batch_sampler=sampler,
            collate_fn=collate,
            num_workers=c.workers,
            pin_memory=self.device.type == "cuda",
        )

    # -- loop ----------------------------------------------------------------------------------

    def train_step(self, batch: TrainBatch) -> Losses | None:
        """One optimizer step on `batch`; returns the losses (None if skipped: not finite)."""
        lr = learning_rate(self.step, self.config)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        batch = batch.to(self.device, non_blocking=True)
        generator = torch.Generator().manual_seed(self.config.seed * 1_000_003 + self.step)
        losses = self.family.training_losses(
            self.model,
            batch.images,
            batch.targets,
            self.priors,
            self.loss_config,
            generator=generator,
        )
        total = losses.total
        self.optimizer.zero_grad(set_to_none=True)
        if not bool(torch.isfinite(total)):
            self.skipped_steps += 1
            self.step += 1
            return None
        total.backward()
        if self.config.grad_clip is not None:
            params = [p for p in self.model.parameters() if p.grad is not None]
            torch.nn.utils.clip_grad_norm_(params, self.config.grad_clip)
        self.optimizer.step()
        self.step += 1
        return losses

    def fit(self) -> TrainResult:
        """Train from `self.step` up to `config.steps`; returns a `TrainResult`."""
        c = self.config
        self.model.train()
        if c.bn_frozen:
            freeze_batchnorm(self.model)
        csv_path = self.out_dir / "train_log.csv"
        new_file = not csv_path.exists() or self.step == 0
        start_time = time.perf_counter()
        start_step = self.step
        last: dict[str, float] = {}
        fields = CSV_FIELDS if new_file else _csv_header(csv_path)
        with open(csv_path, "w" if new_file else "a", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
            if new_file:
                writer.writeheader()
            tick = time.perf_counter()
            for batch in self._loader():
                lr = learning_rate(self.step, c)
                losses = self.train_step(batch)
                now = time.perf_counter()
                row = {"step": self.step, "lr": f"{lr:.6g}", "seconds": f"{now - tick:.4f}"}
                tick = now
                if losses is not None:
                    last = {n: float(v.detach()) for n, v in losses.items()}
                    last["total"] = float(losses.total.detach())
                    row.update({k: f"{v:.6g}" for k, v in last.items()})
                    if losses.num_positives is not None:  # PCV has no positive priors
                        row["num_positives"] = int(losses.num_positives)
                writer.writerow(row)
                if c.log_every and (self.step % c.log_every == 0 or self.step == c.steps):
                    f.flush()
                    self.log(self._progress(lr, last, start_step, start_time))
                if c.checkpoint_every and self.step % c.checkpoint_every == 0:
                    self.save(self.out_dir / f"checkpoint_{self.step:07d}.pt")
        path = self.save(self.out_dir / "last.pt")
        return TrainResult(
            self.step, last, path, self.skipped_steps, time.perf_counter() - start_time
        )

    def _progress(
        self, lr: float, losses: dict[str, float], start_step: int, start_time: float
    ) -> str:
        done = self.step - start_step
        per_step = (time.perf_counter() - start_time) / max(done, 1)
        eta = per_step * (self.config.steps - self.step)
        terms = " ".join(f"{k} {v:.3f}" for k, v in losses.items() if k != "total")
        total = losses.get("total", float("nan"))
        skipped = f" | skipped {self.skipped_steps}" if self.skipped_steps else ""
        return (
            f"step {self.step}/{self.config.steps} | loss {total:.4f} ({terms}) | lr {lr:.2e} | "
            f"{per_step:.2f} s/step | eta {_duration(eta)}{skipped}"
        )


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s"


def _training_only(key: str) -> bool:
    return any(key.startswith(p) or f".{p}" in key for p in TRAINING_ONLY_PREFIXES)


def _with_new_params(saved: dict[str, Any], optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """A saved optimizer state whose groups are extended by the parameters `optimizer` has beyond
    them: a training-only head added since, registered last in its model, so its parameters come
    last in each group; they start without state."""
    next_id = 1 + max((i for g in saved["param_groups"] for i in g["params"]), default=-1)
    groups = []
    for old, current in zip(saved["param_groups"], optimizer.param_groups):
        params = list(old["params"])
        added = len(current["params"]) - len(params)
        if added > 0:
            params += range(next_id, next_id + added)
            next_id += added
        groups.append({**old, "params": params})
    return {**saved, "param_groups": groups}


def _csv_header(path: Path) -> tuple[str, ...]:
    """The columns of an existing log (a resumed run appends in its order)."""
    with open(path, newline="") as f:
        return tuple(next(csv.reader(f), CSV_FIELDS))


def _plain(value: Any) -> Any:
    """Tuples -> lists, recursively (so `extra` holds only weights_only-safe plain data)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value
