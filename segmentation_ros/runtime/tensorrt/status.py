"""What TensorRT needs here, and what is missing: versions, the CUDA device, Quick Deployable
Plugins. Pure message logic takes its facts as arguments (tested on the CPU); `tensorrt_status`
gathers the facts of this machine. Imports neither tensorrt nor torch_tensorrt at import.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Mapping

import torch

from segmentation_ros.runtime.base import BackendUnavailable

#: torch-tensorrt 2.14 (the release for torch 2.14) requires TensorRT 11.1 (its wheel pins
#: tensorrt-cu13 >= 11.1, < 11.2).
MIN_TORCH_TENSORRT = (2, 14)
MIN_TENSORRT = (11, 1)
#: torch_tensorrt (major, minor) -> the TensorRT range [low, high) its wheel requires.
TENSORRT_RANGE = {(2, 14): ((11, 1), (11, 2))}

_INSTALL_HINT = (
    'pip install "torch-tensorrt==2.14.*" (it brings TensorRT 11.1; NVIDIA\'s wheels, for torch '
    "2.14: torch-tensorrt must match the installed torch's major.minor)"
)


def _version_tuple(version: str | None) -> tuple[int, ...] | None:
    """Leading numeric components of a version string: "10.7.0.post1" -> (10, 7, 0),
    "2.14.0+cu128" -> (2, 14, 0); None when there are none."""
    if version is None:
        return None
    match = re.match(r"\d+(?:\.\d+)*", version.strip())
    return tuple(int(part) for part in match.group(0).split(".")) if match else None


def _dotted(version: tuple[int, ...]) -> str:
    return ".".join(map(str, version))


def _version_problem(package: str, version: str | None, minimum: tuple[int, ...]) -> str | None:
    needed = _dotted(minimum)
    parsed = _version_tuple(version)
    if parsed is None:
        return f"{package} version {version!r} could not be read (>= {needed} needed)"
    if parsed[: len(minimum)] < minimum:
        return f"{package} {version} is too old (>= {needed} needed)"
    return None


def _pairing_problems(
    trt_version: str | None, torch_trt_version: str | None, torch_version: str | None
) -> list[str]:
    """What torch_tensorrt's own requirements say about the installed torch and TensorRT."""
    ours = _version_tuple(torch_trt_version)
    if ours is None or len(ours) < 2:
        return []
    problems = []
    torch_parsed = _version_tuple(torch_version)
    if torch_parsed is not None and torch_parsed[:2] != ours[:2]:
        problems.append(
            f"torch_tensorrt {torch_trt_version} is built for torch {_dotted(ours[:2])}, this "
            f"torch is {torch_version}"
        )
    trt_range = TENSORRT_RANGE.get(ours[:2])
    trt_parsed = _version_tuple(trt_version)
    if trt_range and trt_parsed is not None:
        low, high = trt_range
        if trt_parsed[:2] >= high:  # too old: the minimum check said so already
            problems.append(
                f"torch_tensorrt {torch_trt_version} needs tensorrt >= {_dotted(low)}, < "
                f"{_dotted(high)}, found {trt_version}"
            )
    return problems


def _status_message(
    trt_version: str | None,
    torch_trt_version: str | None,
    cuda_available: bool,
    *,
    device: str | torch.device = "cuda",
    device_count: int | None = None,
    import_errors: Mapping[str, str] | None = None,
    torch_version: str | None = None,
) -> str | None:
    """None when TensorRT can run here, else one message naming every missing piece and what
    to do. Pure: the facts come as arguments.

    trt_version, torch_trt_version: `__version__` of tensorrt / torch_tensorrt, None when they
    do not import (`import_errors` {module: error text} says why, when it was not simply absent).
    cuda_available: torch.cuda.is_available(); device_count: torch.cuda.device_count().
    torch_version: torch.__version__ (None: not checked against torch_tensorrt's).
    """
    errors = dict(import_errors or {})
    problems: list[str] = []
    for package, version, minimum, why in (
        ("tensorrt", trt_version, MIN_TENSORRT, "the release torch-tensorrt 2.14 requires"),
        ("torch_tensorrt", torch_trt_version, MIN_TORCH_TENSORRT, "matching torch 2.14"),
    ):
        needed = _dotted(minimum)
        if version is None:
            if package in errors:
                problems.append(f"{package} failed to import ({errors[package]})")
            else:
                problems.append(f"{package} is not installed (>= {needed} needed, {why})")
        else:
            problem = _version_problem(package, version, minimum)
            if problem is not None:
                problems.append(f"{problem}, {why}")
    problems += _pairing_problems(trt_version, torch_trt_version, torch_version)
    packages_missing = bool(problems)

    device = torch.device(device)
    device_problem = True
    if device.type != "cuda":
        problems.append(f"device {str(device)!r} is not a CUDA device (TensorRT runs on GPUs)")
    elif not cuda_available:
        problems.append("no CUDA device (torch.cuda.is_available() is False)")
    elif device_count is not None and device.index is not None and device.index >= device_count:
        problems.append(f"{device} requested but {device_count} CUDA device(s) found")
    else:
        device_problem = False
    if not problems:
        return None

    fixes = []
    if packages_missing:
        fixes.append(f"install or upgrade them: {_INSTALL_HINT}")
    if device_problem:
        fixes.append("run on a machine with an NVIDIA GPU and device='cuda'")
    fixes.append("or use the torch or onnxruntime backend")
    return f"backend tensorrt is unavailable: {'; '.join(problems)}. To fix: {'; '.join(fixes)}."


