"""COCO-panoptic format: read and write id-map PNGs and their JSON.

Format (https://cocodataset.org/#format-data, panopticapi):
- PNG: RGB uint8, segment id = R + 256 * G + 256**2 * B (`rgb2id` / `id2rgb`); id 0 = void.
- JSON: {"images": [{id, file_name, width, height}], "annotations": [{image_id, file_name,
  segments_info: [{id, category_id, iscrowd, bbox: [x, y, w, h], area}]}], "categories":
  [{id, name, isthing, color}]}. `file_name` of an annotation is the PNG inside the PNG folder.
- bbox: (x, y, width, height) in pixels of the tightest box around the segment (COCO box mode);
  area: the segment's pixel count.

Our `PanopticResult` (segmentation_ros.panoptic.result) uses contiguous category ids
0..S+T-1; `category_ids` (a sequence, our id -> dataset id) maps them to the dataset's ids when
writing. Arrays follow pq.py: [H, W] integer id maps, `SegmentsInfo` struct of arrays.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

try:  # optional: a faster PNG decoder (requirements.txt); OpenCV decodes without it
    import pyspng as _pyspng
except ImportError:  # pragma: no cover - depends on the installation
    _pyspng = None

from segmentation_ros.panoptic.pq import (
    Category,
    SegmentsInfo,
    as_segments_info,
    dense_index,
    to_numpy,
)

MAX_ID = 256**3
"""Segment ids must be below this to fit in an RGB PNG."""


def rgb2id(color: Any) -> Any:
    """[..., 3] RGB uint8 array -> [...] uint32 ids (R + 256 G + 65536 B); (r, g, b) -> int."""
    if isinstance(color, np.ndarray):
        if color.shape[-1:] != (3,):
            raise ValueError(f"rgb2id needs [..., 3] RGB; got shape {color.shape}")
        c = color.astype(np.uint32)
        return c[..., 0] + 256 * c[..., 1] + 256 * 256 * c[..., 2]
    r, g, b = (int(v) for v in color)
    return r + 256 * g + 256 * 256 * b


def _check_id_range(ids: np.ndarray) -> None:
    if ids.size and (ids.min() < 0 or ids.max() >= MAX_ID):
        lo, hi = ids.min(), ids.max()
        raise ValueError(
            f"segment ids must be in [0, 2**24) to fit in an RGB PNG; got [{lo}, {hi}]"
        )


def id2rgb(id_map: Any) -> Any:
    """[...] integer ids in [0, 2**24) -> [..., 3] RGB uint8; an int -> (r, g, b)."""
    if isinstance(id_map, int | np.integer):
        i = int(id_map)
        if not 0 <= i < MAX_ID:
            raise ValueError(f"segment id {i} does not fit in an RGB PNG (0 <= id < 2**24)")
        return (i % 256, i // 256 % 256, i // 65536)
    ids = to_numpy(id_map)
    if not np.issubdtype(ids.dtype, np.integer):
        raise TypeError(f"id2rgb needs integer ids; got dtype {ids.dtype}")
    _check_id_range(ids)
    ids = ids.astype(np.uint32)
    out = np.empty((*ids.shape, 3), np.uint8)
    out[..., 0] = ids % 256
    out[..., 1] = ids // 256 % 256
    out[..., 2] = ids // 65536
    return out


def _decode_png_spng(data: bytes) -> np.ndarray | None:
    """[H, W, 4] RGBA uint8 of an 8-bit RGB / RGBA PNG through pyspng (libspng, about twice as
    fast as OpenCV's libpng), or None where pyspng is not installed or the PNG is another kind
    (OpenCV then decodes it and reports what is wrong)."""
    if _pyspng is None or len(data) < 26 or data[:8] != b"\x89PNG\r\n\x1a\n":
        return None
    bit_depth, color_type = data[24], data[25]  # IHDR, the first chunk
    if bit_depth != 8 or color_type not in (2, 6):  # 2: RGB, 6: RGBA
        return None
    try:
        return _pyspng.load(data, "RGBA")
    except Exception:  # noqa: BLE001 -- a corrupt file: OpenCV's path reports it
        return None


def read_id_png(path: str | Path) -> np.ndarray:
    """Read a COCO-panoptic PNG -> [H, W] uint32 ids. An alpha channel is ignored."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"panoptic PNG {path} does not exist")
    data = path.read_bytes()
    rgba = _decode_png_spng(data)
    if rgba is None:
        img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED) if data else None
        if img is None or img.size == 0:
            raise ValueError(f"cannot decode {path} as an image (empty or not a PNG?)")
        if img.ndim != 3 or img.shape[2] not in (3, 4) or img.dtype != np.uint8:
            raise ValueError(
                f"{path}: a panoptic PNG must be 8-bit RGB; got shape {img.shape}, "
                f"dtype {img.dtype}"
            )
        code = cv2.COLOR_BGR2RGBA if img.shape[2] == 3 else cv2.COLOR_BGRA2RGBA
        rgba = cv2.cvtColor(img, code)
    # RGBA bytes read as little-endian uint32 have R as the low byte: with alpha cleared that is
    # rgb2id, at a fraction of the cost of the arithmetic on channels.
    ids = np.ascontiguousarray(rgba).view("<u4")[..., 0]
    ids &= 0x00FFFFFF
    return ids.astype(np.uint32, copy=False)


