"""Data sets: COCO-panoptic, Cityscapes layout and synthetic loaders -> PanopticSample, category
mappings, and the errors for bad data."""

import json

import cv2
import numpy as np
import pytest

from segmentation_ros.data.datasets import (
    CategoryMapping,
    CityscapesPanopticDataset,
    CocoPanopticDataset,
    SyntheticPanopticDataset,
    SyntheticSceneDataset,
    open_dataset,
    sqrt_median_frequency,
)
from segmentation_ros.data.samples import VOID_LABEL, PanopticSample, build_sample
from segmentation_ros.data.synthetic import write_dataset
from segmentation_ros.panoptic.coco_io import write_id_png
from segmentation_ros.panoptic.pq import Category, SegmentsInfo

# Data-set category ids on purpose neither contiguous nor stuff-first (Cityscapes-like).
CATEGORIES = [
    {"id": 7, "name": "road", "isthing": 0, "color": [128, 64, 128]},
    {"id": 23, "name": "sky", "isthing": 0, "color": [70, 130, 180]},
    {"id": 24, "name": "person", "isthing": 1, "color": [220, 20, 60]},
    {"id": 26, "name": "car", "isthing": 1, "color": [0, 0, 142]},
    {"id": 21, "name": "vegetation", "isthing": 0, "color": [107, 142, 35]},
]
H, W = 24, 32


def _scene(seed: int):
    """An image and a COCO id map (large ids, as COCO / Cityscapes) with its segments_info."""
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
    ids = np.zeros((H, W), np.int64)
    ids[:8] = 23  # sky
    ids[8:] = 7  # road
    ids[10:20, 3:9] = 26001  # car 1
    ids[12:22, 20 : 23 + seed] = 24002  # person
    ids[2:5, 25:30] = 26  # a crowd of cars
    ids[22:, :2] = 0  # void
    segments = [
        {"id": 23, "category_id": 23, "iscrowd": 0},
        {"id": 7, "category_id": 7, "iscrowd": 0},
        {"id": 26001, "category_id": 26, "iscrowd": 0},
        {"id": 24002, "category_id": 24, "iscrowd": 0},
        {"id": 26, "category_id": 26, "iscrowd": 1},
    ]
    return image, ids, segments


def _write_coco(root, num=2, *, image_ids=None):
    (root / "images").mkdir(parents=True)
    (root / "panoptic").mkdir()
    images, annotations = [], []
    for i in range(num):
        image, ids, segments = _scene(i)
        cv2.imwrite(str(root / "images" / f"{i}.png"), image[..., ::-1])
        write_id_png(root / "panoptic" / f"{i}.png", ids)
        image_id = image_ids[i] if image_ids else i
        images.append({"id": image_id, "file_name": f"{i}.png", "width": W, "height": H})
        annotations.append(
            {"image_id": image_id, "file_name": f"{i}.png", "segments_info": segments}
        )
    data = {"images": images, "annotations": annotations, "categories": CATEGORIES}
    (root / "panoptic.json").write_text(json.dumps(data))
    return root


