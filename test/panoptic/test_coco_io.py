"""COCO-panoptic I/O: id <-> RGB, PNG + JSON round trips, writing our results, bad data."""

import json

import cv2
import numpy as np
import pytest

from segmentation_ros.panoptic.coco_io import (
    CocoPanopticWriter,
    PanopticAnnotation,
    coco_segments_info,
    id2rgb,
    load_panoptic_image,
    load_panoptic_json,
    open_panoptic_pairs,
    read_id_png,
    rgb2id,
    save_panoptic_json,
    write_id_png,
)
from segmentation_ros.panoptic.pq import Category, SegmentsInfo

CATS = (Category(1, "person", True, (220, 20, 60)), Category(7, "road", False, (128, 64, 128)))


def test_rgb2id_and_id2rgb():
    assert rgb2id((1, 2, 3)) == 1 + 2 * 256 + 3 * 65536
    assert id2rgb(1 + 2 * 256 + 3 * 65536) == (1, 2, 3)
    rgb = np.array([[[1, 2, 3], [255, 255, 255], [0, 0, 0]]], np.uint8)
    ids = rgb2id(rgb)
    assert ids.dtype == np.uint32 and ids.tolist() == [[197121, 256**3 - 1, 0]]
    rng = np.random.default_rng(0)
    many = rng.integers(0, 256**3, (17, 5))
    np.testing.assert_array_equal(rgb2id(id2rgb(many)), many)
    with pytest.raises(ValueError, match="2\\*\\*24"):
        id2rgb(np.array([256**3]))
    with pytest.raises(ValueError, match="2\\*\\*24"):
        id2rgb(-1)
    with pytest.raises(ValueError, match="RGB"):
        rgb2id(np.zeros((2, 2), np.uint8))


def test_png_round_trip_keeps_ids_and_rgb_order(tmp_path):
    ids = np.array([[0, 1, 70000], [16777215, 256, 3]], np.int64)
    write_id_png(tmp_path / "a.png", ids)
    np.testing.assert_array_equal(read_id_png(tmp_path / "a.png"), ids)
    # The file really is RGB with R as the low byte (OpenCV stores BGR).
    bgr = cv2.imread(str(tmp_path / "a.png"))
    assert bgr[0, 1].tolist() == [0, 0, 1]


def test_segments_info_measures_bbox_and_area():
    id_map = np.array([[0, 5, 5, 0], [0, 5, 0, 9], [0, 0, 0, 9]])
    segs = SegmentsInfo(np.array([5, 9, 11]), np.array([1, 7, 1]), np.array([0, 1, 0]))
    info = coco_segments_info(id_map, segs)
    assert info == [
        {"id": 5, "category_id": 1, "iscrowd": 0, "bbox": [1, 0, 2, 2], "area": 3},
        {"id": 9, "category_id": 7, "iscrowd": 1, "bbox": [3, 1, 1, 2], "area": 2},
    ]  # 11 has no pixel: left out


def make_dataset(root, name, images):
    """images: {image_id: (id_map, segments_info)} -> JSON + PNG folder under root."""
    png_dir = root / name
    png_dir.mkdir()
    anns = []
    for image_id, (id_map, segments) in images.items():
        write_id_png(png_dir / f"{image_id}.png", id_map)
        anns.append(PanopticAnnotation(image_id, f"{image_id}.png", tuple(segments)))
    images_json = [
        {"id": i, "file_name": f"{i}.jpg", "height": m.shape[0], "width": m.shape[1]}
        for i, (m, _) in images.items()
    ]
    save_panoptic_json(root / f"{name}.json", anns, CATS, images_json)
    return root / f"{name}.json", png_dir


def test_json_and_png_round_trip(tmp_path):
    id_map = np.array([[0, 300000, 300000], [2, 2, 2]])
    segments = coco_segments_info(
        id_map, SegmentsInfo(np.array([300000, 2]), np.array([1, 7]), np.array([1, 0]))
    )
    json_path, png_dir = make_dataset(tmp_path, "gt", {42: (id_map, segments)})
    data = load_panoptic_json(json_path)
    assert data.categories == CATS
    assert data.images[0] == {"id": 42, "file_name": "42.jpg", "height": 2, "width": 3}
    (ann,) = data.annotations
    assert ann.image_id == 42 and list(ann.segments_info) == segments
    image = load_panoptic_image(ann, png_dir)
    np.testing.assert_array_equal(image.id_map, id_map)
    assert image.segments.iscrowd.tolist() == [True, False]


