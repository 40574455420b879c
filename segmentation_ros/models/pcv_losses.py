"""PCV's training losses: the vote cross-entropy on the voting grid, each pixel weighted as the
reference's `WeightMask` (w-hc/pcv), plus the semantic term (shared with the panoptic YOLACT,
`losses.semantic_term`). See `losses` for the weights and the `Losses` record."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from segmentation_ros.data.transforms import TrainTarget
from segmentation_ros.models.losses import LossConfig, Losses, semantic_term

__all__ = ["pcv_losses", "pcv_targets", "vote_weight_mask"]


def _grid_ids(t: TrainTarget, size: tuple[int, int]) -> Tensor:
    """Segment ids of `t.id_map` on an [h, w] grid (nearest, by pixel centres), int64."""
    h, w = size
    height, width = t.id_map.shape
    device = t.id_map.device
    rows = ((torch.arange(h, device=device) + 0.5) * (height / h)).long().clamp(max=height - 1)
    cols = ((torch.arange(w, device=device) + 0.5) * (width / w)).long().clamp(max=width - 1)
    return t.id_map[rows][:, cols].long()


def pcv_targets(targets: Sequence[TrainTarget], size: tuple[int, int]) -> Tensor:
    """Thing-instance maps [B, h, w] int64 on the voting grid (nearest, by pixel centres):
    > 0 the instance's segment id, 0 stuff, -1 void or crowd (ignored by the vote loss)."""
    maps = []
    for t in targets:
        ids = _grid_ids(t, size)
        device = ids.device
        inst = t.instance_ids.to(device=device, dtype=torch.int64)
        crowd = t.iscrowd.to(device=device, dtype=torch.bool)
        top = max(int(ids.max()) if ids.numel() else 0, int(inst.max()) if len(inst) else 0)
        lut = torch.zeros(top + 1, dtype=torch.int64, device=device)
        lut[inst[~crowd]] = inst[~crowd]
        lut[inst[crowd]] = -1
        lut[0] = -1
        maps.append(lut[ids])
    return torch.stack(maps)


def vote_weight_mask(
    targets: Sequence[TrainTarget], size: tuple[int, int], power: float = 0.5
) -> Tensor:
    """The reference's `WeightMask` (w-hc/pcv `datasets/gt_producer.py`) on the voting grid:
    [B, h, w] float32, 1 / area^power for every pixel of a stuff segment or a non-crowd thing
    instance (area in grid pixels of that segment in its image), 0 on void and crowd."""
    maps = []
    for t in targets:
        ids = _grid_ids(t, size)
        device = ids.device
        area = torch.bincount(ids.flatten().clamp(min=0), minlength=1).float()
        weight = area.clamp(min=1).pow(-power)
        weight[0] = 0.0  # void
        inst = t.instance_ids.to(device=device, dtype=torch.int64)
        crowd_ids = inst[t.iscrowd.to(device=device, dtype=torch.bool)]
        weight[crowd_ids[crowd_ids < weight.numel()]] = 0.0
        maps.append(torch.where(ids > 0, weight[ids.clamp(min=0)], 0.0))
    return torch.stack(maps)


def pcv_losses(
    outputs: Any,
    targets: Sequence[TrainTarget],
    config: LossConfig = LossConfig(),  # noqa: B008 (frozen)
    *,
    vote_config: Any = None,
) -> Losses:
    """PCV losses: vote cross-entropy against `ops.pcv_voting.assign_vote_cells` targets on the
    voting grid (`models.pcv.pcv_vote_loss`, void and crowd ignored, weighted by
    `vote_weight_mask`) x pcv weight, and the
    semantic cross-entropy x semantic weight.

    outputs: `PCVOutputs` (votes [B, 18, h, w], semantic [B, S + T, h, w]).
    vote_config: the model's `VoteConfig` (default table when None).
    """
    from segmentation_ros.models.pcv import pcv_vote_loss
    from segmentation_ros.ops.pcv_voting import VoteConfig, assign_vote_cells

    votes = outputs.votes
    instance_map = pcv_targets(targets, tuple(votes.shape[-2:])).to(votes.device)
    cells = assign_vote_cells(instance_map, config=vote_config or VoteConfig(), ignore_index=-1)
    weights = vote_weight_mask(targets, tuple(votes.shape[-2:])).to(votes.device)
    pcv = pcv_vote_loss(votes, cells, weights, ignore_index=-1) * config.weights.pcv
    semantic = semantic_term(outputs.semantic, targets, config)
    return Losses(semantic=semantic, pcv=pcv)
