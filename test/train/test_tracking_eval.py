"""Tracking evaluation: our conversion to TrackEval's data checked against the metrics'
definitions, and the CLI on a written sequence with ground-truth detections."""

import json

import numpy as np
import pytest
from trackeval.metrics import CLEAR, HOTA, Identity

from segmentation_ros.tools.eval import main as eval_main
from segmentation_ros.tools.generate import main as generate_main
from segmentation_ros.train.tracking_eval import _trackeval_data


def _scores(gt_ids, tr_ids):
    sims = [np.eye(len(g)) for g in gt_ids]  # tracker box k is ground-truth box k
    data = _trackeval_data(gt_ids, tr_ids, sims)
    quiet = {"PRINT_CONFIG": False}
    return (
        float(np.mean(HOTA().eval_sequence(data)["HOTA"])),
        CLEAR(quiet).eval_sequence(data),
        Identity(quiet).eval_sequence(data)["IDF1"],
    )


def test_perfect_tracks_score_one():
    gt = [np.array([4, 9]), np.array([4, 9]), np.array([4, 9, 12]), np.array([9, 12])]
    tr = [np.array([101, 7]), np.array([101, 7]), np.array([101, 7, 3]), np.array([7, 3])]
    hota, clear, idf1 = _scores(gt, tr)
    assert hota == pytest.approx(1.0)
    assert clear["MOTA"] == pytest.approx(1.0)
    assert clear["IDSW"] == 0
    assert idf1 == pytest.approx(1.0)


def test_one_identity_switch():
    """Object 4 changes track id once after frame 2 of 4: one IDSW (CLEAR), IDF1 = 6/8 (the
    best one-to-one id mapping keeps 2 of object 4's 4 detections and all of object 9's)."""
    gt = [np.array([4, 9])] * 4
    tr = [np.array([1, 2]), np.array([1, 2]), np.array([5, 2]), np.array([5, 2])]
    hota, clear, idf1 = _scores(gt, tr)
    assert clear["IDSW"] == 1
    assert clear["MOTA"] == pytest.approx(1 - 1 / 8)
    assert idf1 == pytest.approx(6 / 8)
    assert hota < 1.0


def test_cli_with_ground_truth_detections(tmp_path, capsys):
    args = [
        "--sequence",
        "--num",
        "1",
        "--seed-start",
        "52",
        "--frames",
        "30",
        "--width",
        "320",
        "--height",
        "240",
        "--kind",
        "walk",
        "--out",
        str(tmp_path),
    ]
    assert generate_main(args) == 0
    capsys.readouterr()
    assert (
        eval_main(["tracking", "--data", str(tmp_path), "--gt-detections", "--min-area", "50"]) == 0
    )
    out = capsys.readouterr().out.strip().splitlines()
    summary = json.loads(out[-1])
    assert summary["gt_detections"] is True
    assert set(summary) >= {"hota", "mota", "idf1", "idsw", "velocity_median", "velocity_p90"}
    assert summary["hota"] >= 0.8, out
    assert "HOTA" in "\n".join(out)
    # every velocity error is counted under the class of its truth (the walk has people)
    by_class = summary["velocity_by_class"]
    assert sum(v["n"] for v in by_class.values()) == summary["velocity_n"] > 0
    assert set(by_class) <= {"person", "car", "bicycle", "traffic_cone", "box"}
    assert "person" in by_class


def test_cli_errors(tmp_path, capsys):
    assert eval_main(["tracking", "--data", str(tmp_path), "--gt-detections"]) == 1
    assert "sequence.json" in capsys.readouterr().err
