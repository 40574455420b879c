"""The artifact cache loads only what was built for exactly this key, rebuilds missing, stale
or corrupt artifacts (or refuses with a reason when building is disabled), and never touches a
file it did not build. The last tests go through real ONNX exports and ONNX Runtime."""

import json

import numpy as np
import pytest
import torch

from segmentation_ros.models import build_model
from segmentation_ros.runtime.backends import artifact_key, build_backend, weights_sha256
from segmentation_ros.runtime.cache import (
    ArtifactCache,
    ArtifactCacheError,
    ArtifactKey,
    check_artifact,
    manifest_path,
)

KEY = ArtifactKey(
    backend="tensorrt",
    model="panoptic_yolact_mobilenetv3",
    checkpoint_sha256="ab" * 32,
    input_shape=(1, 3, 240, 320),
    precision="fp16",
    device_name="NVIDIA Jetson AGX Orin",
    compute_capability="8.7",
    versions=(("tensorrt", "10.9.0"), ("torch", "2.14.1"), ("torch_tensorrt", "2.14.0")),
)


class Builder:
    """Writes `payload` to the target; counts its calls."""

    def __init__(self, payload: bytes = b"engine-bytes") -> None:
        self.payload, self.calls = payload, 0

    def __call__(self, target):
        self.calls += 1
        target.write_bytes(self.payload)


def test_key_is_stable_and_names_what_differs():
    same = ArtifactKey(**{**KEY.__dict__})
    assert same.digest == KEY.digest and len(KEY.digest) == 64
    name = KEY.file_name(".engine")
    assert name.startswith("panoptic_yolact_mobilenetv3-tensorrt-fp16-240x320-")
    assert name.endswith(".engine")
    for field, value in [
        ("precision", "int8"), ("compute_capability", "8.9"), ("checkpoint_sha256", "cd" * 32),
        ("input_shape", (1, 3, 480, 640)), ("device_name", "NVIDIA H100"),
        ("versions", (("tensorrt", "10.10.0"), ("torch", "2.14.1"), ("torch_tensorrt", "2.14.0"))),
    ]:  # fmt: skip
        other = ArtifactKey(**{**KEY.__dict__, field: value})
        assert other.digest != KEY.digest, field
        (mismatch,) = other.mismatches(KEY.as_dict())
        assert mismatch.startswith(f"{field}:"), mismatch


def test_build_once_then_load(tmp_path):
    cache, build = ArtifactCache(tmp_path), Builder()
    first = cache.get_or_build(KEY, build, suffix=".engine")
    assert (first.status, first.reason, build.calls) == ("built", "not built yet", 1)
    assert first.path.read_bytes() == b"engine-bytes" and first.path.parent == tmp_path
    recorded = json.loads(manifest_path(first.path).read_text())
    assert recorded["key"] == KEY.as_dict()
    again = cache.get_or_build(KEY, build, suffix=".engine")
    assert (again.status, again.path, build.calls) == ("loaded", first.path, 1)
    leftovers = {p.name for p in tmp_path.iterdir()} - {
        first.path.name,
        manifest_path(first.path).name,
        first.path.name + ".lock",
    }
    assert not leftovers  # no temporary files


def test_other_key_gets_its_own_artifact(tmp_path):
    cache, build = ArtifactCache(tmp_path), Builder()
    a = cache.get_or_build(KEY, build, suffix=".engine")
    b = cache.get_or_build(
        ArtifactKey(**{**KEY.__dict__, "precision": "fp32"}), build, suffix=".engine"
    )
    assert a.path != b.path and build.calls == 2 and b.status == "built"


def test_explicit_path_built_for_another_gpu_is_rebuilt_or_refused(tmp_path):
    path = tmp_path / "robot.engine"
    ArtifactCache(tmp_path).get_or_build(KEY, Builder(), suffix=".engine", path=path)
    orin_to_h100 = ArtifactKey(**{**KEY.__dict__, "device_name": "NVIDIA H100"})
    with pytest.raises(ArtifactCacheError, match="device_name.*Orin.*H100.*building is disabled"):
        ArtifactCache(tmp_path).get_or_build(
            orin_to_h100, Builder(), suffix=".engine", path=path, allow_build=False
        )
    assert path.read_bytes() == b"engine-bytes"  # refused, untouched
    rebuilt = ArtifactCache(tmp_path).get_or_build(
        orin_to_h100, Builder(b"new"), suffix=".engine", path=path
    )
    assert rebuilt.status == "built" and "device_name" in rebuilt.reason
    assert path.read_bytes() == b"new" and check_artifact(path, orin_to_h100) is None


