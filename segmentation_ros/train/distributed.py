"""Distributed data parallel training: one process per GPU (or several CPU processes), started
by `torchrun`, on PyTorch's `DistributedDataParallel` (NCCL on CUDA, Gloo on the CPU).

    torchrun --nproc-per-node 8 -m segmentation_ros.tools.train --recipe config/train/coco.yaml

How the parts fit (and why a run on N processes trains the model one process would train with
the same global batch, up to float rounding):
- Data: every process walks the same seeded stream of (epoch, index) keys (`trainer`'s step
  batches, augmentations seeded per (epoch, index)); for step s, process r takes its share
  r*b .. r*b + b - 1 of the step's global batch (b = batch_size / N). This is what
  `DistributedSampler` does for an epoch, made per step so that a resume (even on another N)
  continues the same sequence.
- Losses: YOLACT's per-positive terms (box, class, mask, mask-IoU: summed and divided by N_pos,
  the positives of the batch) use the positives of the GLOBAL batch: N_pos is summed over the
  processes (as mmdetection's `reduce_mean(num_pos)`), so the gradient averaged by DDP is the
  gradient of the whole batch's loss. Terms that are means over pixels (semantic, PCV votes)
  are averaged over processes: the whole batch's mean when processes have the same number of
  labelled pixels, a per-process reweighting otherwise (official YOLACT's DataParallel and
  detectron2's semantic heads do the same).
- BatchNorm: frozen (official rule: below 6 images per process) it is the same everywhere. When
  it trains, each process normalises with its own share of the batch and DDP broadcasts rank
  0's running statistics (the default); `sync_bn` (CUDA) converts to `nn.SyncBatchNorm` for
  statistics over the whole batch.
- Every trainable parameter takes part in every step's graph (a zero-weighted touch), as DDP
  requires: YOLACT++'s mask-IoU head runs inside the losses and gets no input on a step without
  large masks.
- Only rank 0 writes logs, TensorBoard events and checkpoints; logged losses are the global
  batch's (reduced over processes).
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

__all__ = [
    "PER_POSITIVE_TERMS",
    "DistContext",
    "init_from_environment",
    "reduce_losses",
    "shutdown",
    "sync_batchnorm",
    "touch_all",
    "wrap_model",
]

#: Loss terms divided by the positives of the batch (`models.losses.yolact_losses`).
PER_POSITIVE_TERMS = frozenset({"box", "cls", "mask", "mask_iou"})


@dataclass(frozen=True)
class DistContext:
    """This process's place in the run: rank in [0, world_size), local_rank on its machine."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that logs and writes checkpoints."""
        return self.rank == 0

    @property
    def active(self) -> bool:
        """More than one process (collectives needed)."""
        return self.world_size > 1

    def share(self, batch_size: int) -> int:
        """Images per process of a global batch; ValueError if it does not divide evenly."""
        if batch_size % self.world_size:
            raise ValueError(
                f"batch size {batch_size} does not divide over {self.world_size} processes: "
                f"use a multiple of {self.world_size}"
            )
        return batch_size // self.world_size


def init_from_environment(device: str | torch.device) -> tuple[DistContext, torch.device]:
    """Join the process group `torchrun` describes (WORLD_SIZE, RANK, LOCAL_RANK and the
    rendezvous in the environment): NCCL when `device` is CUDA (this process then uses
    `cuda:LOCAL_RANK`), Gloo on the CPU. Without those variables (a plain run, or torchrun with
    one process): a single process on `device`. Returns (context, this process's device)."""
    device = torch.device(device)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistContext(), device
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        if local >= torch.cuda.device_count():
            raise ValueError(
                f"process {rank} wants cuda:{local} but this machine has "
                f"{torch.cuda.device_count()} GPUs: --nproc-per-node at most the GPU count"
            )
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
        backend = "nccl"
    else:
        backend = "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend=backend, rank=rank, world_size=world)
    return DistContext(rank=rank, world_size=world, local_rank=local), device