def write_id_png(path: str | Path, id_map: Any) -> None:
    """Write [H, W] integer ids (0 <= id < 2**24) as a COCO-panoptic RGB PNG."""
    ids = to_numpy(id_map)
    if ids.ndim != 2 or ids.size == 0:
        raise ValueError(f"id map must be a non-empty [H, W] array; got shape {ids.shape}")
    if not np.issubdtype(ids.dtype, np.integer):
        raise TypeError(f"id map must have an integer dtype; got {ids.dtype}")
    _check_id_range(ids)
    rgba = np.ascontiguousarray(ids.astype("<u4", copy=False)).view(np.uint8).reshape(*ids.shape, 4)
    bgr = cv2.cvtColor(rgba, cv2.COLOR_RGBA2BGR)  # byte 0 (low) = R, see read_id_png
    path = Path(path)
    try:
        ok = cv2.imwrite(str(path), bgr)
    except cv2.error as e:
        raise OSError(f"could not write {path}: {e}") from e
    if not ok:
        raise OSError(f"could not write {path} (does the folder exist?)")


@dataclass(frozen=True)
class PanopticAnnotation:
    """One entry of a COCO-panoptic `annotations` list; `segments_info` kept as read."""

    image_id: int | str
    file_name: str
    segments_info: tuple[dict[str, Any], ...]

    @property
    def segments(self) -> SegmentsInfo:
        return SegmentsInfo.from_coco(self.segments_info)

    def to_coco(self) -> dict[str, Any]:
        return {
            "image_id": self.image_id,
            "file_name": self.file_name,
            "segments_info": [dict(s) for s in self.segments_info],
        }


@dataclass(frozen=True)
class PanopticJson:
    """A COCO-panoptic JSON file. `categories` may be empty for predictions."""

    annotations: tuple[PanopticAnnotation, ...]
    categories: tuple[Category, ...] = ()
    images: tuple[dict[str, Any], ...] = ()
    #: (category id, keypoint names) of the category whose entry names COCO `keypoints`, if any
    #: (its segments_info entries then carry `keypoints` [x1, y1, v1, ...]).
    keypoints: tuple[int, tuple[str, ...]] | None = None

    def by_image_id(self) -> dict[int | str, PanopticAnnotation]:
        return {a.image_id: a for a in self.annotations}


