"""Writing synthetic scenes as a data set: COCO-panoptic, COCO instances and camera files.

Layout of `out_dir` (file stem = the seed, 8 digits):
  images/<seed>.jpg|png     RGB image
  panoptic/<seed>.png       COCO-panoptic id PNG: segment id = R + 256 G + 65536 B, 0 = void
  panoptic.json             {info, images, annotations: [{image_id, file_name, segments_info}],
                            categories: [{id, name, supercategory, isthing, color, drivable}]};
                            person segments also carry COCO `keypoints` and `num_keypoints`
                            (`synthetic_keypoints`), the person category COCO's `keypoints`
                            names and `skeleton`
  instances.json            COCO instances of the thing segments: {info, images, annotations:
                            [{id, image_id, category_id, segmentation (compressed RLE, exact),
                            area, bbox [x, y, w, h], iscrowd 0, people: keypoints,
                            num_keypoints}], categories (things only; person with COCO
                            `keypoints` names and `skeleton`)}
  cameras.json              {frames, cameras: [{image_id, file_name, width, height, K 3x3, D,
                            distortion_model, camera_height, pitch, camera_to_base 4x4}]}
Category ids are those of `SYNTHETIC_CLASSES` in every file (0-based, stuff first: category 0 is
`road`, not background); image_id = seed. See `segmentation_ros.panoptic.coco_io` for reading.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from segmentation_ros.data.classes import SYNTHETIC_CLASSES
from segmentation_ros.data.synthetic_camera import SceneCamera
from segmentation_ros.data.synthetic_keypoints import (
    KEYPOINT_KIND,
    coco_keypoint_fields,
    keypoint_category,
)
from segmentation_ros.data.synthetic_scene import (
    MIN_AREA,
    Scene,
    check_scene_args,
    generate_scene,
)

IMAGE_FORMATS = ("jpg", "png")
CAMERA_FRAME = "camera_optical_frame"
BASE_FRAME = "base_link"


@dataclass(frozen=True)
class SyntheticDataset:
    """Paths of a written data set (see module docstring) and its size."""

    root: Path
    images_dir: Path
    panoptic_dir: Path
    panoptic_json: Path
    instances_json: Path
    cameras_json: Path
    num_images: int
    num_segments: int
    num_instances: int


def id_map_to_rgb(id_map: np.ndarray) -> np.ndarray:
    """[H, W] ids in [0, 2**24) -> [H, W, 3] uint8 RGB with id = R + 256 G + 65536 B."""
    ids = np.asarray(id_map).astype(np.uint32)
    return np.stack([ids & 255, (ids >> 8) & 255, (ids >> 16) & 255], -1).astype(np.uint8)


def rgb_to_id_map(rgb: np.ndarray) -> np.ndarray:
    """[H, W, 3] uint8 RGB -> [H, W] int32 ids (R + 256 G + 65536 B)."""
    c = np.asarray(rgb).astype(np.int32)
    return c[..., 0] + 256 * c[..., 1] + 65536 * c[..., 2]


def camera_fields(cam: SceneCamera) -> dict[str, Any]:
    """A synthetic camera as our JSON files store it: intrinsics (no distortion) and mounting."""
    return {
        "K": cam.K.tolist(),
        "D": [0.0] * 5,
        "distortion_model": "plumb_bob",
        "camera_height": cam.camera_height,
        "pitch": cam.pitch,
        "camera_to_base": cam.camera_to_base.tolist(),
    }


def camera_entry(scene: Scene, file_name: str) -> dict[str, Any]:
    cam = scene.camera
    entry = {"image_id": scene.seed, "file_name": file_name, "width": cam.width}
    return {**entry, "height": cam.height, **camera_fields(cam)}


def instance_annotations(scene: Scene) -> list[dict[str, Any]]:
    """COCO instance annotations (without `id`) of the scene's thing segments; exact RLE."""
    from pycocotools import mask as mask_util

    segs = scene.segments
    things = np.flatnonzero(segs.is_thing)
    if not len(things):
        return []
    masks = np.asfortranarray(
        (scene.id_map[..., None] == segs.ids[things][None, None, :]).astype(np.uint8)
    )
    rles = mask_util.encode(masks)
    out = []
    person = SYNTHETIC_CLASSES.id_of(KEYPOINT_KIND)
    for k, rle in zip(things, rles):
        extra = coco_keypoint_fields(segs.keypoints[k]) if segs.category_ids[k] == person else {}
        out.append(
            {
                "image_id": scene.seed,
                "category_id": int(segs.category_ids[k]),
                "segmentation": {"size": list(rle["size"]), "counts": rle["counts"].decode()},
                "area": int(segs.areas[k]),
                "bbox": [float(v) for v in segs.bboxes[k]],
                "iscrowd": 0,
                **extra,
            }
        )
    return out


