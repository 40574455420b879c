"""Compiled-model cache: ONNX files and TensorRT engines, keyed by everything that makes them
valid, never loaded when they might not be.

An artifact (an ONNX export, a serialized TensorRT engine) is only valid for the exact weights,
input shape and precision it was built from, and a TensorRT engine only for the GPU model,
compute capability and CUDA / TensorRT / torch-tensorrt versions that built it. `ArtifactKey`
holds all of them; the artifact is stored as `<stem>.<ext>` beside a manifest `<stem>.<ext>.json`
that records the key and the artifact's SHA-256.

`ArtifactCache.get_or_build(key, build, ...)` returns a usable artifact path and says how it got
it: "loaded" (manifest key equal, checksum equal, the loader's own check passed) or "built"
(missing, built for something else, or corrupt -> rebuilt, the reason kept). With building
disabled (robots load engines built ahead of time by `segmentation-ros-compile`; they must not
spend minutes building at start-up) every such case raises `ArtifactCacheError` naming the
mismatched fields or the corruption. Builds write to a temporary file and rename it (a crash
leaves no half file) under a lock file (two nodes starting together build once).
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

#: Bumped when the way we export or compile changes in a way the other fields do not show.
FORMAT_VERSION = 1

_hash_cache: dict[tuple[str, int, int], str] = {}


class ArtifactCacheError(RuntimeError):
    """No valid artifact and building is disabled (or the build failed); says why."""


def file_sha256(path: str | os.PathLike) -> str:
    """SHA-256 hex digest of a file's bytes (remembered per path, size and mtime)."""
    path = Path(path)
    stat = path.stat()
    memo = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if memo not in _hash_cache:
        digest = hashlib.sha256()
        with path.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        _hash_cache[memo] = digest.hexdigest()
    return _hash_cache[memo]


@dataclass(frozen=True)
class ArtifactKey:
    """What an artifact was built from (all fields must match for it to be loaded).

    backend: "onnxruntime" or "tensorrt". model: registry name. checkpoint_sha256: the weights.
    input_shape: (B, 3, H, W); for a dynamic batch B is "min-opt-max". precision: fp32 | fp16 |
    bf16 | int8. device_name: GPU name or "cpu". compute_capability: "8.7" ("" for CPU).
    versions: (name, version) pairs of the software that built it (torch, tensorrt, ...).
    """

    backend: str
    model: str
    checkpoint_sha256: str
    input_shape: tuple
    precision: str
    device_name: str = "cpu"
    compute_capability: str = ""
    versions: tuple[tuple[str, str], ...] = ()
    format_version: int = FORMAT_VERSION

    def as_dict(self) -> dict:
        data = dataclasses.asdict(self)
        data["input_shape"] = [str(v) for v in self.input_shape]
        data["versions"] = {name: str(version) for name, version in self.versions}
        return data

    @property
    def digest(self) -> str:
        return hashlib.sha256(json.dumps(self.as_dict(), sort_keys=True).encode()).hexdigest()

    def file_name(self, suffix: str) -> str:
        """e.g. default-tensorrt-fp16-240x320-3f2a...: readable, unique per key."""
        height, width = self.input_shape[-2:]
        stem = f"{self.model}-{self.backend}-{self.precision}-{height}x{width}"
        return f"{stem}-{self.digest[:16]}{suffix}"

    def mismatches(self, recorded: dict) -> list[str]:
        """Fields whose recorded value differs, as 'field: recorded -> wanted'."""
        wanted = self.as_dict()
        return [
            f"{name}: {recorded.get(name)!r} -> {value!r}"
            for name, value in wanted.items()
            if recorded.get(name) != value
        ]


@dataclass(frozen=True)
class CacheResult:
    """path: the valid artifact for `key`. status: "loaded" or "built". reason: why it was
    (re)built."""

    path: Path
    status: str
    key: ArtifactKey
    reason: str = ""


def manifest_path(artifact: Path) -> Path:
    return artifact.with_name(artifact.name + ".json")


