"""Reliability of the node in its own process over DDS (issue #12): each class of bad input the
outside test sent gets a result or a drop counted under its cause on /diagnostics, good frames
get their outputs again within a second, nothing stalls, and a decompression bomb does not
raise the node's peak memory.

One node process (config/default.yaml, every output subscribed, a tiny model on torch so that
the test is about the node, not the network) serves the module; the tests run in order on it.
Recovery times and memory figures are printed (pytest -s) for the closing note.
"""

import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import rclpy
from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticArray
from lifecycle_msgs.msg import State, Transition
from lifecycle_msgs.srv import ChangeState, GetState
from nav_msgs.msg import Odometry
from rcl_interfaces.msg import Parameter, ParameterType, ParameterValue
from rcl_interfaces.srv import SetParameters
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from std_msgs.msg import Header

from segmentation_ros.ros.diagnostics import diagnostics_values
from segmentation_ros.ros.image_codec import numpy_to_compressed, numpy_to_image
from segmentation_ros.ros.output_table import OUTPUTS

from .harness import NodeProcess, rclpy_session, spin_until
from .test_image_codec import jpeg_claiming, png_claiming

pytestmark = pytest.mark.ros

NAME = "seg_reliability"
WIDTH, HEIGHT = 320, 240
FRAME = "camera_optical"
RATE = 30.0  # Hz of the good frames sent while waiting for recovery
# Good frames must get outputs again within this after any bad input, beyond the time a good
# frame takes when nothing went wrong (measured first: on a shared 2-core machine it varies).
RECOVERY_S = 1.0
BOMB_RSS_MIB = 300.0  # peak memory may rise by at most this while bombs arrive
CYCLES, CYCLES_RSS_MIB = 15, 40.0
RELIABLE = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
FIGURES: dict[str, float] = {}


