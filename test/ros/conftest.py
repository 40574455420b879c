"""Fixtures for process-level ROS tests (see harness.py)."""

import os

import pytest

from segmentation_ros.ros.session import claim_domain_id

from .harness import NodeProcess, rclpy_session, ros_environment

# Claimed at import, before any rclpy.init in this process reads the environment.
DOMAIN_ID, _DOMAIN_LOCK = claim_domain_id()
ROS_ENV = ros_environment(DOMAIN_ID)
os.environ.update(ROS_ENV)


@pytest.fixture(scope="session")
def ros_env() -> dict[str, str]:
    return dict(ROS_ENV)


@pytest.fixture
def ros_node(request):
    """An rclpy node in this (test) process, destroyed with its context after the test."""
    import rclpy

    name = "test_" + "".join(c if c.isalnum() else "_" for c in request.node.name)[:40]
    with rclpy_session(lambda: rclpy.create_node(name)) as node:
        yield node


@pytest.fixture
def start_process(tmp_path, ros_env):
    """start_process(name, [script, args...]) -> NodeProcess, stopped after the test."""
    started: list[NodeProcess] = []

    def start(name: str, args: list[str]) -> NodeProcess:
        process = NodeProcess(args, env=ros_env, log_dir=tmp_path, name=name)
        started.append(process)
        return process

    yield start
    for process in started:
        process.stop()
