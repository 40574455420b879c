"""The node publishes a keypoint Mask R-CNN's person keypoints over DDS: every person object
carries the model's K named keypoints, equal to what the library's pipeline computes for the
same image (and camera); other objects carry none; the markers carry the people's keypoints on
their upright planes; the overlay arrives."""

import numpy as np
import pytest

from segmentation_ros.drivable import CameraModel
from segmentation_ros.ros.image_codec import numpy_to_image
from segmentation_ros.structures.keypoints import SYNTHETIC_KEYPOINTS

from .harness import NodeProcess, rclpy_session, spin_until
from .test_node import HEIGHT, NAME, WIDTH, Client

pytestmark = [pytest.mark.ros, pytest.mark.slow]
INPUT = (96, 128)
CAMERA_K = (120.0, 0.0, 80.0, 0.0, 120.0, 60.0, 0.0, 0.0, 1.0)  # Client.send_camera_info's


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    from tiny_models import save_tiny_keypoint_mask_rcnn

    return save_tiny_keypoint_mask_rcnn(tmp_path_factory.mktemp("ckpt") / "kp.pt", INPUT)


@pytest.fixture(scope="module", params=["torch", "onnxruntime"])
def node_process(request, tmp_path_factory, ros_env, checkpoint):
    """The node on `request.param`'s backend (ONNX Runtime: the exported graph, cached in the
    checkpoint's folder, where the test's own pipeline finds the same file)."""
    args = [
        "bin/segmentation_node", "--ros-args", "-r", f"__node:={NAME}",
        "-p", f"checkpoint:={checkpoint}", "-p", f"backend:={request.param}",
        "-p", f"engine_cache_dir:={checkpoint.parent}", "-p", "num_threads:=1",
        "-p", "max_image_age_ms:=5000.0", "-p", "score_threshold:=0.05",
    ]  # fmt: skip
    process = NodeProcess(args, env=ros_env, log_dir=tmp_path_factory.mktemp("log"), name=NAME)
    process.backend = request.param
    yield process
    process.stop()


@pytest.fixture(scope="module")
def client():
    with rclpy_session(Client) as client:
        yield client


def test_person_keypoints_arrive_over_dds(node_process, client, checkpoint):
    import torch

    from segmentation_ros.pipeline import SegmentationPipeline
    from segmentation_ros.pipeline.settings import FrameSettings, OutputRequest

    torch.set_num_threads(1)
    rgb = np.random.default_rng(5).integers(0, 255, (HEIGHT, WIDTH, 3), dtype=np.uint8)
    for received in (*client.received.values(), client.class_info):
        received.clear()  # the other backend's node published into the same lists
    # Start-up may export the ONNX graph (tens of seconds on a busy machine): a wait, not a check.
    assert spin_until(client.node, lambda: client.class_info, 240.0), node_process.output()

    def arrived():
        return all(client.received[t] for t in ("objects", "markers", "overlay"))

    for _ in range(200):
        client.send_camera_info()
        client.send_image(msg=numpy_to_image(rgb, "rgb8"))
        if spin_until(client.node, arrived, 1.0):
            break
    assert arrived(), node_process.output()[-3000:]
    objects = client.received["objects"][-1].objects
    markers = client.received["markers"][-1].markers

    pipeline = SegmentationPipeline.from_checkpoint(
        checkpoint, backend=node_process.backend, engine_cache_dir=checkpoint.parent
    )
    camera = CameraModel(K=np.reshape(CAMERA_K, (3, 3)), D=[0.0] * 5, width=WIDTH, height=HEIGHT)
    expected = pipeline.process(
        rgb,
        OutputRequest(objects=True, markers=True),
        FrameSettings(score_threshold=0.05),
        camera=camera,
    )
    seg = expected.segments
    names = seg.class_ids
    assert len(objects) == len(seg)
    people = 0
    for obj, kp, cls in zip(objects, seg.keypoints, names):
        assert obj.class_id == int(cls)
        if obj.class_label == "person" and obj.is_thing:
            people += 1
            assert list(obj.keypoint_names) == list(SYNTHETIC_KEYPOINTS.names)
            got = np.stack([obj.keypoint_x, obj.keypoint_y, obj.keypoint_score], 1)
            np.testing.assert_allclose(got, kp, rtol=0, atol=1e-3)
            assert ((got[:, 0] >= 0) & (got[:, 0] <= WIDTH)).all()
            assert ((got[:, 1] >= 0) & (got[:, 1] <= HEIGHT)).all()
        else:
            assert not len(obj.keypoint_names) and not len(obj.keypoint_x)
    assert people >= 1, [o.class_label for o in objects]
    if node_process.backend == "onnxruntime":
        assert pipeline.artifact is not None and pipeline.artifact.path.suffix == ".onnx"
    dots = {m.id: m for m in markers if m.ns == "keypoints"}
    assert dots, [m.ns for m in markers]
    for index, points in enumerate(expected.keypoints_xyz):
        ok = np.isfinite(points).all(axis=1)
        if not ok.any():
            assert int(seg.ids[index]) not in dots
            continue
        got = [(p.x, p.y, p.z) for p in dots[int(seg.ids[index])].points]
        np.testing.assert_allclose(got, points[ok], rtol=0, atol=1e-4)