def test_writer_stores_our_panoptic_result(tmp_path):
    torch = pytest.importorskip("torch")
    from segmentation_ros.panoptic.result import PanopticResult, Segments

    id_map = torch.tensor([[1, 1, 0], [2, 2, 2]], dtype=torch.int32)
    result = PanopticResult(
        id_map,
        Segments(
            ids=torch.tensor([1, 2], dtype=torch.int32),
            class_ids=torch.tensor([1, 0]),  # ours: 0 = road (stuff), 1 = person (thing)
            is_thing=torch.tensor([True, False]),
            areas=torch.tensor([2, 3]),
            scores=torch.tensor([0.9, 0.8]),
        ),
    )
    with CocoPanopticWriter(
        tmp_path / "pred.json", tmp_path / "pred", categories=CATS, category_ids=[7, 1]
    ) as writer:
        writer.add(5, result)
    data = json.loads((tmp_path / "pred.json").read_text())
    assert data["annotations"] == [
        {
            "image_id": 5,
            "file_name": "5.png",
            "segments_info": [
                {"id": 1, "category_id": 1, "iscrowd": 0, "bbox": [0, 0, 2, 1], "area": 2},
                {"id": 2, "category_id": 7, "iscrowd": 0, "bbox": [0, 1, 3, 1], "area": 3},
            ],
        }
    ]
    assert data["categories"][0] == {
        "id": 1,
        "name": "person",
        "isthing": 1,
        "color": [220, 20, 60],
    }
    np.testing.assert_array_equal(read_id_png(tmp_path / "pred" / "5.png"), id_map.numpy())


def test_pairs_load_lazily_and_match_image_ids(tmp_path):
    m = np.array([[1, 1], [2, 2]])
    segs = [{"id": 1, "category_id": 1, "iscrowd": 0}, {"id": 2, "category_id": 7, "iscrowd": 0}]
    gt = make_dataset(tmp_path, "gt", {1: (m, segs), 2: (m, segs)})
    pred = make_dataset(tmp_path, "pred", {2: (m, segs), 1: (m * 0, []), 3: (m, segs)})
    pairs = open_panoptic_pairs(gt[0], gt[1], pred[0], pred[1])
    assert len(pairs) == 2 and pairs.categories == CATS
    loaded = list(pairs)
    assert [(g.image_id, p.image_id) for g, p in loaded] == [(1, 1), (2, 2)]
    assert loaded[0][1].id_map.sum() == 0


def test_bad_data_raises_clear_errors(tmp_path):
    m = np.array([[1, 1], [2, 2]])
    segs = [{"id": 1, "category_id": 1, "iscrowd": 0}, {"id": 2, "category_id": 7, "iscrowd": 0}]
    gt_json, gt_dir = make_dataset(tmp_path, "gt", {1: (m, segs)})
    ann = load_panoptic_json(gt_json).annotations[0]

    with pytest.raises(FileNotFoundError, match="nope.json"):
        load_panoptic_json(tmp_path / "nope.json")
    with pytest.raises(FileNotFoundError, match="folder"):
        open_panoptic_pairs(gt_json, tmp_path / "nodir", gt_json, gt_dir)
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_panoptic_json(tmp_path / "bad.json")
    (tmp_path / "noann.json").write_text('{"images": []}')
    with pytest.raises(ValueError, match="annotations"):
        load_panoptic_json(tmp_path / "noann.json")
    (tmp_path / "badseg.json").write_text(
        '{"annotations": [{"image_id": 1, "file_name": "1.png", "segments_info": [{"id": 1}]}]}'
    )
    with pytest.raises(ValueError, match="badseg.json: annotation 0: .*category_id"):
        load_panoptic_json(tmp_path / "badseg.json")
    with pytest.raises(OSError, match="could not write"):
        write_id_png(tmp_path / "no" / "such" / "dir.png", np.ones((2, 2), int))
    with pytest.raises(ValueError, match="categories"):
        load_panoptic_json(tmp_path / "badseg.json", require_categories=True)

    # A PNG id absent from the JSON.
    write_id_png(gt_dir / "1.png", np.array([[1, 1], [2, 3]]))
    with pytest.raises(ValueError, match=r"\[3\].*JSON"):
        load_panoptic_image(ann, gt_dir)
    # Missing, empty and undecodable PNGs; a grey-level PNG.
    with pytest.raises(FileNotFoundError, match="1.png"):
        load_panoptic_image(ann, tmp_path)
    (gt_dir / "1.png").write_bytes(b"")
    with pytest.raises(ValueError, match="cannot decode"):
        read_id_png(gt_dir / "1.png")
    (gt_dir / "1.png").write_bytes(b"\x89PNG garbage")
    with pytest.raises(ValueError, match="cannot decode"):
        read_id_png(gt_dir / "1.png")
    cv2.imwrite(str(gt_dir / "grey.png"), np.zeros((2, 2), np.uint8))
    with pytest.raises(ValueError, match="8-bit RGB"):
        read_id_png(gt_dir / "grey.png")

    # A ground-truth image without prediction.
    pred_json, pred_dir = make_dataset(tmp_path, "pred", {9: (m, segs)})
    with pytest.raises(ValueError, match=r"no prediction for image_id\(s\) \[1\]"):
        open_panoptic_pairs(gt_json, gt_dir, pred_json, pred_dir)
    with pytest.raises(ValueError, match="non-empty"):
        write_id_png(tmp_path / "x.png", np.zeros((0, 3), int))


