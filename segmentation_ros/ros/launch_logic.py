"""What the launch files decide, as plain functions (the `launch` package is not needed to test
them, and not installable on every development machine).

    segmentation.launch.py model:=panoptic camera:=/front_camera/image_raw namespace:=front
                           params_file:=/path/overrides.yaml use_sim_time:=false

`node_launch_config(...)` maps those arguments to a `NodeLaunchConfig`: the executable, the
parameter files in the order they apply (config/<model>.yaml, then the user's overrides), the
remappings of the node's relative input names onto the camera's topics, and the namespace.
`launch_description(...)` builds the actual LaunchDescription from it (imports `launch` lazily);
every launch file in launch/ is a call to it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

PACKAGE = "segmentation_ros"
EXECUTABLE = "segmentation_node"
NODE_NAME = "segmentation_node"

#: Launch `model` choices -> the config file read for each (config/<file>).
MODEL_CONFIGS: dict[str, str] = {
    "default": "default.yaml",
    "yolact": "yolact.yaml",
    "yolact_plus": "yolact_plus.yaml",
    "panoptic": "panoptic.yaml",
    "pcv": "pcv.yaml",
    "mask_rcnn": "mask_rcnn.yaml",
}

DEFAULT_CAMERA = "/camera/image_raw"
DEFAULT_ODOM = "/odom"


@dataclass(frozen=True)
class NodeLaunchConfig:
    """Everything `launch_ros.actions.Node` needs.

    parameters: parameter files (applied in order, later ones win), then a dict of single values.
    remappings: (from, to) pairs; `from` are the node's relative names.
    """

    package: str
    executable: str
    name: str
    namespace: str
    parameters: tuple[str | dict, ...]
    remappings: tuple[tuple[str, str], ...]


def share_directory() -> Path:
    """The package's share directory (installed), or the source checkout this file lies in."""
    try:
        from ament_index_python.packages import (
            PackageNotFoundError,
            get_package_share_directory,
        )
    except ImportError:
        return Path(__file__).resolve().parents[2]
    try:
        return Path(get_package_share_directory(PACKAGE))
    except PackageNotFoundError:
        return Path(__file__).resolve().parents[2]


def config_file(model: str, share_dir: str | os.PathLike | None = None) -> Path:
    """config/<model>.yaml for a launch `model` choice (ValueError for an unknown choice)."""
    if model not in MODEL_CONFIGS:
        raise ValueError(f"unknown model {model!r}; expected one of {', '.join(MODEL_CONFIGS)}")
    root = Path(share_dir) if share_dir is not None else share_directory()
    return root / "config" / MODEL_CONFIGS[model]


def camera_topics(camera: str) -> dict[str, str]:
    """The node's input names -> the camera's topics (image_transport layout).

    camera: the image topic, e.g. /front_camera/image_raw. Its compressed stream is
    <camera>/compressed and its CameraInfo is camera_info beside it (/front_camera/camera_info).
    """
    camera = camera.strip()
    if not camera or camera.endswith("/"):
        raise ValueError(f"camera must be an image topic such as /camera/image_raw, got {camera!r}")
    parent = camera.rsplit("/", 1)[0] if "/" in camera else ""
    info = f"{parent}/camera_info" if parent or camera.startswith("/") else "camera_info"
    return {"image": camera, "image/compressed": f"{camera}/compressed", "camera_info": info}


def _truthy(value: str | bool) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "1", "yes", "on"):
        return True
    if text in ("false", "0", "no", "off", ""):
        return False
    raise ValueError(f"use_sim_time must be true or false, got {value!r}")


