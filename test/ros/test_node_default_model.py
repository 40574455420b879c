"""The node as launched for the default model (config/default.yaml: the embedded model on ONNX
Runtime), fed generated camera frames over DDS whose seeds no training or model test used:
its `objects` match the scenes' ground-truth things (same class, mask IoU > 0.5) and its
`drivable/mask` agrees with the ground truth's drivable surface.

Seeds: training 100000..102999, validation 900000..900199, test_default_model 777001..777008;
these are 777101.. . The bounds below sit a little under what the committed model measured
(see the constants), so a regression fails.
"""

import numpy as np
import pytest
import rclpy
from rclpy.qos import QoSProfile, ReliabilityPolicy
from segmentation_ros.msg import SegmentationResult
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import Header

from segmentation_ros.data.classes import DRIVABLE_NAMES, STUFF_NAMES, THING_NAMES
from segmentation_ros.data.synthetic import generate_scene
from segmentation_ros.ros.image_codec import image_to_numpy, numpy_to_image
from segmentation_ros.ros.messages import decode_mask_full

from .harness import NodeProcess, rclpy_session, spin_until

pytestmark = pytest.mark.ros

NAME = "seg_default_model"
SEEDS = range(777_101, 777_111)
MIN_AREA = 1500  # pixels at 640x480: objects a robot must not miss
# Measured through the node with the committed model: 12 of 20 large objects (0.6), drivable
# IoU 0.94. "Most things" holds beyond these seeds: 0.62 of 188 large objects on 555000..555099.
RECALL_MIN = 0.5
DRIVABLE_IOU_MIN = 0.9
RELIABLE = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)


@pytest.fixture(scope="module")
def default_node(tmp_path_factory, ros_env):
    args = [
        "bin/segmentation_node", "--ros-args", "-r", f"__node:={NAME}",
        "--params-file", "config/default.yaml",
        "-p", f"engine_cache_dir:={tmp_path_factory.mktemp('engines')}",
        "-p", "input_reliability:=reliable", "-p", "max_image_age_ms:=60000.0",
        "-p", "publish_overlay:=false", "-p", "publish_markers:=false",
    ]  # fmt: skip
    process = NodeProcess(args, env=ros_env, log_dir=tmp_path_factory.mktemp("log"), name=NAME)
    yield process
    process.stop()


def test_default_model_objects_and_drivable_mask_over_dds(default_node):
    with rclpy_session(lambda: rclpy.create_node("default_model_client")) as node:
        results = _run_scenes(node, default_node)
    found = total = 0
    drivable_ious = []
    drivable_ids = [STUFF_NAMES.index(n) for n in DRIVABLE_NAMES]
    names = STUFF_NAMES + THING_NAMES
    for scene, objects, drivable in results:
        assert (objects.image_height, objects.image_width) == scene.image.shape[:2]
        masks = [(o.class_label, decode_mask_full(o, 480, 640)) for o in objects.objects]
        for sid, category, area in zip(
            scene.segments.ids, scene.segments.category_ids, scene.segments.areas
        ):
            if category < len(STUFF_NAMES) or area < MIN_AREA:
                continue
            total += 1
            truth = scene.id_map == sid
            found += any(
                label == names[category] and (truth & mask).sum() / (truth | mask).sum() > 0.5
                for label, mask in masks
            )
        truth = np.isin(scene.semantic_map(), drivable_ids)
        drivable_ious.append((truth & drivable).sum() / max((truth | drivable).sum(), 1))
    assert total >= 10, "the scenes should hold enough large objects"
    print(
        f"node: {found} of {total} large objects found, drivable IoU {np.mean(drivable_ious):.3f}"
    )
    assert found / total >= RECALL_MIN, f"found {found} of {total} large objects"
    assert np.mean(drivable_ious) >= DRIVABLE_IOU_MIN, drivable_ious


def _run_scenes(node, process: NodeProcess):
    """Publish each scene (with its CameraInfo) and wait for its objects and drivable mask."""
    objects: dict[tuple, SegmentationResult] = {}
    drivable: dict[tuple, np.ndarray] = {}

    def key(header):
        return (header.stamp.sec, header.stamp.nanosec)

    node.create_subscription(
        SegmentationResult, "objects", lambda m: objects.__setitem__(key(m.header), m), RELIABLE
    )
    node.create_subscription(
        Image, "drivable/mask",
        lambda m: drivable.__setitem__(key(m.header), image_to_numpy(m) > 0), RELIABLE,
    )  # fmt: skip
    images = node.create_publisher(Image, "image", RELIABLE)
    infos = node.create_publisher(CameraInfo, "camera_info", RELIABLE)
    ready = lambda: images.get_subscription_count() > 0 and node.count_publishers("objects") > 0  # noqa: E731
    assert spin_until(node, ready, 180.0), process.output()
    results = []
    for seed in SEEDS:
        scene = generate_scene(seed)
        cam = scene.camera
        header = Header(stamp=node.get_clock().now().to_msg(), frame_id="camera_optical")
        info = CameraInfo(header=header, width=cam.width, height=cam.height)
        info.distortion_model, info.d = "plumb_bob", [0.0] * 5
        info.k = [cam.fx, 0.0, cam.cx, 0.0, cam.fy, cam.cy, 0.0, 0.0, 1.0]
        infos.publish(info)
        msg = numpy_to_image(scene.image, "rgb8", header=header)
        images.publish(msg)
        k = key(header)
        assert spin_until(node, lambda k=k: k in objects and k in drivable, 60.0), process.output()
        results.append((scene, objects[k], drivable[k]))
    return results
