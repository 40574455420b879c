"""Checkpoint I/O: the official dbolya/yolact weights, and our own checkpoints carrying config.

Official checkpoints (`yolact_base_54_800000.pth`, `yolact_plus_resnet50_54_800000.pth`, ...) are
plain state dicts whose key names are ours (our modules use the official names). Loading applies
the official `Yolact.load_weights` drops, leaves out the training-only heads the model lacks
(a model built for training, `ModelFamily.build(config, training=True)`, takes the auxiliary
semantic head `semantic_seg_conv`), then loads strictly; any difference raises
`CheckpointError` naming the missing, unexpected and mis-shaped keys. Our checkpoints are a
dict {"format", "kind" (the model family's name, `models.family`: "yolact" | "panoptic_yolact"
| "pcv"), "config" (plain dict), "state_dict", "extra"}; files without "kind" are YOLACT. A
training checkpoint may hold training-only heads: loading it for inference leaves them out.
`load_for_inference` is the one way in for both kinds of file.
Files are always read with `torch.load(path, map_location="cpu", weights_only=True)`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

import torch
from torch import Tensor, nn

from .config import YolactConfig
from .family import family_of

FORMAT = "segmentation_ros.yolact/1"

# Official training-only modules (`use_semantic_segmentation_loss`, `use_class_existence_loss`):
# present in the released checkpoints, unused at inference. We build `semantic_seg_conv` for
# training (YOLACT's auxiliary semantic loss); `class_existence_fc` never.
TRAINING_ONLY_PREFIXES = ("semantic_seg_conv.", "class_existence_fc.")

_MAX_LISTED = 8


class CheckpointError(ValueError):
    """A checkpoint does not fit the model (the message lists the differing keys)."""


class Checkpoint(NamedTuple):
    """Our checkpoint file, read: the config, the weights and the caller's extra data."""

    config: Any  # a registered family's config (`models.family`)
    state_dict: dict[str, Tensor]
    extra: dict[str, Any]


def _read(path: str | os.PathLike) -> Any:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as exc:  # unpickling errors have many types
        raise CheckpointError(f"cannot read checkpoint {os.fspath(path)!r}: {exc}") from exc


def official_state_dict(
    state_dict: Mapping[str, Tensor],
    num_downsample: int,
    use_conv_downsample: bool = True,
    *,
    keep: Iterable[str] = (),
) -> dict[str, Tensor]:
    """An official state dict with the official `load_weights` drops applied.

    Drops `backbone.layerN.*` (pre-`layers` names), `fpn.downsample_layers.i` for
    i >= num_downsample (v1.0 weights), and the training-only heads except those in `keep`
    (prefixes of `TRAINING_ONLY_PREFIXES`: the heads the receiving model has).
    """
    dropped = tuple(p for p in TRAINING_ONLY_PREFIXES if p not in set(keep))
    kept = num_downsample if use_conv_downsample else 0
    out = {}
    for key, value in state_dict.items():
        if key.startswith("backbone.layer") and not key.startswith("backbone.layers"):
            continue
        if key.startswith("fpn.downsample_layers.") and int(key.split(".")[2]) >= kept:
            continue
        if key.startswith(dropped):
            continue
        out[key] = value
    return out


def training_heads(model: nn.Module) -> tuple[str, ...]:
    """The `TRAINING_ONLY_PREFIXES` of the heads `model` (a `Yolact`) has."""
    return tuple(p for p in TRAINING_ONLY_PREFIXES if hasattr(model, p[:-1]))


def without_training_heads(state_dict: Mapping[str, Tensor], model: nn.Module) -> dict[str, Tensor]:
    """`state_dict` less the training-only head weights (`TRAINING_ONLY_PREFIXES`, at any depth:
    `semantic_seg_conv.weight`, `yolact.semantic_seg_conv.bias`) that `model` has no place for
    (a training checkpoint loaded into a model built for inference)."""
    own = model.state_dict().keys()
    return {
        k: v
        for k, v in state_dict.items()
        if k in own or not any(k.startswith(p) or f".{p}" in k for p in TRAINING_ONLY_PREFIXES)
    }


def load_official_checkpoint(
    model: nn.Module, path_or_state_dict: str | os.PathLike | Mapping[str, Tensor], *, assign=False
) -> nn.Module:
    """Load official dbolya/yolact weights into `model` (a `Yolact`), strictly.

    Args:
        model: built from the matching config (e.g. `build_model("yolact_plus_resnet50")`).
        path_or_state_dict: a `.pth` file or an already loaded state dict.
        assign: passed to `load_state_dict` (lets a model built on the meta device take the
            checkpoint tensors without a copy).

    Returns the model. Raises CheckpointError if keys are missing / unexpected / mis-shaped.
    """
    if isinstance(path_or_state_dict, Mapping):
        state_dict = path_or_state_dict
    else:
        state_dict = _read(path_or_state_dict)
    if not isinstance(state_dict, Mapping):
        raise CheckpointError(f"expected a state dict, got {type(state_dict).__name__}")
    if "format" in state_dict and "state_dict" in state_dict:
        raise CheckpointError("this is a segmentation_ros checkpoint: use load_checkpoint()")
    fpn = model.fpn
    mapped = official_state_dict(
        state_dict, fpn.num_downsample, fpn.use_conv_downsample, keep=training_heads(model)
    )
    _load_strict(model, mapped, assign=assign)
    return model


