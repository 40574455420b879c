"""The segmentation node in its own process over DDS, driven like a robot would drive it.

One node process serves the whole module (starting one with torch takes seconds here); the
tests run in order on it: a configure that fails (bad checkpoint) and one that succeeds, every
output with the right type, size, stamp and frame_id, run-time parameter changes, bad input
counted in the diagnostics without stopping the node, and deactivate / cleanup.
"""

import time

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
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from segmentation_ros.msg import ClassInfoArray
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from std_msgs.msg import Header

from segmentation_ros.ros import output_table
from segmentation_ros.ros.diagnostics import diagnostics_values
from segmentation_ros.ros.image_codec import image_to_numpy, numpy_to_compressed, numpy_to_image

from .harness import NodeProcess, rclpy_session, spin_until

pytestmark = pytest.mark.ros

NAME = "seg_under_test"
WIDTH, HEIGHT = 160, 120
FRAME = "camera_optical"
RELIABLE = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
LATCHED = QoSProfile(
    depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL
)
OUTPUTS = {out.topic: out.msg_type for out in output_table.OUTPUTS}  # every one is checked
ENCODINGS = {
    "instances": "mono16",
    "semantic": "mono8",
    "confidence": "mono8",
    "drivable/mask": "mono8",
    "overlay": "rgb8",
}


