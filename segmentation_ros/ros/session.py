"""A private ROS session on this machine, for programs that start nodes in their own processes
and talk to them over DDS (the demo, the process-level tests, benchmarks).

- `claim_domain_id()` holds a ROS domain id that no other session on this machine holds (a file
  lock per id in the temp folder, kept as long as the returned handle is open), so a demo never
  shares a domain with a test run or another demo.
- `ros_environment(domain)` is env.sh's ROS set-up for this process and its children: that
  domain, discovery limited to this machine, Fast DDS with the shared-memory profile
  (config/fastdds_shm.xml), which carries large images between processes.
- `NodeProcess` starts a program in its own process group, its output in a log file, and always
  takes the whole group down.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

from segmentation_ros.ros.launch_logic import share_directory

DOMAIN_LOCKS = Path(tempfile.gettempdir()) / "segmentation_ros_test_domains"
DOMAIN_IDS = range(1, 101)  # 0 is everybody's default; above 101 ports overflow on Linux


def claim_domain_id() -> tuple[int, object]:
    """A ROS domain id in 1..100 that no other live session on this machine holds, and its lock
    handle (the id is held while the handle is open). RuntimeError when all are taken."""
    DOMAIN_LOCKS.mkdir(exist_ok=True)
    start = os.getpid() % len(DOMAIN_IDS)
    for offset in range(len(DOMAIN_IDS)):
        domain = DOMAIN_IDS[(start + offset) % len(DOMAIN_IDS)]
        handle = open(DOMAIN_LOCKS / f"{domain}.lock", "w")  # noqa: SIM115 - held while running
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            continue
        return domain, handle
    raise RuntimeError(
        f"every ROS domain id {DOMAIN_IDS[0]}..{DOMAIN_IDS[-1]} is held by another session on "
        "this machine; give one explicitly"
    )


def ros_environment(domain_id: int, fastdds_profile: str | os.PathLike | None = None) -> dict:
    """The variables every process of a session runs with (the calling one included: update
    os.environ with them before rclpy.init). fastdds_profile: the Fast DDS XML profile; default
    $FASTDDS_DEFAULT_PROFILES_FILE, else the package's config/fastdds_shm.xml."""
    profile = (
        fastdds_profile
        or os.environ.get("FASTDDS_DEFAULT_PROFILES_FILE")
        or share_directory() / "config" / "fastdds_shm.xml"
    )
    return {
        "ROS_DOMAIN_ID": str(domain_id),
        "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST",
        "RMW_IMPLEMENTATION": os.environ.get("RMW_IMPLEMENTATION") or "rmw_fastrtps_cpp",
        "FASTDDS_DEFAULT_PROFILES_FILE": str(profile),
        "PYTHONUNBUFFERED": "1",
    }


class NodeProcess:
    """`python <args>` in its own process group, stdout and stderr in `log_path`.

    env: variables set on top of this process's environment. cwd: its working folder.
    """

    def __init__(
        self,
        args: list[str],
        *,
        env: dict[str, str],
        log_path: Path,
        cwd: str | os.PathLike | None = None,
    ):
        self.log_path = Path(log_path)
        self._log = open(self.log_path, "w")  # noqa: SIM115 - closed in stop()
        self.popen = subprocess.Popen(
            [sys.executable, *args],
            env={**os.environ, **env},
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=cwd,
        )

    def alive(self) -> bool:
        return self.popen.poll() is None

    def output(self) -> str:
        """Everything the process wrote so far."""
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def tail(self, lines: int = 15) -> str:
        return "\n".join(self.output().splitlines()[-lines:])

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGINT (clean shutdown), then SIGKILL the group if it lingers. Returns the exit code."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            if self.alive():
                os.killpg(self.popen.pid, signal.SIGINT)
                try:
                    self.popen.wait(timeout)
                except subprocess.TimeoutExpired:
                    os.killpg(self.popen.pid, signal.SIGKILL)
                    self.popen.wait()
            os.killpg(self.popen.pid, signal.SIGKILL)  # children that outlived the leader
        self._log.close()
        return self.popen.returncode
