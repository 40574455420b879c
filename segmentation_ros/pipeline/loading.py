"""A model file -> a `LoadedModel`: the network, its family and its class table.

One loading path (`models.checkpoint.load_for_inference`); this module adds the embedded default
model and the node's wording (its `checkpoint` and `model` parameters).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from segmentation_ros.models.family import ModelFamily, family_of
from segmentation_ros.structures import ClassTable

__all__ = ["LoadedModel", "calibration_batches", "load_model", "resolve_checkpoint"]


@dataclass(frozen=True)
class LoadedModel:
    """A network ready for inference and what the pipeline needs to know about it.

    model: the network (eval mode). family: its `models.family.ModelFamily`. config: its config
    (the family's config type). checkpoint: the file it came from.
    """

    model: nn.Module
    family: ModelFamily
    config: Any
    checkpoint: Path

    @property
    def kind(self) -> str:
        """The family's name ("yolact", "panoptic_yolact", "pcv", ...)."""
        return self.family.kind

    @property
    def name(self) -> str:
        """The model's registry name."""
        return self.config.name

    @property
    def network_config(self) -> Any:
        """The `YolactConfig` describing the network input (size, normalisation)."""
        return self.family.network_config(self.config)

    @property
    def classes(self) -> ClassTable:
        return self.family.classes(self.config)


def _default_checkpoint() -> Path:
    # Read on the package at call time: tools and tests point it elsewhere.
    from segmentation_ros import pipeline

    return pipeline.DEFAULT_CHECKPOINT


def resolve_checkpoint(checkpoint: str | Path | None) -> Path:
    """The checkpoint path to load: `checkpoint`, or the embedded default when empty.

    Raises FileNotFoundError saying which file is missing and what to set.
    """
    if checkpoint:
        path = Path(checkpoint).expanduser()
        if not path.is_file():
            what = "is a directory" if path.is_dir() else "is not a regular file"
            what = what if path.exists() else "does not exist"
            raise FileNotFoundError(f"checkpoint {str(path)!r} {what}; expected a .pt / .pth file")
        return path
    default = _default_checkpoint()
    if not default.is_file():
        raise FileNotFoundError(
            f"the embedded default model {str(default)!r} is not installed (not "
            "trained yet?); set the `checkpoint` parameter to a model file"
        )
    return default


def load_model(checkpoint: str | Path | None, model_name: str = "") -> LoadedModel:
    """Load a checkpoint: ours (it carries its config and family) or official YOLACT weights (a
    plain state dict: `model_name` must name the registered architecture).

    checkpoint: a path, or empty / None for the embedded weights of `model_name`
        (`embedded_weights`), else the embedded default model.
    model_name: when given, must match the checkpoint's model (ValueError otherwise).
    Raises FileNotFoundError, ValueError / CheckpointError with a message that says what to fix.
    """
    from segmentation_ros.models.checkpoint import load_for_inference

    embedded = not checkpoint
    path = (embedded and embedded_weights(model_name)) or resolve_checkpoint(checkpoint)
    model, config = load_for_inference(path, None if embedded else (model_name or None))
    if model_name and model_name != config.name:  # only the embedded model gets here
        raise ValueError(
            f"model {model_name!r} has no embedded weights (the embedded default model is "
            f"{config.name!r}): set the `checkpoint` parameter to its weights"
        )
    return LoadedModel(model, family_of(config), config, path)


def embedded_weights(model_name: str) -> Path | None:
    """The weights the package ships for architecture `model_name` (`weights/<name>.pt` beside
    the default model, e.g. the light PCV), or None."""
    if not model_name:
        return None
    path = _default_checkpoint().parent / f"{model_name}.pt"
    return path if path.is_file() else None


def calibration_batches(spec: str, network_config: Any, input_size, *, count: int = 64):
    """Up to `count` preprocessed images ([1, 3, H, W] float32 each) of the data set `spec`
    (`data.datasets.open_dataset` forms), for TensorRT int8 calibration."""
    from segmentation_ros.data.datasets import open_dataset
    from segmentation_ros.models.preprocess import preprocess

    dataset = open_dataset(spec)
    if len(dataset) == 0:
        raise ValueError(f"calibration data {spec!r} holds no images")
    step = max(1, len(dataset) // count)
    return [
        preprocess(dataset[i].image, network_config, input_size=input_size)
        for i in range(0, len(dataset), step)[:count]
    ]
