"""The synthetic world: determinism, exact annotations, geometry, writers and the CLI."""

import json
import math

import cv2
import numpy as np
import pytest

from segmentation_ros.data.classes import (
    DRIVABLE_NAMES,
    STUFF_NAMES,
    SYNTHETIC_CLASSES,
    THING_NAMES,
    ClassTable,
    SyntheticClass,
)
from segmentation_ros.data.synthetic import (
    SceneCamera,
    colorize_panoptic,
    generate_scene,
    rgb_to_id_map,
    write_dataset,
)
from segmentation_ros.data.synthetic_catalogue import DRAW, PARAMS, RADIUS
from segmentation_ros.data.synthetic_render import Canvas
from segmentation_ros.data.synthetic_shapes import Light, Thing
from segmentation_ros.tools.generate import main as generate_main

SMALL = {"width": 160, "height": 120}


@pytest.fixture(scope="module")
def scenes():
    """Small scenes covering every layout, plus two at full size."""
    out = [generate_scene(s, **SMALL) for s in range(14)]
    out += [generate_scene(100, indoor=True), generate_scene(101, indoor=False)]
    kinds = {s.kind for s in out}
    assert kinds == {"street", "rural", "park", "indoor"}, kinds
    return out


# ------------------------------------------------------------------ class table


def test_class_table_convention():
    t = SYNTHETIC_CLASSES
    assert [c.id for c in t] == list(range(len(t)))
    assert t.stuff_names == STUFF_NAMES and t.thing_names == THING_NAMES
    assert t.names == STUFF_NAMES + THING_NAMES  # stuff 0..S-1, things S..S+T-1
    assert not t.isthing()[: t.num_stuff].any() and t.isthing()[t.num_stuff :].all()
    drivable = dict(zip(t.names, t.drivable()))
    for name in ("road", "sidewalk", "floor", "terrain"):
        assert drivable[name], name
    for name in ("grass", "sky", "wall", "vegetation", "person", "car", "traffic_cone"):
        assert not drivable[name], name
    assert set(DRIVABLE_NAMES) == {n for n, d in drivable.items() if d}
    coco = t.to_coco()
    assert all({"id", "name", "isthing", "color", "drivable"} <= set(c) for c in coco)
    assert t.id_of("person") == t.num_stuff
    with pytest.raises(ValueError, match="unknown class"):
        t.id_of("unicorn")


def test_class_table_agrees_with_drivable_defaults():
    try:
        from segmentation_ros.drivable.classes import DrivabilityTable
    except ImportError:  # pragma: no cover - the drivable package is optional here
        pytest.skip("segmentation_ros.drivable.classes not available")
    table = DrivabilityTable.from_panoptic(STUFF_NAMES, THING_NAMES)
    assert table.drivable_names == DRIVABLE_NAMES


def test_class_table_rejects_bad_tables():
    road = SyntheticClass(0, "road", False, (1, 2, 3), True)
    with pytest.raises(ValueError, match="cannot be drivable"):
        ClassTable((road, SyntheticClass(1, "car", True, (0, 0, 0), True)))
    with pytest.raises(ValueError, match="before thing"):
        ClassTable(
            (
                SyntheticClass(0, "car", True, (0, 0, 0), False),
                SyntheticClass(1, "road", False, (0, 0, 0), True),
            )
        )
    with pytest.raises(ValueError, match="ids must be"):
        ClassTable((SyntheticClass(1, "road", False, (0, 0, 0), True),))


# ------------------------------------------------------------------ determinism


def test_same_seed_same_bytes_different_seed_differs():
    a = generate_scene(7, **SMALL)
    b = generate_scene(7, **SMALL)
    assert a.image.tobytes() == b.image.tobytes()
    assert a.id_map.tobytes() == b.id_map.tobytes()
    assert a.segments.to_coco() == b.segments.to_coco()
    assert a.camera == b.camera
    c = generate_scene(8, **SMALL)
    assert a.image.tobytes() != c.image.tobytes()


# ------------------------------------------------------------------ annotations


