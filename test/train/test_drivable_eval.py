"""`segmentation-ros-eval drivable` against the synthetic world: fed the true masks, the node's
scan has no range error at all (float32 rounding), so what it reports for a model is the
model's error; and the command runs end to end on a written data set."""

import json

import numpy as np
import pytest

from segmentation_ros.data.synthetic import write_dataset
from segmentation_ros.pipeline import FrameSettings
from segmentation_ros.tools.eval import main
from segmentation_ros.train.drivable_eval import evaluate_drivable

# Seeds no training, validation or other test uses.
SEEDS = [932_001, 932_002, 932_003]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth")
    write_dataset(root, SEEDS, width=320, height=240, image_format="png")
    return root


def test_true_masks_give_an_exact_scan(data):
    ev = evaluate_drivable(None, data, settings=FrameSettings(grid_stride=1))
    assert ev.num_images == len(SEEDS)
    for within in (5.0, 10.0):
        rel = np.asarray(ev.scan_rel[within])
        assert rel.size >= 50
        assert rel.max() <= 2**-23  # float32 ranges: their rounding and nothing else
        assert ev.false_obstacles[within] == 0
    # Every thing found; its contact point is the near edge of its footprint, the world's
    # position the object's centre: off by about its radius (persons 0.3 m, cars 2 m).
    assert len(ev.object_errors) == ev.objects_total > 0
    assert np.median(ev.object_errors) < 1.5


def test_the_command_prints_the_figures(data, capsys):
    args = ["drivable", "--data", f"synthetic:{data}", "--truth-masks", "--grid-stride", "1"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "scan, true range <= 5 m" in out and "fused grid, straight road" in out
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["images"] == len(SEEDS)
    assert summary["scan_within_5m"]["abs_m"]["p90"] <= 1e-5
    assert (
        summary["fused_road_sequence"]["road_m2"]
        > summary["fused_road_sequence"]["single_frame_road_m2"]
    )


def test_a_set_that_is_not_synthetic_is_refused(capsys):
    assert main(["drivable", "--data", "coco-panoptic:a,b,c", "--truth-masks"]) == 1
    assert "synthetic:DIR" in capsys.readouterr().err
