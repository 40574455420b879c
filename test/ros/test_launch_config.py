"""Launch decisions, the per-model config files, the parameter table and the RViz config: every
file the launch files read exists, every parameter in it is declared with a valid value, and the
node becomes active with it."""

import ast
import sys
import time
import types
from pathlib import Path

import pytest
import yaml

from segmentation_ros.ros import launch_logic as L
from segmentation_ros.ros.output_table import OUTPUTS
from segmentation_ros.ros.params import PARAMETERS, check_value, settings_from_values

from .harness import REPO

CONFIG = REPO / "config"


def _parameters(path: Path) -> dict:
    data = yaml.safe_load(path.read_text())
    assert list(data) == ["/**"], f"{path.name}: use the /** wildcard so remapped names match"
    return data["/**"]["ros__parameters"]


@pytest.mark.parametrize("model", list(L.MODEL_CONFIGS))
def test_every_model_config_exists_with_valid_declared_parameters(model):
    path = L.config_file(model, REPO)
    assert path.is_file(), f"missing {path}"
    values = _parameters(path)
    for name, value in values.items():
        assert name in PARAMETERS, f"{path.name}: {name} is not a parameter of the node"
        assert check_value(name, value) is None, f"{path.name}: {check_value(name, value)}"
    settings = settings_from_values(values)
    assert settings.model == values.get("model", "")


def test_model_names_in_configs_are_known_models():
    from segmentation_ros.models import panoptic_yolact, pcv
    from segmentation_ros.models.registry import available_models

    known = set(available_models()) | {
        panoptic_yolact.PANOPTIC_YOLACT_MOBILENETV3.name,
        panoptic_yolact.PANOPTIC_YOLACT_RESNET50.name,
        pcv.PCV_MOBILENETV3.name,
        pcv.PCV_RESNET50.name,
    }
    for model in L.MODEL_CONFIGS:
        name = _parameters(L.config_file(model, REPO)).get("model", "")
        assert name == "" or name in known, f"{model}.yaml names unknown model {name!r}"


def test_parameter_table_checks_types_ranges_and_choices():
    assert check_value("score_threshold", 0.5) is None
    assert "in [0.0, 1.0]" in check_value("score_threshold", 1.5)
    assert "type float" in check_value("score_threshold", "high")
    assert check_value("camera_height", 1) is None  # an int where a float is expected is fine
    assert "one of torch" in check_value("backend", "tflite")
    assert "finite" in check_value("camera_pitch", float("nan"))
    assert "unknown parameter" in check_value("frobnicate", 1)
    assert check_value("class_filter", ["person"]) is None
    with pytest.raises(ValueError, match="both be 0 or both"):
        settings_from_values({"input_width": 320})
    for spec in PARAMETERS.values():
        assert spec.description, spec.name
        assert check_value(spec.name, spec.default) is None, spec.name
    assert {out.parameter for out in OUTPUTS} <= set(PARAMETERS)


def test_node_launch_config_maps_arguments(tmp_path):
    overrides = tmp_path / "mine.yaml"
    overrides.write_text("/**:\n  ros__parameters:\n    score_threshold: 0.6\n")
    config = L.node_launch_config(
        model="panoptic",
        camera="/front/image_raw",
        namespace="robot1",
        params_file=str(overrides),
        use_sim_time="true",
        share_dir=REPO,
        odom="/wheel/odometry",
    )
    assert (config.package, config.executable) == ("segmentation_ros", "segmentation_node")
    assert config.parameters == (
        str(CONFIG / "panoptic.yaml"),
        str(overrides),
        {"use_sim_time": True},
    )
    assert dict(config.remappings) == {
        "image": "/front/image_raw",
        "image/compressed": "/front/image_raw/compressed",
        "camera_info": "/front/camera_info",
        "odom": "/wheel/odometry",
    }
    assert config.namespace == "robot1"
    command = L.node_command(config)
    assert command[:2] == ["segmentation_node", "--ros-args"]
    assert "__ns:=/robot1" in command and "use_sim_time:=true" in command
    assert command.count("--params-file") == 2


