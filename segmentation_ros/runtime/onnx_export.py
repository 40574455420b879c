"""Export a network (everything up to its raw head outputs) to ONNX.

The dynamo exporter at opset 19 or later: our deformable convolution becomes the standard ONNX
`DeformConv` (opset 19) through the translation in ops/deform_conv.py, so ONNX Runtime runs it
without custom ops. Postprocess stays outside the graph: one postprocess serves every backend.
Output names are the field names of the model's output NamedTuple. A model that declares
`onnx_exporter = "torchscript"` (Mask R-CNN: torchvision's NMS has data-dependent shapes) goes
through the TorchScript-based exporter instead (RoIAlign -> ONNX RoiAlign, NMS ->
NonMaxSuppression).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch
from torch import nn

from segmentation_ros.runtime.base import BackendUnavailable, model_output_type

MIN_OPSET = 19  # DeformConv exists from opset 19; opset 18 gives an invalid graph


def custom_translations() -> dict:
    """ONNX translations for our custom ops that can appear inside a network."""
    from segmentation_ros.ops import deform_conv

    table_fn = getattr(deform_conv, "onnx_custom_translation_table", None)
    return dict(table_fn()) if table_fn is not None else {}


def export_onnx(
    model: nn.Module,
    path: str | Path,
    *,
    input_size: tuple[int, int],
    opset: int = MIN_OPSET,
    batch_size: int = 1,
) -> Path:
    """Write `model` as ONNX to `path` for inputs [batch_size, 3, H, W] and return the path.

    input_size: (H, W) of the network input. The graph is exported for that fixed size (the
    configs fix it; fixed shapes let ONNX Runtime and TensorRT fold the priors' shapes).
    """
    missing = [m for m in ("onnx", "onnxscript") if importlib.util.find_spec(m) is None]
    if missing:  # the dynamo exporter imports them on its first call
        raise BackendUnavailable(
            f"exporting to ONNX needs {' and '.join(missing)} (pip install onnx onnxscript); "
            "or give a prebuilt ONNX file"
        )
    if opset < MIN_OPSET:
        raise ValueError(f"opset {opset} < {MIN_OPSET}: DeformConv needs opset 19 or later")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = model.eval()
    output_type = model_output_type(model)
    parameter = next(model.parameters())
    example = torch.zeros(batch_size, 3, *input_size, device=parameter.device)
    if getattr(model, "onnx_exporter", "dynamo") == "torchscript":
        return _export_torchscript(model, example, path, output_type, opset)
    program = torch.onnx.export(
        model,
        (example,),
        dynamo=True,
        opset_version=opset,
        input_names=["images"],
        output_names=list(output_type._fields),
        custom_translation_table=custom_translations() or None,
        optimize=True,
        verbose=False,
    )
    program.save(str(path))
    return path


def _export_torchscript(model: nn.Module, example, path: Path, output_type, opset: int) -> Path:
    """The TorchScript-based exporter, for a model that declares `onnx_exporter =
    "torchscript"` (torchvision's detectors: their NMS has data-dependent shapes that
    torch.export refuses; torchvision's symbolics turn roi_align into ONNX RoiAlign and nms into
    NonMaxSuppression). `model.onnx_dynamic_outputs`: output name -> its data-dependent axis."""
    dynamic = {name: {axis: "detections"} for name, axis in model.onnx_dynamic_outputs.items()}
    with torch.no_grad():
        torch.onnx.export(
            model,
            (example,),
            str(path),
            dynamo=False,
            opset_version=opset,
            input_names=["images"],
            output_names=list(output_type._fields),
            dynamic_axes=dynamic,
        )
    return path
