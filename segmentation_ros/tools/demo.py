"""segmentation-ros-demo: the product's main job in one command.

    segmentation-ros-demo [--input BAG_OR_VIDEO] [--checkpoint PATH] [--frames N] [--rate HZ]
                          [--out DIR]

1. starts the segmentation node in its own process (`segmentation_ros.ros.node`, the
   `segmentation_node` console script's code) on a free ROS domain id, discovery limited to this
   machine, Fast DDS with the shared-memory profile (config/fastdds_shm.xml), the parameters the
   launch file gives the default model (config/default.yaml: ONNX Runtime), the checkpoint and,
   for the synthetic world, the camera height and pitch of its first scene;
2. waits until the node is active (lifecycle GetState), or reports why it is not;
3. plays N frames (`segmentation_ros.ros.player`: the synthetic world by default, or a rosbag2
   / video file) at HZ frames per second, in this process;
4. records every output of the node (objects, instances, semantic, confidence, drivable/mask,
   drivable/grid, overlay, markers, class_info, /diagnostics) as received, to the MCAP rosbag2
   OUT/bag (our messages' definitions are registered from msg/*.msg, so any rosbags or ROS 2
   reader decodes them);
5. writes OUT/strip.png (a few overlay frames side by side, annotated), OUT/grid.png (the last
   drivable grid seen from above: free white, occupied black, unknown grey, the robot red, forward
   up), OUT/summary.json and prints a summary: frames in and out, output rate, latency (camera
   stamp to `objects` received) p50 / p95, drops by cause (from /diagnostics);
6. stops the node (SIGINT, then SIGKILL if it lingers).

Exit status: 0 on success, 2 when an input is missing (e.g. no checkpoint), 1 when the node does
not become active or produces nothing, 130 when interrupted (Ctrl-C while playing still records,
draws and summarises what was received).
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np

from segmentation_ros.ros.player import (
    SyntheticSource,
    add_source_arguments,
    make_player,
    source_from_args,
)

REPO = Path(__file__).resolve().parents[2]
#: Output topics of the node (relative names) and their types (package.msg.Type).
OUTPUT_TOPICS = {
    "objects": "segmentation_ros.msg.SegmentationResult",
    "instances": "sensor_msgs.msg.Image",
    "semantic": "sensor_msgs.msg.Image",
    "confidence": "sensor_msgs.msg.Image",
    "drivable/mask": "sensor_msgs.msg.Image",
    "drivable/grid": "nav_msgs.msg.OccupancyGrid",
    "overlay": "sensor_msgs.msg.Image",
    "markers": "visualization_msgs.msg.MarkerArray",
    "class_info": "segmentation_ros.msg.ClassInfoArray",
    "/diagnostics": "diagnostic_msgs.msg.DiagnosticArray",
}
NODE_NAME = "segmentation_node"
# Same lock folder as the test harness (test/ros/harness.py), so a demo never shares a domain
# with a running test session or another demo.
_DOMAIN_LOCKS = Path(tempfile.gettempdir()) / "segmentation_ros_test_domains"
_DOMAIN_IDS = range(1, 101)


class DemoError(RuntimeError):
    """The demo cannot go on; the text says why and what to do."""


@dataclass
class DemoSummary:
    """What one demo run measured. Latency: camera stamp (set by the player when it publishes)
    to `objects` received by the recorder, milliseconds, same clock. output_fps: `objects`
    messages per second between the first and the last one."""

    frames_in: int = 0
    frames_out: int = 0
    input_fps: float = 0.0
    output_fps: float = 0.0
    latency_p50_ms: float = 0.0
    latency_p95_ms: float = 0.0
    node_frames_in: int = 0
    node_frames_out: int = 0
    drops_total: int = 0
    drops: dict[str, int] = field(default_factory=dict)
    messages: dict[str, int] = field(default_factory=dict)
    bag: str = ""
    strip: str = ""
    grid: str = ""
    interrupted: bool = False

    def text(self) -> str:
        drops = ", ".join(f"{k} {v}" for k, v in sorted(self.drops.items()) if v) or "none"
        lines = [
            f"frames in:  {self.frames_in} played at {self.input_fps:.1f} fps "
            f"(the node received {self.node_frames_in})",
            f"frames out: {self.frames_out} results at {self.output_fps:.1f} fps",
            f"latency:    p50 {self.latency_p50_ms:.1f} ms, p95 {self.latency_p95_ms:.1f} ms "
            "(camera stamp -> objects received)",
            f"drops:      {self.drops_total} ({drops})",
            "recorded:   " + ", ".join(f"{t} {n}" for t, n in self.messages.items()),
            f"bag:        {self.bag}",
            f"pictures:   {self.strip}, {self.grid}",
        ]
        return "\n".join(lines)


# -- environment -------------------------------------------------------------------------------


def claim_domain_id() -> tuple[int, object]:
    """A ROS domain id in 1..100 that no other demo or test session on this machine holds (a
    file lock per id, held as long as the returned handle is open)."""
    _DOMAIN_LOCKS.mkdir(exist_ok=True)
    start = os.getpid() % len(_DOMAIN_IDS)
    for offset in range(len(_DOMAIN_IDS)):
        domain = _DOMAIN_IDS[(start + offset) % len(_DOMAIN_IDS)]
        handle = open(_DOMAIN_LOCKS / f"{domain}.lock", "w")  # noqa: SIM115 - held while running
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            continue
        return domain, handle
    raise DemoError("every ROS domain id 1..100 is taken; pass --domain-id")


def share_dir() -> Path:
    """The package's share folder (installed msg/ and config/), or the source tree."""
    try:
        from ament_index_python.packages import get_package_share_directory

        path = Path(get_package_share_directory("segmentation_ros"))
        if (path / "msg").is_dir():
            return path
    except (ImportError, LookupError, ValueError):
        pass
    return REPO