def _load_strict(model: nn.Module, state_dict: Mapping[str, Any], *, assign: bool) -> None:
    bad_values = [k for k, v in state_dict.items() if not isinstance(v, Tensor)]
    if bad_values:
        raise CheckpointError(f"non-tensor entries in the state dict: {_short(bad_values)}")
    expected = model.state_dict()
    state_dict = dict(state_dict)
    for key, value in expected.items():
        # Checkpoints from before BatchNorm counted batches lack these; they are not weights.
        if key.endswith("num_batches_tracked") and key not in state_dict:
            state_dict[key] = value.clone() if value.device.type != "meta" else torch.tensor(0)
    missing = sorted(set(expected) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(expected))
    misshaped = sorted(
        f"{k}: checkpoint {tuple(state_dict[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in set(expected) & set(state_dict)
        if state_dict[k].shape != expected[k].shape
    )
    if missing or unexpected or misshaped:
        raise CheckpointError(_mismatch_message(missing, unexpected, misshaped, state_dict, model))
    model.load_state_dict(state_dict, strict=True, assign=assign)


def _short(keys: Iterable[str]) -> str:
    """Keys grouped by module (`a.b.{weight,bias}`), at most _MAX_LISTED groups."""
    groups: dict[str, list[str]] = {}
    for key in keys:
        module, _, param = key.rpartition(".")
        groups.setdefault(module, []).append(param)
    items = [
        f"{m}.{{{','.join(p)}}}" if len(p) > 1 else f"{m}.{p[0]}" if m else p[0]
        for m, p in groups.items()
    ]
    more = len(items) - _MAX_LISTED
    text = ", ".join(items[:_MAX_LISTED])
    return text + (f", ... ({more} more modules)" if more > 0 else "")


def _mismatch_message(
    missing: list[str],
    unexpected: list[str],
    misshaped: list[str],
    state_dict: Mapping[str, Tensor],
    model: nn.Module,
) -> str:
    lines = ["checkpoint does not fit the model:"]
    if missing:
        lines.append(f"  missing ({len(missing)}): {_short(missing)}")
    if unexpected:
        lines.append(f"  unexpected ({len(unexpected)}): {_short(unexpected)}")
    if misshaped:
        shown = "; ".join(misshaped[:_MAX_LISTED])
        more = len(misshaped) - _MAX_LISTED
        lines.append(
            f"  mis-shaped ({len(misshaped)}): {shown}"
            + (f"; ... ({more} more)" if more > 0 else "")
        )
    lines += [f"  hint: {h}" for h in _hints(missing, unexpected, state_dict, model)]
    return "\n".join(lines)


def _hints(
    missing: list[str], unexpected: list[str], state_dict: Mapping[str, Tensor], model: nn.Module
) -> list[str]:
    hints = []
    if any(k.startswith("maskiou_net.") for k in unexpected):
        hints.append("the checkpoint has a mask-IoU net: it is YOLACT++ (yolact_plus_*)")
    if any(k.startswith("maskiou_net.") for k in missing):
        hints.append("the model is YOLACT++ but the checkpoint has no mask-IoU net (YOLACT v1?)")
    if any("conv_offset_mask" in k for k in unexpected):
        hints.append("the checkpoint has deformable convs: it is YOLACT++ (yolact_plus_*)")
    if any("conv_offset_mask" in k for k in missing):
        hints.append("the model has deformable convs but the checkpoint has none (YOLACT v1?)")
    if any(k.startswith("backbone._preconv") for k in state_dict) != hasattr(
        model.backbone, "_preconv"
    ):
        hints.append("backbone family differs (DarkNet-53 vs ResNet)")
    depth = _resnet_stage3_blocks(state_dict.keys())
    model_depth = _resnet_stage3_blocks(model.state_dict().keys())
    if depth and model_depth and depth != model_depth:
        names = {6: "ResNet-50", 23: "ResNet-101", 36: "ResNet-152"}
        hints.append(
            f"ResNet depth differs: checkpoint stage 3 has {depth} blocks "
            f"({names.get(depth, '?')}), model {model_depth} ({names.get(model_depth, '?')})"
        )
    conf = state_dict.get("prediction_layers.0.conf_layer.bias")
    if conf is not None and hasattr(model, "prediction_layers"):
        head = model.prediction_layers[0]
        ckpt_classes = conf.shape[0] // head.num_anchors - 1
        if conf.shape[0] != head.conf_layer.bias.shape[0] and conf.shape[0] % head.num_anchors == 0:
            hints.append(
                f"the checkpoint predicts {ckpt_classes} classes, the model "
                f"{head.num_classes - 1}: set class_names to match"
            )
    return hints


