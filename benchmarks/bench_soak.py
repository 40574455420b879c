"""Soak and lifecycle churn of the segmentation node in its own process over DDS: does it keep its
rate, latency, memory and threads over minutes, and over many deactivate / activate cycles?

    source env.sh
    python benchmarks/bench_soak.py [--minutes 10] [--rate 30] [--width 640 --height 480]
        [--outputs all] [--cycles 100] [--report-every 10] [--backend torch|onnxruntime]
        [--checkpoint model.pt] [--num-threads 0]

The node runs as launched (config/default.yaml: the embedded default model; --backend overrides
the file's onnxruntime, whose model is exported into a temporary folder on configure).

Phase 1, soak: camera frames (rgb8, with CameraInfo) at --rate for --minutes; every
--report-every seconds one line: frames sent / results received, output FPS over the interval,
latency p50 / p95 (camera stamp -> `objects` received, ms), the node's resident memory (RSS,
MiB), its thread count and its drop counters.
Phase 2, churn: --cycles times deactivate, activate, then frames until one result comes back;
RSS and threads after every 10th cycle.
Last, a JSON summary: RSS growth over the soak (from the first report, after warm-up, to the
last) and over the churn (before the first cycle to after the last), threads before / after.
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
NAME = "soak_segmentation"


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--minutes", type=float, default=10.0, help="soak length (0: no soak)")
    p.add_argument("--rate", type=float, default=30.0, help="camera frames per second")
    p.add_argument("--width", type=int, default=640)
    p.add_argument("--height", type=int, default=480)
    p.add_argument("--outputs", default="all", help="comma list of topics, or 'all'")
    p.add_argument("--cycles", type=int, default=100, help="deactivate / activate cycles")
    p.add_argument("--report-every", type=float, default=10.0)
    p.add_argument("--backend", default="", help="override the config file's backend")
    p.add_argument("--checkpoint", default="", help="model file (default: the embedded model)")
    p.add_argument("--num-threads", type=int, default=0)
    p.add_argument("--domain-id", type=int, default=80 + os.getpid() % 10)
    return p.parse_args(argv)


def proc_status(pid: int) -> dict[str, float]:
    """RSS (MiB) and thread count of a process; NaN once it is gone."""
    try:
        fields = dict(
            line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
        )
        return {
            "rss_mib": round(int(fields["VmRSS"].split()[0]) / 1024, 1),
            "threads": int(fields["Threads"]),
        }
    except (OSError, KeyError):
        return {"rss_mib": float("nan"), "threads": -1}


def start_node(args, temp: Path, env: dict[str, str]) -> subprocess.Popen:
    command = [
        sys.executable, str(REPO / "bin" / "segmentation_node"), "--ros-args",
        "-r", f"__node:={NAME}", "--params-file", str(REPO / "config" / "default.yaml"),
        "-p", f"engine_cache_dir:={temp}", "-p", f"num_threads:={args.num_threads}",
        "-p", "diagnostics_period:=1.0", "-p", "max_image_age_ms:=1000.0",
    ]  # fmt: skip
    if args.backend:
        command += ["-p", f"backend:={args.backend}"]
    if args.checkpoint:
        command += ["-p", f"checkpoint:={args.checkpoint}"]
    log = open(Path(tempfile.gettempdir()) / "bench_soak.log", "w")  # noqa: SIM115
    return subprocess.Popen(
        command, env=env, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )


def main(argv=None) -> int:
    args = parse_args(argv)
    env = {
        **os.environ,
        "ROS_DOMAIN_ID": str(args.domain_id),
        "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST",
        "PYTHONUNBUFFERED": "1",
        "FASTDDS_DEFAULT_PROFILES_FILE": str(REPO / "config" / "fastdds_shm.xml"),
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
    }
    for key in ("ROS_DOMAIN_ID", "ROS_AUTOMATIC_DISCOVERY_RANGE", "FASTDDS_DEFAULT_PROFILES_FILE"):
        os.environ[key] = env[key]
    temp = tempfile.TemporaryDirectory()
    node_process = start_node(args, Path(temp.name), env)
    try:
        return Soak(args, node_process).run()
    finally:
        if node_process.poll() is None:
            os.killpg(node_process.pid, signal.SIGINT)
            try:
                node_process.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(node_process.pid, signal.SIGKILL)
        temp.cleanup()


class Soak:
    """The camera side: publishes frames, receives results, drives the lifecycle."""

    def __init__(self, args, node_process: subprocess.Popen) -> None:
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray
        from lifecycle_msgs.srv import ChangeState, GetState
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import CameraInfo, Image

        from segmentation_ros.ros.diagnostics import diagnostics_values
        from segmentation_ros.ros.image_codec import numpy_to_image
        from segmentation_ros.ros.output_table import OUTPUTS

        types = {out.topic: out.msg_type for out in OUTPUTS}

        self.args, self.process = args, node_process
        rclpy.init()
        self.rclpy = rclpy
        self.node = node = rclpy.create_node("soak_camera")
        reliable = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE)
        sensor = QoSProfile(depth=1, reliability=ReliabilityPolicy.BEST_EFFORT)
        self.latencies: list[float] = []
        self.received = 0
        self.diagnostics: dict[str, str] = {}
        node.create_subscription(types["objects"], "objects", self._on_objects, reliable)
        topics = tuple(types) if args.outputs == "all" else tuple(args.outputs.split(","))
        for topic in topics:
            if topic != "objects":
                node.create_subscription(types[topic], topic, lambda _m: None, reliable)
        node.create_subscription(
            DiagnosticArray, "/diagnostics",
            lambda m: self.diagnostics.update(diagnostics_values(m)), 10,
        )  # fmt: skip
        self.images = node.create_publisher(Image, "image", sensor)
        self.infos = node.create_publisher(CameraInfo, "camera_info", sensor)
        self.get_state = node.create_client(GetState, f"{NAME}/get_state")
        self.change_state = node.create_client(ChangeState, f"{NAME}/change_state")
        self.topics = topics
        rng = np.random.default_rng(0)
        shape = (args.height, args.width, 3)
        self.pool = [numpy_to_image(rng.integers(0, 255, shape, np.uint8), "rgb8")]
        self.pool += [numpy_to_image(rng.integers(0, 255, shape, np.uint8), "rgb8")]
        self.info = CameraInfo(width=args.width, height=args.height, distortion_model="plumb_bob")
        f = 0.9 * args.width
        self.info.k = [f, 0.0, args.width / 2, 0.0, f, args.height / 2, 0.0, 0.0, 1.0]
        self.info.d = [0.0] * 5
        self.sent = 0

    def _on_objects(self, msg) -> None:
        now = self.node.get_clock().now().nanoseconds
        stamp = msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec
        self.latencies.append((now - stamp) / 1e6)
        self.received += 1

    def send_frame(self) -> None:
        msg = self.pool[self.sent % len(self.pool)]
        msg.header.stamp = self.info.header.stamp = self.node.get_clock().now().to_msg()
        msg.header.frame_id = self.info.header.frame_id = "camera_optical"
        self.infos.publish(self.info)
        self.images.publish(msg)
        self.sent += 1

    def call(self, client, request, timeout: float = 60.0):
        if not client.wait_for_service(timeout_sec=timeout):
            raise RuntimeError(f"{client.srv_name} not available")
        future = client.call_async(request)
        self.rclpy.spin_until_future_complete(self.node, future, timeout_sec=timeout)
        if not future.done():
            raise RuntimeError(f"{client.srv_name} did not answer in {timeout} s")
        return future.result()

    def wait_active(self) -> bool:
        from lifecycle_msgs.msg import State
        from lifecycle_msgs.srv import GetState

        start = time.monotonic()
        while time.monotonic() - start < 300:
            if self.process.poll() is not None:
                return False
            try:  # autostart configures before the node serves its services: no answer yet
                state = self.call(self.get_state, GetState.Request(), timeout=5.0)
            except RuntimeError:
                continue
            if state.current_state.id == State.PRIMARY_STATE_ACTIVE:
                return True
            self.rclpy.spin_once(self.node, timeout_sec=0.5)
        return False

    def run(self) -> int:
        log = f"{tempfile.gettempdir()}/bench_soak.log"
        print(f"waiting for the node (log: {log}) ...")
        if not self.wait_active():
            print("the node did not become active; see its log")
            return 1
        summary = {"args": vars(self.args)}
        if self.args.minutes > 0:
            summary["soak"] = self.soak()
        if self.args.cycles > 0:
            summary["churn"] = self.churn()
        print(json.dumps(summary))
        self.node.destroy_node()
        self.rclpy.try_shutdown()
        return 0

    def soak(self) -> dict:
        args = self.args
        print(
            f"soak: {args.width}x{args.height} rgb8 at {args.rate:g} Hz for {args.minutes:g} min, "
            f"outputs {self.topics}"
        )
        reports = []
        period, seconds = 1.0 / args.rate, args.minutes * 60.0
        start = next_frame = time.monotonic()
        next_report = start + args.report_every
        last = (start, 0, 0)  # time, received, latencies seen at the last report
        while time.monotonic() - start < seconds:
            now = time.monotonic()
            if now >= next_frame:
                self.send_frame()
                next_frame += period
                if next_frame < now - 1.0:  # fell behind (a stalled publisher): no burst
                    next_frame = now
            if now >= next_report:
                reports.append(self.report(now - start, now, last))
                last = (now, self.received, len(self.latencies))
                next_report += args.report_every
            timeout = max(0.0, min(next_frame, next_report) - time.monotonic())
            self.rclpy.spin_once(self.node, timeout_sec=timeout)
        rss = [r["rss_mib"] for r in reports]
        return {
            "reports": reports,
            "rss_first_mib": rss[0] if rss else None,
            "rss_last_mib": rss[-1] if rss else None,
            "rss_max_mib": max(rss) if rss else None,
            "rss_growth_pct": round(100 * (rss[-1] / rss[0] - 1), 2) if len(rss) > 1 else None,
            "threads_first": reports[0]["threads"] if reports else None,
            "threads_last": reports[-1]["threads"] if reports else None,
        }

    def report(self, elapsed: float, now: float, last: tuple[float, int, int]) -> dict:
        lat = np.array(self.latencies[last[2] :], dtype=np.float64)
        figures = {
            "t_s": round(elapsed, 1),
            "sent": self.sent,
            "received": self.received,
            "fps_out": round((self.received - last[1]) / max(now - last[0], 1e-9), 2),
            "latency_p50_ms": round(float(np.percentile(lat, 50)), 1) if lat.size else None,
            "latency_p95_ms": round(float(np.percentile(lat, 95)), 1) if lat.size else None,
            **proc_status(self.process.pid),
            "drops": {
                k[6:]: int(v)
                for k, v in self.diagnostics.items()
                if k.startswith("drops_") and k != "drops_total" and v != "0"
            },
        }
        print(
            f"t={figures['t_s']:7.1f}s sent={self.sent:6d} out={self.received:6d} "
            f"fps={figures['fps_out']:5.2f} p50={figures['latency_p50_ms']} "
            f"p95={figures['latency_p95_ms']} ms rss={figures['rss_mib']} MiB "
            f"threads={figures['threads']} drops={figures['drops']}"
        )
        return figures

    def churn(self) -> dict:
        from lifecycle_msgs.msg import Transition
        from lifecycle_msgs.srv import ChangeState

        def change(transition_id: int) -> None:
            request = ChangeState.Request(transition=Transition(id=transition_id))
            if not self.call(self.change_state, request).success:
                raise RuntimeError(f"transition {transition_id} failed; see the node's log")

        def one_result(timeout: float = 30.0) -> float:
            seen, start = self.received, time.monotonic()
            while self.received == seen and time.monotonic() - start < timeout:
                self.send_frame()
                self.rclpy.spin_once(self.node, timeout_sec=1.0 / self.args.rate)
            return time.monotonic() - start

        print(f"churn: {self.args.cycles} deactivate / activate cycles, one result after each")
        one_result()
        before = proc_status(self.process.pid)
        rows, first_result = [], []
        for cycle in range(1, self.args.cycles + 1):
            change(Transition.TRANSITION_DEACTIVATE)
            change(Transition.TRANSITION_ACTIVATE)
            first_result.append(one_result())
            if cycle % 10 == 0 or cycle == self.args.cycles:
                row = {"cycle": cycle, **proc_status(self.process.pid)}
                rows.append(row)
                print(
                    f"cycle {cycle:4d}: rss={row['rss_mib']} MiB threads={row['threads']} "
                    f"first result after activate p50="
                    f"{np.percentile(first_result[-10:], 50) * 1e3:.0f} ms"
                )
        after = rows[-1]
        return {
            "rss_before_mib": before["rss_mib"],
            "rss_after_mib": after["rss_mib"],
            "rss_max_mib": max(r["rss_mib"] for r in rows),
            "rss_growth_pct": round(100 * (after["rss_mib"] / before["rss_mib"] - 1), 2),
            "threads_before": before["threads"],
            "threads_after": after["threads"],
            "rows": rows,
        }


if __name__ == "__main__":
    raise SystemExit(main())
