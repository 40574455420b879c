"""The node runs a Mask R-CNN checkpoint over DDS through ONNX Runtime (the exported two-stage
graph: RoiAlign, NonMaxSuppression): every output arrives with the input's stamp and frame_id,
the objects carry the detector's things and the semantic head's stuff."""

import numpy as np
import pytest

from segmentation_ros.ros.image_codec import image_to_numpy

from .harness import NodeProcess, rclpy_session, spin_until
from .test_node import ENCODINGS, FRAME, HEIGHT, NAME, WIDTH, Client, _run_until_every_output

pytestmark = [pytest.mark.ros, pytest.mark.slow]


@pytest.fixture(scope="module")
def node_process(tmp_path_factory, ros_env):
    from tiny_models import save_tiny_checkpoints

    folder = tmp_path_factory.mktemp("ckpt")
    checkpoint = save_tiny_checkpoints(folder, input_size=(96, 128))["mask_rcnn"]
    args = [
        "bin/segmentation_node", "--ros-args", "-r", f"__node:={NAME}",
        "-p", f"checkpoint:={checkpoint}", "-p", "backend:=onnxruntime",
        "-p", f"engine_cache_dir:={folder}", "-p", "num_threads:=1",
        "-p", "diagnostics_period:=0.25", "-p", "max_image_age_ms:=5000.0",
        "-p", "score_threshold:=0.05",
    ]  # fmt: skip
    process = NodeProcess(args, env=ros_env, log_dir=tmp_path_factory.mktemp("log"), name=NAME)
    yield process
    process.stop()


@pytest.fixture(scope="module")
def client():
    with rclpy_session(Client) as client:
        yield client


def test_mask_rcnn_node_publishes_every_output(node_process, client):
    # Start-up exports the ONNX graph (tens of seconds on a busy machine): a wait, not a check.
    assert spin_until(client.node, lambda: client.class_info, 240.0), node_process.output()
    names = [c.name for c in client.class_info[-1].classes]
    assert names == ["road", "grass", "sky", "person", "car", "cone"]
    _run_until_every_output(client, node_process, timeout=240.0)
    for topic, msgs in client.received.items():
        msg = msgs[-1]
        header = msg.markers[0].header if topic == "markers" else msg.header
        assert (header.stamp.sec, header.stamp.nanosec) in client.sent_stamps, topic
        if topic in ENCODINGS:
            assert (msg.width, msg.height, msg.encoding) == (WIDTH, HEIGHT, ENCODINGS[topic])
            assert header.frame_id == FRAME
    objects = client.received["objects"][-1]
    assert objects.model_name == "mask_rcnn_mobilenetv3"
    assert any(o.is_thing for o in objects.objects), [o.class_label for o in objects.objects]
    ids = image_to_numpy(client.received["instances"][-1])
    listed = {o.instance_id for o in objects.objects}
    assert set(np.unique(ids[ids > 0]).tolist()) <= listed
    values = client.latest_diagnostics(0.0)
    assert values["backend"] == "onnxruntime" and int(values["frames_out"]) > 0
