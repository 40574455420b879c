"""Configs as plain data and back: nested dicts / lists / numbers / strings, JSON and
`torch.load(weights_only=True)` safe (our checkpoints store them). Any frozen config dataclass
works; unknown keys and wrong types raise ValueError naming where.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any

__all__ = ["from_plain", "to_plain"]


def to_plain(value: Any) -> Any:
    """A config (or part of one) as plain data."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, tuple | list):
        return [to_plain(v) for v in value]
    return value


def from_plain(annotation: Any, value: Any, where: str) -> Any:
    """`value` (plain data) as an instance of `annotation`; `where` names it in errors."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(annotation)
        if value is None and type(None) in options:
            return None
        (inner,) = [a for a in options if a is not type(None)]
        return from_plain(inner, value, where)
    if dataclasses.is_dataclass(annotation):
        if not isinstance(value, dict):
            raise ValueError(f"{where}: expected a dict for {annotation.__name__}, got {value!r}")
        hints = typing.get_type_hints(annotation)
        names = {f.name for f in dataclasses.fields(annotation)}
        unknown = set(value) - names
        if unknown:
            raise ValueError(f"{where}: unknown {annotation.__name__} fields {sorted(unknown)}")
        kwargs = {k: from_plain(hints[k], v, f"{where}.{k}") for k, v in value.items()}
        return annotation(**kwargs)
    if origin is tuple:
        args = typing.get_args(annotation)
        if not isinstance(value, list | tuple):
            raise ValueError(f"{where}: expected a list, got {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(from_plain(args[0], v, f"{where}[{i}]") for i, v in enumerate(value))
        if len(args) != len(value):
            raise ValueError(f"{where}: expected {len(args)} values, got {len(value)}")
        return tuple(from_plain(a, v, f"{where}[{i}]") for i, (a, v) in enumerate(zip(args, value)))
    if annotation is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if annotation in (int, str, bool) and isinstance(value, annotation):
        return value
    raise ValueError(f"{where}: expected {annotation}, got {value!r}")
