"""Every custom op gets its Triton kernel as its CUDA implementation; other devices keep the
PyTorch reference."""

import torch

from segmentation_ros.ops.fast_nms import fast_nms, fast_nms_reference
from segmentation_ros.ops.triton import KERNELS, launcher, register_cuda_kernels, triton_status


def test_every_op_is_backed_by_its_triton_kernel_on_cuda():
    assert triton_status() is None  # triton comes with torch's CUDA build (requirements.txt)
    assert register_cuda_kernels() == sorted(KERNELS)
    assert register_cuda_kernels() == sorted(KERNELS)  # idempotent
    for op_name in KERNELS:
        assert torch._C._dispatch_has_kernel_for_dispatch_key(op_name, "CUDA"), op_name
        assert callable(launcher(op_name))


def test_cpu_still_runs_the_reference():
    register_cuda_kernels()
    torch.manual_seed(0)
    xy = torch.rand(2, 6, 2) * 50
    boxes = torch.cat([xy, xy + torch.rand(2, 6, 2) * 30 + 1], dim=-1)
    scores = torch.rand(2, 6).sort(dim=1, descending=True).values
    keep = fast_nms(boxes, scores, iou_threshold=0.3)
    assert torch.equal(keep, fast_nms_reference(boxes, scores, 0.3, float("-inf")))


def test_every_launcher_launches_on_its_inputs_device():
    """Triton launches on the current CUDA device: each launcher makes its inputs' device
    current around every kernel launch (`kernel[grid](...)` inside `with device_guard(...)`),
    read off the sources with ast (a second GPU is what it guards against; none here)."""
    import ast
    import importlib
    import inspect

    for module_name, function in KERNELS.values():
        module = importlib.import_module(f"segmentation_ros.ops.triton.{module_name}")
        tree = ast.parse(inspect.getsource(getattr(module, function)))
        guarded = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.With) and any(
                isinstance(item.context_expr, ast.Call)
                and getattr(item.context_expr.func, "id", "") == "device_guard"
                for item in node.items
            ):
                guarded |= {id(n) for n in ast.walk(node)}
        launches = [
            n
            for n in ast.walk(tree)
            if isinstance(n, ast.Call) and isinstance(n.func, ast.Subscript)
        ]
        assert launches, function
        assert all(id(n) in guarded for n in launches), f"{function} launches outside the guard"
