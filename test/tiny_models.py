"""Light randomly initialised checkpoints for tests (saved with models.checkpoint, so loading
runs the real path). Shared by test_pipeline.py and the node tests."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

THINGS = ("person", "car", "cone")
STUFF = ("road", "grass", "sky")


def save_tiny_checkpoints(folder: Path, *, input_size=(64, 64), seed: int = 0) -> dict[str, Path]:
    """{"yolact", "panoptic", "pcv", "mask_rcnn"} -> path: yolact_mobilenetv3,
    panoptic_yolact_mobilenetv3, pcv_mobilenetv3 and mask_rcnn_mobilenetv3 with THINGS (and
    STUFF) at `input_size`, random weights."""
    from segmentation_ros.models import build_model, get_config, save_checkpoint, with_input_size

    torch.manual_seed(seed)
    config = with_input_size(
        dataclasses.replace(get_config("yolact_mobilenetv3"), class_names=THINGS), input_size
    )
    paths = {
        "yolact": folder / "tiny_yolact.pt",
        "panoptic": folder / "tiny_panoptic.pt",
        "pcv": folder / "tiny_pcv.pt",
        "mask_rcnn": folder / "tiny_mask_rcnn.pt",
    }
    save_checkpoint(paths["yolact"], build_model(config))
    _save_panoptic(paths["panoptic"], input_size)
    _save_pcv(paths["pcv"], input_size)
    _save_mask_rcnn(paths["mask_rcnn"], input_size)
    return paths


def _save_mask_rcnn(path: Path, input_size) -> None:
    from segmentation_ros.models import family_of, get_config, save_checkpoint

    family = family_of("mask_rcnn")
    config = family.with_classes(
        get_config("mask_rcnn_mobilenetv3"), stuff_names=STUFF, thing_names=THINGS
    )
    model = family.build(family.with_input_size(config, input_size))
    # Confident masks (random mask logits hover at 0 and lose every pixel to stuff in the fusion).
    torch.nn.init.constant_(model.detector.roi_heads.mask_predictor.mask_fcn_logits.bias, 4.0)
    save_checkpoint(path, model)


def _save_pcv(path: Path, input_size) -> None:
    from segmentation_ros.models import save_checkpoint, with_input_size
    from segmentation_ros.models.pcv import PCV_MOBILENETV3, PCVModel, pcv_with_classes

    config = pcv_with_classes(PCV_MOBILENETV3, stuff_names=STUFF, thing_names=THINGS)
    config = dataclasses.replace(config, network=with_input_size(config.network, input_size))
    save_checkpoint(path, PCVModel.from_config(config))


def _save_panoptic(path: Path, input_size) -> None:
    from segmentation_ros.models import save_checkpoint, with_input_size
    from segmentation_ros.models.panoptic_yolact import (
        PANOPTIC_YOLACT_MOBILENETV3,
        PanopticYolact,
        with_classes,
    )

    config = with_classes(PANOPTIC_YOLACT_MOBILENETV3, stuff_names=STUFF, thing_names=THINGS)
    config = dataclasses.replace(config, yolact=with_input_size(config.yolact, input_size))
    save_checkpoint(path, PanopticYolact.from_config(config))


def save_tiny_yolact_plus(path: Path, *, input_size=(64, 64), seed: int = 0) -> Path:
    """A light YOLACT++-style checkpoint (mask re-scoring head and its postprocess settings,
    MobileNetV3 backbone, no deformable convs), named "tiny_yolact_plus"."""
    from segmentation_ros.models import build_model, get_config, save_checkpoint, with_input_size
    from segmentation_ros.models.config import YOLACT_PLUS_RESNET50

    torch.manual_seed(seed)
    config = dataclasses.replace(
        get_config("yolact_mobilenetv3"),
        name="tiny_yolact_plus",
        class_names=THINGS,
        mask_iou=YOLACT_PLUS_RESNET50.mask_iou,
        postprocess=YOLACT_PLUS_RESNET50.postprocess,
    )
    save_checkpoint(path, build_model(with_input_size(config, input_size)))
    return path


def save_tiny_keypoint_mask_rcnn(path: Path, input_size, seed: int = 0) -> Path:
    """mask_rcnn_mobilenetv3_keypoints with THINGS and STUFF (person keypoints: the synthetic
    world's set) at `input_size`, random weights, confident masks as `_save_mask_rcnn`."""
    from segmentation_ros.models import family_of, get_config, save_checkpoint

    torch.manual_seed(seed)
    family = family_of("mask_rcnn")
    config = family.with_classes(
        get_config("mask_rcnn_mobilenetv3_keypoints"), stuff_names=STUFF, thing_names=THINGS
    )
    model = family.build(family.with_input_size(config, input_size))
    torch.nn.init.constant_(model.detector.roi_heads.mask_predictor.mask_fcn_logits.bias, 4.0)
    save_checkpoint(path, model)
    return path