def test_pq_command_end_to_end(tmp_path, capsys):
    from segmentation_ros.tools.eval import main

    gt_map = np.array([[1, 1, 1, 1, 1], [1, 1, 1, 1, 1], [2, 2, 2, 2, 2], [2, 2, 2, 2, 2]])
    gt_segs = [{"id": 1, "category_id": 1, "iscrowd": 0}, {"id": 2, "category_id": 7, "iscrowd": 0}]
    pred_near = gt_map.copy()
    pred_near[1, 1:] = 0  # person IoU 6/10
    gt = make_dataset(tmp_path, "gt", {1: (gt_map, gt_segs), 2: (gt_map, gt_segs)})
    pred = make_dataset(tmp_path, "pred", {1: (gt_map, gt_segs), 2: (pred_near, gt_segs)})
    argv = ["pq", "--gt-json", str(gt[0]), "--gt-dir", str(gt[1]), "--pred-json", str(pred[0])]
    assert main([*argv, "--pred-dir", str(pred[1]), "--workers", "2"]) == 0
    out = capsys.readouterr().out
    assert "person" in out and "Things" in out
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["Things"] == {
        "pq": pytest.approx(0.8),
        "sq": pytest.approx(0.8),
        "rq": 1.0,
        "n": 1,
    }
    assert summary["Stuff"] == {"pq": 1.0, "sq": 1.0, "rq": 1.0, "n": 1}
    assert summary["All"]["pq"] == pytest.approx(0.9) and summary["images"] == 2

    # Bad data: one line on stderr naming the image, exit status 1.
    write_id_png(pred[1] / "2.png", gt_map * 3)
    assert main([*argv, "--pred-dir", str(pred[1])]) == 1
    err = capsys.readouterr().err
    assert "image_id 2" in err and "[3, 6]" in err


def test_png_with_alpha_channel_reads_rgb_ids(tmp_path):
    rgba = np.array([[[1, 2, 3, 255], [0, 0, 0, 255]]], np.uint8)  # RGBA, alpha ignored
    cv2.imwrite(str(tmp_path / "a.png"), cv2.cvtColor(rgba, cv2.COLOR_RGBA2BGRA))
    assert read_id_png(tmp_path / "a.png").tolist() == [[rgb2id((1, 2, 3)), 0]]


def test_pyspng_and_opencv_decode_the_same_ids(tmp_path, monkeypatch):
    """The fast decoder (pyspng, in requirements.txt) and the OpenCV fallback agree, RGB and
    RGBA; ids written by OpenCV, compared with rgb2id of the colours."""
    from segmentation_ros.panoptic import coco_io

    assert coco_io._pyspng is not None, "pyspng (requirements.txt) is not installed"
    rng = np.random.default_rng(5)
    rgb = rng.integers(0, 256, (13, 17, 3), dtype=np.uint8)
    rgba = np.concatenate([rgb, rng.integers(0, 256, (13, 17, 1), dtype=np.uint8)], axis=2)
    cv2.imwrite(str(tmp_path / "rgb.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    cv2.imwrite(str(tmp_path / "rgba.png"), cv2.cvtColor(rgba, cv2.COLOR_RGBA2BGRA))
    fast = [read_id_png(tmp_path / n) for n in ("rgb.png", "rgba.png")]
    monkeypatch.setattr(coco_io, "_pyspng", None)
    slow = [read_id_png(tmp_path / n) for n in ("rgb.png", "rgba.png")]
    for a, b in zip(fast, slow):
        assert a.dtype == b.dtype == np.uint32
        np.testing.assert_array_equal(a, rgb2id(rgb))
        np.testing.assert_array_equal(b, rgb2id(rgb))