def _resnet_stage3_blocks(keys: Iterable[str]) -> int:
    pattern = re.compile(r"^backbone\.layers\.2\.(\d+)\.conv1\.weight$")
    blocks = [int(m.group(1)) for k in keys if (m := pattern.match(k))]
    return max(blocks) + 1 if blocks else 0


def save_checkpoint(
    path: str | os.PathLike,
    model: nn.Module,
    config: YolactConfig | None = None,
    extra: Mapping[str, Any] | None = None,
) -> None:
    """Save `model` with its config (as a plain dict, class names included).

    config: default `model.config`. extra: plain data (numbers, strings, lists, dicts, tensors),
    e.g. {"epoch": 12, "metrics": {...}}; it must load with `weights_only=True`.
    """
    config = config if config is not None else getattr(model, "config", None)
    if config is None:
        raise ValueError("save_checkpoint needs the model's config (pass config=...)")
    torch.save(_payload(config, model.state_dict(), extra), path)


def _payload(config: Any, state_dict: Mapping[str, Tensor], extra: Mapping[str, Any] | None):
    try:
        family = family_of(config)
    except TypeError as exc:
        raise ValueError(f"cannot save this model: {exc}") from None
    return {
        "format": FORMAT,
        "kind": family.kind,
        "config": family.config_to_dict(config),
        "state_dict": dict(state_dict),
        "extra": dict(extra or {}),
    }


def read_checkpoint(path: str | os.PathLike) -> Checkpoint:
    """Read one of our checkpoints without building the model."""
    data = _read(path)
    if not isinstance(data, Mapping) or data.get("format") != FORMAT:
        found = data.get("format") if isinstance(data, Mapping) else type(data).__name__
        hint = " (official YOLACT weights: use load_official_checkpoint)"
        raise CheckpointError(f"{os.fspath(path)!r} is not a {FORMAT} checkpoint: {found!r}{hint}")
    try:
        family = family_of(str(data.get("kind", "yolact")))
    except ValueError as exc:
        raise CheckpointError(f"{os.fspath(path)!r}: {exc}") from None
    try:
        config = family.config_from_dict(data["config"])
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"invalid config in {os.fspath(path)!r}: {exc}") from exc
    return Checkpoint(config, dict(data["state_dict"]), dict(data.get("extra") or {}))


def load_checkpoint(path: str | os.PathLike) -> tuple[nn.Module, Any]:
    """Build the model saved by `save_checkpoint` (for inference) and load its weights strictly
    (training-only heads left out)."""
    checkpoint = read_checkpoint(path)
    model = family_of(checkpoint.config).build(checkpoint.config)
    _load_strict(model, without_training_heads(checkpoint.state_dict, model), assign=False)
    return model, checkpoint.config


def load_for_inference(
    path: str | os.PathLike, model_name: str | None = None
) -> tuple[nn.Module, Any]:
    """The one way to load a model file: ours (it names its own model; `model_name`, when
    given, must agree) or official YOLACT weights (a bare state dict: `model_name` names the
    registered architecture, whose family says where the weights go). Returns the model in eval
    mode and its config; CheckpointError (a ValueError) says what to change."""
    from .registry import build_model

    where = os.fspath(path)
    data = _read(path)
    if isinstance(data, Mapping) and "format" in data:
        model, config = load_checkpoint(path)
        if model_name and model_name != config.name:
            raise CheckpointError(
                f"checkpoint {where!r} holds model {config.name!r}, not {model_name!r}: set model "
                f"to {config.name!r} (or leave it empty), or use another checkpoint"
            )
        return model.eval(), config
    if not model_name:
        raise CheckpointError(
            f"{where!r} holds bare weights (official YOLACT?) without a config: name its "
            "architecture (set the `model` parameter / --model), e.g. yolact_resnet50"
        )
    model = build_model(model_name)
    family_of(model.config).load_official(model, data)  # other parts keep their init
    return model.eval(), model.config


def export_for_inference(
    source: str | os.PathLike,
    target: str | os.PathLike,
    *,
    half: bool = True,
    input_size: tuple[int, int] | None = None,
) -> None:
    """Write a training checkpoint as a deployable one: config, class names and weights only
    (no optimizer state), floating-point weights stored as float16 when `half` (they load back
    into float32 modules; BatchNorm statistics and integer buffers keep their dtype).
    input_size: (H, W) the deployed model runs at, where it differs from the training size (a
    fully convolutional network: the weights are the same, the priors follow the size)."""
    checkpoint = read_checkpoint(source)
    family = family_of(checkpoint.config)
    config = checkpoint.config
    if input_size is not None:
        config = family.with_input_size(config, tuple(input_size))
    model = family.build(config)
    _load_strict(model, without_training_heads(checkpoint.state_dict, model), assign=False)
    if not half:
        save_checkpoint(target, model, config, {"exported_from": os.fspath(source)})
        return
    state = {
        key: value.half() if value.is_floating_point() and "running_" not in key else value
        for key, value in model.state_dict().items()
    }
    extra = {"exported_from": os.path.basename(os.fspath(source)), "float16": True}
    torch.save(_payload(config, state, extra), target)