class Client:
    """The test's side: an rclpy node with publishers, subscriptions and service clients."""

    def __init__(self):
        self.node = rclpy.create_node("node_test_client")
        self.received = {topic: [] for topic in OUTPUTS}
        for topic, msg_type in OUTPUTS.items():
            self.node.create_subscription(msg_type, topic, self.received[topic].append, RELIABLE)
        self.class_info = []
        self.node.create_subscription(ClassInfoArray, "class_info", self.class_info.append, LATCHED)
        self.diagnostics = []
        self.node.create_subscription(
            DiagnosticArray, "/diagnostics", self.diagnostics.append, RELIABLE
        )
        self.images = self.node.create_publisher(Image, "image", RELIABLE)
        self.infos = self.node.create_publisher(CameraInfo, "camera_info", RELIABLE)
        self.odometry = self.node.create_publisher(Odometry, "odom", RELIABLE)
        self.change = self.node.create_client(ChangeState, f"{NAME}/change_state")
        self.get = self.node.create_client(GetState, f"{NAME}/get_state")
        self.set = self.node.create_client(SetParameters, f"{NAME}/set_parameters")
        self.sent_stamps = set()
        self.rng = np.random.default_rng(0)

    def call(self, client, request, timeout=60.0):
        assert client.wait_for_service(timeout_sec=timeout), f"{client.srv_name} not available"
        future = client.call_async(request)
        assert spin_until(self.node, future.done, timeout), f"{client.srv_name} did not answer"
        return future.result()

    def state(self) -> int:
        return self.call(self.get, GetState.Request()).current_state.id

    def transition(self, transition_id: int) -> bool:
        request = ChangeState.Request(transition=Transition(id=transition_id))
        return self.call(self.change, request, timeout=120.0).success

    def set_params(self, **values) -> list:
        params = [Parameter(name=k, value=_value(v)) for k, v in values.items()]
        return self.call(self.set, SetParameters.Request(parameters=params)).results

    def spin(self, seconds: float) -> None:
        spin_until(self.node, lambda: False, seconds)

    def stamp(self, offset_s: float = 0.0) -> Time:
        now = self.node.get_clock().now().nanoseconds + int(offset_s * 1e9)
        return Time(sec=now // 10**9, nanosec=now % 10**9)

    def send_camera_info(self, k=(120.0, 0.0, 80.0, 0.0, 120.0, 60.0, 0.0, 0.0, 1.0)) -> None:
        info = CameraInfo(width=WIDTH, height=HEIGHT, distortion_model="plumb_bob")
        info.header = Header(stamp=self.stamp(), frame_id=FRAME)
        info.k = list(k)
        info.d = [0.0] * 5
        self.infos.publish(info)

    def send_odometry(self, x: float = 0.0) -> None:
        """The robot at (x, 0) in odom now (the fused grid needs a pose at each image)."""
        msg = Odometry(header=Header(stamp=self.stamp(), frame_id="odom"))
        msg.child_frame_id = "base_link"
        msg.pose.pose.position.x = x
        msg.pose.pose.orientation.w = 1.0
        self.odometry.publish(msg)

    def send_image(self, offset_s: float = 0.0, msg: Image | None = None, stamp=None) -> Time:
        if msg is None:
            rgb = self.rng.integers(0, 255, (HEIGHT, WIDTH, 3), dtype=np.uint8)
            msg = numpy_to_image(rgb, "rgb8")
        msg.header = Header(stamp=stamp or self.stamp(offset_s), frame_id=FRAME)
        self.sent_stamps.add((msg.header.stamp.sec, msg.header.stamp.nanosec))
        self.images.publish(msg)
        return msg.header.stamp

    def latest_diagnostics(self, after: float, timeout: float = 10.0) -> dict[str, str]:
        """Values of the first /diagnostics message received after time.monotonic() `after`."""
        self.spin(max(0.0, after - time.monotonic()))
        count = len(self.diagnostics)
        assert spin_until(self.node, lambda: len(self.diagnostics) > count, timeout)
        status = self.diagnostics[-1].status[0]
        return {**diagnostics_values(self.diagnostics[-1]), "_message": status.message}


def _value(v) -> ParameterValue:
    if isinstance(v, bool):
        return ParameterValue(type=ParameterType.PARAMETER_BOOL, bool_value=v)
    if isinstance(v, int):
        return ParameterValue(type=ParameterType.PARAMETER_INTEGER, integer_value=v)
    if isinstance(v, float):
        return ParameterValue(type=ParameterType.PARAMETER_DOUBLE, double_value=v)
    if isinstance(v, list):
        return ParameterValue(type=ParameterType.PARAMETER_STRING_ARRAY, string_array_value=v)
    return ParameterValue(type=ParameterType.PARAMETER_STRING, string_value=v)


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    from tiny_models import save_tiny_checkpoints

    return save_tiny_checkpoints(tmp_path_factory.mktemp("ckpt"), input_size=(128, 128))


@pytest.fixture(scope="module")
def node_process(tmp_path_factory, ros_env):
    args = [
        "bin/segmentation_node", "--ros-args", "-r", f"__node:={NAME}",
        "-p", "autostart:=false", "-p", "checkpoint:=/nonexistent/model.pt",
        "-p", "num_threads:=1", "-p", "diagnostics_period:=0.25",
        "-p", "max_image_age_ms:=5000.0", "-p", "score_threshold:=0.05",
    ]  # fmt: skip
    process = NodeProcess(args, env=ros_env, log_dir=tmp_path_factory.mktemp("log"), name=NAME)
    yield process
    process.stop()


@pytest.fixture(scope="module")
def client():
    with rclpy_session(Client) as client:
        yield client


def test_failed_configure_keeps_the_node_up_then_a_good_checkpoint_configures(
    node_process, client, checkpoints
):
    assert client.state() == State.PRIMARY_STATE_UNCONFIGURED, node_process.output()
    assert client.transition(Transition.TRANSITION_CONFIGURE) is False
    assert node_process.alive(), node_process.output()
    assert client.state() == State.PRIMARY_STATE_UNCONFIGURED
    values = client.latest_diagnostics(time.monotonic())
    assert (
        "configure failed" in values["_message"] and "/nonexistent/model.pt" in values["_message"]
    )
    assert "configure failed" in node_process.output()

    # TensorRT where it cannot run: configure fails and says what is missing.
    results = client.set_params(
        checkpoint=str(checkpoints["panoptic"]), backend="tensorrt", device="cuda"
    )
    assert all(r.successful for r in results), results
    assert client.transition(Transition.TRANSITION_CONFIGURE) is False
    values = client.latest_diagnostics(time.monotonic())
    assert "configure failed" in values["_message"], values
    assert "tensorrt is not installed" in values["_message"], values

    results = client.set_params(backend="torch", device="cpu")
    assert all(r.successful for r in results), results
    assert client.transition(Transition.TRANSITION_CONFIGURE), node_process.output()
    assert client.state() == State.PRIMARY_STATE_INACTIVE
    (result,) = client.set_params(backend="onnxruntime")  # read on configure: refused now
    assert not result.successful and "clean up" in result.reason
    assert client.transition(Transition.TRANSITION_ACTIVATE), node_process.output()
    assert client.state() == State.PRIMARY_STATE_ACTIVE
    # No CameraInfo yet: the diagnostics say why there is no grid.
    values = client.latest_diagnostics(time.monotonic())
    assert "no camera_info on /camera_info" in values["_message"], values


def _run_until_every_output(client, node_process, timeout=90.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not all(client.received.values()):
        client.send_camera_info()
        client.send_odometry()
        client.send_image()
        client.send_odometry()  # after the image's stamp too: the node interpolates
        client.spin(0.3)
    missing = [t for t, msgs in client.received.items() if not msgs]
    assert not missing, f"no message on {missing}:\n{node_process.output()[-3000:]}"


def test_every_output_has_its_type_size_stamp_and_frame(node_process, client):
    assert spin_until(client.node, lambda: client.class_info, 20.0), "class_info not latched"
    classes = client.class_info[-1]
    assert [c.name for c in classes.classes] == ["road", "grass", "sky", "person", "car", "cone"]
    assert [c.drivable for c in classes.classes] == [True] + [False] * 5
    _run_until_every_output(client, node_process)
    for topic, msgs in client.received.items():
        msg = msgs[-1]
        header = msg.markers[0].header if topic == "markers" else msg.header
        assert (header.stamp.sec, header.stamp.nanosec) in client.sent_stamps, topic
        frames = {"grid": "base_link", "odom": "odom", "camera": FRAME}
        assert header.frame_id == frames[output_table.output(topic).frame], topic
        if topic in ENCODINGS:
            assert (msg.width, msg.height, msg.encoding) == (WIDTH, HEIGHT, ENCODINGS[topic])
            assert image_to_numpy(msg).shape[:2] == (HEIGHT, WIDTH)
    objects = client.received["objects"][-1]
    assert (objects.image_width, objects.image_height) == (WIDTH, HEIGHT)
    assert objects.model_name == "panoptic_yolact_mobilenetv3"
    assert objects.total_ms >= objects.inference_ms > 0
    for o in objects.objects:  # ground fields: in the grid frame, NaN for stuff
        assert o.ground_frame_id == "base_link"
        assert o.is_thing or np.isnan([o.ground_x, o.ground_y, o.ground_distance]).all()
    ids = image_to_numpy(client.received["instances"][-1])
    assert int(ids.max()) <= 65535
    grid = client.received["drivable/grid"][-1]
    assert (grid.info.width, grid.info.height, len(grid.data)) == (200, 200, 40000)
    assert set(grid.data) <= {-1, 0, 100}
    scan = client.received["drivable/scan"][-1]
    count = round((scan.angle_max - scan.angle_min) / scan.angle_increment) + 1
    assert len(scan.ranges) == count > 1
    assert 0 < scan.range_min < scan.range_max <= 20.0
    cloud = client.received["drivable/obstacles"][-1]
    assert [f.name for f in cloud.fields] == ["x", "y", "z", "class_id", "instance_id"]
    assert cloud.point_step == 16 and len(cloud.data) == 16 * cloud.width
    fused = client.received["drivable/grid_fused"][-1]
    assert (fused.info.width, fused.info.height) == (400, 400)  # 20 m at 0.05 m
    assert set(fused.data) <= {-1, 0, 100}
    values = client.latest_diagnostics(time.monotonic())
    assert values["state"] == "active" and int(values["frames_out"]) > 0
    assert float(values["latency_p50_ms"]) > 0 and values["backend"] == "torch"


def test_run_time_parameter_changes(node_process, client):
    bad = client.set_params(score_threshold=2.0)[0]
    assert not bad.successful
    unknown = client.set_params(class_filter=["tree"])[0]
    assert not unknown.successful and "unknown class names" in unknown.reason
    assert client.set_params(class_filter=["person"], max_detections=3)[0].successful
    assert client.set_params(use_sim_time=False)[0].successful  # rclpy's own: not ours to judge
    client.spin(0.5)
    for msgs in client.received.values():
        msgs.clear()
    sent = set()
    deadline = time.monotonic() + 60.0
    while time.monotonic() < deadline and not client.received["objects"]:
        stamp = client.send_image()
        sent.add((stamp.sec, stamp.nanosec))
        client.spin(0.3)
    new = [
        m
        for m in client.received["objects"]
        if (m.header.stamp.sec, m.header.stamp.nanosec) in sent
    ]
    assert new, node_process.output()[-2000:]
    for msg in new:
        assert {o.class_label for o in msg.objects} <= {"person"}
        assert len(msg.objects) <= 3
    assert client.set_params(class_filter=[], max_detections=50)[0].successful


def test_bad_input_is_counted_and_never_stops_the_node(node_process, client):
    before = client.latest_diagnostics(time.monotonic())
    wrong_encoding = numpy_to_image(np.zeros((HEIGHT, WIDTH, 3), np.uint8), "rgb8")
    wrong_encoding.encoding = "rgb_mystery"
    truncated = numpy_to_image(np.zeros((HEIGHT, WIDTH, 3), np.uint8), "rgb8")
    truncated.data = truncated.data[:1000]
    zero = Image(encoding="rgb8")
    huge = Image(width=8000, height=8000, encoding="rgb8", step=24000)
    huge.data = bytes(16)  # the declared size alone is refused
    # One at a time: the node's input QoS is depth 1, so a burst would lose messages in DDS.
    last = client.send_image()
    earlier = Time(sec=last.sec - 1, nanosec=last.nanosec)  # older than the last frame
    for send in (
        *(lambda m=m: client.send_image(msg=m) for m in (wrong_encoding, truncated, zero, huge)),
        lambda: client.send_image(offset_s=-60.0),  # stale
        lambda: client.send_image(stamp=earlier),  # out of order
        lambda: client.send_camera_info(k=(float("nan"), 0, 80, 0, 120, 60, 0, 0, 1)),
    ):
        send()
        client.spin(0.2)
    assert node_process.alive(), node_process.output()
    after = client.latest_diagnostics(time.monotonic() + 0.5)
    for cause in ("bad_encoding", "bad_size", "too_large", "stale", "out_of_order"):
        assert int(after[f"drops_{cause}"]) > int(before[f"drops_{cause}"]), (cause, after)
    assert int(after["drops_bad_size"]) >= int(before["drops_bad_size"]) + 2  # truncated, zero
    assert int(after["drops_bad_camera_info"]) > int(before["drops_bad_camera_info"])
    assert any("camera_info ignored" in v for k, v in after.items() if k.startswith("problem"))
    # Still working: a good frame after all that gets its result.
    client.received["objects"].clear()
    deadline = time.monotonic() + 60.0
    while time.monotonic() < deadline and not client.received["objects"]:
        client.send_image()
        client.spin(0.3)
    assert client.received["objects"], node_process.output()[-2000:]


def test_deactivate_cleanup_and_reconfigure_for_compressed_input(node_process, client):
    assert client.transition(Transition.TRANSITION_DEACTIVATE)
    assert client.state() == State.PRIMARY_STATE_INACTIVE
    client.spin(0.5)
    client.received["objects"].clear()
    for _ in range(3):
        client.send_image()
        client.spin(0.3)
    assert not client.received["objects"]  # inactive: nothing is processed
    assert client.transition(Transition.TRANSITION_CLEANUP)
    assert client.state() == State.PRIMARY_STATE_UNCONFIGURED
    # Unconfigured: configure-time parameters are accepted, and apply on the next configure.
    assert client.set_params(image_transport="compressed")[0].successful
    assert client.transition(Transition.TRANSITION_CONFIGURE), node_process.output()
    assert client.transition(Transition.TRANSITION_ACTIVATE), node_process.output()
    compressed = client.node.create_publisher(CompressedImage, "image/compressed", RELIABLE)
    corrupt = CompressedImage(format="jpeg", header=Header(stamp=client.stamp(), frame_id=FRAME))
    corrupt.data = b"\xff\xd8 not a jpeg"
    deadline = time.monotonic() + 60.0
    sent = set()
    while time.monotonic() < deadline and not client.received["objects"]:
        rgb = client.rng.integers(0, 255, (HEIGHT, WIDTH, 3), dtype=np.uint8)
        msg = numpy_to_compressed(rgb, header=Header(stamp=client.stamp(), frame_id=FRAME))
        sent.add((msg.header.stamp.sec, msg.header.stamp.nanosec))
        compressed.publish(msg)
        client.spin(0.3)
    (result,) = client.received["objects"][:1] or [None]
    assert result is not None, node_process.output()[-2000:]
    assert (result.header.stamp.sec, result.header.stamp.nanosec) in sent
    assert (result.image_width, result.image_height) == (WIDTH, HEIGHT)
    corrupt.header.stamp = client.stamp()
    compressed.publish(corrupt)
    after = client.latest_diagnostics(time.monotonic() + 1.0)
    assert int(after["drops_decode_error"]) >= 1
    assert node_process.alive()
