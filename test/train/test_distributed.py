"""Distributed data parallel training under torchrun: two CPU processes (Gloo), each with half of
the batch, train the model that one process trains with the whole batch.

Tolerance: both runs do the same float32 arithmetic up to the order of the sums (the gradient
of 2 + 2 images all-reduced vs one backward over 4; the per-positive normaliser applied per
process); float32 reordering gives relative differences of order sqrt(n) * 1.2e-7 ~ 1e-5 on the
gradients, so after 3 SGD steps at lr 1e-2 the weights agree to ~1e-7. The test allows atol 2e-6
(rtol 1e-4) and checks that this is far below what the 3 steps changed (a test that cannot fail
when the runs differ would prove nothing): the largest weight change is asserted > 100x the
largest difference. A run that normalised the per-positive losses per process instead (official
YOLACT's DataParallel) differs from the whole-batch run by the ratio of the processes' positive
counts: far outside this tolerance.
"""

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from segmentation_ros.data.synthetic import write_dataset
from segmentation_ros.tools.train import main as train_main
from segmentation_ros.train.checkpoints import read_training_checkpoint

pytestmark = pytest.mark.slow

STEPS = 3


def _torchrun() -> list[str]:
    script = Path(sys.executable).with_name("torchrun")
    return [str(script)] if script.exists() else [sys.executable, "-m", "torch.distributed.run"]


def _args(data: Path, out: Path) -> list[str]:
    return [
        "--model",
        "yolact_mobilenetv3",
        "--data",
        f"synthetic:{data}",
        "--out",
        str(out),
        "--steps",
        str(STEPS),
        "--batch-size",
        "4",  # the global batch: 2 per process under torchrun
        "--lr",
        "1e-2",
        "--warmup-steps",
        "0",
        "--schedule",
        "constant",
        "--input-size",
        "64x64",
        "--no-augment",
        "--batchnorm",
        "freeze",
        "--seed",
        "5",
        "--log-every",
        "1",
        "--progress-bar",
        "off",
    ]


def _rows(out: Path) -> list[dict[str, str]]:
    with open(out / "train_log.csv") as f:
        return list(csv.DictReader(f))


def test_two_processes_train_what_one_process_trains_with_the_whole_batch(tmp_path, capsys):
    data = tmp_path / "syn"
    write_dataset(data, range(6), width=64, height=48, image_format="png")

    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    env.pop("WORLD_SIZE", None)
    cmd = [*_torchrun(), "--standalone", "--nproc-per-node", "2", "-m"]
    cmd += ["segmentation_ros.tools.train", *_args(data, tmp_path / "ddp")]
    run = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "2 processes" in run.stdout
    # rank 0 alone prints: one summary line, one progress line per step
    assert run.stdout.count('"checkpoint"') == 1
    assert sum(line.startswith(f"step {STEPS}/{STEPS}") for line in run.stdout.splitlines()) == 1

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert train_main(_args(data, tmp_path / "one")) == 0
    finally:
        torch.set_num_threads(threads)
    capsys.readouterr()

    ddp = read_training_checkpoint(tmp_path / "ddp" / "last.pt")
    one = read_training_checkpoint(tmp_path / "one" / "last.pt")
    assert ddp["extra"]["step"] == one["extra"]["step"] == STEPS
    assert list(ddp["state_dict"]) == list(one["state_dict"])  # no "module." prefix
    torch.manual_seed(5)  # the initial weights of both runs (CLI seeds before building)
    from segmentation_ros.data.datasets import open_dataset
    from segmentation_ros.train.models import build_training_model

    start = build_training_model(
        "yolact_mobilenetv3", open_dataset(f"synthetic:{data}").categories, (64, 64)
    ).state_dict()
    worst_diff, worst_change = 0.0, 0.0
    for name, a in one["state_dict"].items():
        b = ddp["state_dict"][name]
        if not a.is_floating_point():
            assert torch.equal(a, b), name
            continue
        torch.testing.assert_close(b, a, rtol=1e-4, atol=2e-6, msg=name)
        worst_diff = max(worst_diff, float((a - b).abs().max()))
        worst_change = max(worst_change, float((a - start[name]).abs().max()))
    print("worst weight difference", worst_diff, "largest change", worst_change)
    assert worst_change > 100 * worst_diff, (worst_change, worst_diff)

    # the logged losses are the whole batch's: the same curve, step by step
    rows_ddp, rows_one = _rows(tmp_path / "ddp"), _rows(tmp_path / "one")
    assert [r["step"] for r in rows_ddp] == [r["step"] for r in rows_one] == ["1", "2", "3"]
    for r_ddp, r_one in zip(rows_ddp, rows_one):
        assert r_ddp["num_positives"] == r_one["num_positives"]
        for term in ("total", "box", "cls", "mask"):
            assert float(r_ddp[term]) == pytest.approx(float(r_one[term]), rel=1e-4), term
    # one writer: one TensorBoard event file
    assert len(list((tmp_path / "ddp" / "tensorboard").glob("events.out.tfevents.*"))) == 1
