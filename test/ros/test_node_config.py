"""The node's outputs and settings, on real rclpy nodes in this process: every output of the
table has its parameter, its publisher of the declared type (as the ROS graph reports it) and
its OutputRequest fields; a bare node's defaults are the pipeline's FrameSettings and the default
backend, as the launch default's are; a parameter update replaces one frozen configuration."""

import dataclasses
import threading

import pytest
import yaml
from rclpy.lifecycle import TransitionCallbackReturn
from rclpy.parameter import Parameter

from segmentation_ros.pipeline import FrameSettings, OutputRequest
from segmentation_ros.ros.output_table import OUTPUTS, request_for
from segmentation_ros.ros.params import PARAMETERS, settings_from_values
from segmentation_ros.runtime.names import DEFAULT_BACKEND

from .harness import REPO, spin_until

pytestmark = pytest.mark.ros


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    from tiny_models import save_tiny_checkpoints

    return save_tiny_checkpoints(tmp_path_factory.mktemp("ckpt"))["panoptic"]


def _node(name: str, **overrides):
    from segmentation_ros.ros.node import SegmentationNode

    values = {"autostart": False, **overrides}
    return SegmentationNode(
        name, parameter_overrides=[Parameter(k, value=v) for k, v in values.items()]
    )


def _configured(name: str, checkpoint, **overrides):
    node = _node(name, checkpoint=str(checkpoint), backend="torch", num_threads=1, **overrides)
    assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
    return node


def _publishers(observer, name: str, wanted: set[str]) -> dict[str, list[str]]:
    """topic -> types of the publishers of node `name`, as the ROS graph reports them, once the
    graph shows every topic in `wanted` (or after 10 s)."""

    def graph():
        return dict(observer.get_publisher_names_and_types_by_node(name, "/"))

    spin_until(observer, lambda: wanted <= set(graph()), 10.0)
    return graph()


def test_every_output_has_a_parameter_a_publisher_of_its_type_and_request_fields(
    ros_node, checkpoint
):
    # The types DESIGN.md ("Messages", "What planners get") promises on each topic.
    assert {out.topic: out.type_name for out in OUTPUTS} == {
        "objects": "segmentation_ros/msg/SegmentationResult",
        "instances": "sensor_msgs/msg/Image",
        "semantic": "sensor_msgs/msg/Image",
        "confidence": "sensor_msgs/msg/Image",
        "drivable/mask": "sensor_msgs/msg/Image",
        "drivable/grid": "nav_msgs/msg/OccupancyGrid",
        "overlay": "sensor_msgs/msg/Image",
        "markers": "visualization_msgs/msg/MarkerArray",
        "drivable/scan": "sensor_msgs/msg/LaserScan",
        "drivable/obstacles": "sensor_msgs/msg/PointCloud2",
        "drivable/grid_fused": "nav_msgs/msg/OccupancyGrid",
    }
    fields = {f.name for f in dataclasses.fields(OutputRequest)}
    for out in OUTPUTS:
        spec = PARAMETERS[out.parameter]
        assert spec.type_name == "bool" and spec.default is True, out.parameter
        assert out.request and set(out.request) <= fields, out.topic
        request = dataclasses.asdict(request_for([out]))
        assert {k for k, v in request.items() if v} == set(out.request), out.topic

    node = _configured("table_under_test", checkpoint)
    try:
        topics = {"/" + out.topic for out in OUTPUTS}
        publishers = _publishers(ros_node, "table_under_test", topics)
        for out in OUTPUTS:
            module, name = out.msg_type.__module__.split(".")[0], out.msg_type.__name__
            assert publishers.get("/" + out.topic) == [f"{module}/msg/{name}"], out.topic
        assert publishers["/class_info"] == ["segmentation_ros/msg/ClassInfoArray"]

        # A disabled output has no publisher after the next configure.
        assert node.trigger_cleanup() == TransitionCallbackReturn.SUCCESS
        assert node.set_parameters([Parameter("publish_overlay", value=False)])[0].successful
        assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
        spin_until(ros_node, lambda: False, 1.0)
        publishers = _publishers(ros_node, "table_under_test", topics - {"/overlay"})
        assert "/overlay" not in publishers and "/objects" in publishers
    finally:
        node.destroy_node()


