"""Checkpoint evaluation (PQ, drivable IoU, speed) through the node's pipeline, on a tiny
synthetic data set and a small randomly initialised panoptic model with the world's classes."""

import dataclasses
import json

import numpy as np
import pytest
import torch

from segmentation_ros.data.classes import STUFF_NAMES, THING_NAMES
from segmentation_ros.data.datasets import open_dataset
from segmentation_ros.data.synthetic import write_dataset
from segmentation_ros.models import save_checkpoint, with_input_size
from segmentation_ros.models.panoptic_yolact import (
    PANOPTIC_YOLACT_MOBILENETV3,
    PanopticYolact,
    with_classes,
)
from segmentation_ros.pipeline import SegmentationPipeline
from segmentation_ros.tools.eval import main
from segmentation_ros.train.evaluate import evaluate_checkpoint


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval")
    write_dataset(root / "data", [11, 12], width=96, height=72)
    config = with_classes(PANOPTIC_YOLACT_MOBILENETV3, stuff_names=STUFF_NAMES,
                          thing_names=THING_NAMES)  # fmt: skip
    config = dataclasses.replace(config, yolact=with_input_size(config.yolact, (64, 64)))
    torch.manual_seed(0)
    save_checkpoint(root / "model.pt", PanopticYolact.from_config(config))
    return root


def test_evaluate_checkpoint_scores_every_image(setup):
    pipeline = SegmentationPipeline.from_checkpoint(setup / "model.pt")
    dataset = open_dataset(f"synthetic:{setup / 'data'}")
    evaluation = evaluate_checkpoint(pipeline, dataset)
    assert evaluation.num_images == 2
    assert 0.0 <= evaluation.pq.all.pq <= 1.0 and 0.0 <= evaluation.drivable_iou <= 1.0
    assert evaluation.ms_per_image > 0
    # Every ground-truth category of the two scenes is counted (as FN at least).
    counted = {c.category.name for c in evaluation.pq.per_class if c.counted}
    seen = np.concatenate([dataset[i].segments.category_ids for i in range(2)])
    names = np.array(STUFF_NAMES + THING_NAMES)
    assert counted >= set(names[seen])


def test_eval_command_prints_json(setup, capsys):
    code = main(["checkpoint", "--checkpoint", str(setup / "model.pt"),
                 "--data", f"synthetic:{setup / 'data'}", "--num", "1"])  # fmt: skip
    assert code == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["images"] == 1 and set(summary) >= {"pq_all", "drivable_iou", "ms_per_image"}
    assert 0.0 <= summary["mask_ap"] <= 100.0  # instances.json of the synthetic set is found


def test_default_model_mask_ap_and_plot(setup, tmp_path, capsys):
    """The embedded default model on the two scenes: mask AP is computed and the plot written."""
    code = main(["checkpoint", "--data", f"synthetic:{setup / 'data'}", "--plots", str(tmp_path)])
    assert code == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["mask_ap"] > 0.0 and summary["pq_all"] > 0.0
    import cv2

    plot = cv2.imread(str(tmp_path / "pq_per_class.png"))
    assert plot is not None and plot.shape[0] > 15 * 22


def test_eval_command_bad_data(setup, capsys):
    code = main(["checkpoint", "--checkpoint", str(setup / "model.pt"),
                 "--data", f"synthetic:{setup / 'missing'}"])  # fmt: skip
    assert code == 1 and "error" in capsys.readouterr().err


def test_eval_command_at_another_input_size(setup, capsys):
    """--input-size runs the network at the node's input_height x input_width; a malformed one
    is refused by the parser with what to write."""
    code = main(["checkpoint", "--checkpoint", str(setup / "model.pt"), "--num", "1",
                 "--data", f"synthetic:{setup / 'data'}", "--input-size", "96x128"])  # fmt: skip
    assert code == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["images"] == 1
    with pytest.raises(SystemExit) as exit_info:
        main(["checkpoint", "--data", f"synthetic:{setup / 'data'}", "--input-size", "96by128"])
    assert exit_info.value.code == 2 and "HEIGHTxWIDTH" in capsys.readouterr().err
