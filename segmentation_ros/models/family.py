"""Model families: each one registered object beside its architectures, looked up once.

A family (YOLACT / YOLACT++, panoptic YOLACT, PCV, ...) says everything the rest of the package
needs to know about its models; nobody else branches on a family's name or config class:

    family = family_of(config)            # or family_of("pcv"), the checkpoint's "kind"
    model = family.build(config)
    post = family.postprocessor(model, config, input_size=(320, 320), device="cpu")
    result = post(model(x), image_size=(480, 640), settings=PostprocessSettings())

The methods (`ModelFamily`):
- config: `config_type`, `config_to_dict` / `config_from_dict` (checkpoint "config"),
  `classes` (the `ClassTable` its results use), `network_config` (the `YolactConfig` that
  describes the network input: size and normalisation), `with_classes`, `with_input_size`;
- weights: `build`, `official_part` / `load_official` (where official weights go);
- inference: `postprocessor` -> a callable turning one image's raw outputs into the one result
  (`structures.PanopticResult`: id map + `Segments`), `postprocess_defaults`;
- training: `training_priors`, `training_losses` / `losses` (the hooks `train.trainer` calls);
- export: `export_notes`.

Adding a family is one module in `models/families/` that subclasses `ModelFamily` and calls
`register_family`; `kind` is the name written into checkpoints (keep it once released).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from segmentation_ros.structures import ClassTable, PanopticResult

__all__ = [
    "ModelFamily",
    "PostprocessSettings",
    "Postprocessor",
    "all_families",
    "family_of",
    "register_family",
]


@dataclass(frozen=True)
class PostprocessSettings:
    """Per-frame postprocess settings (any may change between frames).

    score_threshold: detections (things) at or below it are dropped. nms_threshold: box IoU above
    which Fast NMS suppresses the lower score. mask_threshold: mask probability of a foreground
    pixel. max_detections: at most this many thing segments. nms: "fast" or "cross_class"
    (YOLACT), "" for the model's default.
    """

    score_threshold: float = 0.3
    nms_threshold: float = 0.5
    mask_threshold: float = 0.5
    max_detections: int = 50
    nms: str = ""


#: One image's raw outputs (batch of one) -> its segments: (raw, image_size (H, W), settings).
Postprocessor = Callable[[Any, tuple[int, int], PostprocessSettings], PanopticResult]


class ModelFamily:
    """What a family of models brings (see the module docstring). Subclasses set the class
    attributes and implement the methods that raise NotImplementedError."""

    #: The checkpoint's "kind" field (never rename a released one).
    kind: ClassVar[str]
    #: The family's frozen config dataclass and network class (`network_type.from_config`).
    config_type: ClassVar[type]
    network_type: ClassVar[type]
    #: How its models export (ONNX / TensorRT): which outputs, what runs outside the graph.
    export_notes: ClassVar[str] = ""

    # -- config -------------------------------------------------------------------------------

    def config_to_dict(self, config: Any) -> dict[str, Any]:
        """The config as nested plain data (JSON and `weights_only` safe)."""
        from .config_io import to_plain

        return to_plain(config)

    def config_from_dict(self, data: dict[str, Any]) -> Any:
        """Inverse of `config_to_dict`; unknown keys raise ValueError."""
        from .config_io import from_plain

        return from_plain(self.config_type, data, "config")

    def classes(self, config: Any) -> ClassTable:
        """The class table of the model's results (class id = index)."""
        raise NotImplementedError

    def keypoint_names(self, config: Any) -> tuple[str, ...]:
        """Names of the K keypoints the model's results carry (`Segments.keypoints`); () for a
        model without keypoints (the default)."""
        return ()

    def network_config(self, config: Any) -> Any:
        """The `YolactConfig` describing the network input (size, normalisation)."""
        raise NotImplementedError

    def with_classes(
        self, config: Any, *, stuff_names: Sequence[str], thing_names: Sequence[str]
    ) -> Any:
        """`config` predicting these classes (new head sizes, random init)."""
        raise NotImplementedError

    def with_input_size(self, config: Any, input_size: tuple[int, int]) -> Any:
        """`config` at another network input size (H, W); anchor scales follow it."""
        raise NotImplementedError

    # -- weights ------------------------------------------------------------------------------

    def build(self, config: Any, *, training: bool = False) -> nn.Module:
        """A randomly initialised network for `config`. `training`: with the heads that only
        the training losses use (YOLACT's auxiliary semantic head); inference builds without
        them, and their weights in a checkpoint are then left out (`models.checkpoint`)."""
        return self.network_type.from_config(config)

    def official_part(self, model: nn.Module) -> tuple[nn.Module, str]:
        """The submodule that takes official dbolya/yolact weights (a `Yolact`, or a backbone
        with FPN) and its key prefix in `model.state_dict()`."""
        raise NotImplementedError(f"{self.kind} models take no official YOLACT weights")

    def load_official(self, model: nn.Module, state_dict: Any) -> nn.Module:
        """Load an official (config-less) state dict strictly into `model`; the parts it does
        not cover keep their initialisation. Default: official YOLACT weights into
        `official_part` (a family with other official weights overrides this)."""
        from .checkpoint import load_official_checkpoint

        part, _ = self.official_part(model)
        load_official_checkpoint(part, state_dict)
        return model

    # -- inference ----------------------------------------------------------------------------

    def postprocessor(
        self,
        model: nn.Module,
        config: Any,
        *,
        input_size: tuple[int, int],
        device: torch.device | str = "cpu",
    ) -> Postprocessor:
        """The postprocess of one image's raw outputs for a network at `input_size`, whichever
        backend ran it; the result is on `device`, segments with pixels only."""
        raise NotImplementedError

    def postprocess_defaults(self, config: Any) -> PostprocessSettings:
        """The settings the model was designed with (thresholds of its config)."""
        return PostprocessSettings()

    # -- training -----------------------------------------------------------------------------

    def training_priors(self, config: Any, device: torch.device | str) -> Tensor | None:
        """What the losses need besides outputs and targets (YOLACT: the priors), or None."""
        return None

    def training_losses(
        self,
        model: nn.Module,
        images: Tensor,
        targets: Sequence[Any],
        priors: Tensor | None,
        loss_config: Any,
        *,
        generator: torch.Generator | None = None,
    ) -> Any:
        """One training forward pass and its `models.losses.Losses` (what the trainer calls).
        Default: `losses` of `model(images)`; a model that needs the targets in its forward
        (torchvision's detectors) overrides this."""
        outputs = model(images)
        return self.losses(model, outputs, targets, priors, loss_config, generator=generator)

    def losses(
        self,
        model: nn.Module,
        outputs: Any,
        targets: Sequence[Any],
        priors: Tensor | None,
        loss_config: Any,
        *,
        generator: torch.Generator | None = None,
    ) -> Any:
        """The `models.losses.Losses` of one batch."""
        raise NotImplementedError