@pytest.mark.parametrize("damage", ["bytes", "manifest_garbage", "manifest_missing_key"])
def test_corrupt_artifact_is_never_loaded(tmp_path, damage):
    cache = ArtifactCache(tmp_path)
    path = cache.get_or_build(KEY, Builder(), suffix=".engine").path
    if damage == "bytes":
        path.write_bytes(b"engine-bytez")  # same size, one byte off
        expected = "checksum"
    elif damage == "manifest_garbage":
        manifest_path(path).write_text("{not json")
        expected = "corrupt manifest"
    else:
        manifest_path(path).write_text(json.dumps({"sha256": "0"}))
        expected = "corrupt manifest"
    with pytest.raises(ArtifactCacheError, match=expected):
        cache.get_or_build(KEY, Builder(), suffix=".engine", allow_build=False)
    result = cache.get_or_build(KEY, Builder(), suffix=".engine")
    assert result.status == "built" and expected in result.reason
    assert path.read_bytes() == b"engine-bytes"


def test_file_without_manifest_is_neither_loaded_nor_overwritten(tmp_path):
    path = tmp_path / "someone_elses.engine"
    path.write_bytes(b"who knows")
    with pytest.raises(ArtifactCacheError, match="no manifest"):
        ArtifactCache(tmp_path).get_or_build(KEY, Builder(), suffix=".engine", path=path)
    assert path.read_bytes() == b"who knows"


def test_loader_check_and_failed_builds(tmp_path):
    cache = ArtifactCache(tmp_path)
    path = cache.get_or_build(KEY, Builder(), suffix=".engine").path

    def reject(p):
        raise RuntimeError("deserialization failed")

    result = cache.get_or_build(KEY, Builder(), suffix=".engine", validate=lambda p: None)
    assert result.status == "loaded"
    with pytest.raises(ArtifactCacheError, match="fresh build does not load"):
        cache.get_or_build(KEY, Builder(), suffix=".engine", validate=reject)

    def explode(target):
        target.write_bytes(b"half")
        raise OSError("disk full")

    other = ArtifactKey(**{**KEY.__dict__, "precision": "bf16"})
    with pytest.raises(ArtifactCacheError, match="disk full"):
        cache.get_or_build(other, explode, suffix=".engine")
    assert not cache.path_for(other, ".engine").exists()
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.endswith(".lock")) == sorted(
        [path.name, manifest_path(path).name]
    )


@pytest.fixture(scope="module")
def tiny_model():
    torch.manual_seed(0)
    return build_model("yolact_mobilenetv3", input_size=(64, 64)).eval()


def test_onnx_artifacts_through_the_cache(tmp_path, tiny_model):
    """Real exports: built once, loaded next time; a damaged file that still matches its
    manifest fails ONNX Runtime's own check and is rebuilt; new weights get a new file."""
    cache = ArtifactCache(tmp_path)
    first = build_backend("onnxruntime", tiny_model, input_size=(64, 64), cache=cache)
    assert first.artifact.status == "built" and first.artifact.path.suffix == ".onnx"
    again = build_backend("onnxruntime", tiny_model, input_size=(64, 64), cache=cache)
    assert again.artifact.status == "loaded" and again.artifact.path == first.artifact.path

    path = first.artifact.path
    path.write_bytes(path.read_bytes()[:1000])  # truncated, and a manifest that agrees
    manifest = json.loads(manifest_path(path).read_text())
    from segmentation_ros.runtime.cache import file_sha256

    manifest["sha256"] = file_sha256(path)
    manifest_path(path).write_text(json.dumps(manifest))
    with pytest.raises(ArtifactCacheError, match="does not load"):
        build_backend(
            "onnxruntime", tiny_model, input_size=(64, 64), cache=cache, allow_build=False
        )
    rebuilt = build_backend("onnxruntime", tiny_model, input_size=(64, 64), cache=cache)
    assert rebuilt.artifact.status == "built" and "does not load" in rebuilt.artifact.reason
    x = torch.randn(1, 3, 64, 64)
    with torch.inference_mode():
        expected = tiny_model(x)
    np.testing.assert_allclose(rebuilt.infer(x)[0].numpy(), expected[0].numpy(), atol=1e-4)

    changed = build_model("yolact_mobilenetv3", input_size=(64, 64)).eval()
    assert weights_sha256(changed) != weights_sha256(tiny_model)
    other = build_backend("onnxruntime", changed, input_size=(64, 64), cache=cache)
    assert other.artifact.status == "built" and other.artifact.path != path


def test_onnx_key_ignores_the_device_and_names_the_exporter(tiny_model):
    key = artifact_key(
        "onnxruntime", tiny_model, input_size=(64, 64), precision="fp32", device="cpu"
    )
    assert key.device_name == "any" and dict(key.versions)["torch"] == torch.__version__
    assert key.input_shape == ("1", 3, 64, 64) and key.model == "yolact_mobilenetv3"
