"""Writing and reading synthetic camera sequences.

Layout of a sequence folder (one per seed, `<root>/<seed:08d>/`):
  images/<frame:06d>.jpg|png    RGB image of the frame
  panoptic/<frame:06d>.png      id PNG: segment id = R + 256 G + 65536 B, 0 = void; stuff ids are
                                category id + 1, a thing's id is 1000 + its track id in every
                                frame (see `sequence_render`)
  sequence.json                 {seed, kind, rate (Hz), num_frames, width, height,
                                frames: {odom, base, camera} frame ids,
                                camera: {K 3x3, D, distortion_model, camera_height (m), pitch
                                (rad, down), camera_to_base 4x4},
                                categories: [...] (`SYNTHETIC_CLASSES` COCO entries),
                                agents: [{id, kind, x0, y0, vx, vy, yaw}] (odom, m, m/s, rad),
                                sequence: [{index, stamp (s), file_name, panoptic_file,
                                pose [x, y, yaw] (base_link in odom), twist [vx, vy, wz]
                                (base_link), segments: [{id, category_id, track_id, bbox
                                [x, y, w, h], area, ground_xy [x, y] (odom, things),
                                velocity [vx, vy] (odom, things)}]}]}
Files are a pure function of the world's arguments: two writes are byte-identical.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from segmentation_ros.data.classes import SYNTHETIC_CLASSES
from segmentation_ros.data.sequence_render import FrameSegments, SequenceFrame, frames
from segmentation_ros.data.sequence_world import SequenceWorld
from segmentation_ros.data.synthetic_io import (
    BASE_FRAME,
    CAMERA_FRAME,
    camera_fields,
    id_map_to_rgb,
    rgb_to_id_map,
)
from segmentation_ros.data.synthetic_keypoints import KEYPOINT_KIND, coco_keypoint_fields
from segmentation_ros.data.synthetic_scene import MIN_AREA

ODOM_FRAME = "odom"
SEQUENCE_JSON = "sequence.json"


def _num(v: float) -> float | None:
    return None if math.isnan(v) else round(float(v), 6)


def _segments_json(s: FrameSegments) -> list[dict[str, Any]]:
    out = []
    for k in range(len(s)):
        entry = {
            "id": int(s.ids[k]),
            "category_id": int(s.category_ids[k]),
            "track_id": int(s.track_ids[k]),
            "bbox": [int(v) for v in s.bboxes[k]],
            "area": int(s.areas[k]),
        }
        if s.track_ids[k] > 0:
            entry["ground_xy"] = [_num(v) for v in s.ground_xy[k]]
            entry["velocity"] = [_num(v) for v in s.velocity[k]]
        if s.category_ids[k] == SYNTHETIC_CLASSES.id_of(KEYPOINT_KIND):
            entry |= coco_keypoint_fields(s.keypoints[k])
        out.append(entry)
    return out


def write_sequence(
    out_dir: str | os.PathLike,
    world: SequenceWorld,
    *,
    image_format: str = "jpg",
    jpeg_quality: int = 95,
    min_area: int = MIN_AREA,
) -> Path:
    """Render every frame of `world` and write them to `out_dir/<seed:08d>/` (created;
    overwritten). Returns that folder."""
    if image_format not in ("jpg", "png"):
        raise ValueError(f"image_format must be 'jpg' or 'png', got {image_format!r}")
    root = Path(out_dir) / f"{world.seed:08d}"
    for d in ("images", "panoptic"):
        (root / d).mkdir(parents=True, exist_ok=True)
    params = [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)] if image_format == "jpg" else []
    entries = []
    for f in frames(world, min_area=min_area):
        name, pan = f"{f.index:06d}.{image_format}", f"{f.index:06d}.png"
        if not cv2.imwrite(str(root / "images" / name), f.image[..., ::-1].copy(), params):
            raise OSError(f"could not write {root / 'images' / name}")
        if not cv2.imwrite(str(root / "panoptic" / pan), id_map_to_rgb(f.id_map)[..., ::-1].copy()):
            raise OSError(f"could not write {root / 'panoptic' / pan}")
        entries.append(
            {
                "index": f.index,
                "stamp": round(f.stamp, 9),
                "file_name": name,
                "panoptic_file": pan,
                "pose": [round(v, 9) for v in f.pose],
                "twist": [round(v, 9) for v in f.twist],
                "segments": _segments_json(f.segments),
            }
        )
    cam = world.camera
    data = {
        "seed": world.seed,
        "kind": world.kind,
        "rate": world.rate,
        "num_frames": world.num_frames,
        "width": cam.width,
        "height": cam.height,
        "min_area": min_area,
        "frames": {"odom": ODOM_FRAME, "base": BASE_FRAME, "camera": CAMERA_FRAME},
        "camera": camera_fields(cam),
        "categories": SYNTHETIC_CLASSES.to_coco(),
        "agents": [
            {
                "id": a.id,
                "kind": a.kind,
                "x0": a.x0,
                "y0": a.y0,
                "vx": a.vx,
                "vy": a.vy,
                "yaw": a.yaw,
            }
            for a in world.agents
        ],
        "sequence": entries,
    }
    tmp = root / (SEQUENCE_JSON + ".tmp")
    tmp.write_text(json.dumps(data, indent=1))
    tmp.replace(root / SEQUENCE_JSON)
    return root


@dataclass(frozen=True)
class SequenceData:
    """A written sequence (see module docstring): `meta` is sequence.json."""

    root: Path
    meta: dict

    @staticmethod
    def open(path: str | os.PathLike) -> SequenceData:
        root = Path(path)
        f = root / SEQUENCE_JSON
        if not f.is_file():
            raise FileNotFoundError(
                f"{f} not found; write sequences with segmentation-ros-generate --sequence"
            )
        return SequenceData(root, json.loads(f.read_text()))

    def __len__(self) -> int:
        return len(self.meta["sequence"])

    @property
    def rate(self) -> float:
        return float(self.meta["rate"])

    @property
    def K(self) -> np.ndarray:
        return np.asarray(self.meta["camera"]["K"], np.float64)

    def image(self, k: int) -> np.ndarray:
        """[H, W, 3] uint8 RGB of frame k."""
        p = self.root / "images" / self.meta["sequence"][k]["file_name"]
        bgr = cv2.imread(str(p), cv2.IMREAD_COLOR)
        if bgr is None:
            raise OSError(f"could not read {p}")
        return bgr[..., ::-1].copy()

    def id_map(self, k: int) -> np.ndarray:
        """[H, W] int32 segment ids of frame k."""
        p = self.root / "panoptic" / self.meta["sequence"][k]["panoptic_file"]
        bgr = cv2.imread(str(p), cv2.IMREAD_COLOR)
        if bgr is None:
            raise OSError(f"could not read {p}")
        return rgb_to_id_map(bgr[..., ::-1])

    def frame(self, k: int) -> dict:
        """sequence.json's entry of frame k (pose, twist, segments)."""
        return self.meta["sequence"][k]


def find_sequences(root: str | os.PathLike) -> list[SequenceData]:
    """Every sequence folder directly under `root` (or `root` itself), sorted by name."""
    root = Path(root)
    if (root / SEQUENCE_JSON).is_file():
        return [SequenceData.open(root)]
    out = [SequenceData.open(p.parent) for p in sorted(root.glob(f"*/{SEQUENCE_JSON}"))]
    if not out:
        raise FileNotFoundError(f"no {SEQUENCE_JSON} in {root} or its sub-folders")
    return out


__all__ = ["ODOM_FRAME", "SequenceData", "SequenceFrame", "find_sequences", "write_sequence"]
