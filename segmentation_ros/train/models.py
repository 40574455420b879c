"""Models to train: a registered architecture given the data set's classes.

    model = build_training_model("yolact_mobilenetv3", dataset.categories)
    model = build_training_model("panoptic_yolact_mobilenetv3", dataset.categories, (320, 320))
    model = build_training_model("pcv_mobilenetv3", dataset.categories)

YOLACT models take the data set's thing classes; panoptic YOLACT and PCV also its stuff classes
(their semantic heads predict S + T, stuff first): the model's family decides
(`models.family.ModelFamily.with_classes`). Every model is randomly initialised (fine-tune
official weights with `train.finetune.load_for_finetuning`) and built for training: with the
training-only heads of its family (YOLACT's auxiliary semantic head `semantic_seg_conv`).
"""

from __future__ import annotations

from typing import Any

from torch import nn

from segmentation_ros.data.datasets import CategoryMapping
from segmentation_ros.models import registry
from segmentation_ros.models.family import family_of

__all__ = [
    "build_from_config",
    "build_training_model",
    "find_config",
    "training_model_names",
]


def training_model_names() -> tuple[str, ...]:
    """Every architecture name `build_training_model` accepts (the model registry)."""
    return registry.available_models()


def find_config(name: str) -> Any:
    """The registered config of architecture `name` (ValueError listing the names)."""
    return registry.get_config(name)


def build_from_config(config: Any) -> nn.Module:
    """A randomly initialised model for a registered family's config, built for training."""
    return family_of(config).build(config, training=True)


def build_training_model(
    name_or_config: Any,
    categories: CategoryMapping,
    input_size: tuple[int, int] | None = None,
) -> nn.Module:
    """The model `name_or_config` predicting `categories` (things; stuff too for panoptic YOLACT
    and PCV).

    input_size: (height, width) of the network input; default the config's. YOLACT anchor
    scales follow the input size (`models.config.with_input_size`).
    """
    config = find_config(name_or_config) if isinstance(name_or_config, str) else name_or_config
    family = family_of(config)  # TypeError naming the config types
    config = family.with_classes(
        config, stuff_names=categories.stuff_names, thing_names=categories.thing_names
    )
    if input_size is not None:
        config = family.with_input_size(config, tuple(input_size))
    return family.build(config, training=True)
