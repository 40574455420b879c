"""Fine-tuning from official dbolya/yolact weights: load what fits, re-initialise the rest.

An official checkpoint was trained on COCO's 80 classes; a model for other classes has other
shapes for its class-dependent layers (the confidence conv of the prediction head, the last
conv of the YOLACT++ mask-IoU net) and, for panoptic YOLACT, a semantic head the checkpoint
does not have. `load_for_finetuning` copies every tensor whose name and shape agree (backbone,
FPN, protonet, box / coefficient convs, ...), keeps the model's fresh initialisation for the
others, and reports which is which.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from segmentation_ros.models.checkpoint import (
    CheckpointError,
    official_state_dict,
    training_heads,
)
from segmentation_ros.models.family import family_of

__all__ = ["FinetuneReport", "load_for_finetuning"]


def _modules(keys: Iterable[str]) -> tuple[str, ...]:
    """Module names of parameter / buffer keys (`a.b.weight` -> `a.b`), first-seen order."""
    seen: dict[str, None] = {}
    for key in keys:
        seen.setdefault(key.rpartition(".")[0] or key, None)
    return tuple(seen)


@dataclass(frozen=True)
class FinetuneReport:
    """What `load_for_finetuning` did (state-dict keys of the model).

    loaded:        copied from the checkpoint.
    reinitialized: in both, shapes differ (class-dependent layers): the model's init is kept.
    missing:       only in the model (e.g. a semantic head): the model's init is kept.
    unused:        checkpoint keys (its own names) with no place in the model, after the
                   official drops; ignored.
    """

    loaded: tuple[str, ...]
    reinitialized: tuple[str, ...]
    missing: tuple[str, ...]
    unused: tuple[str, ...]

    def summary(self) -> str:
        """A few readable lines naming the modules (not every tensor)."""
        lines = [f"loaded {len(self.loaded)} tensors from the official checkpoint"]
        for what, keys in (
            ("re-initialised (shape differs: class-dependent)", self.reinitialized),
            ("not in the checkpoint (fresh init)", self.missing),
            ("in the checkpoint but unused", self.unused),
        ):
            if keys:
                mods = _modules(keys)
                more = f", ... ({len(mods) - 8} more)" if len(mods) > 8 else ""
                shown = ", ".join(mods[:8]) + more
                lines.append(f"{what}: {shown}")
        return "\n".join(lines)


def load_for_finetuning(
    model: nn.Module, path_or_state_dict: str | os.PathLike | Mapping[str, Tensor]
) -> FinetuneReport:
    """Load official YOLACT weights into `model` where names and shapes agree, in the part its
    family names (`ModelFamily.official_part`: a `Yolact`, a `PanopticYolact`'s `.yolact`, a
    `PCVModel`'s backbone and FPN).

    The official `load_weights` drops are applied first (old backbone names, surplus FPN
    downsample layers, training-only heads the model lacks). Raises CheckpointError if the file
    is not a state dict, is one of our checkpoints, or nothing at all fits (wrong architecture).
    """
    if isinstance(path_or_state_dict, Mapping):
        state = path_or_state_dict
    else:
        try:
            state = torch.load(path_or_state_dict, map_location="cpu", weights_only=True)
        except FileNotFoundError:
            raise
        except Exception as exc:  # unpickling errors have many types
            raise CheckpointError(f"cannot read {os.fspath(path_or_state_dict)!r}: {exc}") from exc
    if not isinstance(state, Mapping) or not all(isinstance(v, Tensor) for v in state.values()):
        raise CheckpointError("expected a state dict of tensors (official YOLACT weights)")
    if "format" in state or "state_dict" in state:
        raise CheckpointError("this is a segmentation_ros checkpoint, not official weights")
    target, prefix = family_of(model.config).official_part(model)
    mapped = official_state_dict(
        state,
        target.fpn.num_downsample,
        target.fpn.use_conv_downsample,
        keep=training_heads(target),  # a model built for training takes semantic_seg_conv
    )
    mapped = {prefix + k: v for k, v in mapped.items()}
    own = model.state_dict()
    loaded = [k for k in own if k in mapped and mapped[k].shape == own[k].shape]
    reinit = [k for k in own if k in mapped and mapped[k].shape != own[k].shape]
    missing = [k for k in own if k not in mapped]
    unused = [k[len(prefix) :] for k in mapped if k not in own]  # the checkpoint's names
    weights = [k for k in loaded if not k.endswith("num_batches_tracked")]
    if not weights:
        raise CheckpointError(
            "no tensor of the checkpoint fits the model: is it the same architecture? "
            f"(checkpoint modules: {', '.join(_modules(mapped)[:5])} ...)"
        )
    with torch.no_grad():
        for k in loaded:
            own[k].copy_(mapped[k])
    return FinetuneReport(tuple(loaded), tuple(reinit), tuple(missing), tuple(unused))