def ros_environment(domain_id: int) -> dict[str, str]:
    """The variables of env.sh's ROS set-up, for this process and the node's."""
    profile = os.environ.get("FASTDDS_DEFAULT_PROFILES_FILE") or str(
        share_dir() / "config" / "fastdds_shm.xml"
    )
    return {
        "ROS_DOMAIN_ID": str(domain_id),
        "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST",
        "RMW_IMPLEMENTATION": os.environ.get("RMW_IMPLEMENTATION") or "rmw_fastrtps_cpp",
        "FASTDDS_DEFAULT_PROFILES_FILE": profile,
        "PYTHONUNBUFFERED": "1",
    }


def resolve_checkpoint(checkpoint: str | None) -> Path:
    """--checkpoint, or the embedded default model; DemoError naming --checkpoint if missing."""
    if checkpoint:
        path = Path(checkpoint).expanduser().resolve()
        if not path.is_file():
            raise DemoError(f"--checkpoint {checkpoint!r}: no such file")
        return path
    from segmentation_ros.pipeline import DEFAULT_CHECKPOINT

    if not DEFAULT_CHECKPOINT.is_file():
        raise DemoError(
            f"no model: the embedded default {str(DEFAULT_CHECKPOINT)!r} is not installed yet; "
            "pass --checkpoint PATH (a model trained with segmentation-ros-train)"
        )
    return DEFAULT_CHECKPOINT


# -- the node process --------------------------------------------------------------------------