def load_panoptic_json(path: str | Path, *, require_categories: bool = False) -> PanopticJson:
    """Read a COCO-panoptic JSON (ground truth or predictions)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"panoptic JSON {path} does not exist")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path} is not valid JSON: {e}") from e
    if not isinstance(data, dict) or not isinstance(data.get("annotations"), list):
        raise ValueError(f"{path}: expected a JSON object with an 'annotations' list")
    if require_categories and not data.get("categories"):
        raise ValueError(f"{path}: a ground-truth JSON needs a non-empty 'categories' list")
    anns = []
    for i, a in enumerate(data["annotations"]):
        try:
            ann = PanopticAnnotation(
                a["image_id"], str(a["file_name"]), tuple(dict(s) for s in a["segments_info"])
            )
            ann.segments  # noqa: B018 -- validates the segments now, to name the file
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(
                f"{path}: annotation {i}: {e!r}; an annotation needs image_id, file_name and "
                "segments_info [{id >= 1, category_id, iscrowd}]"
            ) from e
        anns.append(ann)
    ids = [a.image_id for a in anns]
    if len(set(ids)) != len(ids):
        raise ValueError(f"{path}: several annotations for the same image_id")
    cats = tuple(Category.from_coco(c) for c in data.get("categories") or ())
    keypoints = next(
        (
            (c["id"], tuple(str(n) for n in c["keypoints"]))
            for c in data.get("categories") or ()
            if isinstance(c, dict) and c.get("keypoints")
        ),
        None,
    )
    return PanopticJson(tuple(anns), cats, tuple(data.get("images") or ()), keypoints)


def save_panoptic_json(
    path: str | Path,
    annotations: Sequence[PanopticAnnotation],
    categories: Sequence[Category] = (),
    images: Sequence[Mapping[str, Any]] = (),
) -> None:
    """Write a COCO-panoptic JSON."""
    data = {
        "images": [dict(i) for i in images],
        "annotations": [a.to_coco() for a in annotations],
        "categories": [c.to_coco() for c in categories],
    }
    Path(path).write_text(json.dumps(data))


@dataclass
class PanopticImage:
    """One image's panoptic annotation loaded: [H, W] uint32 `id_map` (0 = void) + segments."""

    image_id: int | str
    file_name: str
    id_map: np.ndarray
    segments: SegmentsInfo


def load_panoptic_image(
    annotation: PanopticAnnotation, png_dir: str | Path, *, validate: bool = True
) -> PanopticImage:
    """Read the PNG of `annotation` from `png_dir`.

    validate: check that every id in the PNG is listed in segments_info (ValueError otherwise).
    """
    path = Path(png_dir) / annotation.file_name
    id_map = read_id_png(path)
    segments = annotation.segments
    if validate:
        try:
            dense_index(id_map, segments.ids, np.arange(1, len(segments) + 1), "the PNG's")
        except ValueError as e:
            raise ValueError(f"{path} (image_id {annotation.image_id!r}): {e} in the JSON") from e
    return PanopticImage(annotation.image_id, annotation.file_name, id_map, segments)


@dataclass(frozen=True)
class PanopticPairs:
    """Ground-truth / prediction annotation pairs, loaded lazily (`load(i)`, iteration)."""

    categories: tuple[Category, ...]
    pairs: tuple[tuple[PanopticAnnotation, PanopticAnnotation], ...]
    gt_dir: Path
    pred_dir: Path

    def __len__(self) -> int:
        return len(self.pairs)

    def load(self, i: int, *, validate: bool = True) -> tuple[PanopticImage, PanopticImage]:
        gt_ann, pred_ann = self.pairs[i]
        gt = load_panoptic_image(gt_ann, self.gt_dir, validate=validate)
        pred = load_panoptic_image(pred_ann, self.pred_dir, validate=validate)
        if gt.id_map.shape != pred.id_map.shape:
            raise ValueError(
                f"image_id {gt_ann.image_id!r}: ground truth {gt_ann.file_name} is "
                f"{gt.id_map.shape} but prediction {pred_ann.file_name} is {pred.id_map.shape}"
            )
        return gt, pred

    def __iter__(self) -> Iterator[tuple[PanopticImage, PanopticImage]]:
        return (self.load(i) for i in range(len(self)))


def open_panoptic_pairs(
    gt_json: str | Path, gt_dir: str | Path, pred_json: str | Path, pred_dir: str | Path
) -> PanopticPairs:
    """Match every ground-truth annotation with the prediction of the same image_id.

    Categories come from the ground-truth JSON. Predictions for images absent from the ground
    truth are ignored (as panopticapi); a ground-truth image without prediction raises.
    """
    for d, what in ((gt_dir, "ground-truth"), (pred_dir, "prediction")):
        if not Path(d).is_dir():
            raise FileNotFoundError(f"{what} PNG folder {d} does not exist")
    gt = load_panoptic_json(gt_json, require_categories=True)
    pred = load_panoptic_json(pred_json).by_image_id()
    missing = [a.image_id for a in gt.annotations if a.image_id not in pred]
    if missing:
        raise ValueError(
            f"{pred_json} has no prediction for image_id(s) {missing[:10]}"
            f"{' ...' if len(missing) > 10 else ''}"
        )
    pairs = tuple((a, pred[a.image_id]) for a in gt.annotations)
    return PanopticPairs(gt.categories, pairs, Path(gt_dir), Path(pred_dir))


