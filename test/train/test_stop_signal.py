"""A training run stopped by SIGTERM (a preempted job) or SIGINT (Ctrl-C) finishes its step,
writes last.pt at that step and exits with 128 + the signal's number; `--resume` then goes on
from exactly that step. The real command in its own process, a real signal."""

import csv
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from segmentation_ros.train.trainer import read_training_checkpoint

pytestmark = pytest.mark.usefixtures("one_thread")


TRAIN = "from segmentation_ros.tools.train import main; raise SystemExit(main())"


def _command(out, steps, *extra):
    return [
        sys.executable, "-c", TRAIN,
        "--model", "yolact_mobilenetv3", "--data", "synthetic-live:4@80x60",
        "--input-size", "64x64", "--steps", str(steps), "--batch-size", "2", "--out", str(out),
        "--log-every", "1", "--checkpoint-every", "0", "--progress-bar", "off",
        "--no-tensorboard", "--workers", "0", *extra,
    ]  # fmt: skip


def _logged_steps(out):
    path = out / "train_log.csv"
    if not path.is_file():
        return []
    with open(path) as f:
        return [int(row["step"]) for row in csv.DictReader(f)]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_saves_the_step_and_resume_goes_on(tmp_path, sig):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(
        _command(tmp_path, 10_000), env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 240.0
    while len(_logged_steps(tmp_path)) < 2 and time.monotonic() < deadline:
        assert process.poll() is None, process.stdout.read()
        time.sleep(0.2)
    process.send_signal(sig)
    output, _ = process.communicate(timeout=120)
    assert process.returncode == 128 + sig.value, output
    summary = json.loads(output.strip().splitlines()[-1])
    stopped_at = summary["step"]
    assert summary["stopped_by"] == sig.name and 2 <= stopped_at < 10_000
    assert read_training_checkpoint(tmp_path / "last.pt")["extra"]["step"] == stopped_at
    assert _logged_steps(tmp_path) == list(range(1, stopped_at + 1))  # nothing lost

    resumed = subprocess.run(
        _command(tmp_path, stopped_at + 2, "--resume", str(tmp_path / "last.pt")),
        env=env, capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert f"at step {stopped_at}" in resumed.stdout
    assert json.loads(resumed.stdout.strip().splitlines()[-1])["stopped_by"] == ""
    assert _logged_steps(tmp_path) == list(range(1, stopped_at + 3))


def test_a_signal_to_the_whole_process_group_with_loader_workers_saves_the_step(tmp_path):
    """Ctrl-C at a terminal and schedulers signal every process of the job, loader workers
    included: the run still finishes its step and writes last.pt (workers that died of the
    signal would take the main process down first)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = _command(tmp_path, 10_000)
    command[command.index("--workers") + 1] = "2"
    process = subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True,  # its own process group, as a job's
    )  # fmt: skip
    deadline = time.monotonic() + 240.0
    while len(_logged_steps(tmp_path)) < 2 and time.monotonic() < deadline:
        assert process.poll() is None, process.stdout.read()
        time.sleep(0.2)
    os.killpg(process.pid, signal.SIGTERM)
    output, _ = process.communicate(timeout=120)
    assert process.returncode == 128 + signal.SIGTERM.value, output
    stopped_at = json.loads(output.strip().splitlines()[-1])["step"]
    assert read_training_checkpoint(tmp_path / "last.pt")["extra"]["step"] == stopped_at
    assert _logged_steps(tmp_path) == list(range(1, stopped_at + 1))
