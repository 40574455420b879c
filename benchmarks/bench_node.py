"""Benchmark the segmentation node as a robot runs it: camera frames at a fixed rate into the
node in its own process over DDS, results back, figures over time.

    source env.sh
    python benchmarks/bench_node.py [--checkpoint model.pt] [--backend auto|openvino|...]
        [--precision auto|fp32|bf16|int8] [--seconds 30] [--rate 30] [--width 640 --height 480]
        [--outputs objects,overlay]
        [--num-threads 0] [--input-size 320x320] [--report-every 5]

Without --checkpoint it uses the embedded default model, or, while that is not trained yet,
a randomly initialised panoptic_yolact_mobilenetv3 (timings only; the masks are noise). With
an ONNX backend (auto, the default as for the node, is openvino on a CPU) the model is exported
on configure (tens of seconds) into a temporary folder.

Prints every --report-every seconds: frames sent / results received, output FPS, latency p50 /
p95 (camera stamp -> `objects` received, milliseconds), the model's own time p50 (image in ->
segments out inside the node: preprocess + network + postprocess, from /diagnostics) and the
latency beyond it, the node's drop counters and the node's resident memory (RSS, MiB); a JSON
summary last. The node computes
only the outputs this script subscribes to (--outputs).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from segmentation_ros.ros import session  # noqa: E402 - after the path set-up
from segmentation_ros.runtime.names import (  # noqa: E402
    BACKENDS,
    DEFAULT_BACKEND,
    DEFAULT_PRECISION,
    PRECISION_CHOICES,
)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", default="", help="model file (default: embedded default)")
    p.add_argument("--model", default="", help="`model` parameter (official weights need it)")
    p.add_argument("--backend", default=DEFAULT_BACKEND, choices=BACKENDS)
    p.add_argument("--precision", default=DEFAULT_PRECISION, choices=PRECISION_CHOICES)
    p.add_argument("--calibration-data", default="", help="int8: `calibration_data` parameter")
    p.add_argument(
        "--bare",
        action="store_true",
        help="the node as `segmentation_node` starts with no parameters (only its name)",
    )
    p.add_argument("--seconds", type=float, default=30.0)
    p.add_argument("--rate", type=float, default=30.0, help="camera frames per second")
    p.add_argument("--width", type=int, default=640)
    p.add_argument("--height", type=int, default=480)
    p.add_argument("--outputs", default="objects", help="comma list of topics, or 'all'")
    p.add_argument("--num-threads", type=int, default=0)
    p.add_argument("--input-size", default="", help="network input HxW, e.g. 320x320")
    p.add_argument("--report-every", type=float, default=5.0)
    p.add_argument("--domain-id", type=int, help="ROS domain id (default: a free one)")
    return p.parse_args(argv)


def random_default_checkpoint(folder: Path) -> Path:
    """A randomly initialised panoptic_yolact_mobilenetv3 in our checkpoint format."""
    import torch

    from segmentation_ros.models import build_model, save_checkpoint

    torch.manual_seed(0)
    path = folder / "random_panoptic_yolact_mobilenetv3.pt"
    save_checkpoint(path, build_model("panoptic_yolact_mobilenetv3"))
    return path


def rss_mib(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return float("nan")


def start_node(args, checkpoint: str, env: dict[str, str], temp: Path) -> subprocess.Popen:
    command = [
        sys.executable, str(REPO / "bin" / "segmentation_node"), "--ros-args",
        "-r", "__node:=bench_segmentation",
    ]  # fmt: skip
    if args.bare:  # what a user gets from a bare `segmentation_node`
        return _spawn(command + (["-p", f"checkpoint:={checkpoint}"] if checkpoint else []), env)
    command += [
        "-p", f"backend:={args.backend}", "-p", f"precision:={args.precision}",
        "-p", "diagnostics_period:=1.0", "-p", "max_image_age_ms:=1000.0",
        "-p", f"num_threads:={args.num_threads}",
    ]  # fmt: skip
    if checkpoint:
        command += ["-p", f"checkpoint:={checkpoint}"]
    if args.model:
        command += ["-p", f"model:={args.model}"]
    if args.calibration_data:
        command += ["-p", f"calibration_data:={args.calibration_data}"]
    if args.backend != "torch":  # exported on configure, into the temporary folder
        command += ["-p", f"engine_cache_dir:={temp}"]
    if args.input_size:
        h, w = (int(v) for v in args.input_size.lower().split("x"))
        command += ["-p", f"input_height:={h}", "-p", f"input_width:={w}"]
    return _spawn(command, env)


def _spawn(command: list[str], env: dict[str, str]) -> subprocess.Popen:
    log = open(Path(tempfile.gettempdir()) / "bench_node.log", "w")  # noqa: SIM115
    return subprocess.Popen(
        command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )


def main(argv=None) -> int:
    args = parse_args(argv)
    domain, _lock = (args.domain_id, None) if args.domain_id else session.claim_domain_id()
    ros_env = session.ros_environment(domain, REPO / "config" / "fastdds_shm.xml")
    os.environ.update(ros_env)  # before rclpy.init in this process
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
    }

    from segmentation_ros.pipeline import DEFAULT_CHECKPOINT

    checkpoint = args.checkpoint
    temp = tempfile.TemporaryDirectory()
    if not checkpoint and not DEFAULT_CHECKPOINT.is_file():
        checkpoint = str(random_default_checkpoint(Path(temp.name)))
        print("embedded default model not installed: random panoptic_yolact_mobilenetv3")
    node_process = start_node(args, checkpoint, env, Path(temp.name))
    try:
        return run(args, node_process)
    finally:
        if node_process.poll() is None:
            os.killpg(node_process.pid, signal.SIGINT)
            try:
                node_process.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(node_process.pid, signal.SIGKILL)
        temp.cleanup()


def run(args, node_process: subprocess.Popen) -> int:
    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray
    from lifecycle_msgs.msg import State
    from lifecycle_msgs.srv import GetState
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import CameraInfo, Image

    from segmentation_ros.pipeline import OutputRequest  # noqa: F401 - warms the import cache
    from segmentation_ros.ros.diagnostics import diagnostics_values
    from segmentation_ros.ros.image_codec import numpy_to_image
    from segmentation_ros.ros.output_table import OUTPUTS

    types = {out.topic: out.msg_type for out in OUTPUTS}

    rclpy.init()
    node = rclpy.create_node("bench_camera")
    reliable = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE)
    sensor = QoSProfile(depth=1, reliability=ReliabilityPolicy.BEST_EFFORT)
    topics = tuple(types) if args.outputs == "all" else tuple(args.outputs.split(","))
    latencies: list[float] = []
    received = {"objects": 0}
    diagnostics: list[dict[str, str]] = []

    def on_objects(msg) -> None:
        now = node.get_clock().now().nanoseconds
        stamp = msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec
        latencies.append((now - stamp) / 1e6)
        received["objects"] += 1

    node.create_subscription(types["objects"], "objects", on_objects, reliable)
    keep = [
        node.create_subscription(types[t], t, lambda _m: None, reliable)
        for t in topics
        if t != "objects"
    ]
    node.create_subscription(
        DiagnosticArray, "/diagnostics", lambda m: diagnostics.append(diagnostics_values(m)), 10
    )
    images = node.create_publisher(Image, "image", sensor)
    infos = node.create_publisher(CameraInfo, "camera_info", sensor)
    get_state = node.create_client(GetState, "bench_segmentation/get_state")

    print(f"waiting for the node (log: {tempfile.gettempdir()}/bench_node.log) ...")
    t0 = time.monotonic()
    state = None
    while time.monotonic() - t0 < 300 and state != State.PRIMARY_STATE_ACTIVE:
        if node_process.poll() is not None:
            print("the node exited; see its log")
            return 1
        if get_state.wait_for_service(timeout_sec=1.0):
            future = get_state.call_async(GetState.Request())
            rclpy.spin_until_future_complete(node, future, timeout_sec=5.0)
            state = future.result().current_state.id if future.done() else None
        rclpy.spin_once(node, timeout_sec=0.5)
    if state != State.PRIMARY_STATE_ACTIVE:
        print("the node did not become active; see its log")
        return 1
    print(
        f"node active after {time.monotonic() - t0:.1f} s; publishing {args.width}x"
        f"{args.height} rgb8 at {args.rate:g} Hz for {args.seconds:g} s, outputs {topics}"
    )

    rng = np.random.default_rng(0)
    pool = [
        numpy_to_image(rng.integers(0, 255, (args.height, args.width, 3), np.uint8), "rgb8")
        for _ in range(4)
    ]
    info = CameraInfo(width=args.width, height=args.height, distortion_model="plumb_bob")
    f = 0.9 * args.width
    info.k = [f, 0.0, args.width / 2, 0.0, f, args.height / 2, 0.0, 0.0, 1.0]
    info.d = [0.0] * 5
    sent = 0
    period = 1.0 / args.rate
    start = next_frame = next_report = time.monotonic()
    next_report += args.report_every
    reports = []
    while time.monotonic() - start < args.seconds:
        now = time.monotonic()
        if now >= next_frame:
            msg = pool[sent % len(pool)]
            msg.header.stamp = info.header.stamp = node.get_clock().now().to_msg()
            msg.header.frame_id = info.header.frame_id = "camera_optical"
            infos.publish(info)
            images.publish(msg)
            sent += 1
            next_frame += period
        if now >= next_report:
            reports.append(
                report(now - start, sent, received, latencies, diagnostics, node_process)
            )
            next_report += args.report_every
        rclpy.spin_once(node, timeout_sec=max(0.0, min(next_frame, next_report) - time.monotonic()))
    sending_s = time.monotonic() - start
    drain_until = time.monotonic() + 1.0  # results of the last frames, still in flight
    while time.monotonic() < drain_until:
        rclpy.spin_once(node, timeout_sec=0.05)
    # the rate over the camera's time: frames in, results out (in flight ones drained above)
    final = report(sending_s, sent, received, latencies, diagnostics, node_process)
    print(json.dumps({"summary": final, "args": vars(args)}))
    del keep
    node.destroy_node()
    rclpy.try_shutdown()
    return 0


def report(elapsed, sent, received, latencies, diagnostics, node_process) -> dict:
    lat = np.array(latencies[-300:], dtype=np.float64)
    drops, model_ms = {}, float("nan")
    if diagnostics:
        last = diagnostics[-1]
        drops = {k[6:]: int(v) for k, v in last.items() if k.startswith("drops_") and v != "0"}
        model_ms = float(last.get("model_p50_ms", "nan"))
    p50 = float(np.percentile(lat, 50)) if lat.size else float("nan")
    figures = {
        "t_s": round(elapsed, 1),
        "sent": sent,
        "received": received["objects"],
        "fps_out": round(received["objects"] / max(elapsed, 1e-9), 2),
        "latency_p50_ms": round(float(np.percentile(lat, 50)), 1) if lat.size else None,
        "latency_p95_ms": round(float(np.percentile(lat, 95)), 1) if lat.size else None,
        "model_p50_ms": round(model_ms, 1),
        "latency_beyond_model_p50_ms": round(p50 - model_ms, 1),
        "drops": drops,
        "rss_mib": round(rss_mib(node_process.pid), 1),
    }
    print(
        f"t={figures['t_s']:6.1f}s sent={sent:5d} out={figures['received']:5d} "
        f"fps={figures['fps_out']:5.2f} p50={figures['latency_p50_ms']} "
        f"p95={figures['latency_p95_ms']} model={figures['model_p50_ms']} "
        f"beyond={figures['latency_beyond_model_p50_ms']} ms rss={figures['rss_mib']} MiB "
        f"drops={drops}"
    )
    return figures


if __name__ == "__main__":
    raise SystemExit(main())
