"""Parameters of the YOLACT postprocess (one frozen dataclass, built at the edge)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

__all__ = ["YolactPostprocessParams"]


@dataclass(frozen=True)
class YolactPostprocessParams:
    """How raw YOLACT outputs become detections (official defaults, `data/config.py`).

    score_threshold: a (anchor, class) pair is a candidate when its softmax confidence is
        > score_threshold (official `conf_thresh`). Unlike the official Fast NMS, detections
        at or below it are also dropped after NMS (the "second threshold" the official code
        recommends but leaves out): the result is the official one filtered by
        `score > score_threshold`.
    nms_threshold: Fast NMS suppresses a box whose IoU with a higher-scoring one of its class
        is > nms_threshold (official `nms_thresh`).
    top_k: candidates per class that enter Fast NMS (official `nms_top_k`); with
        "cross_class", candidates overall.
    max_detections: detections kept after NMS, highest scores first (official
        `max_num_detections`; applied to "cross_class" too, where the official code keeps
        up to top_k).
    nms: "fast" (per-class Fast NMS, official default) or "cross_class" (official
        `cc_fast_nms`: one class per anchor, its best, and NMS across classes).
    mask_threshold: mask probability above which a pixel is foreground (official 0.5).
    crop_masks: zero each mask outside its box grown by one prototype pixel (official).
    rescore_bbox: with a mask-IoU head (YOLACT++), also multiply the box score by the
        predicted mask IoU (official `rescore_bbox`); the mask score is always rescored.
    """

    score_threshold: float = 0.05
    nms_threshold: float = 0.5
    top_k: int = 200
    max_detections: int = 100
    nms: Literal["fast", "cross_class"] = "fast"
    mask_threshold: float = 0.5
    crop_masks: bool = True
    rescore_bbox: bool = False

    def __post_init__(self) -> None:
        if not 0.0 <= self.score_threshold < 1.0:
            raise ValueError(f"score_threshold must be in [0, 1), got {self.score_threshold}")
        if not 0.0 < self.nms_threshold <= 1.0:
            raise ValueError(f"nms_threshold must be in (0, 1], got {self.nms_threshold}")
        if self.top_k < 1 or self.max_detections < 1:
            raise ValueError(
                f"top_k and max_detections must be >= 1, got {self.top_k}, {self.max_detections}"
            )
        if self.nms not in ("fast", "cross_class"):
            raise ValueError(f"nms must be 'fast' or 'cross_class', got {self.nms!r}")
        if not 0.0 < self.mask_threshold < 1.0:
            raise ValueError(f"mask_threshold must be in (0, 1), got {self.mask_threshold}")

    @classmethod
    def from_config(cls, config: Any, **overrides: Any) -> YolactPostprocessParams:
        """Build from any object with some of these attribute names (e.g. the model config's
        `PostprocessConfig`); attributes it lacks keep their defaults; `overrides` win."""
        names = cls.__dataclass_fields__
        values = {name: getattr(config, name) for name in names if hasattr(config, name)}
        values.update(overrides)
        return cls(**values)