_BY_KIND: dict[str, ModelFamily] = {}
_BY_CONFIG: dict[type, ModelFamily] = {}


def register_family(family: ModelFamily) -> ModelFamily:
    """Register `family` (an instance) under its `kind` and config type; returns it."""
    if family.kind in _BY_KIND or family.config_type in _BY_CONFIG:
        raise ValueError(f"model family {family.kind!r} is already registered")
    _BY_KIND[family.kind] = family
    _BY_CONFIG[family.config_type] = family
    return family


def all_families() -> tuple[ModelFamily, ...]:
    """Every registered family, in registration order."""
    _load()
    return tuple(_BY_KIND.values())


def family_of(config_or_kind: Any) -> ModelFamily:
    """The family of a model config, or of a checkpoint's kind name (ValueError / TypeError
    naming the known ones)."""
    _load()
    if isinstance(config_or_kind, str):
        try:
            return _BY_KIND[config_or_kind]
        except KeyError:
            known = ", ".join(_BY_KIND)
            raise ValueError(f"unknown model kind {config_or_kind!r}; known: {known}") from None
    try:
        return _BY_CONFIG[type(config_or_kind)]
    except KeyError:
        known = ", ".join(t.__name__ for t in _BY_CONFIG)
        raise TypeError(
            f"expected a model name or a model config ({known}), got "
            f"{type(config_or_kind).__name__}"
        ) from None


def _load() -> None:
    # The family modules import the architectures (and these import this module's helpers):
    # registering on first use keeps the import order free.
    importlib.import_module(f"{__package__}.families")
