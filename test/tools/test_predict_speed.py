"""segmentation-ros-predict prints the speed of each stage per image and as a mean (ultralytics'
"Speed: ... per image at shape ..." line), for each backend and precision it runs on the CPU.

The tool runs as a subprocess on two small images; the stage times it prints must be positive
and, summed over the images, fit in the wall time of the whole run as the test measures it (a
stage timed in the wrong unit, or a total made up, does not)."""

import re
import subprocess
import sys
import time

import cv2
import numpy as np
import pytest
import torch

from segmentation_ros.models import build_model
from segmentation_ros.models.checkpoint import save_checkpoint

STAGES = r"([\d.]+)ms preprocess, ([\d.]+)ms inference, ([\d.]+)ms postprocess"


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("speed")
    torch.manual_seed(0)
    model = build_model("yolact_mobilenetv3", input_size=(128, 160), class_names=("a", "b"))
    save_checkpoint(root / "light.pt", model)
    rng = np.random.default_rng(0)
    images = []
    for name in ("one", "two"):
        image = cv2.GaussianBlur(rng.integers(0, 255, (90, 120, 3), dtype=np.uint8), (9, 9), 4)
        cv2.imwrite(str(root / f"{name}.png"), image)
        images.append(root / f"{name}.png")
    return root, images


@pytest.mark.parametrize(
    ("backend", "precision"),
    [("torch", "fp32"), ("torch", "bf16"), ("onnxruntime", "fp32"), ("onnxruntime", "int8")],
)
def test_predict_prints_stage_times_that_fit_in_the_run(inputs, backend, precision):
    root, images = inputs
    argv = ["--checkpoint", root / "light.pt", "--backend", backend, "--precision", precision]
    argv += ["--engine-cache-dir", root / "cache", "--output-dir", root / f"out_{backend}"]
    if precision == "int8":
        argv += ["--calibration-data", "synthetic-live:4@160x128"]
    command = [sys.executable, "-m", "segmentation_ros.tools.predict", *map(str, argv)]
    t0 = time.perf_counter()
    proc = subprocess.run(
        [*command, *map(str, images)], capture_output=True, text=True, timeout=900
    )
    wall_ms = (time.perf_counter() - t0) * 1e3
    assert proc.returncode == 0, proc.stderr[-3000:]

    lines = proc.stdout.splitlines()
    per_image = []
    for path in images:
        line = next(x for x in lines if x.startswith(f"{path}: "))
        per_image.append([float(v) for v in re.search(STAGES, line).groups()])
    per_image = np.array(per_image)
    mean = re.search(rf"^Speed: {STAGES} per image at shape \(1, 3, 128, 160\) \((\w+) (\w+)\)$",
                     proc.stdout, re.M)  # fmt: skip
    assert mean, proc.stdout
    assert mean.group(4, 5) == (backend, precision)
    assert (per_image > 0).all()
    # The mean line is the mean of the per-image lines (each printed to 0.1 ms).
    np.testing.assert_allclose([float(v) for v in mean.group(1, 2, 3)], per_image.mean(0), atol=0.1)
    # All stages of all images happened inside this run.
    assert per_image.sum() <= wall_ms