class Client:
    """The test's side: publishers, every output subscribed, services of the node."""

    def __init__(self):
        self.node = rclpy.create_node("reliability_client")
        self.received = {out.topic: [] for out in OUTPUTS}
        for topic, msg_type in ((out.topic, out.msg_type) for out in OUTPUTS):
            self.node.create_subscription(msg_type, topic, self.received[topic].append, RELIABLE)
        self.diagnostics = []
        self.node.create_subscription(
            DiagnosticArray, "/diagnostics", self.diagnostics.append, RELIABLE
        )
        self.images = self.node.create_publisher(Image, "image", RELIABLE)
        self.compressed = self.node.create_publisher(CompressedImage, "image/compressed", RELIABLE)
        self.infos = self.node.create_publisher(CameraInfo, "camera_info", RELIABLE)
        self.odometry = self.node.create_publisher(Odometry, "odom", RELIABLE)
        self.change = self.node.create_client(ChangeState, f"{NAME}/change_state")
        self.get = self.node.create_client(GetState, f"{NAME}/get_state")
        self.set = self.node.create_client(SetParameters, f"{NAME}/set_parameters")
        self.rng = np.random.default_rng(0)
        self.pool = [self.rng.integers(0, 255, (HEIGHT, WIDTH, 3), np.uint8) for _ in range(4)]
        self.transport = "raw"

    def call(self, client, request, timeout=120.0):
        assert client.wait_for_service(timeout_sec=timeout), f"{client.srv_name} not available"
        future = client.call_async(request)
        assert spin_until(self.node, future.done, timeout), f"{client.srv_name} did not answer"
        return future.result()

    def transition(self, transition_id: int) -> bool:
        request = ChangeState.Request(transition=Transition(id=transition_id))
        return self.call(self.change, request).success

    def state(self) -> int:
        return self.call(self.get, GetState.Request()).current_state.id

    def set_params(self, **values):
        params = [Parameter(name=k, value=_value(v)) for k, v in values.items()]
        return self.call(self.set, SetParameters.Request(parameters=params)).results

    def spin(self, seconds: float) -> None:
        spin_until(self.node, lambda: False, seconds)

    def stamp(self, offset_s: float = 0.0) -> Time:
        now = self.node.get_clock().now().nanoseconds + int(offset_s * 1e9)
        return Time(sec=now // 10**9, nanosec=now % 10**9)

    def send_camera_info(self, k=None, width=WIDTH, height=HEIGHT) -> None:
        info = CameraInfo(width=width, height=height, distortion_model="plumb_bob")
        info.header = Header(stamp=self.stamp(), frame_id=FRAME)
        info.k = list(k or (250.0, 0.0, width / 2, 0.0, 250.0, height / 2, 0.0, 0.0, 1.0))
        info.d = [0.0] * 5
        self.infos.publish(info)

    def send_odometry(self) -> None:
        """The robot standing at the origin of odom, now (drivable/grid_fused needs a pose)."""
        msg = Odometry(header=Header(stamp=self.stamp(), frame_id="odom"))
        msg.pose.pose.orientation.w = 1.0
        self.odometry.publish(msg)

    def send(self, msg=None, stamp=None) -> Time:
        """Publish `msg` (default: a good frame on the current transport) stamped now."""
        if msg is None:
            rgb = self.pool[int(self.rng.integers(len(self.pool)))]
            if self.transport == "raw":
                msg = numpy_to_image(rgb, "rgb8")
            else:
                msg = numpy_to_compressed(rgb, fmt="jpeg")
        msg.header = Header(stamp=stamp or self.stamp(), frame_id=FRAME)
        (self.images if isinstance(msg, Image) else self.compressed).publish(msg)
        return msg.header.stamp

    def send_bad(self, *messages, gap_s: float = 0.15) -> None:
        """One at a time: the node's input QoS is depth 1, a burst would be lost in DDS."""
        for msg in messages:
            self.send(msg) if not isinstance(msg, CameraInfo) else self.infos.publish(msg)
            self.spin(gap_s)

    def recovery_s(self, timeout: float = 10.0) -> float:
        """Seconds from the first good frame (sent at RATE) to an output of a good frame."""
        sent = set()
        start = next_frame = time.monotonic()
        seen = len(self.received["objects"])
        while time.monotonic() - start < timeout:
            if time.monotonic() >= next_frame:
                stamp = self.send()
                sent.add((stamp.sec, stamp.nanosec))
                next_frame += 1.0 / RATE
            rclpy.spin_once(self.node, timeout_sec=0.002)
            for msg in self.received["objects"][seen:]:
                if (msg.header.stamp.sec, msg.header.stamp.nanosec) in sent:
                    return time.monotonic() - start
            seen = len(self.received["objects"])
        return float("inf")

    def diagnostics_after(self, delay: float = 0.4, timeout: float = 10.0) -> dict[str, str]:
        """/diagnostics values published at least `delay` seconds from now."""
        self.spin(delay)
        count = len(self.diagnostics)
        assert spin_until(self.node, lambda: len(self.diagnostics) > count, timeout)
        last = self.diagnostics[-1]
        return {**diagnostics_values(last), "_message": last.status[0].message}


def _value(v) -> ParameterValue:
    if isinstance(v, bool):
        return ParameterValue(type=ParameterType.PARAMETER_BOOL, bool_value=v)
    if isinstance(v, int):
        return ParameterValue(type=ParameterType.PARAMETER_INTEGER, integer_value=v)
    if isinstance(v, float):
        return ParameterValue(type=ParameterType.PARAMETER_DOUBLE, double_value=v)
    return ParameterValue(type=ParameterType.PARAMETER_STRING, string_value=v)


def drops(values: dict[str, str], cause: str) -> int:
    """The node's count for `cause`; -1 when it reports no such cause."""
    return int(values.get(f"drops_{cause}", -1))


def memory_mib(pid: int) -> dict[str, float]:
    """VmRSS and VmHWM (peak resident) of a process, MiB."""
    fields = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
    )
    return {k: int(fields[k].split()[0]) / 1024 for k in ("VmRSS", "VmHWM")}