def check_artifact(artifact: Path, key: ArtifactKey) -> str | None:
    """None when `artifact` exists with a manifest for exactly `key` and the recorded checksum;
    otherwise why it cannot be used."""
    if not artifact.is_file():
        return "not built yet"
    manifest = manifest_path(artifact)
    try:
        recorded = json.loads(manifest.read_text())
        recorded_key, recorded_sha = recorded["key"], recorded["sha256"]
    except FileNotFoundError:
        return f"no manifest {manifest.name} (built by something else?)"
    except (OSError, ValueError, KeyError, TypeError) as error:
        return f"corrupt manifest {manifest.name}: {type(error).__name__}: {error}"
    if not isinstance(recorded_key, dict):
        return f"corrupt manifest {manifest.name}: no key"
    mismatched = key.mismatches(recorded_key)
    if mismatched:
        return "built for something else (" + "; ".join(mismatched) + ")"
    if file_sha256(artifact) != recorded_sha:
        return "corrupt: its checksum differs from the manifest's"
    return None


class ArtifactCache:
    """Artifacts under `root` (default ~/.cache/segmentation_ros/engines), or at explicit paths."""

    def __init__(self, root: str | os.PathLike | None = None) -> None:
        default = Path.home() / ".cache" / "segmentation_ros" / "engines"
        self.root = Path(root).expanduser() if root else default

    def path_for(self, key: ArtifactKey, suffix: str) -> Path:
        return self.root / key.file_name(suffix)

    def get_or_build(
        self,
        key: ArtifactKey,
        build: Callable[[Path], None],
        *,
        suffix: str,
        path: str | os.PathLike | None = None,
        validate: Callable[[Path], None] | None = None,
        allow_build: bool = True,
    ) -> CacheResult:
        """A valid artifact for `key`: at `path` when given (a prebuilt file), else in the cache.

        build(target): writes the artifact to `target`. validate(path): the loader's own check
        (e.g. parse the file); any exception means corrupt. Raises ArtifactCacheError when the
        artifact is unusable and `allow_build` is False, or when the build fails.
        """
        artifact = Path(path).expanduser() if path else self.path_for(key, suffix)
        if path and artifact.is_file() and not manifest_path(artifact).is_file():
            # Not ours: never load it unchecked, never overwrite it.
            raise ArtifactCacheError(
                f"{artifact} has no manifest {manifest_path(artifact).name}: it was not built by "
                "segmentation-ros-compile, so nothing says it fits this model; build it with "
                "segmentation-ros-compile or give another path"
            )
        reason = self._problem(artifact, key, validate)
        if reason is None:
            return CacheResult(artifact, "loaded", key)
        if not allow_build:
            raise ArtifactCacheError(
                f"{artifact}: {reason}; building is disabled: build it ahead of time with "
                "segmentation-ros-compile, or allow building"
            )
        artifact.parent.mkdir(parents=True, exist_ok=True)
        with _locked(artifact):
            # Another process may have built it while we waited for the lock.
            if self._problem(artifact, key, validate) is None:
                return CacheResult(artifact, "loaded", key)
            self._build(artifact, key, build)
            if validate is not None:
                try:
                    validate(artifact)
                except Exception as error:
                    raise ArtifactCacheError(
                        f"{artifact}: the fresh build does not load: {type(error).__name__}: "
                        f"{error}"
                    ) from error
        return CacheResult(artifact, "built", key, reason)

    @staticmethod
    def _problem(artifact: Path, key: ArtifactKey, validate) -> str | None:
        reason = check_artifact(artifact, key)
        if reason is None and validate is not None:
            try:
                validate(artifact)
            except Exception as error:  # whatever the loader raises on a bad file
                reason = f"corrupt: it does not load: {type(error).__name__}: {error}"
        return reason

    @staticmethod
    def _build(artifact: Path, key: ArtifactKey, build: Callable[[Path], None]) -> None:
        fd, temp_name = tempfile.mkstemp(prefix=artifact.name + ".", dir=artifact.parent)
        os.close(fd)
        temp = Path(temp_name)
        try:
            build(temp)
            manifest = {"key": key.as_dict(), "sha256": file_sha256(temp)}
            manifest_path(artifact).write_text(json.dumps(manifest, indent=2, sort_keys=True))
            os.replace(temp, artifact)
        except Exception as error:
            raise ArtifactCacheError(
                f"building {artifact.name} failed: {type(error).__name__}: {error}"
            ) from error
        finally:
            temp.unlink(missing_ok=True)


@contextlib.contextmanager
def _locked(artifact: Path) -> Iterator[None]:
    with open(artifact.with_name(artifact.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