def _import_version(module_name: str) -> tuple[str | None, str | None]:
    """(module.__version__, None) when it imports, (None, None) when it is absent, (None, why)
    when importing it failed for another reason (e.g. a missing shared library)."""
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        if error.name == module_name or module_name.startswith(f"{error.name}."):
            return None, None
        return None, f"{type(error).__name__}: {error}"
    except Exception as error:  # OSError for missing libnvinfer, RuntimeError, ...
        return None, f"{type(error).__name__}: {error}"
    return str(getattr(module, "__version__", "unknown")), None


def tensorrt_versions() -> dict[str, str | None]:
    """{"tensorrt", "torch_tensorrt", "cuda"} -> version string, None for the missing (cuda is
    torch.version.cuda, the CUDA torch was built with). Never raises; used in engine cache keys.
    """
    versions: dict[str, str | None] = {}
    for name in ("tensorrt", "torch_tensorrt"):
        try:
            versions[name] = _import_version(name)[0]
        except Exception:  # pragma: no cover - _import_version already catches
            versions[name] = None
    versions["cuda"] = getattr(torch.version, "cuda", None)
    return versions


def tensorrt_status(device: str | torch.device = "cuda") -> str | None:
    """None when torch_tensorrt (>= 2.14, for this torch) and tensorrt (the release it needs)
    import and `device` is an available CUDA device; otherwise what is missing and what to do."""
    trt_version, trt_error = _import_version("tensorrt")
    torch_trt_version, torch_trt_error = _import_version("torch_tensorrt")
    errors = {
        name: error
        for name, error in (("tensorrt", trt_error), ("torch_tensorrt", torch_trt_error))
        if error is not None
    }
    cuda_available = torch.cuda.is_available()
    return _status_message(
        trt_version,
        torch_trt_version,
        cuda_available,
        device=device,
        device_count=torch.cuda.device_count() if cuda_available else 0,
        import_errors=errors,
        torch_version=torch.__version__,
    )


def require_tensorrt(device: str | torch.device = "cuda") -> None:
    """Raise BackendUnavailable with `tensorrt_status`'s message unless TensorRT can run."""
    message = tensorrt_status(device)
    if message is not None:
        raise BackendUnavailable(message)


def _qdp_message(qdp_enabled: bool, trt_version: str | None) -> str | None:
    """Why TensorRT plugins for our custom ops cannot be made here (None when they can).
    Pure: `qdp_enabled` is torch_tensorrt's ENABLED_FEATURES.qdp_plugin, which it turns off for
    TensorRT-RTX, for a TensorRT without `tensorrt.plugin`, and for TensorRT 10.14 (a known
    bug); its plugin generators then raise NotImplementedError."""
    if qdp_enabled:
        return None
    return (
        f"backend tensorrt cannot build this network: its custom ops (deformable convolution) "
        f"run as TensorRT Quick Deployable Plugins, which torch_tensorrt has turned off for "
        f"tensorrt {trt_version} (TensorRT-RTX, no tensorrt.plugin, or 10.14). To fix: install "
        f"the TensorRT that torch_tensorrt requires, or use a model without deformable "
        f"convolutions, or the torch backend"
    )


def require_plugins() -> None:
    """BackendUnavailable unless torch_tensorrt can generate plugins (needs TensorRT)."""
    from torch_tensorrt._features import ENABLED_FEATURES

    message = _qdp_message(bool(ENABLED_FEATURES.qdp_plugin), _import_version("tensorrt")[0])
    if message is not None:
        raise BackendUnavailable(message)
