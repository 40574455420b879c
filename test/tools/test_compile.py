"""`segmentation-ros-compile` builds the default model's ONNX file ahead of time into a cache the
pipeline then loads without building; --check tells valid from stale; TensorRT is refused
here with what is missing."""

import json
from pathlib import Path

import pytest

from segmentation_ros.pipeline import SegmentationPipeline
from segmentation_ros.runtime.cache import ArtifactCacheError
from segmentation_ros.tools.compile import main as compile_main


def _last_json(out: str) -> dict:
    return json.loads(out.strip().splitlines()[-1])


def test_compile_then_load_without_building(tmp_path, capsys):
    args = ["--backend", "onnxruntime", "--cache-dir", str(tmp_path)]
    assert compile_main(args + ["--check"]) == 1
    assert "not built yet" in capsys.readouterr().out
    assert compile_main(args) == 0
    built = _last_json(capsys.readouterr().out)
    assert built["status"] == "built" and Path(built["path"]).parent == tmp_path
    assert compile_main(args) == 0
    assert _last_json(capsys.readouterr().out)["status"] == "loaded"
    assert compile_main(args + ["--check"]) == 0

    # What a robot does: load the prebuilt file, never build on configure.
    pipeline = SegmentationPipeline.from_checkpoint(
        "", backend="onnxruntime", engine_cache_dir=tmp_path, allow_build=False
    )
    assert pipeline.artifact.status == "loaded" and str(pipeline.artifact.path) == built["path"]

    path = Path(built["path"])
    path.write_bytes(path.read_bytes()[:-1] + b"\0")
    assert compile_main(args + ["--check"]) == 1
    assert "checksum" in capsys.readouterr().out
    with pytest.raises(ArtifactCacheError, match="checksum.*building is disabled"):
        SegmentationPipeline.from_checkpoint(
            "", backend="onnxruntime", engine_cache_dir=tmp_path, allow_build=False
        )
    assert compile_main(args) == 0
    rebuilt = _last_json(capsys.readouterr().out)
    assert rebuilt["status"] == "built" and "checksum" in rebuilt["reason"]


def test_other_input_size_is_another_artifact(tmp_path, capsys):
    args = ["--backend", "onnxruntime", "--cache-dir", str(tmp_path)]
    assert compile_main(args + ["--input-size", "120x160"]) == 0
    small = _last_json(capsys.readouterr().out)["path"]
    assert "120x160" in Path(small).name
    assert compile_main(args + ["--check"]) == 1  # the default size is not built


@pytest.mark.parametrize(
    "extra,message",
    [
        (["--backend", "tensorrt", "--device", "cuda"], "tensorrt is not installed"),
        (["--backend", "onnxruntime", "--input-size", "240by320"], "HEIGHTxWIDTH"),
        (["--backend", "onnxruntime", "--precision", "fp16"], "fp32 only"),
        (["--backend", "onnxruntime", "--batch-sizes", "1,2,4"], "for tensorrt"),
        (["--backend", "tensorrt", "--batch-sizes", "4,2,1", "--device", "cuda"], "MIN,OPT,MAX"),
        (["--backend", "onnxruntime", "--checkpoint", "/no/such.pt"], "does not exist"),
    ],
)
def test_bad_requests_say_what_to_fix(tmp_path, capsys, extra, message):
    assert compile_main([*extra, "--cache-dir", str(tmp_path)]) == 2
    assert message in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_tensorrt_builds_for_cuda_by_default(tmp_path, capsys):
    """No --device: engines are GPU-specific, so tensorrt means cuda (here: what is missing,
    not a complaint that cpu is not a CUDA device)."""
    assert compile_main(["--backend", "tensorrt", "--cache-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "is not installed" in err and "no CUDA device" in err
    assert "'cpu' is not a CUDA device" not in err
    assert not list(tmp_path.iterdir())


def test_software_missing_while_building_exits_2(tmp_path, capsys, monkeypatch):
    """The exporter found missing inside the cache's build (wrapped in ArtifactCacheError) is
    missing software: exit 2, the message naming it."""
    import sys

    monkeypatch.setitem(sys.modules, "onnxscript", None)  # as if not installed
    assert compile_main(["--backend", "onnxruntime", "--cache-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "building" in err and "needs onnxscript" in err
