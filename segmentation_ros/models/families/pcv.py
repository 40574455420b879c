"""The PCV family (Pixel Consensus Voting, Wang et al., CVPR 2020): votes + semantic logits ->
panoptic segments (`panoptic.pcv_inference.pcv_panoptic`), no detector and no boxes.

Raw outputs: `PCVOutputs` (votes [B, 18, h, w], semantic [B, S + T, h, w]). Classes: stuff
0..S-1, then things S..S+T-1. Official YOLACT weights load into its backbone and FPN only.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from segmentation_ros.structures import ClassTable, PanopticResult

from ..config import YolactConfig, with_input_size
from ..family import ModelFamily, PostprocessSettings, register_family
from ..pcv import PCVConfig, PCVModel, pcv_with_classes


def keep_best_things(result: PanopticResult, settings: PostprocessSettings) -> PanopticResult:
    """Drop thing segments scoring below `settings.score_threshold` or beyond the
    `max_detections` best (their pixels become void); stuff stays."""
    seg = result.segments
    keep = ~seg.is_thing | (seg.scores >= settings.score_threshold)
    ranked = torch.nonzero(keep & seg.is_thing).flatten()
    ranked = ranked[torch.argsort(-seg.scores[ranked], stable=True)]
    keep[ranked[settings.max_detections :]] = False
    size = int(seg.ids.max()) + 1 if len(seg) else 1
    lut = torch.zeros(size, dtype=torch.int32, device=result.id_map.device)
    lut[seg.ids[keep].long()] = seg.ids[keep]
    return PanopticResult(lut[result.id_map.long()], seg[keep])


class PCVFamily(ModelFamily):
    """PCV (`models.pcv.PCVModel`, `PCVConfig`): things and stuff."""

    kind = "pcv"
    config_type = PCVConfig
    network_type = PCVModel
    export_notes = (
        "The graph ends at the vote and semantic logits; voting, back-projection and the "
        "panoptic assembly run in torch (a Triton back-projection kernel on CUDA)."
    )

    def classes(self, config: PCVConfig) -> ClassTable:
        return ClassTable.panoptic(config.stuff_names, config.thing_names)

    def network_config(self, config: PCVConfig) -> YolactConfig:
        return config.network

    def with_classes(
        self, config: PCVConfig, *, stuff_names: Sequence[str], thing_names: Sequence[str]
    ) -> PCVConfig:
        return pcv_with_classes(
            config, stuff_names=tuple(stuff_names), thing_names=tuple(thing_names)
        )

    def with_input_size(self, config: PCVConfig, input_size) -> PCVConfig:
        return dataclasses.replace(config, network=with_input_size(config.network, input_size))

    def official_part(self, model: nn.Module) -> tuple[nn.Module, str]:
        return model.backbone_fpn, "backbone_fpn."

    def postprocessor(self, model, config, *, input_size, device="cpu"):
        from segmentation_ros.panoptic.pcv_inference import pcv_panoptic

        def postprocess(raw: Any, image_size, settings: PostprocessSettings) -> PanopticResult:
            result = pcv_panoptic(
                raw.votes[0],
                raw.semantic[0],
                num_stuff=config.num_stuff,
                image_size=image_size,
                vote_config=config.vote,
            )
            return keep_best_things(result, settings)

        return postprocess

    def losses(self, model, outputs, targets, priors, loss_config, *, generator=None):
        from segmentation_ros.models.pcv_losses import pcv_losses

        return pcv_losses(outputs, targets, loss_config, vote_config=model.config.vote)


PCV = register_family(PCVFamily())