def shutdown(context: DistContext, wait: bool = True) -> None:
    """Leave the process group, after waiting for every process when `wait` (no-op for one
    process)."""
    if context.active and dist.is_initialized():
        if wait:
            dist.barrier()
        dist.destroy_process_group()


def sync_batchnorm(model: nn.Module, context: DistContext) -> None:
    """Make the BatchNorm layers of `model` `nn.SyncBatchNorm` in place (CUDA only; no-op for
    one process). Call it before freezing layers and building the optimizer: the layers and
    their parameters are new objects."""
    if next(model.parameters()).device.type != "cuda":
        raise ValueError("sync_bn needs CUDA (nn.SyncBatchNorm has no CPU kernel)")
    if context.active:
        nn.SyncBatchNorm.convert_sync_batchnorm(model)  # swaps the children in place


def wrap_model(model: nn.Module, context: DistContext) -> nn.Module:
    """`model` for the forward pass: itself for one process, else in DistributedDataParallel
    (which broadcasts rank 0's weights and buffers on construction and averages the gradients
    in backward). Freeze layers before: DDP takes the parameters that require a gradient."""
    if not context.active:
        return model
    device = next(model.parameters()).device
    ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(MethodCall(model), device_ids=ids)


class MethodCall(nn.Module):
    """`model` whose forward can run another of its methods (`method=` keyword): a family whose
    training needs more than `forward` returns (YOLACT's auxiliary head on P3) still runs its
    whole pass through DDP's forward, which is what makes DDP average the gradients."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, *args: Any, method: str = "forward", **kwargs: Any) -> Any:
        return getattr(self.model, method)(*args, **kwargs)


def touch_all(model: nn.Module) -> torch.Tensor:
    """0 times one element of every trainable parameter: added to the loss it puts every
    parameter in the graph (zero gradient) without changing the loss value."""
    params = [p.view(-1)[:1] for p in model.parameters() if p.requires_grad]
    return torch.cat(params).sum() * 0.0


def reduce_losses(losses: Any, context: DistContext) -> tuple[Any, dict[str, float]]:
    """The losses of this process's share made the global batch's (module docstring), and the
    global batch's loss terms as floats (with "total") for the log.

    losses: `models.losses.Losses` (terms from `items()`, the normaliser `num_positives`).
    Returns (losses to back-propagate, {name: value}). One process: `losses` unchanged. Every
    process must call it at every step (one all-reduce of a small vector)."""
    terms = losses.items()
    num_pos = getattr(losses, "num_positives", None)
    if not context.active:
        logged = {n: float(v.detach()) for n, v in terms}
        logged["total"] = float(losses.total.detach())
        return losses, logged
    device = terms[0][1].device
    local_norm = num_pos.clamp(min=1).float() if num_pos is not None else None
    values = [num_pos.float() if num_pos is not None else torch.zeros((), device=device)]
    for name, value in terms:  # per-positive terms as sums (x their normaliser)
        v = value.detach().float()
        values.append(v * local_norm if _per_positive(name, num_pos) else v)
    summed = torch.stack(values).to(device)
    dist.all_reduce(summed)
    global_norm = summed[0].clamp(min=1)
    logged, scaled = {}, {}
    for (name, value), total in zip(terms, summed[1:]):
        if _per_positive(name, num_pos):
            scaled[name] = value * (local_norm * context.world_size / global_norm)
            logged[name] = float(total / global_norm)
        else:
            logged[name] = float(total / context.world_size)
    logged["total"] = sum(logged.values())
    if num_pos is not None:
        scaled["num_positives"] = summed[0].round().long()
    return dataclasses.replace(losses, **scaled), logged


def _per_positive(name: str, num_pos: torch.Tensor | None) -> bool:
    return num_pos is not None and name in PER_POSITIVE_TERMS