def _check_annotation(scene, min_area=20):
    img, ids, segs = scene.image, scene.id_map, scene.segments
    h, w = ids.shape
    assert img.shape == (h, w, 3) and img.dtype == np.uint8
    assert ids.dtype == np.int32
    n = len(segs)
    assert segs.ids.tolist() == list(range(1, n + 1))
    present = set(np.unique(ids).tolist()) - {0}
    assert present == set(segs.ids.tolist())  # every non-zero id has a segment and vice versa
    assert (segs.iscrowd == 0).all()
    assert ((segs.category_ids >= 0) & (segs.category_ids < len(SYNTHETIC_CLASSES))).all()
    stuff = segs.category_ids[~segs.is_thing]
    assert len(set(stuff.tolist())) == len(stuff)  # one segment per stuff class
    for i, area, (x, y, bw, bh) in zip(segs.ids, segs.areas, segs.bboxes):
        rows, cols = np.nonzero(ids == i)
        assert area == len(rows) >= min_area
        assert (x, y, bw, bh) == (
            cols.min(),
            rows.min(),
            cols.max() - cols.min() + 1,
            rows.max() - rows.min() + 1,
        )
    things = segs.is_thing
    assert np.isfinite(segs.ground_xy[things]).all() and np.isnan(segs.ground_xy[~things]).all()


def test_annotations_match_id_map(scenes):
    for scene in scenes:
        _check_annotation(scene)
        assert (scene.id_map > 0).mean() > 0.99  # void only where tiny segments were dropped


def test_min_area_zero_keeps_every_visible_segment():
    full = generate_scene(3, **SMALL, min_area=0)
    _check_annotation(full, min_area=1)
    assert (full.id_map > 0).all()
    dropped = generate_scene(3, **SMALL, min_area=200)
    _check_annotation(dropped, min_area=200)
    assert len(dropped.segments) <= len(full.segments)


def test_semantic_map_and_colorize(scenes):
    scene = scenes[0]
    sem = scene.semantic_map()
    cat = dict(zip(scene.segments.ids.tolist(), scene.segments.category_ids.tolist()))
    for i in np.unique(scene.id_map):
        assert (sem[scene.id_map == i] == (cat[i] if i else 255)).all()
    with pytest.raises(ValueError, match="void_label"):
        scene.semantic_map(void_label=3)
    vis = colorize_panoptic(scene.id_map, scene.segments)
    assert vis.shape == scene.image.shape and vis.dtype == np.uint8


def test_to_panoptic_result(scenes):
    torch = pytest.importorskip("torch")
    scene = scenes[1]
    result = scene.to_panoptic_result()
    assert result.id_map.dtype == torch.int32 and len(result.segments) == len(scene.segments)
    expected = torch.from_numpy(scene.semantic_map().astype(np.int64))
    assert torch.equal(result.semantic_map(), expected)


def test_indoor_and_outdoor_are_respected():
    t = SYNTHETIC_CLASSES
    for seed in range(3):
        indoor = generate_scene(seed, **SMALL, indoor=True)
        outdoor = generate_scene(seed, **SMALL, indoor=False)
        assert indoor.kind == "indoor" and outdoor.kind != "indoor"
        assert t.id_of("sky") not in indoor.segments.category_ids
        assert t.id_of("floor") in indoor.segments.category_ids
        assert t.id_of("floor") not in outdoor.segments.category_ids


# ------------------------------------------------------------------ geometry


def test_camera_transform_and_projection():
    cam = SceneCamera.from_fov(320, 240, 90.0, camera_height=1.0, pitch=math.radians(20))
    c, s = math.cos(cam.pitch), math.sin(cam.pitch)
    expected = np.array([[0, -s, c, 0], [-1, 0, 0, 0], [0, -c, -s, 1.0], [0, 0, 0, 1]])
    np.testing.assert_allclose(cam.camera_to_base, expected, atol=1e-12)
    np.testing.assert_allclose(cam.K, [[160, 0, 159.5], [0, 160, 119.5], [0, 0, 1]])
    x, y, valid = cam.ground_points()
    rows, cols = np.nonzero(valid)
    pick = np.linspace(0, len(rows) - 1, 50).astype(int)
    pts = np.stack([x[rows[pick], cols[pick]], y[rows[pick], cols[pick]], np.zeros(50)], 1)
    uv, depth = cam.project(pts)
    assert (depth > 0).all()
    np.testing.assert_allclose(uv, np.stack([cols[pick], rows[pick]], 1), atol=1e-6)
    # ground rows start just below the horizon; a point 1 km ahead projects next to it
    assert rows.min() == math.floor(cam.horizon_row) + 1
    uv_far, _ = cam.project(np.array([[1000.0, 0.0, 0.0]]))
    assert 0 < uv_far[0, 1] - cam.horizon_row < 0.3
    # optical axis is the third column of the rotation: forward and down by the pitch
    np.testing.assert_allclose(cam.rotation @ [0, 0, 1], [c, 0, -s])


