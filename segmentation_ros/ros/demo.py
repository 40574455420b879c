"""segmentation-ros-demo: the product's main job in one command.

    segmentation-ros-demo [--input BAG_VIDEO_OR_SEQUENCE] [--stills] [--checkpoint PATH]
                          [--frames N] [--rate HZ] [--out DIR]

1. starts the segmentation node in its own process (`segmentation_ros.ros.node`, the
   `segmentation_node` console script's code) in a private ROS session (`session`: a free domain
   id, discovery limited to this machine, Fast DDS with the shared-memory profile), with the
   parameters the launch file gives the default model (config/default.yaml), the checkpoint and,
   for the synthetic world, the camera height and pitch of its first scene;
2. waits until the node is active (lifecycle GetState), or reports why it is not;
3. plays N frames (`segmentation_ros.ros.player`) at HZ frames per second, in this process: by
   default a drive of the synthetic sequence world (`--seed`, rendered up front, with odometry,
   at its own 10 Hz, so that objects get track ids and ground velocities); `--stills` cycles
   unrelated synthetic stills instead; `--input` plays a rosbag2, a video or a sequence folder;
4. records every output of the node (`demo_record.RECORDED`: the output table, class_info,
   /diagnostics) as received, to the MCAP rosbag2 OUT/bag, readable by any rosbags or ROS 2
   reader;
5. writes OUT/strip.png (a few overlay frames side by side, annotated, tracked objects with
   their track id and an arrow of their image-plane motion), OUT/grid.png (the last
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
import json
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from segmentation_ros.ros.demo_record import Recorder, output_typestore, write_pictures
from segmentation_ros.ros.launch_logic import NODE_NAME, config_file
from segmentation_ros.ros.player import (
    add_source_arguments,
    make_player,
    play_rate,
    source_from_args,
)
from segmentation_ros.ros.session import NodeProcess, claim_domain_id, ros_environment


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


# -- the node process --------------------------------------------------------------------------


def node_ros_args(checkpoint: Path, mounting: dict[str, float], extra: list[str]) -> list[str]:
    """The node's arguments: the launch default's parameter file (what `ros2 launch
    segmentation_ros segmentation.launch.py` reads), then the demo's values."""
    defaults = config_file("default")
    args = ["--params-file", str(defaults)] if defaults.is_file() else []
    args += ["-p", f"checkpoint:={checkpoint}"]
    for name, value in mounting.items():
        args += ["-p", f"{name}:={value:.6f}"]
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
        rate = play_rate(args, source)
        player = make_player(source, rate_hz=rate, max_frames=args.frames)
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
        print(f"playing {args.frames or 'all'} frames at {rate:g} fps ...", flush=True)
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
    parser.add_argument(
        "--stills", action="store_true", help="cycle synthetic stills instead of playing a drive"
    )
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


def _source(args: argparse.Namespace):
    """--input, or --stills, or by default a drive rendered from --seed (--frames of it, 150 for
    0) at --width x --height."""
    if args.input is not None or args.stills:
        return source_from_args(args)
    from segmentation_ros.ros.sequence_source import SequenceSource

    print(f"rendering a drive of the synthetic world (seed {args.seed}) ...", flush=True)
    frames = args.frames or 150
    return SequenceSource.render(
        args.seed, frames=frames, kind="drive", width=args.width, height=args.height
    )


def resolve_checkpoint(checkpoint: str | None) -> Path:
    """--checkpoint, or the embedded default model (`pipeline.resolve_checkpoint`), absolute;
    DemoError naming --checkpoint when it is missing."""
    from segmentation_ros.pipeline import resolve_checkpoint as resolve

    try:
        return resolve(checkpoint).resolve()
    except FileNotFoundError as error:
        if checkpoint:
            raise DemoError(f"--checkpoint: {error}") from None
        raise DemoError(f"no model: {error}; or pass --checkpoint PATH") from None


def run(args: argparse.Namespace) -> DemoSummary:
    """The demo (see the module docstring); DemoError when it cannot run."""
    checkpoint = resolve_checkpoint(args.checkpoint)
    out = args.out or Path("out") / "demo" / time.strftime("%Y%m%d-%H%M%S")
    out = out.resolve()
    if (out / "bag").exists():
        raise DemoError(f"--out {str(out)!r} already holds a bag; choose another folder")
    out.mkdir(parents=True, exist_ok=True)
    try:
        source = _source(args)
    except (FileNotFoundError, ValueError) as error:
        raise DemoError(f"--input: {error}") from None
    # camera_height / camera_pitch: the synthetic world's, then the command line's; the node's
    # defaults for what neither gives.
    mounting = asdict(source.mounting) if hasattr(source, "mounting") else {}  # synthetic, sequence
    for name in ("camera_height", "camera_pitch"):
        if getattr(args, name) is not None:
            mounting[name] = getattr(args, name)
    lock = None
    if args.domain_id is None:
        try:
            domain, lock = claim_domain_id()
        except RuntimeError as error:
            raise DemoError(f"{error} (--domain-id)") from None
    else:
        domain = args.domain_id
    env = ros_environment(domain)
    os.environ.update(env)  # before rclpy.init in this process
    print(
        f"ROS domain {domain}; starting the segmentation node ({checkpoint.name}) ...", flush=True
    )
    node = ["-m", "segmentation_ros.ros.node", "--ros-args"]
    ros_args = node_ros_args(checkpoint, mounting, args.param)
    process = NodeProcess([*node, *ros_args], env=env, log_path=out / "node.log")
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