def assert_recovers(client, process, what: str) -> None:
    seconds = client.recovery_s()
    FIGURES[f"recovery_s {what}"] = round(seconds, 3)
    print(f"recovery after {what}: {seconds:.3f} s")
    assert process.alive(), process.output()[-3000:]
    limit = RECOVERY_S + FIGURES.get("baseline_s", 0.0)
    assert seconds < limit, f"{what}: good frames had no output for {seconds:.2f} s"


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    from tiny_models import save_tiny_checkpoints

    return save_tiny_checkpoints(tmp_path_factory.mktemp("ckpt"), input_size=(128, 128))


@pytest.fixture(scope="module")
def node_process(tmp_path_factory, ros_env):
    args = [
        "bin/segmentation_node", "--ros-args", "-r", f"__node:={NAME}",
        "--params-file", "config/default.yaml",
        "-p", "autostart:=false", "-p", "backend:=torch", "-p", "num_threads:=1",
        "-p", "diagnostics_period:=0.25", "-p", "max_image_age_ms:=5000.0",
        "-p", "input_reliability:=reliable",
    ]  # fmt: skip
    process = NodeProcess(args, env=ros_env, log_dir=tmp_path_factory.mktemp("log"), name=NAME)
    yield process
    process.stop()
    if FIGURES:
        print("\nreliability figures:", FIGURES)


@pytest.fixture(scope="module")
def client():
    with rclpy_session(Client) as client:
        yield client


def test_checkpoint_errors_say_what_the_path_is(node_process, client, checkpoints, tmp_path):
    messages = {}
    for path, text in (("/dev/zero", "is not a regular file"), (str(tmp_path), "is a directory")):
        assert client.set_params(checkpoint=path)[0].successful
        assert client.transition(Transition.TRANSITION_CONFIGURE) is False
        messages[f"checkpoint {path!r} {text}"] = client.diagnostics_after(0.0)["_message"]
    # Configured and active whatever the messages said: the tests below need the node.
    assert client.set_params(checkpoint=str(checkpoints["panoptic"]))[0].successful
    assert client.transition(Transition.TRANSITION_CONFIGURE), node_process.output()[-3000:]
    assert client.transition(Transition.TRANSITION_ACTIVATE), node_process.output()[-3000:]
    for expected, message in messages.items():
        assert expected in message, message


def test_good_frames_reach_every_output(node_process, client):
    deadline = time.monotonic() + 90.0
    while time.monotonic() < deadline and not all(client.received.values()):
        client.send_camera_info()
        client.send_odometry()
        client.send()
        client.send_odometry()
        client.spin(0.2)
    missing = [t for t, msgs in client.received.items() if not msgs]
    assert not missing, f"no message on {missing}:\n{node_process.output()[-3000:]}"
    FIGURES["rss_mib normal"] = round(memory_mib(node_process.popen.pid)["VmRSS"], 1)
    FIGURES["baseline_s"] = max(client.recovery_s() for _ in range(3))
    assert FIGURES["baseline_s"] < 5.0, FIGURES  # a good frame's first output, no bad input


def test_one_future_stamp_does_not_blind_the_node(node_process, client):
    before = client.diagnostics_after(0.0)
    client.send(stamp=client.stamp(3600.0))
    client.spin(0.2)
    assert_recovers(client, node_process, "a frame stamped now + 3600 s")
    after = client.diagnostics_after()
    refused = drops(after, "out_of_order") - drops(before, "out_of_order")
    assert 1 <= refused <= 2, (before, after)  # two good frames, then the new time base
    # A second clock jump ahead, then a deactivate / activate: no reference survives it.
    client.send(stamp=client.stamp(7200.0))
    client.spin(0.2)
    assert client.transition(Transition.TRANSITION_DEACTIVATE)
    assert client.transition(Transition.TRANSITION_ACTIVATE)
    assert_recovers(client, node_process, "a future stamp and deactivate / activate")


