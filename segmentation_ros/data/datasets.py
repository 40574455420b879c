"""Training / evaluation data sets: COCO-panoptic, Cityscapes panoptic and the synthetic world,
all read into one typed sample, `PanopticSample` (`data.samples`, where the conventions are
stated). `CategoryMapping` maps a data set's category ids (COCO 1..200, Cityscapes label ids
7..33, ...) to ours; data-set categories it leaves out become void.

Every data set is a `torch.utils.data.Dataset` of `PanopticSample` with a `categories`
attribute. `open_dataset(spec)` builds one from the command-line spec used by the tools.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from torch.utils.data import Dataset

from segmentation_ros.data.samples import (
    VOID_LABEL,
    PanopticSample,
    build_sample,
    read_rgb_image,
)
from segmentation_ros.panoptic.coco_io import (
    PanopticAnnotation,
    load_panoptic_image,
    load_panoptic_json,
)
from segmentation_ros.panoptic.pq import Category, SegmentsInfo
from segmentation_ros.structures.keypoints import SYNTHETIC_KEYPOINTS, flip_of

__all__ = [
    "CategoryMapping",
    "CityscapesPanopticDataset",
    "CocoPanopticDataset",
    "SyntheticPanopticDataset",
    "SyntheticSceneDataset",
    "open_dataset",
]


# ---------------------------------------------------------------------------------------------
# Categories


@dataclass(frozen=True)
class CategoryMapping:
    """A data set's categories in our order: stuff 0..S-1, then things S..S+T-1.

    stuff_names / thing_names: our categories' names.
    dataset_ids: our id -> the data set's category id (len S + T); it is also what
        `coco_io.CocoPanopticWriter(category_ids=...)` takes to write predictions back in the
        data set's ids.
    """

    stuff_names: tuple[str, ...]
    thing_names: tuple[str, ...]
    dataset_ids: tuple[int, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "stuff_names", tuple(str(n) for n in self.stuff_names))
        object.__setattr__(self, "thing_names", tuple(str(n) for n in self.thing_names))
        object.__setattr__(self, "dataset_ids", tuple(int(i) for i in self.dataset_ids))
        n = len(self.stuff_names) + len(self.thing_names)
        if len(self.dataset_ids) != n:
            raise ValueError(
                f"dataset_ids needs one id per category ({n}), got {len(self.dataset_ids)}"
            )
        if len(set(self.dataset_ids)) != n:
            raise ValueError(f"dataset_ids must be unique, got {self.dataset_ids}")
        if not self.thing_names:
            raise ValueError("a category mapping needs at least one thing category")
        if n >= VOID_LABEL:
            raise ValueError(f"at most {VOID_LABEL - 1} categories fit (255 is void), got {n}")

    @property
    def num_stuff(self) -> int:
        return len(self.stuff_names)

    @property
    def num_things(self) -> int:
        return len(self.thing_names)

    @property
    def names(self) -> tuple[str, ...]:
        """All category names in our id order (stuff, then things)."""
        return self.stuff_names + self.thing_names

    def to_ours(self, dataset_ids: np.ndarray) -> np.ndarray:
        """Data-set category ids -> our ids ([N] int64), -1 for categories left out."""
        table = dict(zip(self.dataset_ids, range(len(self.dataset_ids))))
        return np.array([table.get(int(i), -1) for i in np.ravel(dataset_ids)], np.int64)

    @staticmethod
    def from_categories(categories: Sequence[Category]) -> CategoryMapping:
        """All categories of a data set: its stuff categories in the listed order, then its
        thing categories in the listed order."""
        stuff = [c for c in categories if not c.isthing]
        things = [c for c in categories if c.isthing]
        return CategoryMapping(
            tuple(c.name for c in stuff),
            tuple(c.name for c in things),
            tuple(c.id for c in stuff + things),
        )

    @staticmethod
    def by_names(
        categories: Sequence[Category],
        stuff_names: Sequence[str],
        thing_names: Sequence[str],
    ) -> CategoryMapping:
        """Our categories (`stuff_names`, `thing_names`, e.g. a model's classes) found by name
        among a data set's `categories`; the data set's other categories become void.

        Raises ValueError naming the names that are missing or whose thing / stuff kind
        differs."""
        by_name = {c.name: c for c in categories}
        missing = [n for n in (*stuff_names, *thing_names) if n not in by_name]
        if missing:
            raise ValueError(
                f"categories {missing[:10]} are not in the data set; it has {sorted(by_name)[:40]}"
            )
        wrong = [n for n in stuff_names if by_name[n].isthing] + [
            n for n in thing_names if not by_name[n].isthing
        ]
        if wrong:
            raise ValueError(f"categories {wrong} are things / stuff the other way round")
        ids = [by_name[n].id for n in (*stuff_names, *thing_names)]
        return CategoryMapping(tuple(stuff_names), tuple(thing_names), tuple(ids))


# ---------------------------------------------------------------------------------------------
# COCO-panoptic and Cityscapes


class CocoPanopticDataset(Dataset):
    """A COCO-panoptic data set: images, one JSON and a folder of id PNGs.

    Args:
        image_dir: folder of the images (`images[i].file_name` of the JSON).
        panoptic_json: the COCO-panoptic JSON ({images, annotations, categories}).
        panoptic_dir: folder of the annotation PNGs (`annotations[i].file_name`).
        categories: our categories as a `CategoryMapping` (e.g. `CategoryMapping.by_names(...,
            model stuff / thing names)`); default: every category of the JSON, stuff first.

    `dataset[i]` reads annotation i (the JSON order) -> `PanopticSample`.
    Raises at construction: FileNotFoundError for a missing folder / JSON; ValueError for a JSON
    without categories or images, an annotation whose image is not listed, a mapping naming
    categories absent from the JSON. At `dataset[i]`: FileNotFoundError for a missing image or
    PNG, ValueError for an empty / undecodable image, sizes that differ, PNG ids absent from
    the JSON, segments with a category absent from the JSON.
    """

    def __init__(
        self,
        image_dir: str | os.PathLike,
        panoptic_json: str | os.PathLike,
        panoptic_dir: str | os.PathLike,
        categories: CategoryMapping | None = None,
    ) -> None:
        self.image_dir = Path(image_dir)
        self.panoptic_json = Path(panoptic_json)
        self.panoptic_dir = Path(panoptic_dir)
        for folder, what in ((self.image_dir, "image"), (self.panoptic_dir, "panoptic PNG")):
            if not folder.is_dir():
                raise FileNotFoundError(f"{what} folder {folder} does not exist")
        data = load_panoptic_json(self.panoptic_json, require_categories=True)
        self.json_categories = data.categories
        known = {c.id: c for c in data.categories}
        if categories is None:
            categories = CategoryMapping.from_categories(data.categories)
        else:
            absent = [i for i in categories.dataset_ids if i not in known]
            if absent:
                raise ValueError(
                    f"the category mapping names category ids {absent[:10]} that "
                    f"{self.panoptic_json} does not list"
                )
            wrong = [
                categories.names[k]
                for k, i in enumerate(categories.dataset_ids)
                if known[i].isthing != (k >= categories.num_stuff)
            ]
            if wrong:
                raise ValueError(f"categories {wrong} are things / stuff the other way round")
        self.categories = categories
        self._known_ids = np.array(sorted(known), np.int64)
        images = {}
        for entry in data.images:
            if "id" not in entry or "file_name" not in entry:
                raise ValueError(f"{self.panoptic_json}: an images entry needs id and file_name")
            images[entry["id"]] = dict(entry)
        if not images:
            raise ValueError(f"{self.panoptic_json} lists no images")
        missing = [a.image_id for a in data.annotations if a.image_id not in images]
        if missing:
            raise ValueError(
                f"{self.panoptic_json}: annotations for image ids {missing[:10]} that are not in "
                "its images list"
            )
        self.annotations: tuple[PanopticAnnotation, ...] = data.annotations
        self.images = images
        #: Names of the keypoints the segments carry (COCO `keypoints` of a category), or ().
        self.keypoint_names: tuple[str, ...] = data.keypoints[1] if data.keypoints else ()
        self.keypoint_flip = flip_of(self.keypoint_names) if self.keypoint_names else ()

    def __len__(self) -> int:
        return len(self.annotations)

    def class_pixel_counts(self) -> np.ndarray:
        """[S + T] float64 pixels of each of our classes over the data set, from the annotations'
        segment areas (no image is read); categories left out count nowhere."""
        counts = np.zeros(len(self.categories.names), np.float64)
        for ann in self.annotations:
            if not ann.segments_info:
                continue
            ours = self.categories.to_ours([s["category_id"] for s in ann.segments_info])
            areas = np.array([float(s["area"]) for s in ann.segments_info])
            np.add.at(counts, ours[ours >= 0], areas[ours >= 0])
        return counts

    def image_path(self, image_entry: Mapping[str, Any]) -> Path:
        """Path of the image of a JSON `images` entry."""
        return self.image_dir / str(image_entry["file_name"])

    def __getitem__(self, index: int) -> PanopticSample:
        ann = self.annotations[index]
        image = read_rgb_image(self.image_path(self.images[ann.image_id]))
        pan = load_panoptic_image(ann, self.panoptic_dir, validate=True)
        if pan.id_map.shape != image.shape[:2]:
            raise ValueError(
                f"image {ann.image_id!r}: image is {image.shape[:2]} but its panoptic PNG "
                f"{ann.file_name} is {pan.id_map.shape}"
            )
        segs = pan.segments
        unknown = np.setdiff1d(segs.category_ids, self._known_ids)
        if unknown.size:
            raise ValueError(
                f"image {ann.image_id!r}: segments with category ids {unknown.tolist()[:10]} "
                f"that {self.panoptic_json} does not list"
            )
        ours = self.categories.to_ours(segs.category_ids)
        keep = ours >= 0
        id_map = pan.id_map.astype(np.int64)
        if not keep.all():  # categories left out of the mapping become void
            dropped = segs.ids[~keep]
            id_map[np.isin(id_map, dropped)] = 0
        segments = SegmentsInfo(segs.ids[keep], ours[keep], segs.iscrowd[keep])
        return build_sample(
            image,
            id_map,
            segments,
            num_stuff=self.categories.num_stuff,
            image_id=ann.image_id,
            keypoints=self._keypoints(ann, segments.ids),
            keypoint_flip=self.keypoint_flip,
        )

    def _keypoints(self, ann: PanopticAnnotation, ids: np.ndarray) -> np.ndarray | None:
        """[len(ids), K, 3] COCO keypoints of the segments `ids` (zeros where a segment has
        none); None for a data set without keypoints."""
        k = len(self.keypoint_names)
        if not k:
            return None
        out = np.zeros((len(ids), k, 3), np.float32)
        row = {int(i): n for n, i in enumerate(ids)}
        for info in ann.segments_info:
            values = info.get("keypoints")
            if values is None or int(info["id"]) not in row:
                continue
            if len(values) != 3 * k:
                raise ValueError(
                    f"image {ann.image_id!r}: segment {info['id']} has {len(values) // 3} "
                    f"keypoints, the categories name {k}"
                )
            out[row[int(info["id"])]] = np.asarray(values, np.float32).reshape(k, 3)
        return out


class CityscapesPanopticDataset(CocoPanopticDataset):
    """Cityscapes in the layout of cityscapesscripts' `createPanopticImgs`:

        ROOT/leftImg8bit/{split}/{city}/{city}_{seq}_{frame}_leftImg8bit.png
        ROOT/gtFine/cityscapes_panoptic_{split}[_trainId].json
        ROOT/gtFine/cityscapes_panoptic_{split}[_trainId]/*_gtFine_panoptic.png

    split: "train", "val" or "test". use_train_id: read the `--use-train-id` conversion.
    categories: as `CocoPanopticDataset` (default: the 19 evaluated classes, 11 stuff then 8
    things, in label-id order). Crowd groups ("car group": ids < 1000) are crowd instances.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        split: str = "train",
        categories: CategoryMapping | None = None,
        *,
        use_train_id: bool = False,
    ) -> None:
        root = Path(root)
        if not root.is_dir():
            raise FileNotFoundError(f"Cityscapes root {root} does not exist")
        suffix = "_trainId" if use_train_id else ""
        base = root / "gtFine" / f"cityscapes_panoptic_{split}{suffix}"
        json_path = base.with_name(base.name + ".json")
        if not json_path.is_file():
            raise FileNotFoundError(
                f"{json_path} does not exist; create it with cityscapesscripts: "
                f"CITYSCAPES_DATASET={root} csCreatePanopticImgs --set-names {split}"
            )
        self.root = root
        self.split = split
        super().__init__(root / "leftImg8bit" / split, json_path, base, categories)

    def image_path(self, image_entry: Mapping[str, Any]) -> Path:
        name = str(image_entry["file_name"])
        city = name.split("_")[0]
        return self.image_dir / city / name


class SyntheticPanopticDataset(CocoPanopticDataset):
    """A synthetic data set written by `segmentation-ros-generate` / `synthetic.write_dataset`
    (ROOT/images, ROOT/panoptic, ROOT/panoptic.json; categories `SYNTHETIC_CLASSES`, already in
    our order)."""

    def __init__(self, root: str | os.PathLike, categories: CategoryMapping | None = None) -> None:
        root = Path(root)
        if not (root / "panoptic.json").is_file():
            raise FileNotFoundError(
                f"{root / 'panoptic.json'} does not exist; write a synthetic data set with "
                f"segmentation-ros-generate --out {root} --num N"
            )
        self.root = root
        super().__init__(root / "images", root / "panoptic.json", root / "panoptic", categories)


class SyntheticSceneDataset(Dataset):
    """Synthetic scenes generated on the fly: `dataset[i]` = `generate_scene(seeds[i], ...)`.

    seeds: non-negative ints (image ids). width, height, indoor, min_area, effects: as
    `generate_scene`. Deterministic: the same seed gives the same sample.
    """

    def __init__(
        self,
        seeds: Sequence[int],
        *,
        width: int = 640,
        height: int = 480,
        indoor: bool | None = None,
        min_area: int = 20,
        effects: bool = True,
    ) -> None:
        from segmentation_ros.data.classes import SYNTHETIC_CLASSES
        from segmentation_ros.data.synthetic_scene import check_scene_args

        self.seeds = tuple(int(s) for s in seeds)
        if not self.seeds or min(self.seeds) < 0:
            raise ValueError("seeds must be a non-empty list of non-negative ints")
        check_scene_args(width, height, indoor, min_area)
        self.kwargs = {
            "width": int(width),
            "height": int(height),
            "indoor": indoor,
            "min_area": int(min_area),
            "effects": bool(effects),
        }
        self.categories = CategoryMapping(
            SYNTHETIC_CLASSES.stuff_names,
            SYNTHETIC_CLASSES.thing_names,
            tuple(range(len(SYNTHETIC_CLASSES))),
        )

    def __len__(self) -> int:
        return len(self.seeds)

    def __getitem__(self, index: int) -> PanopticSample:
        from segmentation_ros.data.synthetic_scene import generate_scene

        seed = self.seeds[index]
        scene = generate_scene(seed, **self.kwargs)
        s = scene.segments
        segments = SegmentsInfo(s.ids, s.category_ids, s.iscrowd)
        return build_sample(
            scene.image,
            scene.id_map,
            segments,
            num_stuff=self.categories.num_stuff,
            image_id=seed,
            keypoints=s.keypoints,
            keypoint_flip=SYNTHETIC_KEYPOINTS.flip,
        )


# ---------------------------------------------------------------------------------------------
# Command-line data specs

DATA_SPECS = (
    "synthetic:DIR",
    "synthetic-live:COUNT[@WIDTHxHEIGHT]",
    "coco-panoptic:IMAGE_DIR,PANOPTIC_JSON,PANOPTIC_DIR",
    "cityscapes:ROOT[,SPLIT]",
)


def sqrt_median_frequency(pixel_counts: Sequence[float]) -> tuple[float, ...]:
    """Class weights sqrt(median(f) / f_c), f_c a class's share of the pixels: median frequency
    balancing (Eigen & Fergus, ICCV 2015), square-rooted to soften it; 1 for a class of no
    pixels (the median is over the classes that have some)."""
    counts = np.asarray(pixel_counts, np.float64)
    present = counts > 0
    if not present.any():
        raise ValueError("no class has any pixels")
    freq = counts / counts.sum()
    median = float(np.median(freq[present]))
    weights = np.ones_like(freq)
    weights[present] = np.sqrt(median / freq[present])
    return tuple(float(w) for w in weights)


def open_dataset(spec: str, categories: CategoryMapping | None = None) -> Dataset:
    """A data set from a command-line spec (one of `DATA_SPECS`):

    - `synthetic:DIR`: a written synthetic data set.
    - `synthetic-live:COUNT[@WIDTHxHEIGHT]`: COUNT scenes generated on the fly, seeds
      0..COUNT-1 (default 640x480).
    - `coco-panoptic:IMAGE_DIR,PANOPTIC_JSON,PANOPTIC_DIR`.
    - `cityscapes:ROOT[,SPLIT]` (split default "train").
    categories: passed to the data set (ignored by synthetic-live).
    Raises ValueError for a malformed spec (naming the accepted forms).
    """
    kind, sep, rest = spec.partition(":")
    if not sep or not rest:
        raise ValueError(f"bad data spec {spec!r}; expected one of {', '.join(DATA_SPECS)}")
    if kind == "synthetic":
        return SyntheticPanopticDataset(rest, categories)
    if kind == "synthetic-live":
        count, _, size = rest.partition("@")
        try:
            n = int(count)
            width, height = (int(v) for v in size.split("x")) if size else (640, 480)
        except ValueError:
            raise ValueError(
                f"bad data spec {spec!r}; expected synthetic-live:COUNT[@WIDTHxHEIGHT]"
            ) from None
        if n < 1:
            raise ValueError(f"synthetic-live needs COUNT >= 1, got {n}")
        return SyntheticSceneDataset(range(n), width=width, height=height)
    if kind == "coco-panoptic":
        parts = rest.split(",")
        if len(parts) != 3:
            raise ValueError(
                f"bad data spec {spec!r}; expected coco-panoptic:IMAGE_DIR,PANOPTIC_JSON,"
                "PANOPTIC_DIR"
            )
        return CocoPanopticDataset(*parts, categories=categories)
    if kind == "cityscapes":
        root, _, split = rest.partition(",")
        return CityscapesPanopticDataset(root, split or "train", categories)
    raise ValueError(f"unknown data kind {kind!r}; expected one of {', '.join(DATA_SPECS)}")