class NodeProcess:
    """The segmentation node in its own process group, its output in `log_path`."""

    def __init__(self, ros_args: list[str], *, env: dict[str, str], log_path: Path):
        self.log_path = log_path
        self._log = open(log_path, "w")  # noqa: SIM115 - closed in stop()
        full_env = {**os.environ, **env}
        self.popen = subprocess.Popen(
            [sys.executable, "-m", "segmentation_ros.ros.node", "--ros-args", *ros_args],
            env=full_env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def alive(self) -> bool:
        return self.popen.poll() is None

    def tail(self, lines: int = 15) -> str:
        self._log.flush()
        text = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGINT (clean shutdown), then SIGKILL the group if it lingers."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            if self.alive():
                os.killpg(self.popen.pid, signal.SIGINT)
                try:
                    self.popen.wait(timeout)
                except subprocess.TimeoutExpired:
                    os.killpg(self.popen.pid, signal.SIGKILL)
                    self.popen.wait()
            os.killpg(self.popen.pid, signal.SIGKILL)  # children that outlived the leader
        self._log.close()
        return self.popen.returncode


#: The parameters `ros2 launch segmentation_ros segmentation.launch.py` uses for the default model.
DEFAULT_PARAMS = REPO / "config" / "default.yaml"


def node_ros_args(checkpoint: Path, mounting, extra: list[str]) -> list[str]:
    args = ["--params-file", str(DEFAULT_PARAMS)] if DEFAULT_PARAMS.is_file() else []
    args += ["-p", f"checkpoint:={checkpoint}"]
    if mounting is not None:
        args += ["-p", f"camera_height:={mounting.camera_height:.6f}"]
        args += ["-p", f"camera_pitch:={mounting.camera_pitch:.6f}"]
    for item in extra:
        args += ["-p", item]
    return args


def wait_until_active(executor, client_node, process: NodeProcess, timeout: float) -> None:
    """Ask the node's GetState until it answers; DemoError unless it is active. The node only
    answers once its start-up (model loading, autostart) is over."""
    from lifecycle_msgs.msg import State
    from lifecycle_msgs.srv import GetState

    client = client_node.create_client(GetState, f"/{NODE_NAME}/get_state")
    deadline = time.monotonic() + timeout
    future = None
    try:
        while time.monotonic() < deadline:
            if not process.alive():
                raise DemoError(f"the segmentation node exited:\n{process.tail()}")
            if future is None:
                if not client.wait_for_service(timeout_sec=0.5):
                    continue
                future = client.call_async(GetState.Request())
            executor.spin_until_future_complete(future, timeout_sec=0.5)
            if not future.done():
                continue
            state = future.result().current_state
            if state.id == State.PRIMARY_STATE_ACTIVE:
                return
            raise DemoError(
                f"the segmentation node is {state.label!r}, not active:\n{process.tail()}"
            )
        raise DemoError(
            f"the segmentation node did not become active in {timeout:.0f} s:\n{process.tail()}"
        )
    finally:
        client_node.destroy_client(client)


# -- recording ---------------------------------------------------------------------------------


def output_typestore():
    """rosbags typestore with the ROS 2 standard types and our messages from msg/*.msg."""
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore

    store = get_typestore(Stores.ROS2_KILTED)
    types = {}
    for path in sorted((share_dir() / "msg").glob("*.msg")):
        types.update(get_types_from_msg(path.read_text(), f"segmentation_ros/msg/{path.stem}"))
    store.register(types)
    return store


def _import_type(dotted: str):
    module, name = dotted.rsplit(".", 1)
    return getattr(__import__(module, fromlist=[name]), name)


class Recorder:
    """Subscribes to every output of the node (raw, serialised CDR) and writes what arrives to
    an MCAP rosbag2, timestamped on receipt. Keeps the latency of each `objects` message and the
    newest /diagnostics values."""

    def __init__(self, node, bag_path: Path):
        from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
        from rclpy.serialization import deserialize_message
        from rosbags.rosbag2 import StoragePlugin, Writer

        self._deserialize = deserialize_message
        self.store = output_typestore()
        self.writer = Writer(bag_path, version=9, storage_plugin=StoragePlugin.MCAP)
        self.writer.open()
        self.counts: dict[str, int] = {}
        self.objects_received: list[float] = []  # wall clock, seconds
        self.latencies_ms: list[float] = []
        self.diagnostics: dict[str, str] = {}
        self.diagnostics_time = 0.0
        self._connections = {}
        self._subscriptions = []
        reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        latched = QoSProfile(
            depth=1,
            reliability=ReliabilityPolicy.RELIABLE,
            durability=DurabilityPolicy.TRANSIENT_LOCAL,
        )
        for topic, dotted in OUTPUT_TOPICS.items():
            msg_type = _import_type(dotted)
            name = node.resolve_topic_name(topic)
            msgtype = dotted.replace(".", "/")
            self._connections[topic] = self.writer.add_connection(
                name, msgtype, typestore=self.store
            )
            self.counts[topic] = 0
            qos = latched if topic == "class_info" else reliable
            callback = self._callback(topic, msg_type)
            self._subscriptions.append(
                node.create_subscription(msg_type, topic, callback, qos, raw=True)
            )

    def _callback(self, topic: str, msg_type):
        from diagnostic_msgs.msg import DiagnosticArray

        def on_message(raw: bytes) -> None:
            now_ns = time.time_ns()
            self.writer.write(self._connections[topic], now_ns, raw)
            self.counts[topic] += 1
            if topic == "objects":
                msg = self._deserialize(raw, msg_type)
                stamp_ns = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
                self.objects_received.append(now_ns / 1e9)
                self.latencies_ms.append((now_ns - stamp_ns) / 1e6)
            elif topic == "/diagnostics":
                from segmentation_ros.ros.diagnostics import diagnostics_values

                values = diagnostics_values(self._deserialize(raw, DiagnosticArray))
                if values:
                    self.diagnostics, self.diagnostics_time = values, now_ns / 1e9

        return on_message

    def close(self) -> None:
        self.writer.close()


# -- pictures ----------------------------------------------------------------------------------


def read_outputs(bag_path: Path, store, topics: tuple[str, ...]) -> dict[str, list]:
    """Deserialised messages of `topics` (bag topic names) in the bag, in recording order."""
    from rosbags.rosbag2 import Reader

    out: dict[str, list] = {topic: [] for topic in topics}
    with Reader(bag_path) as reader:
        wanted = [c for c in reader.connections if c.topic in out]
        for connection, _, raw in reader.messages(connections=wanted):
            out[connection.topic].append(store.deserialize_cdr(raw, connection.msgtype))
    return out


def _stamp_ns(header) -> int:
    return header.stamp.sec * 1_000_000_000 + header.stamp.nanosec


def overlay_strip(overlays: list, objects: list, *, count: int = 4, height: int = 240):
    """Up to `count` overlay frames evenly spaced over the run, side by side, each scaled to
    `height` pixels and labelled with its index and what the matching `objects` says.
    Returns an [height, W, 3] uint8 RGB image (None when there is no overlay)."""
    from segmentation_ros.ros.image_codec import to_rgb8

    if not overlays:
        return None
    by_stamp = {_stamp_ns(m.header): m for m in objects}
    picks = np.unique(np.linspace(0, len(overlays) - 1, min(count, len(overlays))).round())
    tiles = []
    for index in picks.astype(int):
        msg = overlays[index]
        rgb = to_rgb8(msg)
        scale = height / rgb.shape[0]
        tile = cv2.resize(rgb, (max(1, round(rgb.shape[1] * scale)), height))
        result = by_stamp.get(_stamp_ns(msg.header))
        label = f"#{index}"
        if result is not None:
            label += f"  {len(result.objects)} objects  {result.total_ms:.0f} ms"
        cv2.rectangle(tile, (0, 0), (tile.shape[1], 22), (0, 0, 0), -1)
        cv2.putText(tile, label, (5, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1)
        tiles.append(tile)
        tiles.append(np.full((height, 4, 3), 255, np.uint8))
    return np.hstack(tiles[:-1])


def grid_picture(grid, *, size: int = 400) -> np.ndarray:
    """A nav_msgs/OccupancyGrid seen from above, forward up and left on the left: free white,
    occupied black (shades for 1..99), unknown grey, the grid frame's origin (the robot) a red
    dot. Returns [H, W, 3] uint8 RGB, the longer side `size` pixels (nearest-neighbour cells).
    Assumes the grid's origin orientation is the identity (as the node publishes it)."""
    info = grid.info
    width, height = int(info.width), int(info.height)
    values = np.asarray(grid.data, dtype=np.int16).reshape(height, width)  # [y cell, x cell]
    gray = np.where(values < 0, 128, 255 - np.clip(values, 0, 100) * 255 // 100).astype(np.uint8)
    view = np.ascontiguousarray(gray.T[::-1, ::-1])  # rows: x forward (up), cols: y left (left)
    scale = max(1, size // max(width, height))
    view = cv2.resize(view, (height * scale, width * scale), interpolation=cv2.INTER_NEAREST)
    rgb = cv2.cvtColor(view, cv2.COLOR_GRAY2RGB)
    resolution = float(info.resolution)
    col_x = (0.0 - info.origin.position.x) / resolution  # grid column of the robot (x)
    row_y = (0.0 - info.origin.position.y) / resolution  # grid row of the robot (y)
    u = (height - row_y) * scale  # picture column: y flipped
    v = (width - col_x) * scale  # picture row: x flipped
    u = int(np.clip(u, 0, rgb.shape[1] - 1))
    v = int(np.clip(v, 0, rgb.shape[0] - 1))
    cv2.circle(rgb, (u, v), max(3, round(0.015 * max(rgb.shape[:2]))), (255, 0, 0), -1)
    return rgb


def write_pictures(bag_path: Path, store, out: Path) -> tuple[Path | None, Path | None]:
    """OUT/strip.png and OUT/grid.png from the recorded bag (None where nothing was recorded)."""
    messages = read_outputs(bag_path, store, ("/overlay", "/objects", "/drivable/grid"))
    strip_path = grid_path = None
    strip = overlay_strip(messages["/overlay"], messages["/objects"])
    if strip is not None:
        strip_path = out / "strip.png"
        cv2.imwrite(str(strip_path), cv2.cvtColor(strip, cv2.COLOR_RGB2BGR))
    if messages["/drivable/grid"]:
        grid_path = out / "grid.png"
        picture = grid_picture(messages["/drivable/grid"][-1])
        cv2.imwrite(str(grid_path), cv2.cvtColor(picture, cv2.COLOR_RGB2BGR))
    return strip_path, grid_path


# -- the run -----------------------------------------------------------------------------------


def _spin_until(executor, predicate, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        executor.spin_once(timeout_sec=0.05)
    return predicate()


def play_and_record(args, source, out: Path, process: NodeProcess) -> DemoSummary:
    """In this process: wait for the node, play, record; the summary of what was seen."""
    import rclpy
    from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor

    rclpy.init()
    executor = SingleThreadedExecutor()
    recorder = None
    try:
        client = rclpy.create_node("segmentation_demo")
        executor.add_node(client)
        wait_until_active(executor, client, process, args.startup_timeout)
        recorder = Recorder(client, out / "bag")
        player = make_player(source, rate_hz=args.rate, max_frames=args.frames)
        executor.add_node(player)
        # Discovery: the node only computes outputs somebody subscribes to.
        connected = _spin_until(
            executor,
            lambda: (
                player.image_pub.get_subscription_count() > 0
                and client.count_publishers("objects") > 0
                and client.count_publishers("overlay") > 0
            ),
            timeout=10.0,
        )
        if not connected:
            raise DemoError("the segmentation node and the demo do not see each other over DDS")
        _spin_until(executor, lambda: False, timeout=0.5)  # the node's matching settles
        print(f"playing {args.frames or 'all'} frames at {args.rate:g} fps ...", flush=True)
        player.start()
        interrupted = False
        try:
            _play(executor, player, recorder, process, args.drain)
        except (KeyboardInterrupt, ExternalShutdownException):
            print("interrupted: the summary covers what was recorded so far", file=sys.stderr)
            interrupted = True
        played_s = player.last_publish - player.first_publish
        summary = summarise(recorder, player.published, played_s)
        summary.interrupted = interrupted
        return summary
    finally:
        if recorder is not None:
            recorder.close()
        executor.shutdown()
        rclpy.try_shutdown()


def _play(executor, player, recorder: Recorder, process: NodeProcess, drain_s: float) -> None:
    """Spin until the player is done, then until no result came for `drain_s` seconds, then
    until a /diagnostics message written after that arrives (3 s at most)."""
    while not player.done:
        executor.spin_once(timeout_sec=0.05)
        if not process.alive():
            raise DemoError(f"the segmentation node exited:\n{process.tail()}")
    seen = len(recorder.objects_received)
    quiet_since = time.monotonic()
    while time.monotonic() - quiet_since < drain_s:
        executor.spin_once(timeout_sec=0.05)
        if len(recorder.objects_received) != seen:
            seen, quiet_since = len(recorder.objects_received), time.monotonic()
    drained = time.time()
    _spin_until(executor, lambda: recorder.diagnostics_time > drained, timeout=3.0)


def summarise(recorder: Recorder, frames_in: int, played_s: float) -> DemoSummary:
    received = np.asarray(recorder.objects_received)
    latencies = np.asarray(recorder.latencies_ms)
    diagnostics = recorder.diagnostics
    drops = {
        key.removeprefix("drops_"): int(value)
        for key, value in diagnostics.items()
        if key.startswith("drops_") and key != "drops_total"
    }
    span = received[-1] - received[0] if received.size > 1 else 0.0
    return DemoSummary(
        frames_in=frames_in,
        frames_out=int(received.size),
        input_fps=(frames_in - 1) / played_s if frames_in > 1 and played_s > 0 else 0.0,
        output_fps=(received.size - 1) / span if span > 0 else 0.0,
        latency_p50_ms=float(np.percentile(latencies, 50)) if latencies.size else 0.0,
        latency_p95_ms=float(np.percentile(latencies, 95)) if latencies.size else 0.0,
        node_frames_in=int(diagnostics.get("frames_in", 0)),
        node_frames_out=int(diagnostics.get("frames_out", 0)),
        drops_total=int(diagnostics.get("drops_total", 0)),
        drops=drops,
        messages=dict(recorder.counts),
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="segmentation-ros-demo",
        description="Run the segmentation node on the synthetic world, a rosbag2 or a video; "
        "record its outputs to an MCAP bag, draw pictures and print what it measured.",
    )
    parser.add_argument(
        "--checkpoint",
        help="model file (default: the embedded segmentation_ros/weights/default.pt)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        help="output folder (default: out/demo/<date-time>); must not hold a bag",
    )
    add_source_arguments(parser)
    parser.add_argument("--camera-height", type=float, help="camera above the ground (m)")
    parser.add_argument("--camera-pitch", type=float, help="downward camera tilt (rad)")
    parser.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="NAME:=VALUE",
        help="another node parameter (repeatable), e.g. --param num_threads:=2",
    )
    parser.add_argument("--domain-id", type=int, help="ROS domain id (default: a free one)")
    parser.add_argument(
        "--startup-timeout", type=float, default=120.0, help="seconds for the node to activate"
    )
    parser.add_argument(
        "--drain", type=float, default=1.5, help="seconds without results that end the recording"
    )
    return parser


def run(args: argparse.Namespace) -> DemoSummary:
    """The demo (see the module docstring); DemoError when it cannot run."""
    checkpoint = resolve_checkpoint(args.checkpoint)
    out = args.out or Path("out") / "demo" / time.strftime("%Y%m%d-%H%M%S")
    out = out.resolve()
    if (out / "bag").exists():
        raise DemoError(f"--out {str(out)!r} already holds a bag; choose another folder")
    out.mkdir(parents=True, exist_ok=True)
    try:
        source = source_from_args(args)
    except (FileNotFoundError, ValueError) as error:
        raise DemoError(f"--input: {error}") from None
    mounting = source.mounting if isinstance(source, SyntheticSource) else None
    if args.camera_height is not None or args.camera_pitch is not None:
        from segmentation_ros.ros.player import Mounting

        base = mounting or Mounting(0.5, 0.2)
        mounting = Mounting(
            base.camera_height if args.camera_height is None else args.camera_height,
            base.camera_pitch if args.camera_pitch is None else args.camera_pitch,
        )
    lock = None
    if args.domain_id is None:
        domain, lock = claim_domain_id()
    else:
        domain = args.domain_id
    env = ros_environment(domain)
    os.environ.update(env)  # before rclpy.init in this process
    print(
        f"ROS domain {domain}; starting the segmentation node ({checkpoint.name}) ...", flush=True
    )
    process = NodeProcess(
        node_ros_args(checkpoint, mounting, args.param), env=env, log_path=out / "node.log"
    )
    try:
        summary = play_and_record(args, source, out, process)
    finally:
        process.stop()
        if lock is not None:
            lock.close()
    summary.bag = str(out / "bag")
    strip, grid = write_pictures(out / "bag", output_typestore(), out)
    summary.strip, summary.grid = str(strip or "-"), str(grid or "-")
    (out / "summary.json").write_text(json.dumps(asdict(summary), indent=2) + "\n")
    return summary


def main(argv=None) -> int:
    """Console script `segmentation-ros-demo`."""
    from rclpy.executors import ExternalShutdownException

    args = build_parser().parse_args(argv)
    try:
        summary = run(args)
    except DemoError as error:
        print(f"segmentation-ros-demo: {error}", file=sys.stderr)
        return 2 if str(error).startswith(("--", "no model")) else 1
    except (KeyboardInterrupt, ExternalShutdownException):  # rclpy turns SIGINT into the latter
        print("segmentation-ros-demo: interrupted", file=sys.stderr)
        return 130
    print(summary.text())
    if summary.interrupted:
        return 130
    if summary.frames_out == 0:
        print("segmentation-ros-demo: the node published no results", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