def test_node_launch_config_errors():
    with pytest.raises(ValueError, match="unknown model"):
        L.node_launch_config(model="maskrcnn", share_dir=REPO)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        L.node_launch_config(params_file="/nonexistent/overrides.yaml", share_dir=REPO)
    with pytest.raises(ValueError, match="use_sim_time"):
        L.node_launch_config(use_sim_time="maybe", share_dir=REPO)
    with pytest.raises(ValueError, match="image topic"):
        L.camera_topics("/camera/")
    assert L.camera_topics("image_raw")["camera_info"] == "camera_info"
    with pytest.raises(ValueError, match="odom must be a topic"):
        L.node_launch_config(odom=" ", share_dir=REPO)


def test_launch_files_call_the_shared_description():
    files = sorted((REPO / "launch").glob("*.launch.py"))
    names = {f.name.removesuffix(".launch.py") for f in files}
    assert names == {"segmentation", *L.MODEL_CONFIGS}
    for path in files:
        tree = ast.parse(path.read_text())
        calls = [
            n
            for n in ast.walk(tree)
            if isinstance(n, ast.Call) and getattr(n.func, "id", "") == "launch_description"
        ]
        assert len(calls) == 1, path.name
        fixed = {k.arg: k.value.value for k in calls[0].keywords}
        expected = (
            {}
            if path.name == "segmentation.launch.py"
            else {"fixed_model": path.name.removesuffix(".launch.py")}
        )
        assert fixed == expected, path.name


def test_launch_description_builds_the_node_with_stub_launch_modules(monkeypatch):
    """launch / launch_ros are not installable here: run launch_description() against minimal
    stand-ins that record what it builds."""

    class Recorder:
        def __init__(self, *args, **kwargs):
            self.args, self.kwargs = args, kwargs

    class LaunchConfiguration(Recorder):
        def perform(self, context):
            return context[self.args[0]]

    modules = {
        "launch": types.SimpleNamespace(LaunchDescription=Recorder),
        "launch.actions": types.SimpleNamespace(
            DeclareLaunchArgument=Recorder, OpaqueFunction=Recorder
        ),
        "launch.substitutions": types.SimpleNamespace(LaunchConfiguration=LaunchConfiguration),
        "launch_ros.actions": types.SimpleNamespace(Node=Recorder),
    }
    for name, module in modules.items():
        monkeypatch.setitem(sys.modules, name, module)
    description = L.launch_description(fixed_model="yolact")
    *arguments, opaque = description.args[0]
    assert [a.args[0] for a in arguments] == [
        "camera", "namespace", "params_file", "use_sim_time", "odom"
    ]  # fmt: skip
    context = {
        "camera": "/cam/image", "namespace": "", "params_file": "", "use_sim_time": "false",
        "odom": "/robot/odom",
    }  # fmt: skip
    (node,) = opaque.kwargs["function"](context)
    assert node.kwargs["executable"] == "segmentation_node"
    assert node.kwargs["parameters"][0].endswith("config/yolact.yaml")
    assert ("camera_info", "/cam/camera_info") in node.kwargs["remappings"]
    assert ("odom", "/robot/odom") in node.kwargs["remappings"]


def test_rviz_config_shows_the_default_topics():
    data = yaml.safe_load((REPO / "rviz" / "segmentation.rviz").read_text())
    manager = data["Visualization Manager"]
    topics = {
        d["Class"].rsplit("/", 1)[1]: d["Topic"]["Value"]
        for d in manager["Displays"]
        if "Topic" in d
    }
    topic_of = {out.parameter: out.topic for out in OUTPUTS}
    assert topics == {
        "Map": "/" + topic_of["publish_drivable_grid"],
        "MarkerArray": "/" + topic_of["publish_markers"],
        "Image": "/" + topic_of["publish_overlay"],
    }
    assert manager["Global Options"]["Fixed Frame"] == PARAMETERS["grid_frame_id"].default


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    from tiny_models import (
        save_tiny_checkpoints,
        save_tiny_keypoint_mask_rcnn,
        save_tiny_yolact_plus,
    )

    folder = tmp_path_factory.mktemp("ckpt")
    paths = save_tiny_checkpoints(folder, input_size=(64, 64))
    paths["yolact_plus"] = save_tiny_yolact_plus(folder / "tiny_plus.pt", input_size=(64, 64))
    # config/mask_rcnn.yaml names the keypoint model
    paths["mask_rcnn"] = save_tiny_keypoint_mask_rcnn(folder / "tiny_kp.pt", (64, 64))
    return paths