def test_camera_rejects_bad_values():
    with pytest.raises(ValueError, match="width"):
        SceneCamera(100, 100, 10, 10, 0, 10, 1.0, 0.0)
    with pytest.raises(ValueError, match="focal"):
        SceneCamera(0, 100, 10, 10, 20, 10, 1.0, 0.0)
    with pytest.raises(ValueError, match="camera_height"):
        SceneCamera(100, 100, 10, 10, 20, 10, -1.0, 0.0)
    with pytest.raises(ValueError, match="pitch"):
        SceneCamera(100, 100, 10, 10, 20, 10, 1.0, 2.0)


def _contact_points(t: Thing) -> np.ndarray:
    """Where the object touches the ground, from its parameters ([N, 3] base_link)."""
    p = t.params
    if t.kind == "car":
        a, b = p["length"] / 2 - 0.19 * p["length"], p["width"] / 2
    elif t.kind == "bicycle":
        a, b = p["wheelbase"] / 2, 0.0
    elif t.kind == "box":
        a, b = p["size"][0] / 2, p["size"][1] / 2
    elif t.kind == "traffic_cone":
        a = b = p["base"] / 2
    else:
        a = b = 0.0
    f = np.array([math.cos(t.yaw), math.sin(t.yaw)])
    left = np.array([-f[1], f[0]])
    pts = [(t.x, t.y) + sa * a * f + sb * b * left for sa in (-1, 1) for sb in (-1, 1)]
    return np.concatenate([np.array(pts), np.zeros((4, 1))], 1)


@pytest.mark.parametrize("kind", ["person", "car", "bicycle", "traffic_cone", "box"])
def test_things_stand_on_the_ground_and_shrink_with_distance(kind):
    cam = SceneCamera.from_fov(640, 480, 70.0, camera_height=0.8, pitch=math.radians(5))
    light = Light(np.array([0.0, 0.0, 1.0]), 0.6, 0.4)
    params = PARAMS[kind](np.random.default_rng(1))
    heights = []
    for dist in (8.0, 16.0):
        canvas = Canvas(cam)
        thing = Thing(kind, dist, 0.3, 0.4, RADIUS[kind](params), params)
        DRAW[kind](canvas, thing, 1, light)
        rows = np.flatnonzero((canvas.parts > 0).any(1))
        assert len(rows), "nothing drawn"
        uv, _ = cam.project(_contact_points(thing))
        assert (uv[:, 1] > cam.horizon_row).all()  # the contact is on the ground in the image
        stroke = 0.025 * cam.fy / dist if kind == "bicycle" else 0.0  # half a tyre
        assert abs(rows.max() - uv[:, 1].max()) <= 1.5 + stroke  # the lowest pixel touches it
        heights.append(rows.max() - rows.min() + 1)
    assert heights[1] == pytest.approx(heights[0] / 2, rel=0.15)


def test_things_contact_points_are_below_the_horizon(scenes):
    for scene in scenes:
        segs = scene.segments
        xy = segs.ground_xy[segs.is_thing]
        if not len(xy):
            continue
        pts = np.concatenate([xy, np.zeros((len(xy), 1))], 1)
        uv, depth = scene.camera.project(pts)
        assert (depth > 0).all()
        assert (uv[:, 1] > scene.camera.horizon_row).all()


def test_tiny_images():
    for w, h in ((1, 1), (2, 3), (17, 9)):
        scene = generate_scene(5, width=w, height=h, min_area=0)
        assert scene.image.shape == (h, w, 3)
        _check_annotation(scene, min_area=1)
    assert len(generate_scene(5, width=3, height=2).segments) == 0  # all below 20 pixels


@pytest.mark.parametrize(
    "kwargs, err, match",
    [
        ({"width": 0}, ValueError, "width"),
        ({"height": -4}, ValueError, "height"),
        ({"width": 100000}, ValueError, "width"),
        ({"width": 64.0}, TypeError, "width"),
        ({"indoor": "yes"}, TypeError, "indoor"),
        ({"min_area": -1}, ValueError, "min_area"),
    ],
)
def test_generate_scene_rejects_bad_arguments(kwargs, err, match):
    with pytest.raises(err, match=match):
        generate_scene(0, **kwargs)


def test_generate_scene_rejects_bad_seed():
    with pytest.raises(ValueError, match="seed"):
        generate_scene(-1)
    with pytest.raises(TypeError, match="seed"):
        generate_scene(1.5)


# ------------------------------------------------------------------ writers and CLI