def assert_consistent(sample: PanopticSample) -> None:
    """Semantic, masks, boxes, id map and segments agree (the sample's contract)."""
    h, w = sample.semantic.shape
    assert sample.image.shape == (h, w, 3) and sample.id_map.shape == (h, w)
    assert sample.masks.shape == (len(sample), h, w) and sample.masks.dtype == bool
    assert sample.semantic.dtype == np.int64 and sample.boxes.dtype == np.float32
    assert sample.classes.dtype == np.int64 and sample.iscrowd.dtype == bool
    segs = sample.segments
    np.testing.assert_array_equal(segs.ids, np.arange(1, len(segs) + 1))
    assert set(np.unique(sample.id_map)) - {0} == set(segs.ids.tolist())  # no empty segment
    lut = np.concatenate([[VOID_LABEL], segs.category_ids])
    np.testing.assert_array_equal(sample.semantic, lut[sample.id_map])
    for n in range(len(sample)):
        mask = sample.masks[n]
        np.testing.assert_array_equal(mask, sample.id_map == sample.instance_ids[n])
        ys, xs = np.nonzero(mask)
        assert ys.size > 0, "an empty instance was kept"
        expected = [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
        np.testing.assert_array_equal(sample.boxes[n], expected)
        category = segs.category_ids[sample.instance_ids[n] - 1]
        assert sample.classes[n] == category - sample.num_stuff
        assert sample.iscrowd[n] == segs.iscrowd[sample.instance_ids[n] - 1]


def test_category_mapping_orders_stuff_first():
    cats = [Category.from_coco(c) for c in CATEGORIES]
    m = CategoryMapping.from_categories(cats)
    assert m.stuff_names == ("road", "sky", "vegetation")
    assert m.thing_names == ("person", "car")
    assert m.dataset_ids == (7, 23, 21, 24, 26)
    np.testing.assert_array_equal(m.to_ours(np.array([26, 7, 99])), [4, 0, -1])
    sub = CategoryMapping.by_names(cats, ("sky",), ("car",))
    assert sub.dataset_ids == (23, 26) and sub.num_stuff == 1
    with pytest.raises(ValueError, match="not in the data set"):
        CategoryMapping.by_names(cats, ("sea",), ("car",))
    with pytest.raises(ValueError, match="other way round"):
        CategoryMapping.by_names(cats, ("car",), ("person",))
    with pytest.raises(ValueError, match="unique"):
        CategoryMapping(("a",), ("b",), (1, 1))


def test_coco_panoptic_dataset(tmp_path):
    root = _write_coco(tmp_path)
    ds = CocoPanopticDataset(root / "images", root / "panoptic.json", root / "panoptic")
    assert len(ds) == 2
    assert ds.categories.names == ("road", "sky", "vegetation", "person", "car")
    s = ds[0]
    assert_consistent(s)
    image, ids, _ = _scene(0)
    np.testing.assert_array_equal(s.image, image)
    assert s.image_id == 0 and s.num_stuff == 3
    # semantic: our ids, void 255
    assert s.semantic[0, 0] == 1 and s.semantic[23, 10] == 0 and s.semantic[23, 0] == VOID_LABEL
    # instances: car (class 1), person (class 0), crowd car (class 1, iscrowd)
    order = np.argsort(s.boxes[:, 0])
    np.testing.assert_array_equal(s.classes[order], [1, 0, 1])
    np.testing.assert_array_equal(s.iscrowd[order], [False, False, True])
    np.testing.assert_array_equal(s.boxes[order[0]], [3, 10, 9, 20])
    np.testing.assert_array_equal(s.boxes[order[2]], [25, 2, 30, 5])
    assert s.semantic[3, 26] == 4  # crowd pixels keep their category


def test_coco_dataset_with_a_subset_mapping_voids_the_rest(tmp_path):
    root = _write_coco(tmp_path, 1)
    cats = [Category.from_coco(c) for c in CATEGORIES]
    ds = CocoPanopticDataset(
        root / "images",
        root / "panoptic.json",
        root / "panoptic",
        CategoryMapping.by_names(cats, ("road",), ("car",)),
    )
    s = ds[0]
    assert_consistent(s)
    assert s.semantic[0, 0] == VOID_LABEL  # sky left out -> void
    assert set(np.unique(s.semantic).tolist()) == {0, 1, VOID_LABEL}
    np.testing.assert_array_equal(np.sort(s.classes), [0, 0])  # two car instances, no person


def test_cityscapes_layout(tmp_path):
    root = tmp_path / "cityscapes"
    names = ["aachen_000000_000019", "bochum_000000_000313"]
    pan_dir = root / "gtFine" / "cityscapes_panoptic_train"
    pan_dir.mkdir(parents=True)
    images, annotations = [], []
    for i, name in enumerate(names):
        image, ids, segments = _scene(i)
        city = name.split("_")[0]
        (root / "leftImg8bit" / "train" / city).mkdir(parents=True)
        cv2.imwrite(str(root / "leftImg8bit" / "train" / city / f"{name}_leftImg8bit.png"), image)
        write_id_png(pan_dir / f"{name}_gtFine_panoptic.png", ids)
        images.append({"id": name, "file_name": f"{name}_leftImg8bit.png", "width": W, "height": H})
        annotations.append(
            {
                "image_id": name,
                "file_name": f"{name}_gtFine_panoptic.png",
                "segments_info": segments,
            }
        )
    data = {"images": images, "annotations": annotations, "categories": CATEGORIES}
    (root / "gtFine" / "cityscapes_panoptic_train.json").write_text(json.dumps(data))
    ds = CityscapesPanopticDataset(root, "train")
    assert len(ds) == 2
    s = ds[1]
    assert_consistent(s)
    assert s.image_id == "bochum_000000_000313"
    np.testing.assert_array_equal(s.image, _scene(1)[0][..., ::-1])  # written as BGR above
    assert isinstance(open_dataset(f"cityscapes:{root},train"), CityscapesPanopticDataset)
    with pytest.raises(FileNotFoundError, match="csCreatePanopticImgs"):
        CityscapesPanopticDataset(root, "val")


def test_synthetic_written_and_live_agree(tmp_path):
    write_dataset(tmp_path / "syn", [3, 4], width=64, height=48, image_format="png")
    written = SyntheticPanopticDataset(tmp_path / "syn")
    live = SyntheticSceneDataset([3, 4], width=64, height=48)
    assert written.categories == live.categories
    assert written.categories.num_stuff == 10 and written.categories.num_things == 5
    for i in range(2):
        a, b = written[i], live[i]
        assert_consistent(a)
        assert a.image_id == b.image_id
        np.testing.assert_array_equal(a.image, b.image)
        np.testing.assert_array_equal(a.semantic, b.semantic)
        np.testing.assert_array_equal(a.boxes, b.boxes)
        np.testing.assert_array_equal(a.classes, b.classes)
    spec = open_dataset("synthetic-live:3@48x40")
    assert len(spec) == 3 and spec[0].image.shape == (40, 48, 3)
    assert isinstance(open_dataset(f"synthetic:{tmp_path / 'syn'}"), SyntheticPanopticDataset)


def test_build_sample_drops_empty_segments_and_renumbers():
    image = np.zeros((4, 5, 3), np.uint8)
    ids = np.array([[0, 9, 9, 0, 0]] * 4)
    segs = SegmentsInfo(np.array([5, 9]), np.array([2, 0]), np.array([False, False]))
    s = build_sample(image, ids, segs, num_stuff=1)
    assert len(s.segments) == 1 and s.segments.category_ids.tolist() == [0]
    assert set(np.unique(s.id_map).tolist()) == {0, 1} and len(s) == 0
    assert s.boxes.shape == (0, 4) and s.masks.shape == (0, 4, 5)


# ---------------------------------------------------------------------------------------------
# Bad data


def _coco(root):
    return CocoPanopticDataset(root / "images", root / "panoptic.json", root / "panoptic")


def test_missing_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="image folder"):
        CocoPanopticDataset(tmp_path / "nope", tmp_path / "p.json", tmp_path)
    root = _write_coco(tmp_path / "a")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        CocoPanopticDataset(root / "images", root / "missing.json", root / "panoptic")
    (root / "images" / "1.png").unlink()
    with pytest.raises(FileNotFoundError, match="1.png"):
        _coco(root)[1]
    (root / "panoptic" / "0.png").unlink()
    with pytest.raises(FileNotFoundError, match="panoptic PNG"):
        _coco(root)[0]
    with pytest.raises(FileNotFoundError, match="segmentation-ros-generate"):
        SyntheticPanopticDataset(tmp_path / "empty")


