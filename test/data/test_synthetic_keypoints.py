"""Person keypoints of the synthetic world, checked against the rendered panoptic PNGs (the
world's exact truth) and against the figure's anatomy, and read back by pycocotools."""

import json

import cv2
import numpy as np
import pytest

from segmentation_ros.data.classes import SYNTHETIC_CLASSES
from segmentation_ros.data.synthetic import generate_scene, rgb_to_id_map, write_dataset
from segmentation_ros.data.synthetic_keypoints import (
    KEYPOINT_FLIP,
    KEYPOINT_NAMES,
    KEYPOINT_SIGMAS,
    KEYPOINT_SKELETON,
)

PERSON = SYNTHETIC_CLASSES.id_of("person")
SEEDS = list(range(16))
K = len(KEYPOINT_NAMES)


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    root = tmp_path_factory.mktemp("kp")
    return write_dataset(root, SEEDS, width=320, height=240, image_format="png")


def _people(written):
    """(id map read from the PNG, segment info) of every person segment of the data set."""
    pan = json.loads(written.panoptic_json.read_text())
    for ann in pan["annotations"]:
        bgr = cv2.imread(str(written.panoptic_dir / ann["file_name"]), cv2.IMREAD_COLOR)
        ids = rgb_to_id_map(bgr[..., ::-1])
        for seg in ann["segments_info"]:
            if seg["category_id"] == PERSON:
                yield ids, seg
            else:
                assert "keypoints" not in seg


def test_visible_keypoints_on_own_segment_occluded_on_another(written):
    counts = np.zeros(3, int)
    for ids, seg in _people(written):
        kp = np.asarray(seg["keypoints"], dtype=np.float64).reshape(K, 3)
        assert seg["num_keypoints"] == int((kp[:, 2] > 0).sum())
        h, w = ids.shape
        for x, y, v in kp:
            counts[int(v)] += 1
            if v == 0:
                assert x == 0 and y == 0  # COCO: unlabelled
                continue
            col, row = int(np.floor(x)), int(np.floor(y))
            assert 0 <= col < w and 0 <= row < h
            if v == 2:
                assert ids[row, col] == seg["id"]
            else:
                assert v == 1 and ids[row, col] != seg["id"]
    # Enough of both kinds for the checks above to mean something.
    assert counts[2] >= 200 and counts[1] >= 20, counts


def test_keypoints_follow_the_anatomy(written):
    """Image rows grow downwards: head above neck above shoulders above hips above knees above
    ankles; the billboard faces the camera, so the left joints are right of the right ones."""
    n = {name: i for i, name in enumerate(KEYPOINT_NAMES)}
    chain = ["head", "neck", "left_shoulder", "left_hip", "left_knee", "left_ankle"]
    checked = 0
    for _, seg in _people(written):
        kp = np.asarray(seg["keypoints"]).reshape(K, 3)
        if not (kp[:, 2] > 0).all():
            continue
        rows = [kp[n[c], 1] for c in chain]
        assert rows == sorted(rows) and len(set(rows)) == len(rows)
        for joint in ("shoulder", "hip", "ankle"):
            assert kp[n[f"left_{joint}"], 0] > kp[n[f"right_{joint}"], 0]
        checked += 1
    assert checked >= 5


def test_instances_json_has_the_same_keypoints_and_pycocotools_reads_them(written):
    from pycocotools.coco import COCO

    coco = COCO(str(written.instances_json))
    cat = coco.loadCats([PERSON])[0]
    assert cat["keypoints"] == list(KEYPOINT_NAMES)
    assert all(1 <= a <= K and 1 <= b <= K for a, b in cat["skeleton"])
    pan = {
        (a["image_id"], tuple(s["bbox"])): s["keypoints"]
        for a in json.loads(written.panoptic_json.read_text())["annotations"]
        for s in a["segments_info"]
        if s["category_id"] == PERSON
    }
    anns = coco.loadAnns(coco.getAnnIds(catIds=[PERSON]))
    assert len(anns) == len(pan) > 10
    for a in anns:
        assert a["keypoints"] == pan[(a["image_id"], tuple(int(v) for v in a["bbox"]))]


def test_keypoints_deterministic_per_seed():
    a, b = generate_scene(5, width=320, height=240), generate_scene(5, width=320, height=240)
    assert a.segments.keypoints.tobytes() == b.segments.keypoints.tobytes()
    assert a.segments.keypoints.shape == (len(a.segments), K, 3)


def test_keypoint_tables_are_consistent():
    from segmentation_ros.structures.keypoints import flip_of

    assert len(KEYPOINT_SIGMAS) == len(KEYPOINT_FLIP) == K
    assert flip_of(KEYPOINT_NAMES) == KEYPOINT_FLIP
    assert sorted(KEYPOINT_FLIP) == list(range(K))
    for i, j in enumerate(KEYPOINT_FLIP):
        a, b = KEYPOINT_NAMES[i], KEYPOINT_NAMES[j]
        assert a.replace("left", "right") == b or b.replace("left", "right") == a or a == b
    assert {k for pair in KEYPOINT_SKELETON for k in pair} == set(range(1, K + 1))


def test_sequence_frames_carry_keypoints_on_their_people():
    from segmentation_ros.data.sequence_render import render_frame
    from segmentation_ros.data.sequence_world import build_world

    counts = np.zeros(3, int)
    for seed in (41, 43):
        world = build_world(seed, num_frames=6, width=320, height=240)
        for k in range(0, 6, 2):
            frame = render_frame(world, k)
            segs = frame.segments
            assert segs.keypoints.shape == (len(segs), K, 3)
            for sid, cat, kp in zip(segs.ids, segs.category_ids, segs.keypoints):
                if cat != PERSON:
                    assert not kp.any()
                    continue
                for x, y, v in kp:
                    counts[int(v)] += 1
                    if v:
                        own = frame.id_map[int(np.floor(y)), int(np.floor(x))] == sid
                        assert own == (v == 2)
    assert counts[2] >= 30, counts
