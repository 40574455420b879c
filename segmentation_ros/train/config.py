"""Training settings (`TrainConfig`) and the learning-rate schedule (`learning_rate`).

The official dbolya/yolact `train.py` choices are the defaults: SGD (momentum 0.9, weight decay
5e-4), linear warm-up, step decay at 280k, 600k, 700k and 750k of 800k iterations, BatchNorm
frozen when a process sees fewer than 6 images per step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["OPTIMIZERS", "PRECISIONS", "SCHEDULES", "TrainConfig", "learning_rate"]

OPTIMIZERS = ("sgd", "adamw")
SCHEDULES = ("step", "cosine", "constant")
PRECISIONS = ("fp32", "bf16", "fp16")


@dataclass(frozen=True)
class TrainConfig:
    """Training settings.

    steps: optimizer steps in total (a resumed run continues up to it).
    batch_size: images per optimizer step, over all processes (the global batch; with N
        processes each takes batch_size / N of them, so the schedule and the data order do not
        depend on N).
    lr: base learning rate (official SGD: 1e-3).
    optimizer: "sgd" (momentum, official) or "adamw". weight_decay: for both.
    warmup_steps / warmup_factor: linear warm-up from warmup_factor * lr (official 1e-4 / 1e-3
        over 500 iterations).
    schedule: "step" (x gamma at each `lr_steps` fraction of `steps`; official 280k, 600k,
        700k, 750k of 800k), "cosine" (to min_lr_factor * lr at `steps`) or "constant".
    grad_clip: max gradient norm (None: no clipping).
    freeze_bn: freeze BatchNorm layers; None = official rule (frozen when a process's share of
        the batch is below 6 images; with sync_bn the whole batch counts).
    sync_bn: BatchNorm statistics over all processes (`nn.SyncBatchNorm`, CUDA only).
    precision: "fp32", "bf16" (autocast, CPU and CUDA) or "fp16" (autocast + gradient scaler,
        CUDA only).
    log_every: a progress line every this many steps (0: none).
    checkpoint_every: a numbered checkpoint every this many steps (0: only `last.pt`).
    seed: seeds data order, augmentations and the mask subsampling.
    workers: DataLoader worker processes per training process (0: load in the process).
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
    sync_bn: bool = False
    precision: str = "fp32"
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
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
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
        """BatchNorm frozen in a single process (see `bn_frozen_for`)."""
        return self.bn_frozen_for(1)

    def bn_frozen_for(self, world_size: int) -> bool:
        """Whether BatchNorm is frozen with `world_size` processes. The official rule freezes it
        when the images one BatchNorm layer normalises together (a process's share of the
        batch; the whole batch with sync_bn) are fewer than 6."""
        if self.freeze_bn is not None:
            return self.freeze_bn
        per_norm = self.batch_size if self.sync_bn else self.batch_size // world_size
        return per_norm < 6


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
