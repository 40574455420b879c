"""Backend agreement: matching of things between two results, the tolerances, and the
`segmentation-ros-eval backend` command on the default model (ONNX Runtime vs torch)."""

import json

import numpy as np
import pytest

from segmentation_ros.pipeline import FrameResult, Segments, Timings
from segmentation_ros.tools.eval import main as eval_main
from segmentation_ros.train.backend_agreement import (
    BackendAgreement,
    Tolerances,
    compare_frames,
    one_sided_things,
)


def _frame(things: list[tuple[int, tuple[int, int, int, int]]]) -> FrameResult:
    """Road everywhere, then each thing (class, (x1, y1, x2, y2)) painted as its box."""
    id_map = np.ones((40, 60), np.int32)  # segment 1: road
    classes, boxes = [0], [[0, 0, 60, 40]]
    for i, (cls, (x1, y1, x2, y2)) in enumerate(things, start=2):
        id_map[y1:y2, x1:x2] = i
        classes.append(cls)
        boxes.append([x1, y1, x2, y2])
    n = len(classes)
    segments = Segments(
        ids=np.arange(1, n + 1, dtype=np.int32),
        class_ids=np.array(classes, np.int64),
        is_thing=np.arange(n) > 0,
        scores=np.full(n, 0.9, np.float32),
        mask_scores=np.full(n, 0.9, np.float32),
        boxes=np.array(boxes, np.float32),
    )
    return FrameResult((40, 60), segments, id_map, Timings())


def test_identical_results_agree_fully():
    a = _frame([(3, (5, 5, 20, 20)), (4, (30, 10, 50, 30))])
    assert compare_frames(a, a, box_iou=0.9) == (2, 2, [1.0, 1.0])


def test_shifted_missing_and_reclassified_things():
    ref = _frame([(3, (5, 5, 20, 20)), (4, (30, 10, 50, 30)), (5, (0, 30, 10, 40))])
    cand = _frame([(3, (6, 5, 21, 20)), (2, (30, 10, 50, 30))])  # shifted; other class; missing
    n, agreeing, ious = compare_frames(ref, cand, box_iou=0.9)
    assert n == 3 and agreeing == 0  # a 1-pixel shift of a 15-pixel box: IoU 14/16 < 0.9
    assert ious == [pytest.approx(14 / 16)]
    assert compare_frames(ref, cand, box_iou=0.8)[1] == 1


def test_one_sided_things_near_the_score_threshold():
    """A thing the candidate lacks, one only it has, one it calls another class (one-sided on
    both sides): counted, and those scored under threshold + margin told apart."""
    ref = _frame([(3, (5, 5, 20, 20)), (4, (30, 10, 50, 30)), (5, (0, 30, 10, 40))])
    cand = _frame([(3, (6, 5, 21, 20)), (2, (30, 10, 50, 30))])
    ref.segments.scores[1:] = [0.9, 0.32, 0.31]  # the class-4 thing and the missing one: low
    cand.segments.scores[1:] = [0.9, 0.7]
    # one-sided: ref class 4 (0.32), ref class 5 (0.31), cand class 2 (0.7)
    assert one_sided_things(ref, cand, score_threshold=0.3) == (3, 2)
    assert one_sided_things(ref, cand, score_threshold=0.3, margin=0.015) == (3, 1)
    assert one_sided_things(ref, ref, score_threshold=0.3) == (0, 0)


def test_tolerances_name_what_fails():
    good = BackendAgreement(0.99, 0.95, 0.999, 50.0, 49.5, 10, 30, 40.0, 20.0)
    assert Tolerances().check(good) == []
    bad = BackendAgreement(0.5, 0.5, 0.9, 50.0, 45.0, 10, 30, 40.0, 20.0)
    failures = Tolerances().check(bad)
    assert len(failures) == 4 and any("PQ drop 5.00" in f for f in failures)


def test_eval_backend_command(tmp_path, capsys):
    """ONNX Runtime reproduces torch on the default model (exit 0); an impossible tolerance
    fails the command (exit 1)."""
    args = ["backend", "--data", "synthetic-live:2@320x240", "--num", "2",
            "--backend", "onnxruntime", "--engine-cache-dir", str(tmp_path)]  # fmt: skip
    assert eval_main(args) == 0
    out = capsys.readouterr().out
    summary = json.loads(out.splitlines()[1])
    assert summary["pixel_agreement"] > 0.999 and abs(summary["pq_delta"]) < 0.5
    assert out.rstrip().endswith("PASS")
    assert eval_main([*args, "--min-pixel-agreement", "1.01"]) == 1
    assert "FAIL: pixel agreement" in capsys.readouterr().out
    assert eval_main([*args[:-4], "--backend", "tensorrt", "--device", "cuda"]) == 1
    error = capsys.readouterr().err
    assert "segmentation-ros-eval backend: error:" in error and "tensorrt" in error.lower()