@pytest.mark.ros
@pytest.mark.slow
def test_node_becomes_active_with_each_model_config(start_process, ros_node, checkpoints):
    """Start one node per launch model choice, as the launch file would (its parameter files and
    remappings), with a light test checkpoint in place of the real weights."""
    from lifecycle_msgs.msg import State
    from lifecycle_msgs.srv import GetState
    from rcl_interfaces.srv import GetParameters

    from .harness import spin_until

    # model choice -> the test checkpoint and the parameters the command line overrides: the
    # model name where the config names a real model, and the backend of yolact_plus (one ONNX
    # export, for yolact, is enough: each takes about 10 s here).
    cases = {
        "default": (checkpoints["panoptic"], {}),
        "panoptic": (checkpoints["panoptic"], {}),
        "yolact": (checkpoints["yolact"], {"model": "yolact_mobilenetv3"}),
        "yolact_plus": (
            checkpoints["yolact_plus"],
            {"model": "tiny_yolact_plus", "backend": "torch"},
        ),
        "pcv": (checkpoints["pcv"], {}),
        "mask_rcnn": (checkpoints["mask_rcnn"], {}),
    }
    processes = {}
    for model, (checkpoint, overrides) in cases.items():
        config = L.node_launch_config(model=model, camera="/cam/image_raw", share_dir=REPO)
        args = L.node_command(config, executable="bin/segmentation_node")
        args[args.index("__node:=segmentation_node")] = f"__node:=cfg_{model}"
        config_path = L.config_file(model, REPO)
        overrides = {"checkpoint": checkpoint, "num_threads": 1, **overrides}
        backend = overrides.get("backend", _parameters(config_path).get("backend"))
        if backend != "torch":  # an ONNX file is exported: not into ~/.cache
            overrides["engine_cache_dir"] = checkpoint.parent
        for name, value in overrides.items():
            args += ["-p", f"{name}:={value}"]
        processes[model] = (start_process(f"cfg_{model}", args), set(overrides), config_path)

    for model, (process, overridden, config_path) in processes.items():
        get_state = ros_node.create_client(GetState, f"cfg_{model}/get_state")
        assert get_state.wait_for_service(timeout_sec=90.0), process.output()
        state = None
        # A node answers once its start-up (model loading, ONNX export) is over: two exports
        # side by side take minutes on a busy 2-core machine. A wait, not a speed check.
        deadline = time.monotonic() + 300.0
        while time.monotonic() < deadline and state != State.PRIMARY_STATE_ACTIVE:
            future = get_state.call_async(GetState.Request())
            answered = spin_until(ros_node, future.done, max(deadline - time.monotonic(), 1.0))
            assert answered, f"{model}: no lifecycle state\n{process.output()}"
            state = future.result().current_state.id
            if state != State.PRIMARY_STATE_ACTIVE:
                assert "configure failed" not in process.output(), process.output()
                spin_until(ros_node, lambda: False, 0.5)
        assert state == State.PRIMARY_STATE_ACTIVE, f"{model}:\n{process.output()}"
        # The config file's values are the node's values (but those overridden above).
        expected = _parameters(config_path)
        names = [n for n in expected if n not in overridden]
        get_params = ros_node.create_client(GetParameters, f"cfg_{model}/get_parameters")
        assert get_params.wait_for_service(timeout_sec=30.0)
        future = get_params.call_async(GetParameters.Request(names=names))
        assert spin_until(ros_node, future.done, 30.0)
        for name, value in zip(names, future.result().values):
            got = _plain(value)
            assert got == expected[name], (model, name, got, expected[name])


def _plain(value):
    from rcl_interfaces.msg import ParameterType as T

    return {
        T.PARAMETER_BOOL: lambda v: v.bool_value,
        T.PARAMETER_INTEGER: lambda v: v.integer_value,
        T.PARAMETER_DOUBLE: lambda v: v.double_value,
        T.PARAMETER_STRING: lambda v: v.string_value,
        T.PARAMETER_STRING_ARRAY: lambda v: list(v.string_array_value),
    }[value.type](value)