def node_launch_config(
    *,
    model: str = "default",
    camera: str = DEFAULT_CAMERA,
    namespace: str = "",
    params_file: str = "",
    use_sim_time: str | bool = False,
    share_dir: str | os.PathLike | None = None,
    odom: str = DEFAULT_ODOM,
) -> NodeLaunchConfig:
    """The node to start for these launch arguments (see the module docstring).

    params_file: optional YAML of overrides applied after config/<model>.yaml (it must exist).
    odom: the nav_msgs/Odometry topic the node's `odom` reads (drivable/grid_fused).
    Raises ValueError for an unknown model or a bad camera topic, FileNotFoundError for a missing
    file.
    """
    files = [config_file(model, share_dir)]
    if params_file:
        files.append(Path(params_file).expanduser())
    for path in files:
        if not path.is_file():
            raise FileNotFoundError(f"parameter file {str(path)!r} does not exist")
    return NodeLaunchConfig(
        package=PACKAGE,
        executable=EXECUTABLE,
        name=NODE_NAME,
        namespace=namespace.strip(),
        parameters=(*(str(p) for p in files), {"use_sim_time": _truthy(use_sim_time)}),
        remappings=(*camera_topics(camera).items(), ("odom", _topic("odom", odom))),
    )


def _topic(name: str, value: str) -> str:
    value = value.strip()
    if not value or value.endswith("/"):
        raise ValueError(f"{name} must be a topic name such as /odom, got {value!r}")
    return value


def node_command(config: NodeLaunchConfig, executable: str | None = None) -> list[str]:
    """The command line `ros2 launch` runs for `config` (also how tests start the node)."""
    args = [executable or config.executable, "--ros-args", "-r", f"__node:={config.name}"]
    if config.namespace:
        args += ["-r", f"__ns:={'/' + config.namespace.lstrip('/')}"]
    for source, target in config.remappings:
        args += ["-r", f"{source}:={target}"]
    for parameters in config.parameters:
        if isinstance(parameters, dict):
            for key, value in parameters.items():
                text = str(value).lower() if isinstance(value, bool) else str(value)
                args += ["-p", f"{key}:={text}"]
        else:
            args += ["--params-file", parameters]
    return args


LAUNCH_ARGUMENTS = (
    ("model", "default", f"which model config to load: {' | '.join(MODEL_CONFIGS)}"),
    ("camera", DEFAULT_CAMERA, "image topic to segment (camera_info is read beside it)"),
    ("namespace", "", "namespace of the node and its topics"),
    ("params_file", "", "YAML file of parameter overrides, applied after config/<model>.yaml"),
    ("use_sim_time", "false", "use /clock for time"),
    ("odom", DEFAULT_ODOM, "nav_msgs/Odometry topic for drivable/grid_fused (optional)"),
)


def launch_description(fixed_model: str | None = None):
    """The LaunchDescription of segmentation.launch.py; `fixed_model` drops the `model`
    argument (the per-model launch files)."""
    from launch.actions import DeclareLaunchArgument, OpaqueFunction
    from launch.substitutions import LaunchConfiguration
    from launch_ros.actions import Node

    from launch import LaunchDescription

    if fixed_model is not None and fixed_model not in MODEL_CONFIGS:
        raise ValueError(f"unknown model {fixed_model!r}; expected one of {list(MODEL_CONFIGS)}")

    def make_node(context):
        def arg(name: str) -> str:
            return LaunchConfiguration(name).perform(context)

        config = node_launch_config(
            model=fixed_model or arg("model"),
            camera=arg("camera"),
            namespace=arg("namespace"),
            params_file=arg("params_file"),
            use_sim_time=arg("use_sim_time"),
            odom=arg("odom"),
        )
        return [
            Node(
                package=config.package,
                executable=config.executable,
                name=config.name,
                namespace=config.namespace,
                parameters=list(config.parameters),
                remappings=list(config.remappings),
                output="screen",
                emulate_tty=True,
            )
        ]

    arguments = [
        DeclareLaunchArgument(name, default_value=default, description=text)
        for name, default, text in LAUNCH_ARGUMENTS
        if not (fixed_model is not None and name == "model")
    ]
    return LaunchDescription([*arguments, OpaqueFunction(function=make_node)])
