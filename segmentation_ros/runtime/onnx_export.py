"""Export a network (everything up to its raw head outputs) to ONNX.

The dynamo exporter at opset 19 or later: our deformable convolution becomes the standard ONNX
`DeformConv` (opset 19) through the translation in ops/deform_conv.py, so ONNX Runtime runs it
without custom ops. Postprocess stays outside the graph: one postprocess serves every backend.
Output names are the field names of the model's output NamedTuple.
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
