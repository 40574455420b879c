"""segmentation-ros-predict end to end on a small model: our checkpoint and an official-layout
state dict, torch and ONNX Runtime backends giving the same detections, and bad input."""

import cv2
import numpy as np
import pytest
import torch

from segmentation_ros.models import build_model
from segmentation_ros.models.checkpoint import save_checkpoint
from segmentation_ros.tools.predict import main

CLASSES = ("person", "car", "cone")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    model = build_model("yolact_mobilenetv3", input_size=(128, 160), class_names=CLASSES)
    path = tmp_path_factory.mktemp("ckpt") / "light.pt"
    save_checkpoint(path, model)
    return path, model


@pytest.fixture(scope="module")
def image_path(tmp_path_factory):
    rng = np.random.default_rng(0)
    image = cv2.GaussianBlur(rng.integers(0, 255, (90, 120, 3), dtype=np.uint8), (9, 9), 4)
    path = tmp_path_factory.mktemp("img") / "scene.png"
    cv2.imwrite(str(path), image)
    return path


def read(out_dir, stem="scene"):
    data = np.load(out_dir / f"{stem}.npz")
    return {key: data[key] for key in data.files}


def test_predict_writes_results_and_backends_agree(tmp_path, checkpoint, image_path):
    path, _ = checkpoint
    common = ["--checkpoint", str(path), "--max-detections", "20", str(image_path)]
    assert main([*common, "--output-dir", str(tmp_path / "torch")]) == 0
    assert main([*common, "--backend", "onnxruntime", "--output-dir", str(tmp_path / "ort")]) == 0
    eager, ort = read(tmp_path / "torch"), read(tmp_path / "ort")
    n = len(eager["scores"])
    assert 0 < n <= 20
    assert eager["boxes"].shape == (n, 4) and eager["boxes"].dtype == np.float32
    assert eager["masks"].shape == (n, 90, 120) and eager["masks"].dtype == bool
    assert eager["classes"].dtype == np.int64 and set(eager["classes"]) <= {0, 1, 2}
    assert list(eager["class_names"]) == list(CLASSES)
    assert np.all(np.diff(eager["scores"]) <= 0)
    assert (tmp_path / "torch" / "scene.png").is_file()
    assert (tmp_path / "torch" / "scene.png").stat().st_size > 0
    # Same detections from ONNX Runtime (raw outputs agree within 1e-4, so the set is equal).
    np.testing.assert_array_equal(ort["classes"], eager["classes"])
    np.testing.assert_allclose(ort["boxes"], eager["boxes"], atol=1e-3)
    np.testing.assert_allclose(ort["scores"], eager["scores"], atol=1e-4)
    assert (ort["masks"] != eager["masks"]).mean() < 1e-3


def test_predict_official_layout_needs_model_name(tmp_path, checkpoint, image_path):
    path, model = checkpoint
    official = tmp_path / "official.pth"
    torch.save(model.state_dict(), official)
    # Official files carry no config: the architecture comes from --model (COCO classes here).
    assert (
        main(["--checkpoint", str(official), "--output-dir", str(tmp_path), str(image_path)]) == 2
    )
    code = main(["--model", "yolact_mobilenetv3", "--checkpoint", str(official),
                 "--output-dir", str(tmp_path), str(image_path)])  # fmt: skip
    assert code == 2  # 3-class weights do not fit the 80-class registered model: a clear error


def test_predict_bad_inputs(tmp_path, checkpoint, capsys):
    path, _ = checkpoint
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image")
    assert main(["--checkpoint", str(path), "--output-dir", str(tmp_path), str(broken)]) == 1
    assert "not a readable image" in capsys.readouterr().err
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"\x00" * 100)
    assert main(["--checkpoint", str(garbage), "--output-dir", str(tmp_path), str(broken)]) == 2
    assert "cannot read checkpoint" in capsys.readouterr().err