def coco_segments_info(id_map: Any, segments: Any) -> list[dict[str, Any]]:
    """COCO `segments_info` (id, category_id, iscrowd, bbox, area) measured on `id_map`.

    id_map: [H, W] integer ids, 0 = void. segments: SegmentsInfo / result.Segments / dicts.
    Segments with no pixel are left out; ids in the map missing from `segments` raise.
    """
    ids = to_numpy(id_map)
    segs = as_segments_info(segments)
    n = len(segs)
    idx = dense_index(ids, segs.ids, np.arange(1, n + 1), "the")
    h, w = idx.shape
    area = np.bincount(idx.ravel(), minlength=n + 1)[1:]
    in_row = np.zeros((n + 1, h), bool)
    in_row[idx, np.arange(h)[:, None]] = True
    in_col = np.zeros((n + 1, w), bool)
    in_col[idx, np.arange(w)[None, :]] = True
    y0, y1 = in_row.argmax(1), h - 1 - in_row[:, ::-1].argmax(1)
    x0, x1 = in_col.argmax(1), w - 1 - in_col[:, ::-1].argmax(1)
    out = []
    for k in np.flatnonzero(area):
        out.append(
            {
                "id": int(segs.ids[k]),
                "category_id": int(segs.category_ids[k]),
                "iscrowd": int(segs.iscrowd[k]),
                "bbox": [
                    int(x0[k + 1]),
                    int(y0[k + 1]),
                    int(x1[k + 1] - x0[k + 1] + 1),
                    int(y1[k + 1] - y0[k + 1] + 1),
                ],
                "area": int(area[k]),
            }
        )
    return out


def panoptic_result_to_coco(
    result: Any, *, category_ids: Sequence[int] | None = None
) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """Our `PanopticResult` -> ([H, W] uint32 id map, COCO segments_info).

    category_ids: dataset category id of each of our contiguous ids (None: keep ours).
    """
    id_map = to_numpy(result.id_map)
    segs = as_segments_info(result.segments)
    if category_ids is not None:
        lut = np.asarray(category_ids, np.int64)
        if len(segs) and (segs.category_ids.min() < 0 or segs.category_ids.max() >= lut.size):
            raise ValueError(
                f"category ids {segs.category_ids.tolist()} out of range for a category_ids "
                f"mapping of length {lut.size}"
            )
        segs = SegmentsInfo(segs.ids, lut[segs.category_ids], segs.iscrowd)
    _check_id_range(id_map)
    return id_map.astype(np.uint32), coco_segments_info(id_map, segs)


class CocoPanopticWriter:
    """Writes predictions as COCO-panoptic: one PNG per image in `png_dir` and, on `close()`
    (or leaving the `with` block), the JSON with all annotations.

    categories: written to the JSON (optional). category_ids: our id -> dataset id (or None).
    """

    def __init__(
        self,
        json_path: str | Path,
        png_dir: str | Path,
        *,
        categories: Sequence[Category] = (),
        category_ids: Sequence[int] | None = None,
    ) -> None:
        self.json_path = Path(json_path)
        self.png_dir = Path(png_dir)
        self.png_dir.mkdir(parents=True, exist_ok=True)
        self.categories = tuple(categories)
        self.category_ids = category_ids
        self.annotations: list[PanopticAnnotation] = []

    def add(
        self, image_id: int | str, result: Any, *, file_name: str | None = None
    ) -> PanopticAnnotation:
        """Write one `PanopticResult` (or anything with `id_map` and `segments`)."""
        id_map, segments_info = panoptic_result_to_coco(result, category_ids=self.category_ids)
        name = file_name or f"{image_id}.png"
        write_id_png(self.png_dir / name, id_map)
        ann = PanopticAnnotation(image_id, name, tuple(segments_info))
        self.annotations.append(ann)
        return ann

    def close(self) -> None:
        save_panoptic_json(self.json_path, self.annotations, self.categories)

    def __enter__(self) -> CocoPanopticWriter:
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        if exc_type is None:  # no JSON for a half-written set
            self.close()
