"""The training loop: any registered model family (YOLACT / YOLACT++, panoptic YOLACT, PCV; the
family gives the targets and losses) on any `PanopticSample` data set, on the CPU or CUDA, in
one process or in several under `torchrun` (`train.distributed`), in float32, bfloat16 or
float16 (`train.precision`).

    trainer = Trainer(model, dataset, out_dir="runs/a", config=TrainConfig(steps=2000))
    trainer.fit()            # progress bar + a progress line every `log_every` steps

What it does (official dbolya/yolact `train.py` choices where they apply; `train.config`):
- SGD (momentum 0.9, weight decay 5e-4) or AdamW; linear warm-up, then step decay, cosine decay
  or a constant rate;
- BatchNorm frozen (eval statistics, no gradient) when a process sees fewer than 6 images per
  step, as the official code does (`freeze_bn`); gradient-norm clipping; a step whose loss is not
  finite is skipped (official), and counted (with fp16, the gradient scaler also skips steps
  whose gradients overflow: those are normal while it finds its scale and are not counted);
- deterministic: the data order, the augmentations (`TrainingSet`, seeded per (epoch, index))
  and the masks_to_train draw (seeded per step) depend on `seed` only, so resuming from a
  checkpoint continues the same sequence of batches, whatever the number of processes;
- rank 0 writes `out_dir/train_log.csv` and TensorBoard events (`train.logs`), checkpoints
  `out_dir/checkpoint_<step>.pt` every `checkpoint_every` steps and `out_dir/last.pt` at the
  end (`train.checkpoints`: our format, the step, optimizer and gradient-scaler state in
  `extra`; they resume on another machine and device).
"""

from __future__ import annotations

import dataclasses
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
from segmentation_ros.train import distributed as ddp
from segmentation_ros.train.checkpoints import (
    plain,
    read_training_checkpoint,
    save_training_checkpoint,
)
from segmentation_ros.train.config import TrainConfig, learning_rate
from segmentation_ros.train.logs import CSV_FIELDS, RunLog
from segmentation_ros.train.precision import ForwardThrough, check_precision, grad_scaler
from segmentation_ros.train.stop import StopOnSignal, ignore_stop_signals

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