def test_write_dataset_round_trip(tmp_path):
    from pycocotools import mask as mask_util

    seeds = [3, 11, 42]
    ds = write_dataset(tmp_path, seeds, **SMALL, image_format="png")
    pan = json.loads(ds.panoptic_json.read_text())
    inst = json.loads(ds.instances_json.read_text())
    cams = json.loads(ds.cameras_json.read_text())
    assert [c["id"] for c in pan["categories"]] == list(range(len(SYNTHETIC_CLASSES)))
    assert all("drivable" in c and "isthing" in c for c in pan["categories"])
    assert {c["id"] for c in inst["categories"]} == {c.id for c in SYNTHETIC_CLASSES if c.isthing}
    assert [a["id"] for a in inst["annotations"]] == list(range(1, len(inst["annotations"]) + 1))
    for seed, img_e, ann, cam_e in zip(seeds, pan["images"], pan["annotations"], cams["cameras"]):
        scene = generate_scene(seed, **SMALL)
        assert img_e["id"] == ann["image_id"] == cam_e["image_id"] == seed
        bgr = cv2.imread(str(ds.images_dir / img_e["file_name"]))
        assert np.array_equal(bgr[..., ::-1], scene.image)  # PNG images are lossless
        png = cv2.imread(str(ds.panoptic_dir / ann["file_name"]), cv2.IMREAD_UNCHANGED)
        assert np.array_equal(rgb_to_id_map(png[..., ::-1]), scene.id_map)
        assert ann["segments_info"] == scene.segments.to_coco()
        np.testing.assert_allclose(cam_e["K"], scene.camera.K)
        np.testing.assert_allclose(cam_e["camera_to_base"], scene.camera.camera_to_base)
        assert cam_e["D"] == [0.0] * 5 and cam_e["camera_height"] == scene.camera.camera_height
        mine = [a for a in inst["annotations"] if a["image_id"] == seed]
        things = np.flatnonzero(scene.segments.is_thing)
        assert len(mine) == len(things)
        for a, k in zip(mine, things):
            rle = dict(a["segmentation"], counts=a["segmentation"]["counts"].encode())
            m = mask_util.decode(rle).astype(bool)
            assert np.array_equal(m, scene.id_map == scene.segments.ids[k])
            assert a["area"] == m.sum() == int(mask_util.area(rle))
            assert a["bbox"] == [float(v) for v in scene.segments.bboxes[k]]
            assert a["category_id"] == scene.segments.category_ids[k] and a["iscrowd"] == 0


def test_write_dataset_workers_give_the_same_output(tmp_path):
    a = write_dataset(tmp_path / "a", [1, 2], width=48, height=32, workers=1)
    b = write_dataset(tmp_path / "b", [1, 2], width=48, height=32, workers=2)
    for name in ("panoptic.json", "instances.json", "cameras.json"):
        assert (a.root / name).read_bytes() == (b.root / name).read_bytes()
    for f in sorted(a.images_dir.iterdir()):
        assert f.read_bytes() == (b.images_dir / f.name).read_bytes()


@pytest.mark.parametrize(
    "seeds, kwargs, match",
    [
        ([], {}, "empty"),
        ([1, -2], {}, "non-negative"),
        ([1, 1], {}, "unique"),
        ([1], {"image_format": "bmp"}, "image_format"),
        ([1], {"workers": 0}, "workers"),
        ([1], {"width": 0}, "width"),
    ],
)
def test_write_dataset_rejects_bad_arguments(tmp_path, seeds, kwargs, match):
    with pytest.raises(ValueError, match=match):
        write_dataset(tmp_path, seeds, **kwargs)


def test_cli_generates(tmp_path, capsys):
    out = tmp_path / "ds"
    argv = [
        "--out",
        str(out),
        "--num",
        "2",
        "--seed-start",
        "5",
        "--width",
        "64",
        "--height",
        "48",
        "--preview",
        "1",
    ]
    assert generate_main(argv) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["images"] == 2
    assert sorted(p.name for p in (out / "images").iterdir()) == ["00000005.jpg", "00000006.jpg"]
    assert (out / "preview" / "00000005.png").is_file()


@pytest.mark.parametrize(
    "extra, match",
    [
        (["--num", "-1"], "--num: must be >= 1"),
        (["--num", "0"], "--num: must be >= 1"),
        (["--num", "2", "--width", "0"], "--width: must be in 1..8192"),
        (["--num", "2", "--seed-start", "-3"], "--seed-start: must be >= 0"),
        (["--num", "x"], "--num: expected an integer"),
    ],
)
def test_cli_rejects_bad_arguments(tmp_path, capsys, extra, match):
    with pytest.raises(SystemExit) as e:
        generate_main(["--out", str(tmp_path)] + extra)
    assert e.value.code == 2
    assert match in capsys.readouterr().err
