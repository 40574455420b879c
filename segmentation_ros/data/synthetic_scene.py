"""`generate_scene`: one procedural image with its exact panoptic annotation (see `synthetic`)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from segmentation_ros.data.classes import SYNTHETIC_CLASSES, ClassTable
from segmentation_ros.data.synthetic_camera import SceneCamera
from segmentation_ros.data.synthetic_catalogue import DRAW
from segmentation_ros.data.synthetic_keypoints import (
    KEYPOINT_KIND,
    NUM_KEYPOINTS,
    PendingKeypoints,
    coco_keypoint_fields,
)
from segmentation_ros.data.synthetic_layouts import LAYOUTS, OBJECT_STUFF
from segmentation_ros.data.synthetic_render import TEX_SKY, Canvas
from segmentation_ros.data.synthetic_texture import shade
from segmentation_ros.data.synthetic_world import random_camera, stuff_label

#: Segments with fewer pixels than this (after occlusion) are dropped: their pixels become void.
MIN_AREA = 20
MAX_SIDE = 8192


@dataclass(frozen=True)
class SceneSegments:
    """The segments of one synthetic image, struct of arrays (COCO-panoptic `segments_info`).

    ids:          [N] int32, the value of the segment's pixels in the id map, 1..N in order.
    category_ids: [N] int64, category id of `SYNTHETIC_CLASSES` (stuff first, then things).
    iscrowd:      [N] int32, always 0.
    bboxes:       [N, 4] int64 (x, y, w, h): tightest box, columns x..x+w-1, rows y..y+h-1.
    areas:        [N] int64, pixel count of the segment in the id map.
    ground_xy:    [N, 2] float64, things: ground contact point (x, y) in base_link metres (the
                  foot of the object's vertical axis); NaN for stuff.
    keypoints:    [N, K, 3] float64 (x, y, visibility) of people, `synthetic_keypoints`'s K
                  keypoints in COCO pixels; all zeros for every other segment.
    Stuff segments come first (one per stuff class present, by category id), then things in
    the order they were drawn (far to near).
    """

    ids: np.ndarray
    category_ids: np.ndarray
    iscrowd: np.ndarray
    bboxes: np.ndarray
    areas: np.ndarray
    ground_xy: np.ndarray
    keypoints: np.ndarray

    def __len__(self) -> int:
        return int(self.ids.shape[0])

    def __getitem__(self, item) -> SceneSegments:
        return SceneSegments(
            self.ids[item],
            self.category_ids[item],
            self.iscrowd[item],
            self.bboxes[item],
            self.areas[item],
            self.ground_xy[item],
            self.keypoints[item],
        )

    @property
    def is_thing(self) -> np.ndarray:
        """[N] bool."""
        return SYNTHETIC_CLASSES.isthing()[self.category_ids]

    def to_coco(self) -> list[dict[str, Any]]:
        """COCO-panoptic `segments_info`: [{id, category_id, iscrowd, bbox, area}], people also
        {keypoints: [x1, y1, v1, ...], num_keypoints} (see `synthetic_keypoints`)."""
        person = SYNTHETIC_CLASSES.id_of(KEYPOINT_KIND)
        out = []
        for i, c, z, b, a, kp in zip(
            self.ids, self.category_ids, self.iscrowd, self.bboxes, self.areas, self.keypoints
        ):
            seg = {"id": int(i), "category_id": int(c), "iscrowd": int(z)}
            seg |= {"bbox": [int(v) for v in b], "area": int(a)}
            if c == person:
                seg |= coco_keypoint_fields(kp)
            out.append(seg)
        return out


@dataclass(frozen=True, eq=False)
class Scene:
    """One synthetic image and its annotation.

    seed:     the seed it was generated from (same seed and arguments -> identical arrays).
    kind:     "street", "rural", "park" or "indoor".
    image:    [H, W, 3] uint8 RGB.
    id_map:   [H, W] int32 segment id per pixel, 0 = void (only where a segment was dropped
              for being smaller than `min_area`, or nothing was drawn).
    segments: `SceneSegments`, exactly the non-zero ids of `id_map`.
    camera:   the `SceneCamera` that took the picture (K, mounting, `camera_to_base`).
    """

    seed: int
    kind: str
    image: np.ndarray
    id_map: np.ndarray
    segments: SceneSegments
    camera: SceneCamera

    @property
    def indoor(self) -> bool:
        return self.kind == "indoor"

    @property
    def classes(self) -> ClassTable:
        return SYNTHETIC_CLASSES

    def semantic_map(self, void_label: int = 255) -> np.ndarray:
        """[H, W] uint8 category id per pixel; void pixels get `void_label` (0..255, not a
        category id)."""
        if not len(SYNTHETIC_CLASSES) <= void_label <= 255:
            raise ValueError(
                f"void_label must be in {len(SYNTHETIC_CLASSES)}..255 (outside the category ids)"
            )
        lut = np.full(len(self.segments) + 1, void_label, np.uint8)
        lut[self.segments.ids] = self.segments.category_ids
        return lut[self.id_map]

    def to_panoptic_result(self):
        """The annotation as a `segmentation_ros.panoptic.result.PanopticResult` (torch CPU
        tensors; scores 1)."""
        import torch

        from segmentation_ros.panoptic.result import PanopticResult, Segments

        s = self.segments
        return PanopticResult(
            torch.from_numpy(self.id_map.copy()),
            Segments(
                ids=torch.from_numpy(s.ids.astype(np.int32)),
                class_ids=torch.from_numpy(s.category_ids.astype(np.int64)),
                is_thing=torch.from_numpy(s.is_thing),
                areas=torch.from_numpy(s.areas.astype(np.int64)),
                scores=torch.ones(len(s), dtype=torch.float32),
            ),
        )


def _check_size(name: str, v: Any) -> int:
    if isinstance(v, bool) or not isinstance(v, int | np.integer):
        raise TypeError(f"{name} must be an int number of pixels, got {type(v).__name__}")
    if not 1 <= v <= MAX_SIDE:
        raise ValueError(f"{name} must be in 1..{MAX_SIDE} pixels, got {v}")
    return int(v)


def check_scene_args(width: Any, height: Any, indoor: Any, min_area: Any) -> tuple[int, int]:
    """Validate the arguments of `generate_scene` other than the seed; returns (width, height)."""
    width, height = _check_size("width", width), _check_size("height", height)
    if indoor is not None and not isinstance(indoor, bool | np.bool_):
        raise TypeError(f"indoor must be True, False or None, got {indoor!r}")
    if isinstance(min_area, bool) or not isinstance(min_area, int | np.integer) or min_area < 0:
        raise ValueError(f"min_area must be an int >= 0, got {min_area!r}")
    return width, height


def _choose_kind(rng: np.random.Generator, indoor: bool | None) -> str:
    u = rng.random()
    if indoor is None:
        indoor = u < 0.3
        u = rng.random()
    if indoor:
        return "indoor"
    return "street" if u < 0.5 else ("park" if u < 0.8 else "rural")


def _boxes(id_map: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """([n+1, 4] xywh boxes, [n+1] areas) of ids 0..n (row 0 = void; empty ids: zeros)."""
    h, w = id_map.shape
    k = n + 1
    rows = (
        np.bincount(
            (id_map + k * np.arange(h, dtype=np.int32)[:, None]).ravel(), minlength=k * h
        ).reshape(h, k)
        > 0
    )
    cols = (
        np.bincount(
            (id_map + k * np.arange(w, dtype=np.int32)[None, :]).ravel(), minlength=k * w
        ).reshape(w, k)
        > 0
    )
    areas = np.bincount(id_map.ravel(), minlength=k).astype(np.int64)
    y0, y1 = rows.argmax(0), h - 1 - rows[::-1].argmax(0)
    x0, x1 = cols.argmax(0), w - 1 - cols[::-1].argmax(0)
    boxes = np.stack([x0, y0, x1 - x0 + 1, y1 - y0 + 1], 1).astype(np.int64)
    boxes[areas == 0] = 0
    return boxes, areas


def generate_scene(
    seed: int,
    *,
    width: int = 640,
    height: int = 480,
    indoor: bool | None = None,
    min_area: int = MIN_AREA,
    effects: bool = True,
) -> Scene:
    """Render one procedural scene seen by a ground robot's camera.

    seed:     non-negative int; the scene is a pure function of (seed, arguments).
    width, height: image size in pixels (1..8192); the camera's intrinsics scale with it.
    indoor:   True: a room; False: street, rural road or park; None: drawn from the seed (30 %
              indoor).
    min_area: segments with fewer visible pixels are dropped and their pixels set to void 0
              (0 keeps every segment with at least one pixel).
    effects:  random exposure, blur and sensor noise on the image (the annotation never changes).
    Returns a `Scene`; its id map and segments agree exactly (see `SceneSegments`).
    """
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    width, height = check_scene_args(width, height, indoor, min_area)

    rng = np.random.default_rng(int(seed))
    kind = _choose_kind(rng, None if indoor is None else bool(indoor))
    camera = random_camera(rng, width, height, kind == "indoor")
    canvas = Canvas(camera)
    if kind != "indoor":
        canvas.fill_all((0, 0, 0), stuff_label("sky"), TEX_SKY, 0.0)
    world = LAYOUTS[kind](canvas, rng, camera)

    num_stuff = SYNTHETIC_CLASSES.num_stuff
    order = sorted(range(len(world.objects)), key=lambda i: (-world.objects[i].distance, i))
    thing_cats, thing_xy, pending = [], [], []
    for i in order:
        t = world.objects[i]
        if t.kind in OBJECT_STUFF:
            label = stuff_label(OBJECT_STUFF[t.kind])
        else:
            label = num_stuff + 1 + len(thing_cats)
            thing_cats.append(SYNTHETIC_CLASSES.id_of(t.kind))
            thing_xy.append((t.x, t.y))
        DRAW[t.kind](canvas, t, label, world.light)
        if t.kind == KEYPOINT_KIND:
            pending.append(PendingKeypoints(canvas, t, label))
    world.objects = [world.objects[i] for i in order]

    image = shade(canvas, world, rng, effects=effects)

    raw = np.asarray(canvas.labels, np.int32)[canvas.parts]
    n_raw = num_stuff + 1 + len(thing_cats)
    counts = np.bincount(raw.ravel(), minlength=n_raw)
    keep = counts >= max(1, min_area)
    keep[0] = False
    lut = np.zeros(n_raw, np.int32)
    lut[keep] = np.arange(1, int(keep.sum()) + 1, dtype=np.int32)
    id_map = lut[raw]
    kept = np.flatnonzero(keep)
    cats = np.where(kept <= num_stuff, kept - 1, 0)
    xy = np.full((len(kept), 2), math.nan)
    is_thing = kept > num_stuff
    if is_thing.any():
        ti = kept[is_thing] - num_stuff - 1
        cats[is_thing] = np.asarray(thing_cats, np.int64)[ti]
        xy[is_thing] = np.asarray(thing_xy, np.float64)[ti]
    boxes, areas = _boxes(id_map, len(kept))
    keypoints = np.zeros((len(kept), NUM_KEYPOINTS, 3))
    for p in pending:
        if keep[p.label]:
            keypoints[lut[p.label] - 1] = p.annotate(raw)
    segments = SceneSegments(
        ids=np.arange(1, len(kept) + 1, dtype=np.int32),
        category_ids=cats.astype(np.int64),
        iscrowd=np.zeros(len(kept), np.int32),
        bboxes=boxes[1:],
        areas=areas[1:],
        ground_xy=xy,
        keypoints=keypoints,
    )
    return Scene(int(seed), kind, image, id_map, segments, camera)


def colorize_panoptic(
    id_map: np.ndarray, segments: SceneSegments, *, classes: ClassTable = SYNTHETIC_CLASSES
) -> np.ndarray:
    """[H, W, 3] uint8 RGB view of an id map: class colours, things shifted per instance,
    segment borders darkened, void black."""
    colors = classes.colors().astype(np.int16)
    lut = np.zeros((int(id_map.max(initial=0)) + 1, 3), np.int16)
    for i, c, thing in zip(segments.ids, segments.category_ids, segments.is_thing):
        col = colors[c].copy()
        if thing:
            col = col + (np.array([37, 71, 113]) * int(i)) % 90 - 45
        lut[i] = col
    out = np.clip(lut[id_map], 0, 255).astype(np.uint8)
    edge = np.zeros(id_map.shape, bool)
    edge[:, 1:] |= id_map[:, 1:] != id_map[:, :-1]
    edge[1:, :] |= id_map[1:, :] != id_map[:-1, :]
    out[edge] //= 2
    return out
