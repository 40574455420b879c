"""Triton kernels of our custom ops, the ops' CUDA implementations.

    from segmentation_ros.ops.triton import register_cuda_kernels
    register_cuda_kernels()   # once, before running on a GPU; a no-op without Triton

op                              kernel module        launcher
segros::modulated_deform_conv2d deform_conv          modulated_deform_conv2d_triton
segros::fast_nms                fast_nms             fast_nms_triton
segros::assemble_masks          mask_assembly        assemble_masks_triton
segros::pcv_backproject         pcv_backproject      pcv_backproject_triton

Each launcher has its op's exact signature and semantics; the op's pure PyTorch reference stays
the implementation on every other device and the test oracle (the kernels are tested against
it in Triton's interpreter, `TRITON_INTERPRET=1`, on the CPU: test/ops/triton). The kernel
modules import Triton at their top, so they are imported only here, on demand.
TensorRT plugins for these ops are generated from the registered ops (`runtime.tensorrt`).
"""

from __future__ import annotations

import importlib
import importlib.util

#: op name -> (kernel module, launcher name).
KERNELS = {
    "segros::modulated_deform_conv2d": ("deform_conv", "modulated_deform_conv2d_triton"),
    "segros::fast_nms": ("fast_nms", "fast_nms_triton"),
    "segros::assemble_masks": ("mask_assembly", "assemble_masks_triton"),
    "segros::pcv_backproject": ("pcv_backproject", "pcv_backproject_triton"),
}

_registered: set[str] = set()


def triton_status() -> str | None:
    """None when Triton can be imported; otherwise what is missing."""
    if importlib.util.find_spec("triton") is None:
        return "Triton is not installed (pip install triton; it comes with CUDA builds of torch)"
    return None


def launcher(op_name: str):
    """The Triton launcher of `op_name` (imports Triton)."""
    module_name, function = KERNELS[op_name]
    module = importlib.import_module(f"{__name__}.{module_name}")
    return getattr(module, function)


def register_cuda_kernels() -> list[str]:
    """Register every launcher as its op's CUDA kernel (idempotent); returns the op names now
    backed by Triton ([] without Triton: the PyTorch references then run on CUDA too)."""
    if triton_status() is not None:
        return []
    import torch

    # The ops are defined when their modules are imported.
    from segmentation_ros.ops import deform_conv, fast_nms, mask_assembly, pcv_voting  # noqa: F401

    for op_name in KERNELS:
        if op_name not in _registered:
            torch.library.register_kernel(op_name, "cuda", launcher(op_name))
            _registered.add(op_name)
    return sorted(_registered)
