"""Cache keys of compiled artifacts: the weights' hash, the device, the building software."""

from __future__ import annotations

import hashlib

import torch
from torch import nn

from segmentation_ros.runtime.cache import ArtifactKey
from segmentation_ros.runtime.onnx_export import MIN_OPSET
from segmentation_ros.runtime.tensorrt.status import tensorrt_versions


def weights_sha256(model: nn.Module) -> str:
    """SHA-256 of a model's state (names, shapes, dtypes, values): the "checkpoint hash" of
    cache keys, the same whichever file (or dtype on disk) the weights came from."""
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        t = tensor.detach().to("cpu").contiguous()
        digest.update(f"{name}:{tuple(t.shape)}:{t.dtype}".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def device_facts(device: str) -> tuple[str, str]:
    """(device name, compute capability) for cache keys: ("cpu", "") or ("NVIDIA ...", "8.7")."""
    dev = torch.device(device)
    if dev.type != "cuda":
        return "cpu", ""
    index = dev.index if dev.index is not None else torch.cuda.current_device()
    major, minor = torch.cuda.get_device_capability(index)
    return torch.cuda.get_device_name(index), f"{major}.{minor}"


def artifact_key(
    kind: str,
    model: nn.Module,
    *,
    input_size: tuple[int, int],
    precision: str,
    device: str,
    batch: str = "1",
) -> ArtifactKey:
    """The cache key of `model` compiled by backend `kind` ("onnxruntime" or "tensorrt")."""
    name = getattr(getattr(model, "config", None), "name", type(model).__name__)
    versions = {"torch": torch.__version__}
    if kind == "tensorrt":
        versions.update({k: v or "missing" for k, v in tensorrt_versions().items()})
        device_name, capability = device_facts(device)
    else:  # an ONNX file runs on any device: the exporter and the opset make it
        versions["onnx_opset"] = str(MIN_OPSET)
        if precision == "int8":
            from segmentation_ros.runtime.ort_quantize import RECIPE

            versions["int8_recipe"] = RECIPE
        device_name, capability = "any", ""
    return ArtifactKey(
        backend=kind,
        model=name,
        checkpoint_sha256=weights_sha256(model),
        input_shape=(batch, 3, *input_size),
        precision=precision,
        device_name=device_name,
        compute_capability=capability,
        versions=tuple(sorted(versions.items())),
    )