class StepBatches(Sampler):
    """Batches of (epoch, index) keys for steps start..end-1: the data set is walked in a fresh
    seeded permutation each epoch; step s takes samples s*B .. s*B + B - 1 of that stream (B the
    global batch). With `world_size` processes, process `rank` gets its share of each step's
    batch: keys rank*b .. rank*b + b - 1, b = B / world_size."""

    def __init__(
        self,
        size: int,
        batch_size: int,
        seed: int,
        start: int,
        end: int,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        self.size, self.batch_size, self.seed = size, batch_size, seed
        self.start, self.end = start, end
        self.share = batch_size // world_size
        self.rank = rank

    def __len__(self) -> int:
        return max(self.end - self.start, 0)

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        epoch, perm = -1, None
        for step in range(self.start, self.end):
            keys = []
            first = step * self.batch_size + self.rank * self.share
            for k in range(first, first + self.share):
                e, pos = divmod(k, self.size)
                if e != epoch:
                    epoch, perm = e, np.random.default_rng([self.seed, 2, e]).permutation(self.size)
                keys.append((e, int(perm[pos])))
            yield keys


@dataclass(frozen=True)
class TrainResult:
    """End of `fit`: the step reached, the last step's losses (floats, the global batch's), the
    last checkpoint, the number of skipped (non-finite) steps and the wall time."""

    step: int
    losses: dict[str, float]
    checkpoint: Path
    skipped_steps: int
    seconds: float
    #: "" when the run reached its last step, else the signal that stopped it (`train.stop`).
    stopped_by: str = ""


class Trainer:
    """Trains `model` on `dataset` (a data set of `PanopticSample`).

    Args:
        model: `Yolact`, `PanopticYolact` or `PCVModel` (built with the data set's classes, e.g.
            by `train.models.build_training_model`); it has `config`.
        dataset: `PanopticSample` data set (`data.datasets`) whose categories match the model.
        out_dir: where the CSV log, TensorBoard events and checkpoints go (created by rank 0).
        config: `TrainConfig`. loss_config: `LossConfig`.
        device: "cpu", "cuda", "cuda:1", ... (the model is moved there; batches follow). Under
            torchrun, the device of this process (`distributed.init_from_environment`).
        augmentation: override of the augmentation (default `default_augmentation()` when
            `config.augment`, else none).
        extra: plain data stored in every checkpoint's `extra` (e.g. the data set's category
            ids), beside the step and optimizer state.
        log: where progress lines go (default print).
        context: this process's place in a distributed run (default: one process).
        progress_bar: show a tqdm bar (None: when stderr is a terminal). tensorboard: write
            TensorBoard events.
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
        context: ddp.DistContext = ddp.DistContext(),  # noqa: B008 (frozen)
        progress_bar: bool | None = None,
        tensorboard: bool = True,
    ) -> None:
        if len(dataset) == 0:  # type: ignore[arg-type]
            raise ValueError("the training data set is empty")
        self.device = torch.device(device)
        check_precision(config.precision, self.device)
        self.context = context
        context.share(config.batch_size)  # ValueError when it does not divide
        self.model = model.to(self.device)
        self.model_config = model.config
        self.config = config
        self.loss_config = loss_config
        self.out_dir = Path(out_dir)
        if context.is_main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
        self.extra = dict(extra or {})
        self.log = log
        self.progress_bar, self.tensorboard = progress_bar, tensorboard
        if augmentation is None and config.augment:
            augmentation = default_augmentation()
        self.training_set = TrainingSet(
            dataset, TrainTransform(self.model_config, augmentation), seed=config.seed
        )
        #: The model's family: its training targets and losses.
        self.family = family_of(self.model_config)
        self.priors = self.family.training_priors(self.model_config, self.device)
        if config.sync_bn:
            ddp.sync_batchnorm(self.model, context)
        self.bn_frozen = config.bn_frozen_for(context.world_size)
        if self.bn_frozen:
            freeze_batchnorm(self.model)
        #: What runs the forward pass: the model, or its DistributedDataParallel wrapper.
        self.forward_model = ddp.wrap_model(self.model, context)
        self.optimizer = self._make_optimizer()
        self.scaler = grad_scaler(config.precision, self.device)
        self.step = 0
        self.skipped_steps = 0
        #: The last step's loss terms over the global batch (floats; empty when skipped).
        self.last_logged: dict[str, float] = {}

    # -- set-up --------------------------------------------------------------------------------

    def _make_optimizer(self) -> torch.optim.Optimizer:
        c = self.config
        params = [p for p in self.model.parameters() if p.requires_grad]
        if c.optimizer == "sgd":
            return torch.optim.SGD(
                params, lr=c.lr, momentum=c.momentum, weight_decay=c.weight_decay
            )
        return torch.optim.AdamW(params, lr=c.lr, weight_decay=c.weight_decay)

    def resume(self, path: str | os.PathLike) -> int:
        """Load weights, optimizer (and gradient-scaler) state and step from one of our
        checkpoints, written on any machine and device; returns the step.

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
            self.optimizer.load_state_dict(saved)  # moves state to the params
        if extra.get("grad_scaler") and self.scaler.is_enabled():
            self.scaler.load_state_dict(extra["grad_scaler"])
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
            "grad_scaler": self.scaler.state_dict() if self.scaler.is_enabled() else {},
            "train_config": plain(dataclasses.asdict(self.config)),
            "loss_config": plain(dataclasses.asdict(self.loss_config)),
        }

    def save(self, path: str | os.PathLike) -> Path:
        """Write a checkpoint of the current state (`train.checkpoints`); rank 0 only writes."""
        if self.context.is_main:
            save_training_checkpoint(path, self.model, self.checkpoint_extra())
        return Path(path)

    def _loader(self) -> DataLoader:
        c, ctx = self.config, self.context
        sampler = StepBatches(
            len(self.training_set),
            c.batch_size,
            c.seed,
            self.step,
            c.steps,
            rank=ctx.rank,
            world_size=ctx.world_size,
        )
        return DataLoader(
            self.training_set,
            batch_sampler=sampler,
            collate_fn=collate,
            num_workers=c.workers,
            pin_memory=self.device.type == "cuda",
            worker_init_fn=ignore_stop_signals,
        )

    # -- loop ----------------------------------------------------------------------------------

    def train_step(self, batch: TrainBatch) -> Losses | None:
        """One optimizer step on `batch` (this process's share of the step's batch); returns
        the losses (None if skipped: not finite). Sets `last_logged` to the global batch's loss
        terms (floats; empty when skipped)."""
        lr = learning_rate(self.step, self.config)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        batch = batch.to(self.device, non_blocking=True)
        generator = torch.Generator().manual_seed(self.config.seed * 1_000_003 + self.step)
        model = ForwardThrough(self.model, self.forward_model, self.config.precision, self.device)
        losses = self.family.training_losses(
            model,
            batch.images,
            batch.targets,
            self.priors,
            self.loss_config,
            generator=generator,
        )
        losses, self.last_logged = ddp.reduce_losses(losses, self.context)
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        if not np.isfinite(self.last_logged["total"]):  # the same on every process
            self.skipped_steps += 1
            self.last_logged = {}
            return None
        total = losses.total
        if self.context.active:
            total = total + ddp.touch_all(self.model)
        self.scaler.scale(total).backward()
        if self.config.grad_clip is not None:
            self.scaler.unscale_(self.optimizer)
            params = [p for p in self.model.parameters() if p.grad is not None]
            torch.nn.utils.clip_grad_norm_(params, self.config.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return losses

    def fit(self) -> TrainResult:
        """Train from `self.step` up to `config.steps`; returns a `TrainResult`."""
        c = self.config
        self.model.train()
        if self.bn_frozen:
            freeze_batchnorm(self.model)
        start_time = time.perf_counter()
        last: dict[str, float] = {}
        with self._run_log() as run_log, StopOnSignal() as stop:
            for batch in self._loader():
                lr = learning_rate(self.step, c)
                losses = self.train_step(batch)
                last = self.last_logged or last
                if run_log is not None:
                    pos = None if losses is None else getattr(losses, "num_positives", None)
                    run_log.step(self.step, lr, self.last_logged, pos, self.skipped_steps)
                if c.checkpoint_every and self.step % c.checkpoint_every == 0:
                    self.save(self.out_dir / f"checkpoint_{self.step:07d}.pt")
                if stop.any_process(self.context, self.device):
                    self.log(f"{stop.signal_name or 'stop'} at step {self.step}: saving last.pt")
                    break
        path = self.save(self.out_dir / "last.pt")
        return TrainResult(
            self.step,
            last,
            path,
            self.skipped_steps,
            time.perf_counter() - start_time,
            stopped_by=stop.signal_name if stop.requested else "",
        )

    def _run_log(self) -> Any:
        if not self.context.is_main:
            return _NoLog()
        return RunLog(
            self.out_dir,
            start_step=self.step,
            total_steps=self.config.steps,
            log=self.log,
            log_every=self.config.log_every,
            progress_bar=self.progress_bar,
            tensorboard=self.tensorboard,
        )


class _NoLog:
    """The run log of a process other than rank 0."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: Any) -> None:
        return None


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
