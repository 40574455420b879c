"""The YOLACT / YOLACT++ family: instance segmentation (things only).

Raw outputs: `YolactOutputs` (loc, conf, coef, proto). Postprocess: decode, Fast NMS and mask
assembly (`postprocess.postprocess_yolact`) -> `Instances`, painted into non-overlapping
segments (where masks overlap the higher score keeps the pixel). `YolactDetector` is shared with
panoptic YOLACT, whose YOLACT part it runs.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from segmentation_ros.structures import ClassTable, Instances, PanopticResult, Segments

from ..config import YolactConfig, with_input_size
from ..family import ModelFamily, PostprocessSettings, register_family
from ..priors import make_priors
from ..yolact import Yolact

EXPORT_NOTES = (
    "The graph ends at the raw heads (loc, conf, coef, proto); decoding, Fast NMS, mask assembly "
    "and YOLACT++'s mask-IoU re-scoring run in torch after any backend."
)


class YolactDetector:
    """YOLACT's postprocess for one network input size: raw outputs of one image -> `Instances`
    (boxes in image pixels, sorted by descending score) on `device`.

    network_config: the `YolactConfig` (priors, postprocess defaults). detector: the `Yolact`
    module (its YOLACT++ mask-IoU head, if any, re-scores the masks in torch).
    """

    def __init__(
        self,
        network_config: YolactConfig,
        detector: Yolact,
        *,
        input_size: tuple[int, int],
        device: torch.device | str,
    ) -> None:
        if tuple(input_size) != tuple(network_config.input_size):
            network_config = with_input_size(network_config, tuple(input_size))
        self.config = network_config
        self.priors = make_priors(network_config, tuple(input_size), device=device)
        self.mask_iou_head = detector.mask_iou_head
        if self.mask_iou_head is not None:
            self.mask_iou_head.to(device)

    def __call__(
        self, raw: Any, image_size: tuple[int, int], settings: PostprocessSettings
    ) -> Instances:
        from segmentation_ros.postprocess import YolactPostprocessParams, postprocess_yolact

        overrides = {"nms": settings.nms} if settings.nms else {}
        params = YolactPostprocessParams.from_config(
            self.config.postprocess,
            score_threshold=min(settings.score_threshold, 0.9999),
            nms_threshold=max(settings.nms_threshold, 1e-3),
            max_detections=settings.max_detections,
            mask_threshold=settings.mask_threshold,
            **overrides,
        )
        return postprocess_yolact(
            raw, self.priors, image_size=image_size, params=params, mask_iou_head=self.mask_iou_head
        )[0]


def paint_instances(instances: Instances, mask_threshold: float) -> PanopticResult:
    """Instances (sorted by descending score) -> non-overlapping segments: the higher score owns
    overlapping pixels (`Instances.id_image`); segment i + 1 is detection i (some may own no
    pixel: `areas` 0)."""
    n = len(instances)
    id_map = instances.id_image(mask_threshold)
    device = id_map.device
    areas = torch.bincount(id_map.flatten().long(), minlength=n + 1)[1:]
    segments = Segments(
        ids=torch.arange(1, n + 1, dtype=torch.int32, device=device),
        class_ids=instances.classes,
        is_thing=torch.ones(n, dtype=torch.bool, device=device),
        scores=instances.scores.float(),
        mask_scores=instances.mask_scores.float(),
        boxes=instances.boxes.float().reshape(-1, 4),
        areas=areas,
    )
    return PanopticResult(id_map, segments, torch.arange(n, device=device))


def yolact_training_losses(yolact, outputs, targets, priors, loss_config, generator):
    """The YOLACT terms (box, class, mask; mask IoU with a YOLACT++ head) of a batch; not the
    auxiliary semantic term (`YolactFamily.training_losses` adds it)."""
    from segmentation_ros.models.losses import yolact_losses

    if priors is None:
        raise ValueError("YOLACT losses need the priors")
    return yolact_losses(
        outputs,
        priors,
        targets,
        loss_config,
        mask_iou_head=yolact.mask_iou_head,
        generator=generator,
    )


class YolactFamily(ModelFamily):
    """YOLACT / YOLACT++ (`models.yolact.Yolact`, `YolactConfig`): things only."""

    kind = "yolact"
    config_type = YolactConfig
    network_type = Yolact
    export_notes = EXPORT_NOTES

    def config_to_dict(self, config: YolactConfig) -> dict[str, Any]:
        from ..config import config_to_dict

        return config_to_dict(config)

    def config_from_dict(self, data: dict[str, Any]) -> YolactConfig:
        from ..config import config_from_dict

        return config_from_dict(data)

    def classes(self, config: YolactConfig) -> ClassTable:
        return ClassTable(config.class_names, (True,) * len(config.class_names))

    def network_config(self, config: YolactConfig) -> YolactConfig:
        return config

    def with_classes(
        self, config: YolactConfig, *, stuff_names: Sequence[str], thing_names: Sequence[str]
    ) -> YolactConfig:
        # An instance model predicts the things only; stuff is left to the data set.
        return dataclasses.replace(config, class_names=tuple(thing_names))

    def with_input_size(self, config: YolactConfig, input_size: tuple[int, int]) -> YolactConfig:
        return with_input_size(config, tuple(input_size))

    def build(self, config: YolactConfig, *, training: bool = False) -> Yolact:
        return Yolact.from_config(config, training=training)

    def official_part(self, model: nn.Module) -> tuple[nn.Module, str]:
        return model, ""

    def postprocessor(self, model, config, *, input_size, device="cpu"):
        detect = YolactDetector(config, model, input_size=input_size, device=device)

        def postprocess(raw: Any, image_size, settings: PostprocessSettings) -> PanopticResult:
            return paint_instances(detect(raw, image_size, settings), settings.mask_threshold)

        return postprocess

    def postprocess_defaults(self, config: YolactConfig) -> PostprocessSettings:
        post = config.postprocess
        return PostprocessSettings(
            score_threshold=post.score_threshold,
            nms_threshold=post.nms_threshold,
            mask_threshold=post.mask_threshold,
            max_detections=post.max_detections,
        )

    def training_priors(self, config: YolactConfig, device) -> Tensor:
        return make_priors(config, config.input_size, device=device)

    def training_losses(self, model, images, targets, priors, loss_config, *, generator=None):
        """YOLACT's losses, plus the auxiliary semantic segmentation loss (official
        `semantic_segmentation_loss`, weight `semantic_aux`) when the model was built for
        training (its `semantic_seg_conv` on P3, the finest FPN level)."""
        if model.semantic_aux_head is None or loss_config.weights.semantic_aux == 0:
            outputs = model(images)
            return self.losses(model, outputs, targets, priors, loss_config, generator=generator)
        # One pass through the trainer's wrapper (DDP, autocast) where there is one: `run`,
        # not the bare method, or DDP would not average the gradients.
        run = getattr(model, "run", None)
        outputs, aux_logits = (
            run("forward_with_aux", images) if run else model.forward_with_aux(images)
        )
        losses = self.losses(model, outputs, targets, priors, loss_config, generator=generator)
        from segmentation_ros.models.losses import semantic_aux_loss

        aux = semantic_aux_loss(aux_logits, targets) * loss_config.weights.semantic_aux
        return dataclasses.replace(losses, semantic_aux=aux)

    def losses(self, model, outputs, targets, priors, loss_config, *, generator=None):
        return yolact_training_losses(model, outputs, targets, priors, loss_config, generator)


YOLACT = register_family(YolactFamily())
