"""Recipe files: one YAML file per training setting (`config/train/*.yaml`), holding the options of
`segmentation-ros-train` by their command-line names, so that a run is one reviewable file.

    # config/train/synthetic_cpu.yaml
    model: panoptic_yolact_mobilenetv3
    data: synthetic:runs/synth_train
    batch-size: 8
    input-size: 240x320
    no-augment: false

    segmentation-ros-train --recipe config/train/synthetic_cpu.yaml --steps 100   # flag wins

Keys are the long option names without `--` (`batch-size` or `batch_size`); values are what
the flag takes (`input-size: 240x320`), true / false for switches. A key the command does not
know, or a value outside an option's choices, is an error naming the file and the key.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

__all__ = ["apply_recipe", "read_recipe"]


def read_recipe(path: str | os.PathLike) -> dict[str, Any]:
    """The mapping of a recipe file (keys with `-` turned into `_`). ValueError if the file is
    not a YAML mapping; FileNotFoundError if it does not exist."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"recipe {path} does not exist")
    with open(path) as f:
        try:
            data = yaml.safe_load(f)
        except yaml.YAMLError as exc:
            raise ValueError(f"recipe {path} is not valid YAML: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ValueError(f"recipe {path} must be a mapping of option: value")
    return {str(k).replace("-", "_"): v for k, v in data.items()}


def apply_recipe(parser: argparse.ArgumentParser, path: str | os.PathLike) -> None:
    """Make the options of recipe `path` the defaults of `parser` (flags given on the command
    line still win). String values go through the option's type as a flag's text would."""
    values = read_recipe(path)
    actions = {a.dest: a for a in parser._actions if a.dest not in ("help", "recipe")}
    unknown = sorted(set(values) - set(actions))
    if unknown:
        names = ", ".join(k.replace("_", "-") for k in unknown)
        known = ", ".join(sorted(k.replace("_", "-") for k in actions))
        raise ValueError(f"recipe {path}: unknown option(s) {names}; known: {known}")
    for key, value in values.items():
        action = actions[key]
        if isinstance(action, argparse._StoreTrueAction) and not isinstance(value, bool):
            raise ValueError(f"recipe {path}: {key.replace('_', '-')} takes true or false")
        if value is not None and not isinstance(value, bool) and action.type is not None:
            try:
                value = action.type(str(value))
            except (argparse.ArgumentTypeError, ValueError) as exc:
                raise ValueError(f"recipe {path}: {key.replace('_', '-')}: {exc}") from None
        if action.choices is not None and value not in action.choices:
            raise ValueError(
                f"recipe {path}: {key.replace('_', '-')} must be one of "
                f"{', '.join(map(str, action.choices))}, got {value!r}"
            )
        parser.set_defaults(**{key: value})