def test_a_bare_node_defaults_to_frame_settings_and_the_default_backend(ros_node):
    frame = FrameSettings()
    expected = {
        "score_threshold": frame.score_threshold,
        "nms_threshold": frame.nms_threshold,
        "mask_threshold": frame.mask_threshold,
        "max_detections": frame.max_detections,
        "class_filter": list(frame.class_filter),
        "drivable_classes": list(frame.drivable_classes),
        "camera_height": frame.mount.height,
        "camera_pitch": frame.mount.pitch,
        "camera_roll": frame.mount.roll,
        "camera_yaw": frame.mount.yaw,
        "camera_x": frame.mount.x,
        "camera_y": frame.mount.y,
        "grid_resolution": frame.grid.resolution,
        "grid_width": frame.grid.width,
        "grid_height": frame.grid.height,
        "grid_origin_x": frame.grid.origin_x,
        "grid_origin_y": frame.grid.origin_y,
        "grid_frame_id": frame.grid.frame_id,
        "grid_stride": frame.grid_stride,
        "grid_max_range": frame.grid_max_range or 0.0,  # 0: no limit
        "grid_occupied_fraction": frame.occupied_fraction,
        "backend": DEFAULT_BACKEND,
    }
    from segmentation_ros.ros.node import SegmentationNode

    node = SegmentationNode("bare_under_test")
    try:
        got = {name: node.get_parameter(name).value for name in expected}
        assert got == expected
        assert node.config.settings.frame == frame
        assert node.lifecycle_state == "unconfigured"
    finally:
        node.destroy_node()


def test_the_launch_default_runs_what_a_bare_node_runs():
    """config/default.yaml (what `ros2 launch` reads first) sets nothing a bare node lacks."""
    data = yaml.safe_load((REPO / "config" / "default.yaml").read_text())
    values = data["/**"]["ros__parameters"]
    assert settings_from_values(values) == settings_from_values({})
    assert values["backend"] == DEFAULT_BACKEND


def test_a_parameter_update_replaces_one_frozen_config(ros_node, checkpoint):
    """The worker reads `node.config` once per frame: every snapshot must be one whole update,
    never the settings of one and the message context of another."""
    a = {"score_threshold": 0.3, "camera_height": 0.5, "overlay_alpha": 0.5, "grid_frame_id": "a"}
    b = {"score_threshold": 0.6, "camera_height": 1.25, "overlay_alpha": 0.2, "grid_frame_id": "b"}

    def as_parameters(values):
        return [Parameter(k, value=v) for k, v in values.items()]

    def seen(config) -> dict:
        settings, context = config.settings, config.context
        assert context.grid_frame == settings.frame.grid.frame_id
        assert context.overlay_alpha == settings.overlay_alpha
        assert context.grid == settings.frame.grid
        return {
            "score_threshold": settings.frame.score_threshold,
            "camera_height": settings.frame.mount.height,
            "overlay_alpha": settings.overlay_alpha,
            "grid_frame_id": settings.frame.grid.frame_id,
        }

    node = _configured("config_under_test", checkpoint)
    try:
        assert node.set_parameters_atomically(as_parameters(a)).successful
        before = node.config
        assert node.set_parameters_atomically(as_parameters(b)).successful
        after = node.config
        assert after is not before and seen(before) == a and seen(after) == b
        with pytest.raises(dataclasses.FrozenInstanceError):
            after.settings = before.settings
        with pytest.raises(dataclasses.FrozenInstanceError):
            after.settings.frame = before.settings.frame

        snapshots, stop = {}, threading.Event()  # id -> config (kept alive: ids stay unique)

        reading = threading.Event()

        def read():
            while not stop.is_set():
                config = node.config
                snapshots[id(config)] = config
                reading.set()

        reader = threading.Thread(target=read)
        reader.start()
        try:
            assert reading.wait(10.0)
            # At least 200 updates, and on until the reader has seen one (the scheduler may
            # run all 200 before the reader's next turn on a busy machine).
            for i in range(20_000):
                node.set_parameters_atomically(as_parameters(a if i % 2 else b))
                if i >= 200 and len(snapshots) > 1:
                    break
        finally:
            stop.set()
            reader.join()
        assert len(snapshots) > 1, "the reader saw no update"
        for config in snapshots.values():
            assert seen(config) in (a, b)
        # A refused value leaves the configuration as it was.
        current = node.config
        assert not node.set_parameters([Parameter("score_threshold", value=2.0)])[0].successful
        assert node.config is current
    finally:
        node.destroy_node()
