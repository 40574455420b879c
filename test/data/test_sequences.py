"""Synthetic camera sequences: determinism, stable instance ids, ground truth against geometry."""

import filecmp
import json
import math

import numpy as np
import pytest

from segmentation_ros.data.classes import SYNTHETIC_CLASSES
from segmentation_ros.data.sequence_io import SequenceData, find_sequences
from segmentation_ros.data.sequence_render import THING_ID_BASE, render_frame
from segmentation_ros.data.sequence_world import build_world, odom_to_base
from segmentation_ros.tools.generate import main as generate_main

ARGS = [
    "--sequence",
    "--num",
    "1",
    "--seed-start",
    "41",
    "--frames",
    "12",
    "--width",
    "320",
    "--height",
    "240",
    "--format",
    "png",
]


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    a, b = tmp_path_factory.mktemp("a"), tmp_path_factory.mktemp("b")
    assert generate_main([*ARGS, "--out", str(a)]) == 0
    assert generate_main([*ARGS, "--out", str(b)]) == 0
    return a, b


def _same_tree(x, y) -> None:
    cmp = filecmp.dircmp(x, y)
    assert not cmp.left_only and not cmp.right_only, (cmp.left_only, cmp.right_only)
    _, mismatch, errors = filecmp.cmpfiles(x, y, cmp.common_files, shallow=False)
    assert not mismatch and not errors, (mismatch, errors)
    for d in cmp.common_dirs:
        _same_tree(x / d, y / d)


def test_two_generations_are_byte_identical(written):
    a, b = written
    _same_tree(a, b)
    assert len(list((a / "00000041" / "images").iterdir())) == 12


def test_other_seed_differs():
    a = build_world(41, num_frames=3, width=160, height=120)
    b = build_world(42, num_frames=3, width=160, height=120)
    assert not np.array_equal(render_frame(a, 0).image, render_frame(b, 0).image)


def test_annotation_matches_id_png_and_agents(written):
    seq = find_sequences(written[0])[0]
    agents = {a["id"]: a for a in seq.meta["agents"]}
    names = [c["name"] for c in seq.meta["categories"]]
    seen = 0
    for k in range(len(seq)):
        ids = seq.id_map(k)
        f = seq.frame(k)
        present = set(np.unique(ids).tolist()) - {0}
        assert present == {s["id"] for s in f["segments"]}
        for s in f["segments"]:
            m = ids == s["id"]
            assert int(m.sum()) == s["area"]
            ys, xs = np.nonzero(m)
            x, y, w, h = s["bbox"]
            assert (xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1) == (
                x,
                y,
                w,
                h,
            )
            if s["track_id"]:
                # the id PNG names the agent; the agent's kind is the segment's category
                assert s["id"] == THING_ID_BASE + s["track_id"]
                assert names[s["category_id"]] == agents[s["track_id"]]["kind"]
                seen += 1
            else:
                assert s["id"] == s["category_id"] + 1
    assert seen > 12


def test_ids_follow_the_agents_geometry():
    """An agent keeps its id in every frame where it is visible: the segment carrying its id
    is where the pinhole camera at the frame's pose sees the agent's ground contact."""
    world = build_world(43, kind="drive", num_frames=30, width=320, height=240)
    cam = world.camera
    agents = {a.id: a for a in world.agents}
    checked, inside = 0, 0
    tracks = {}
    for k in range(0, 30, 2):
        f = render_frame(world, k)
        s = f.segments[f.segments.is_thing]
        for tid, box, area, xy in zip(s.track_ids, s.bboxes, s.areas, s.ground_xy):
            a = agents[int(tid)]
            t = world.time(k)
            assert np.allclose(xy, a.position(t))
            if area < 150:
                continue
            b = odom_to_base(f.pose, np.asarray([a.position(t)]))
            uv, z = cam.project(np.c_[b, [0.0]])
            assert z[0] > 0
            x, y, w, h = box
            checked += 1
            inside += bool(x - 3 <= uv[0, 0] <= x + w + 3 and uv[0, 1] >= y)
            tracks.setdefault(int(tid), []).append(k)
    assert checked > 15
    assert inside >= 0.9 * checked, (inside, checked)
    assert max(len(v) for v in tracks.values()) >= 5  # some agent seen in many frames


def test_odometry_is_the_camera_path(written):
    """Consecutive poses differ by the twist integrated over one frame period."""
    seq = SequenceData.open(written[0] / "00000041")
    meta = json.loads((seq.root / "sequence.json").read_text())
    dt = 1.0 / meta["rate"]
    for a, b in zip(meta["sequence"][:-1], meta["sequence"][1:]):
        (x0, y0, h0), (x1, y1, h1) = a["pose"], b["pose"]
        v, _, wz = a["twist"]
        step = math.hypot(x1 - x0, y1 - y0)
        assert step == pytest.approx(v * dt, rel=0.02)
        assert (h1 - h0) == pytest.approx(wz * dt, abs=2e-3)


def test_bad_arguments():
    with pytest.raises(ValueError, match="kind"):
        build_world(1, kind="fly")
    with pytest.raises(ValueError, match="num_frames"):
        build_world(1, num_frames=0)
    with pytest.raises(ValueError, match="rate"):
        build_world(1, rate=0.0)
    with pytest.raises(ValueError, match="frame index"):
        render_frame(build_world(1, num_frames=2, width=32, height=24), 2)
    assert SYNTHETIC_CLASSES.id_of("person") >= SYNTHETIC_CLASSES.num_stuff
