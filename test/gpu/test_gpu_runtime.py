"""On a CUDA machine: our ops' Triton kernels (compiled, not interpreted) match their PyTorch
references on GPU tensors, and every backend / precision available there reproduces the torch
fp32 reference on the default model within the agreement tolerances (`segmentation-ros-eval
backend`); TensorRT engines go through the cache (build, then load). See conftest.py for how
to run these and why they skip elsewhere."""

import pytest
import torch

from segmentation_ros.data.datasets import open_dataset
from segmentation_ros.ops.deform_conv import deform_conv2d_reference, modulated_deform_conv2d
from segmentation_ros.ops.fast_nms import fast_nms, fast_nms_reference
from segmentation_ros.ops.mask_assembly import assemble_masks, assemble_masks_reference
from segmentation_ros.ops.pcv_voting import pcv_backproject, pcv_backproject_reference
from segmentation_ros.ops.triton import register_cuda_kernels
from segmentation_ros.pipeline import SegmentationPipeline, load_model
from segmentation_ros.train.backend_agreement import Tolerances, compare_backends

CUDA = "cuda"


@pytest.fixture(scope="module", autouse=True)
def kernels():
    assert len(register_cuda_kernels()) == 4


def test_fast_nms_kernel_on_gpu():
    torch.manual_seed(0)
    xy = torch.rand(5, 300, 2) * 500
    boxes = torch.cat([xy, xy + torch.rand(5, 300, 2) * 100 + 1], -1)
    scores = torch.rand(5, 300).sort(dim=1, descending=True).values
    keep = fast_nms(boxes.to(CUDA), scores.to(CUDA), iou_threshold=0.5, score_threshold=0.05)
    assert torch.equal(keep.cpu(), fast_nms_reference(boxes, scores, 0.5, 0.05))


def test_mask_assembly_kernel_on_gpu():
    torch.manual_seed(0)
    proto, coef = torch.randn(138, 138, 32), torch.randn(100, 32)
    xy = torch.rand(100, 2) * 0.7
    boxes = torch.cat([xy, xy + 0.3], -1)
    out = assemble_masks(proto.to(CUDA), coef.to(CUDA), boxes.to(CUDA))
    torch.testing.assert_close(out.cpu(), assemble_masks_reference(proto, coef, boxes, 1),
                               atol=1e-5, rtol=0)  # fmt: skip


def test_deform_conv_kernel_on_gpu():
    torch.manual_seed(0)
    x, w = torch.randn(2, 64, 35, 35), torch.randn(64, 64, 3, 3) * 0.05
    offset, mask = torch.randn(2, 18, 35, 35), torch.rand(2, 9, 35, 35)
    out = modulated_deform_conv2d(x.to(CUDA), offset.to(CUDA), mask.to(CUDA), w.to(CUDA),
                                  stride=1, padding=1)  # fmt: skip
    expected = deform_conv2d_reference(x, offset, mask, w, None, [1, 1], [1, 1], [1, 1], 1, 1)
    torch.testing.assert_close(out.cpu(), expected, atol=1e-3, rtol=1e-3)


def test_pcv_backproject_kernel_on_gpu():
    torch.manual_seed(0)
    cells = torch.randint(0, 18, (1, 120, 160))
    regions = torch.zeros(1, 120, 160, dtype=torch.int64)
    regions[0, 40:44, 50:54], regions[0, 80:83, 100:103] = 1, 2
    out = pcv_backproject(cells.to(CUDA), regions.to(CUDA), 2)
    assert torch.equal(out.cpu(), pcv_backproject_reference(cells, regions, 2, 1, 3))


@pytest.mark.parametrize(
    "backend,precision",
    [("torch", "fp16"), ("torch", "bf16"), ("torch_compile", "fp32"), ("torch_compile", "fp16"),
     ("onnxruntime", "fp32"), ("tensorrt", "fp32"), ("tensorrt", "fp16"), ("tensorrt", "bf16")],
)  # fmt: skip
def test_backend_agrees_with_the_reference(tmp_path, backend, precision):
    from segmentation_ros.runtime.backends import BackendUnavailable

    loaded = load_model("")
    try:
        candidate = SegmentationPipeline(
            loaded,
            backend=backend,
            precision=precision,
            device=CUDA,
            engine_cache_dir=tmp_path,
            warm_up=True,
        )
    except BackendUnavailable as error:  # onnxruntime-gpu / TensorRT not installed there
        pytest.skip(str(error))
    # The engine was checked to compute in the precision asked for before it was built.
    assert candidate.backend.precision == precision
    reference = SegmentationPipeline(loaded, backend="torch", device=CUDA)
    agreement = compare_backends(reference, candidate, open_dataset("synthetic-live:4@640x480"))
    assert Tolerances().check(agreement) == [], agreement.summary()
    if backend == "tensorrt":  # built on the first pipeline, loaded from the cache now
        again = SegmentationPipeline(
            loaded,
            backend=backend,
            precision=precision,
            device=CUDA,
            engine_cache_dir=tmp_path,
            allow_build=False,
        )
        assert again.artifact.status == "loaded"


def test_auto_on_cuda_is_tensorrt_else_torch_compile():
    """The rule of issue #13 where the node runs on a GPU (resolution only: the builds are
    tested above)."""
    from segmentation_ros.runtime.backends import resolve_backend
    from segmentation_ros.runtime.tensorrt.status import tensorrt_status

    expected = "tensorrt" if tensorrt_status(CUDA) is None else "torch_compile"
    assert resolve_backend("auto", device=CUDA) == expected