def test_odd_width_yuv_is_a_counted_drop_logged_once(node_process, client):
    before = client.diagnostics_after(0.0)
    mark = len(node_process.output())
    messages = []
    for encoding in ("yuv422", "uyvy", "yuyv", "yuv422_yuy2"):
        msg = Image(height=HEIGHT, width=WIDTH + 1, encoding=encoding, step=(WIDTH + 1) * 2)
        msg.data = bytes((WIDTH + 1) * 2 * HEIGHT)
        messages.append(msg)
    client.send_bad(*messages)
    assert_recovers(client, node_process, "odd-width yuv422 / uyvy / yuyv / yuv422_yuy2")
    after = client.diagnostics_after()
    assert drops(after, "bad_size") - drops(before, "bad_size") == 4, (before, after)
    log = node_process.output()[mark:]
    lines = [line for line in log.splitlines() if "yuv" in line or "sz.width" in line]
    assert len(lines) <= 1, lines  # one throttled warning, not one error per frame
    assert "[ERROR]" not in log, log


def test_tiny_images_are_dropped_under_their_own_cause(node_process, client):
    before = client.diagnostics_after(0.0)
    sizes = ((1, 1), (1, WIDTH), (HEIGHT, 1), (3, 3))
    client.send_bad(*(numpy_to_image(np.zeros((h, w, 3), np.uint8), "rgb8") for h, w in sizes))
    assert_recovers(client, node_process, "1x1, 1xW, Hx1, 3x3 images")
    after = client.diagnostics_after()
    assert drops(after, "too_small") - drops(before, "too_small") == 4, (before, after)
    assert drops(after, "inference_error") == drops(before, "inference_error")


def test_8uc4_gets_a_result_and_32sc1_a_counted_drop(node_process, client):
    before = client.diagnostics_after(0.0)
    rgba = np.dstack([client.pool[0], np.full((HEIGHT, WIDTH), 255, np.uint8)])
    stamp = client.send(numpy_to_image(rgba, "8UC4"))

    def answered() -> bool:
        return any(m.header.stamp == stamp for m in client.received["objects"])

    assert spin_until(client.node, answered, 10.0), node_process.output()[-2000:]
    client.send_bad(numpy_to_image(np.zeros((HEIGHT, WIDTH), np.int32), "32SC1"))
    after = client.diagnostics_after()
    assert drops(after, "bad_encoding") - drops(before, "bad_encoding") == 1, (before, after)
    assert_recovers(client, node_process, "a 32SC1 image")


def test_an_oversized_frame_is_refused_without_a_stall(node_process, client):
    before = client.diagnostics_after(0.0)
    side = 3000  # over max_image_side (2048); 27 MB still fits one shared-memory segment
    big = numpy_to_image(np.zeros((side, side, 3), np.uint8), "rgb8")
    client.send_bad(big)
    assert_recovers(client, node_process, f"a {side}x{side} rgb8 frame")
    after = client.diagnostics_after()
    assert drops(after, "too_large") - drops(before, "too_large") == 1, (before, after)


def test_grid_size_is_limited_by_its_cost(node_process, client):
    for name in ("grid_width", "grid_height"):
        (result,) = client.set_params(**{name: 4000})
        if result.successful:  # leave the node as the tests below need it, then fail
            client.set_params(**{name: 200})
        assert not result.successful and "1000" in result.reason, result.reason
    assert all(r.successful for r in client.set_params(grid_width=1000, grid_height=1000))
    client.received["drivable/grid"].clear()
    start = time.monotonic()
    while time.monotonic() - start < 10.0 and not client.received["drivable/grid"]:
        client.send()
        client.spin(1.0 / RATE)
    FIGURES["first 1000x1000 grid s"] = round(time.monotonic() - start, 3)
    grid = client.received["drivable/grid"][-1]
    assert (grid.info.width, grid.info.height) == (1000, 1000)
    assert all(r.successful for r in client.set_params(grid_width=200, grid_height=200))
    assert_recovers(client, node_process, "grid 1000x1000 and back")


