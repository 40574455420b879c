"""Python packaging of the library and its commands, for `pip install -e .` in the development
venv (scripts/setup.sh) or for users without ROS. On a robot, colcon builds this repository as one
ament_cmake package (CMakeLists.txt) that also generates the messages."""

from setuptools import find_packages, setup

setup(
    name="segmentation_ros",
    version="0.1.0",
    description="Real-time instance and panoptic segmentation for ROS 2 mobile robots",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=["segmentation_ros", "segmentation_ros.*"]),
    package_data={"segmentation_ros": ["weights/*.pt", "weights/*.md"]},
    entry_points={
        "console_scripts": [
            "segmentation-ros-predict = segmentation_ros.tools.predict:main",
            "segmentation-ros-eval = segmentation_ros.tools.eval:main",
            "segmentation-ros-generate = segmentation_ros.tools.generate:main",
            "segmentation-ros-train = segmentation_ros.tools.train:main",
            "segmentation_node = segmentation_ros.ros.node:main",
            "segmentation-ros-demo = segmentation_ros.ros.demo:main",
            "segmentation-ros-compile = segmentation_ros.tools.compile:main",
        ],
    },
)
