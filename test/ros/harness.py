"""Real ROS tests: processes that talk over DDS on loopback, isolated per test session.

The session pieces are the library's (`segmentation_ros.ros.session`, which the demo uses too):
every test session holds its own ROS domain id (a file lock per id, so parallel sessions and
demos on one machine never share a domain), discovery is limited to localhost, and the Fast DDS
shared-memory profile (config/fastdds_shm.xml) carries large images between processes. Here:
node processes that run this checkout's sources, and spinning until a condition holds.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

from segmentation_ros.ros import session

T = TypeVar("T")

REPO = Path(__file__).resolve().parents[2]
FASTDDS_PROFILE = REPO / "config" / "fastdds_shm.xml"


def ros_environment(domain_id: int) -> dict[str, str]:
    """The variables every process of a test session runs with (this one included): this
    checkout's Fast DDS profile."""
    return session.ros_environment(domain_id, FASTDDS_PROFILE)


class NodeProcess(session.NodeProcess):
    """A node in its own process (group), running this checkout's sources from its root; output
    goes to log_dir/<name>.log, shown on failure."""

    def __init__(self, args: list[str], *, env: dict[str, str], log_dir: Path, name: str):
        self.name = name
        path = os.pathsep.join([str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])])
        env = {**env, "PYTHONPATH": path}
        super().__init__(args, env=env, log_path=log_dir / f"{name}.log", cwd=REPO)

    def stop(self, timeout: float = 5.0) -> int | None:
        return super().stop(timeout)


def spin_until(node, predicate: Callable[[], bool], timeout: float) -> bool:
    """Spin `node` until `predicate()` holds or `timeout` seconds pass."""
    import rclpy

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        rclpy.spin_once(node, timeout_sec=0.05)
    return predicate()


@contextmanager
def rclpy_session(make: Callable[[], T]) -> Iterator[T]:
    """rclpy initialised around `make()` (a node, or an object holding one as `.node`): the
    node destroyed and rclpy shut down afterwards, whatever happened."""
    import rclpy

    rclpy.init()
    made = make()
    try:
        yield made
    finally:
        getattr(made, "node", made).destroy_node()
        rclpy.try_shutdown()