def _write_one(task: tuple) -> tuple:
    seed, root, width, height, indoor, fmt, quality, min_area, effects = task
    scene = generate_scene(
        seed, width=width, height=height, indoor=indoor, min_area=min_area, effects=effects
    )
    stem = f"{seed:08d}"
    image_name, png_name = f"{stem}.{fmt}", f"{stem}.png"
    params = [cv2.IMWRITE_JPEG_QUALITY, quality] if fmt == "jpg" else []
    bgr = np.ascontiguousarray(scene.image[..., ::-1])
    if not cv2.imwrite(str(Path(root) / "images" / image_name), bgr, params):
        raise OSError(f"could not write {Path(root) / 'images' / image_name}")
    pan = np.ascontiguousarray(id_map_to_rgb(scene.id_map)[..., ::-1])
    if not cv2.imwrite(str(Path(root) / "panoptic" / png_name), pan):
        raise OSError(f"could not write {Path(root) / 'panoptic' / png_name}")
    image = {
        "id": seed,
        "file_name": image_name,
        "width": width,
        "height": height,
        "scene": scene.kind,
    }
    ann = {"image_id": seed, "file_name": png_name, "segments_info": scene.segments.to_coco()}
    return image, ann, instance_annotations(scene), camera_entry(scene, image_name)


def _check_seeds(seeds: Iterable[int]) -> list[int]:
    out = []
    for s in seeds:
        if isinstance(s, bool) or not isinstance(s, int | np.integer) or s < 0:
            raise ValueError(f"seeds must be non-negative ints, got {s!r}")
        out.append(int(s))
    if not out:
        raise ValueError("seeds is empty; pass at least one seed")
    if len(set(out)) != len(out):
        raise ValueError("seeds must be unique (the seed is the image id)")
    return out


def write_dataset(
    out_dir: str | os.PathLike,
    seeds: Iterable[int],
    *,
    width: int = 640,
    height: int = 480,
    indoor: bool | None = None,
    image_format: str = "jpg",
    jpeg_quality: int = 95,
    min_area: int = MIN_AREA,
    effects: bool = True,
    workers: int = 1,
) -> SyntheticDataset:
    """Generate `generate_scene(seed, ...)` for every seed and write the data set to `out_dir`
    (created; files of the same names are overwritten). The output does not depend on
    `workers` (processes started with "spawn"; 1 = in this process)."""
    seeds = _check_seeds(seeds)
    if image_format not in IMAGE_FORMATS:
        raise ValueError(f"image_format must be one of {IMAGE_FORMATS}, got {image_format!r}")
    if not 1 <= int(jpeg_quality) <= 100:
        raise ValueError(f"jpeg_quality must be in 1..100, got {jpeg_quality}")
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be an int >= 1, got {workers!r}")
    width, height = check_scene_args(width, height, indoor, min_area)
    root = Path(out_dir)
    for d in ("images", "panoptic"):
        (root / d).mkdir(parents=True, exist_ok=True)
    tasks = [
        (s, str(root), width, height, indoor, image_format, int(jpeg_quality), min_area, effects)
        for s in seeds
    ]
    if workers == 1 or len(tasks) == 1:
        results = [_write_one(t) for t in tasks]
    else:
        with ProcessPoolExecutor(min(workers, len(tasks)), mp_context=get_context("spawn")) as ex:
            results = list(ex.map(_write_one, tasks, chunksize=max(1, len(tasks) // (8 * workers))))
    info = {
        "description": "segmentation_ros synthetic world",
        "generator": "segmentation_ros.data.synthetic.generate_scene",
        "width": width,
        "height": height,
        "indoor": indoor,
        "min_area": min_area,
        "effects": effects,
        "seeds": seeds,
    }
    images = [r[0] for r in results]
    categories = SYNTHETIC_CLASSES.to_coco()
    instances = []
    for r in results:
        for a in r[2]:
            instances.append({"id": len(instances) + 1, **a})
    paths = SyntheticDataset(
        root=root,
        images_dir=root / "images",
        panoptic_dir=root / "panoptic",
        panoptic_json=root / "panoptic.json",
        instances_json=root / "instances.json",
        cameras_json=root / "cameras.json",
        num_images=len(results),
        num_segments=sum(len(r[1]["segments_info"]) for r in results),
        num_instances=len(instances),
    )
    _dump(
        paths.panoptic_json,
        {
            "info": info,
            "images": images,
            "annotations": [r[1] for r in results],
            "categories": [
                c | keypoint_category() if c["name"] == KEYPOINT_KIND else c for c in categories
            ],
        },
    )
    _dump(
        paths.instances_json,
        {
            "info": info,
            "images": images,
            "annotations": instances,
            "categories": [
                c | keypoint_category() if c["name"] == KEYPOINT_KIND else c
                for c in categories
                if c["isthing"]
            ],
        },
    )
    _dump(
        paths.cameras_json,
        {
            "info": info,
            "frames": {"base": BASE_FRAME, "camera": CAMERA_FRAME},
            "cameras": [r[3] for r in results],
        },
    )
    return paths


def _dump(path: Path, data: dict) -> None:
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data))
    tmp.replace(path)