def test_png_ids_absent_from_the_json(tmp_path):
    root = _write_coco(tmp_path)
    _, ids, _ = _scene(0)
    ids[0, 0] = 12345
    write_id_png(root / "panoptic" / "0.png", ids)
    with pytest.raises(ValueError, match="12345"):
        _coco(root)[0]


def test_empty_or_corrupt_image(tmp_path):
    root = _write_coco(tmp_path)
    (root / "images" / "0.png").write_bytes(b"")
    with pytest.raises(ValueError, match="cannot decode"):
        _coco(root)[0]
    cv2.imwrite(str(root / "images" / "1.png"), np.zeros((H + 1, W, 3), np.uint8))
    with pytest.raises(ValueError, match="differ|is \\("):
        _coco(root)[1]


def test_bad_json_contents(tmp_path):
    root = _write_coco(tmp_path)
    data = json.loads((root / "panoptic.json").read_text())
    data["annotations"][0]["segments_info"][0]["category_id"] = 99
    (root / "panoptic.json").write_text(json.dumps(data))
    with pytest.raises(ValueError, match="category ids \\[99\\]"):
        _coco(root)[0]
    data["annotations"][0]["image_id"] = 77
    (root / "panoptic.json").write_text(json.dumps(data))
    with pytest.raises(ValueError, match="not in its images list"):
        _coco(root)
    data["images"] = []
    (root / "panoptic.json").write_text(json.dumps(data))
    with pytest.raises(ValueError, match="no images"):
        _coco(root)
    cats = [Category(5, "x", True)]
    root2 = _write_coco(tmp_path / "b")
    with pytest.raises(ValueError, match="does not list"):
        CocoPanopticDataset(
            root2 / "images",
            root2 / "panoptic.json",
            root2 / "panoptic",
            CategoryMapping.from_categories(cats),
        )


def test_bad_specs():
    for spec in ("nothing", "foo:bar", "synthetic-live:x", "coco-panoptic:a,b"):
        with pytest.raises(ValueError, match="spec|kind"):
            open_dataset(spec)
    with pytest.raises(ValueError, match="image is empty"):
        build_sample(
            np.zeros((0, 4, 3), np.uint8),
            np.zeros((0, 4), np.int32),
            SegmentsInfo(np.zeros(0), np.zeros(0)),
            num_stuff=0,
        )


def test_class_pixel_counts_are_the_written_scenes_pixels(tmp_path):
    # From the annotations' areas only; checked against the scenes' own semantic maps.
    write_dataset(tmp_path / "syn", [3, 4], width=64, height=48, image_format="png")
    counts = SyntheticPanopticDataset(tmp_path / "syn").class_pixel_counts()
    live = SyntheticSceneDataset([3, 4], width=64, height=48)
    truth = np.zeros(15)
    for i in range(2):
        sem = live[i].semantic
        truth += np.bincount(sem[sem != VOID_LABEL].ravel(), minlength=15)[:15]
    np.testing.assert_array_equal(counts, truth)


def test_sqrt_median_frequency_weights():
    # shares 1/21, 4/21, 16/21: median 4/21 -> sqrt(4), sqrt(1), sqrt(1/4); no pixels -> 1
    assert sqrt_median_frequency([1, 4, 16, 0]) == pytest.approx((2.0, 1.0, 0.5, 1.0))
    with pytest.raises(ValueError, match="no class"):
        sqrt_median_frequency([0, 0])
