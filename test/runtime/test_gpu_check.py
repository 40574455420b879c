"""scripts/gpu_check.sh, the one GPU acceptance command, on this machine: without CUDA it runs
nothing and says so in its JSON report, exit 0; the report's facts are this machine's. What it
runs on a GPU machine (test/gpu, benchmarks/bench_backends.py) imports no ROS: that machine has
none."""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA report")
def test_gpu_check_without_cuda_reports_it_and_exits_0(tmp_path):
    report = tmp_path / "report.json"
    env = {**os.environ, "PYTHON": sys.executable}
    run = subprocess.run(
        ["bash", str(REPO / "scripts" / "gpu_check.sh"), str(report)],
        capture_output=True, text=True, env=env, timeout=600,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    assert "gpu_check: no CUDA device" in run.stdout
    out = json.loads(report.read_text())
    assert out["status"] == "no CUDA device" and out["gpu"] is None
    assert out["tests"] == [] and out["benchmarks"] == []
    assert out["versions"]["torch"] == torch.__version__
    for module in ("tensorrt", "torch_tensorrt"):
        if importlib.util.find_spec(module) is None:
            assert out["versions"][module] == "not installed"
            assert out["tensorrt"].startswith("not installed: backend tensorrt is unavailable")


def test_gpu_tests_and_benchmark_import_no_ros():
    code = (
        "import sys; sys.path[:0] = [{repo!r}, {repo!r} + '/benchmarks'];"
        "import runpy, importlib.util as u;"
        "spec = u.spec_from_file_location('g', {repo!r} + '/test/gpu/test_gpu_runtime.py');"
        "spec.loader.exec_module(u.module_from_spec(spec));"
        "import bench_backends, bench_yolact;"
        "from segmentation_ros.pipeline import SegmentationPipeline;"
        "print(sorted(m for m in sys.modules if m.startswith(('rclpy', 'rosidl'))"
        " or m.startswith('segmentation_ros.msg') or m.startswith('segmentation_ros.ros')))"
    ).format(repo=str(REPO))
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.strip().splitlines()[-1] == "[]"
