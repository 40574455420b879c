"""The panoptic YOLACT family: YOLACT detections fused with semantic logits by UPSNet's
parameter-free panoptic head (`panoptic.fusion.fuse_instances`).

Raw outputs: `PanopticYolactOutputs` (YOLACT's four tensors + semantic [B, S + T, h, w]).
Classes: stuff 0..S-1, then things S..S+T-1. Official YOLACT weights load into `model.yolact`.

YOLACT's auxiliary semantic loss (a training-only 1x1 conv on P3, per-class BCE of the things) is
not added here: the semantic head already supervises the same FPN with a pixel cross-entropy
over stuff and things, which holds the auxiliary loss's signal (the thing masks) and more; a
second head would train the features twice on the same labels. So `model.yolact` is built
without it also for training, and official `semantic_seg_conv` weights are left out.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from torch import Tensor, nn

from segmentation_ros.structures import ClassTable, PanopticResult

from ..config import YolactConfig, with_input_size
from ..family import ModelFamily, PostprocessSettings, register_family
from ..panoptic_yolact import PanopticYolact, PanopticYolactConfig, with_classes
from ..priors import make_priors
from .yolact import EXPORT_NOTES, YolactDetector, yolact_training_losses


class PanopticYolactFamily(ModelFamily):
    """Panoptic YOLACT (`models.panoptic_yolact`): things and stuff."""

    kind = "panoptic_yolact"
    config_type = PanopticYolactConfig
    network_type = PanopticYolact
    export_notes = (
        EXPORT_NOTES + " The semantic logits are a fifth output; the UPSNet fusion runs in torch."
    )

    def classes(self, config: PanopticYolactConfig) -> ClassTable:
        return ClassTable.panoptic(config.stuff_names, config.thing_names)

    def network_config(self, config: PanopticYolactConfig) -> YolactConfig:
        return config.yolact

    def with_classes(
        self,
        config: PanopticYolactConfig,
        *,
        stuff_names: Sequence[str],
        thing_names: Sequence[str],
    ) -> PanopticYolactConfig:
        return with_classes(config, stuff_names=tuple(stuff_names), thing_names=tuple(thing_names))

    def with_input_size(self, config: PanopticYolactConfig, input_size) -> PanopticYolactConfig:
        return dataclasses.replace(config, yolact=with_input_size(config.yolact, tuple(input_size)))

    def official_part(self, model: nn.Module) -> tuple[nn.Module, str]:
        return model.yolact, "yolact."

    def postprocessor(self, model, config, *, input_size, device="cpu"):
        from segmentation_ros.panoptic.fusion import fuse_instances

        detect = YolactDetector(config.yolact, model.yolact, input_size=input_size, device=device)
        fusion_options = dataclasses.asdict(config.fusion)  # fuse_instances' keywords

        def postprocess(raw: Any, image_size, settings: PostprocessSettings) -> PanopticResult:
            return fuse_instances(
                detect(raw, image_size, settings),
                raw.semantic[0],
                num_stuff=config.num_stuff,
                image_size=image_size,
                **fusion_options,
            )

        return postprocess

    def postprocess_defaults(self, config: PanopticYolactConfig) -> PostprocessSettings:
        from .yolact import YOLACT

        return YOLACT.postprocess_defaults(config.yolact)

    def training_priors(self, config: PanopticYolactConfig, device) -> Tensor:
        return make_priors(config.yolact, config.input_size, device=device)

    def losses(self, model, outputs, targets, priors, loss_config, *, generator=None):
        from segmentation_ros.models.losses import semantic_term

        losses = yolact_training_losses(
            model.yolact, outputs, targets, priors, loss_config, generator
        )
        semantic = semantic_term(outputs.semantic, targets, loss_config)
        return dataclasses.replace(losses, semantic=semantic)


PANOPTIC_YOLACT = register_family(PanopticYolactFamily())
