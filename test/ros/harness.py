"""Real ROS tests: processes that talk over DDS on loopback, isolated per test session.

- Every test session holds its own ROS domain id (a file lock per id in the temp dir, so parallel
  sessions on one machine never share a domain), discovery is limited to localhost, and the Fast
  DDS shared-memory profile (config/fastdds_shm.xml) carries large images between processes.
- `NodeProcess` starts a node in its own process group and always takes the whole group down.
"""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
FASTDDS_PROFILE = REPO / "config" / "fastdds_shm.xml"
_DOMAIN_IDS = range(1, 101)  # 0 is everybody's default; above 101 ports overflow on Linux


def claim_domain_id() -> tuple[int, object]:
    """A ROS domain id no other live test session on this machine holds, and its lock handle."""
    lock_dir = Path(tempfile.gettempdir()) / "segmentation_ros_test_domains"
    lock_dir.mkdir(exist_ok=True)
    start = os.getpid() % len(_DOMAIN_IDS)
    for offset in range(len(_DOMAIN_IDS)):
        domain = _DOMAIN_IDS[(start + offset) % len(_DOMAIN_IDS)]
        handle = open(lock_dir / f"{domain}.lock", "w")  # noqa: SIM115 - held for the session
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            continue
        return domain, handle
    raise RuntimeError("every ROS domain id 1..100 is held by another test session")


def ros_environment(domain_id: int) -> dict[str, str]:
    """The variables every process of a test session runs with (this one included)."""
    return {
        "ROS_DOMAIN_ID": str(domain_id),
        "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST",
        "RMW_IMPLEMENTATION": "rmw_fastrtps_cpp",
        "FASTDDS_DEFAULT_PROFILES_FILE": str(FASTDDS_PROFILE),
        "PYTHONUNBUFFERED": "1",
    }


class NodeProcess:
    """A node in its own process (group); output goes to a log file shown on failure."""

    def __init__(self, args: list[str], *, env: dict[str, str], log_dir: Path, name: str):
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        self._log = open(self.log_path, "w")  # noqa: SIM115 - closed in stop()
        full_env = {**os.environ, **env}
        full_env["PYTHONPATH"] = os.pathsep.join(
            [str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])]
        )
        self.popen = subprocess.Popen(
            [sys.executable, *args],
            env=full_env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=REPO,
        )

    def alive(self) -> bool:
        return self.popen.poll() is None

    def output(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def stop(self, timeout: float = 5.0) -> int:
        """SIGINT (clean shutdown), then SIGKILL the group if it lingers. Returns the exit code."""
        if self.alive():
            try:
                os.killpg(self.popen.pid, signal.SIGINT)
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait()
            except ProcessLookupError:
                pass
        try:  # children that outlived the leader
            os.killpg(self.popen.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self._log.close()
        return self.popen.returncode


def spin_until(node, predicate: Callable[[], bool], timeout: float) -> bool:
    """Spin `node` until `predicate()` holds or `timeout` seconds pass."""
    import rclpy

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        rclpy.spin_once(node, timeout_sec=0.05)
    return predicate()
