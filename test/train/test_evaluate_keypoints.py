"""`segmentation-ros-eval checkpoint` scores a keypoint Mask R-CNN's people by OKS (pycocotools)
on synthetic scenes whose instances.json carries the world's exact keypoints."""

import json

import pytest
import torch

from segmentation_ros.data.classes import STUFF_NAMES, THING_NAMES
from segmentation_ros.data.synthetic import write_dataset
from segmentation_ros.models import family_of, get_config, save_checkpoint
from segmentation_ros.tools.eval import main

pytestmark = pytest.mark.usefixtures("one_thread")


def test_eval_command_prints_keypoint_ap(tmp_path, capsys):
    # Seeds 1 and 2 show people (test_synthetic_keypoints covers the world's keypoints).
    write_dataset(tmp_path / "data", [1, 2], width=128, height=96)
    family = family_of("mask_rcnn")
    config = family.with_classes(get_config("mask_rcnn_mobilenetv3_keypoints"),
                                 stuff_names=STUFF_NAMES, thing_names=THING_NAMES)  # fmt: skip
    torch.manual_seed(0)
    save_checkpoint(tmp_path / "kp.pt", family.build(family.with_input_size(config, (96, 128))))
    data = f"synthetic:{tmp_path / 'data'}"
    code = main(["checkpoint", "--checkpoint", str(tmp_path / "kp.pt"), "--data", data,
                 "--score-threshold", "0.01"])  # fmt: skip
    assert code == 0
    out = capsys.readouterr().out
    assert "keypoint AP (OKS)" in out
    summary = json.loads(out.strip().splitlines()[-1])
    assert 0.0 <= summary["keypoint_ap"] <= 100.0 and "mask_ap" in summary
    gt = json.loads((tmp_path / "data" / "instances.json").read_text())
    assert any(a.get("num_keypoints", 0) > 0 for a in gt["annotations"])