def test_implausible_camera_info_is_refused_and_reported(node_process, client):
    before = client.diagnostics_after(0.0)
    bad = []
    for k, size in (
        ((1e-300, 0.0, 160.0, 0.0, 1e-300, 120.0, 0.0, 0.0, 1.0), (WIDTH, HEIGHT)),
        ((250.0, 0.0, 1e7, 0.0, 250.0, 1e7, 0.0, 0.0, 1.0), (WIDTH, HEIGHT)),
        ((250.0, 0.0, 160.0, 0.0, 250.0, 120.0, 0.0, 0.0, 1.0), (2**32 - 1, 2**32 - 1)),
        ((250.0, 0.0, 160.0, 0.0, 250.0, 160.0, 0.0, 0.0, 1.0), (320, 320)),  # not these images
    ):
        info = CameraInfo(width=size[0], height=size[1], distortion_model="plumb_bob")
        info.header = Header(stamp=client.stamp(), frame_id=FRAME)
        info.k, info.d = list(k), [0.0] * 5
        bad.append(info)
    client.send_bad(*bad)
    after = client.diagnostics_after()
    assert drops(after, "bad_camera_info") - drops(before, "bad_camera_info") == 4, after
    problems = " ".join(v for key, v in after.items() if key.startswith("problem"))
    assert "camera_info ignored" in problems and "320x320" in problems, after
    assert after["_message"] != "running", after
    client.send_camera_info()  # a good one clears the problem
    assert_recovers(client, node_process, "implausible CameraInfo")
    after = client.diagnostics_after()
    assert not any("camera_info" in v for k, v in after.items() if k.startswith("problem"))


def test_deactivate_activate_cycles_keep_memory_flat(node_process, client):
    """A regression guard: with the default model on ONNX Runtime a thread per activate grew RSS
    by 11 % in 100 cycles (benchmarks/bench_soak.py); with this tiny model the growth was too
    small to show (2-4 MiB on the code before the fix), the bound catches anything larger."""
    pid = node_process.popen.pid
    pool = client.pool  # 640x480 frames: the worker's working set as the outside test had it
    client.pool = [cv2.resize(rgb, (2 * WIDTH, 2 * HEIGHT)) for rgb in pool]
    try:
        assert_recovers(client, node_process, "nothing, before the cycles")
        before = memory_mib(pid)["VmRSS"]
        for _ in range(CYCLES):
            assert client.transition(Transition.TRANSITION_DEACTIVATE)
            assert client.transition(Transition.TRANSITION_ACTIVATE)
            assert client.recovery_s() < 10.0, node_process.output()[-2000:]
        growth = memory_mib(pid)["VmRSS"] - before
    finally:
        client.pool = pool
    FIGURES[f"rss rise over {CYCLES} deactivate / activate mib"] = round(growth, 1)
    assert growth < CYCLES_RSS_MIB, (before, growth)


def test_decompression_bombs_are_refused_by_their_header(node_process, client):
    assert client.transition(Transition.TRANSITION_DEACTIVATE)
    assert client.transition(Transition.TRANSITION_CLEANUP)
    assert client.set_params(image_transport="compressed")[0].successful
    assert client.transition(Transition.TRANSITION_CONFIGURE), node_process.output()[-3000:]
    assert client.transition(Transition.TRANSITION_ACTIVATE), node_process.output()[-3000:]
    client.transport = "compressed"
    client.send_camera_info()
    assert_recovers(client, node_process, "reconfigure for compressed input")
    pid = node_process.popen.pid
    normal = memory_mib(pid)
    before = client.diagnostics_after(0.0)
    bombs = [
        CompressedImage(format="jpeg", data=jpeg_claiming(16384, 16384)),  # 1.6 GB decoded
        CompressedImage(format="png", data=png_claiming(16384, 16384)),
    ]
    client.send_bad(*bombs, gap_s=0.5)
    assert_recovers(client, node_process, "JPEG and PNG decompression bombs")
    after = client.diagnostics_after()
    peak = memory_mib(pid)["VmHWM"]
    FIGURES["peak rss rise during bombs mib"] = round(peak - normal["VmHWM"], 1)
    FIGURES["rss_mib before bombs"] = round(normal["VmRSS"], 1)
    assert drops(after, "too_large") - drops(before, "too_large") == 2, (before, after)
    assert peak - normal["VmHWM"] < BOMB_RSS_MIB, (normal, peak)
    assert client.state() == State.PRIMARY_STATE_ACTIVE
    assert node_process.alive()
