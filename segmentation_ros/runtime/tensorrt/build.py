"""Build a serialized TensorRT engine from a network (torch-tensorrt 2.14, TensorRT 11.1).

Flow of `build_engine` (the package docstring says why each step is there):
  torch.export the network ([B, 3, H, W] float32 -> the model's NamedTuple; a symbolic batch
  dimension when `batch_sizes` is a range), for fp16 / bf16 inside PyTorch autocast
  -> int8 only: ModelOpt post-training quantization (Q/DQ nodes), exported in its export mode
  -> `graph_precision` checks that the graph computes in the precision asked for
  -> `to_plugin_ops` + `register_plugins`: our custom ops as TensorRT plugins
  -> `torch_tensorrt.dynamo.convert_exported_program_to_serialized_trt_engine` -> engine bytes.

Precision. TensorRT 11 builds strongly typed networks only (torch-tensorrt 2.14 always sets
NetworkDefinitionCreationFlag.STRONGLY_TYPED; `use_explicit_typing` was removed with its other
deprecated APIs): every layer runs in the dtype the graph gives it. And the serialized-engine
entry point builds its CompilationSettings from a fixed list of its own parameters, so the
autocast options (`enable_autocast`, `autocast_low_precision_type`, `autocast_excluded_ops`)
would be swallowed by its **kwargs and the engine would silently stay float32. So the
precision goes into the graph itself: the network is exported inside
`torch.autocast(device, dtype)` (convolutions and matmuls in fp16 / bf16, numerically
sensitive ops and our deformable convolution in float32, by PyTorch's autocast rules and the
op's own registration), the autocast region is inlined into explicit casts, and outputs are
cast back to float32 (the engine's outputs stay float32 whatever its precision). int8 comes
from ModelOpt's Q/DQ nodes. `graph_precision` reads the precision back off the graph, and
`build_engine` refuses an engine whose graph does not compute in the precision asked for.
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Callable, Iterable, Sequence
from typing import NamedTuple

import torch
from torch import Tensor, nn

from segmentation_ros.ops.deform_conv_tensorrt import custom_ops_in_graph, to_plugin_ops
from segmentation_ros.runtime.base import BackendUnavailable, model_output_type
from segmentation_ros.runtime.names import PRECISIONS
from segmentation_ros.runtime.tensorrt.plugins import register_plugins
from segmentation_ros.runtime.tensorrt.status import require_tensorrt

INPUT_NAME = "images"  # as the ONNX export
#: The precisions that come from PyTorch autocast at export.
AUTOCAST_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}
#: Ops whose output dtype says what precision the network computes in.
_COMPUTE_OPS = {"convolution", "conv2d", "mm", "addmm", "bmm", "linear", "matmul"}


# ---------------------------------------------------------------------------------------------
# Compile settings and arguments.


def _check_precision(precision: str) -> None:
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; expected one of {PRECISIONS}")


def _engine_settings(precision: str, *, workspace_bytes: int | None = None) -> dict:
    """The keyword arguments of the engine converter besides the inputs, the device and the
    binding names. The same for every precision: the precision is in the graph (module
    docstring); a new dict each call."""
    _check_precision(precision)
    settings = dict(
        # One engine for the whole graph: every op must convert (the serialized-engine API does
        # not partition; https://docs.pytorch.org/TensorRT/user_guide/runtime_performance/
        # serialized_engine.html), and a one-op block (a plugin) is still converted.
        require_full_compilation=True,
        min_block_size=1,
        immutable_weights=True,  # not refittable: refitting needs the same torch-tensorrt
    )
    if workspace_bytes is not None:
        settings["workspace_size"] = int(workspace_bytes)  # 0 / absent: TensorRT decides
    return settings


def _unaccepted_keywords(function: Callable, keywords: Iterable[str]) -> list[str]:
    """The keywords that are not named parameters of `function` (a `**kwargs` would swallow
    them silently: torch-tensorrt's converter ignores what it does not name)."""
    try:
        parameters = inspect.signature(function).parameters
    except (TypeError, ValueError):  # pragma: no cover - builtins without a signature
        return []
    named = {
        name
        for name, p in parameters.items()
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    }
    return sorted(set(keywords) - named)


def _batch_profile(batch_sizes: Sequence[int] | None) -> tuple[int, int, int]:
    """(min, opt, max) batch sizes: None -> (1, 1, 1), a fixed batch of 1."""
    if batch_sizes is None:
        return (1, 1, 1)
    sizes = tuple(batch_sizes) if isinstance(batch_sizes, Sequence) else ()
    if len(sizes) != 3 or not all(isinstance(s, int) and not isinstance(s, bool) for s in sizes):
        raise ValueError(f"batch_sizes must be (min, opt, max) ints or None, got {batch_sizes!r}")
    low, opt, high = sizes
    if not 1 <= low <= opt <= high:
        raise ValueError(f"batch_sizes must satisfy 1 <= min <= opt <= max, got {sizes}")
    return sizes


def _input_size(input_size: Sequence[int]) -> tuple[int, int]:
    size = tuple(input_size)
    if len(size) != 2 or not all(isinstance(s, int) and s > 0 for s in size):
        raise ValueError(f"input_size must be (H, W) positive ints, got {input_size!r}")
    return size


def _check_build_args(
    precision: str,
    calibration: Iterable[Tensor] | None,
    batch_sizes: Sequence[int] | None,
    input_size: Sequence[int],
    workspace_bytes: int | None,
) -> tuple[tuple[int, int], tuple[int, int, int]]:
    """Check `build_engine`'s arguments (no TensorRT needed); returns (H, W) and the profile."""
    _check_precision(precision)
    if precision == "int8" and calibration is None:
        raise ValueError(
            "precision 'int8' needs calibration: pass calibration=an iterable of preprocessed "
            "[B, 3, H, W] float32 tensors (a few hundred representative images through the "
            "model's preprocess), or build with precision 'fp16'"
        )
    if precision != "int8" and calibration is not None:
        raise ValueError(f"calibration is only used with precision 'int8', not {precision!r}")
    if workspace_bytes is not None and (
        not isinstance(workspace_bytes, int) or workspace_bytes < 0
    ):
        raise ValueError(f"workspace_bytes must be a non-negative int, got {workspace_bytes!r}")
    return _input_size(input_size), _batch_profile(batch_sizes)


def _input_spec(input_size: tuple[int, int], profile: tuple[int, int, int]) -> dict:
    """Keyword arguments of torch_tensorrt.Input for the images: a fixed shape, or a
    min / opt / max range over the batch ("Dynamic shapes with Torch-TensorRT")."""
    low, opt, high = profile
    shape = (3, *input_size)
    if low == high:
        return {"shape": (low, *shape), "dtype": torch.float32}
    return {
        "min_shape": (low, *shape),
        "opt_shape": (opt, *shape),
        "max_shape": (high, *shape),
        "dtype": torch.float32,
    }


# ---------------------------------------------------------------------------------------------
# Graphs: export in the engine's precision, read the precision back.


class _Autocast(nn.Module):
    """`model` run inside PyTorch autocast at `dtype`, its outputs cast back to float32: what is
    exported for an fp16 / bf16 engine."""

    def __init__(self, model: nn.Module, dtype: torch.dtype):
        super().__init__()
        self.model, self.dtype = model, dtype

    def forward(self, images: Tensor) -> NamedTuple:
        with torch.autocast(images.device.type, dtype=self.dtype):
            outputs = self.model(images)
        return type(outputs)(*(t.float() for t in outputs))


def _export(
    model: nn.Module,
    input_size: tuple[int, int],
    profile: tuple[int, int, int],
    device: str | torch.device,
    precision: str = "fp32",
) -> torch.export.ExportedProgram:
    """torch.export `model` for [B, 3, H, W] float32 inputs on `device`, B fixed or in the
    profile's range; for fp16 / bf16 inside autocast, inlined into explicit casts (the graph
    then carries the precision; Torch-TensorRT's own passes would otherwise meet the autocast
    region as a higher-order op). A dynamic batch is traced with an example batch of at least
    2 (torch.export specialises sizes 0 and 1)."""
    low, opt, high = profile
    dynamic_shapes = None
    batch = low
    if high > low:
        batch = min(max(opt, 2), high)
        dynamic_shapes = ({0: torch.export.Dim("batch", min=low, max=high)},)
    example = torch.zeros(batch, 3, *input_size, device=device)
    dtype = AUTOCAST_DTYPES.get(precision)
    network = model if dtype is None else _Autocast(model, dtype)
    exported = torch.export.export(network, (example,), dynamic_shapes=dynamic_shapes, strict=False)
    if dtype is not None:
        exported = exported.run_decompositions({})  # empty table: inlines autocast only
    return exported


def graph_precision(exported: torch.export.ExportedProgram | torch.fx.GraphModule) -> str:
    """The precision an exported network computes in, read off its graph: "int8" when it holds
    quantize nodes (ModelOpt's `tensorrt::quantize_op`), else the lowest float dtype its
    convolutions / matmuls produce ("fp16", "bf16" or "fp32"). A strongly typed TensorRT
    network runs every layer in its graph dtype, so this is the engine's precision too."""
    graph_module = getattr(exported, "graph_module", exported)
    dtypes = set()
    for module in graph_module.modules():
        if not isinstance(module, torch.fx.GraphModule):
            continue
        for node in module.graph.nodes:
            target = node.target
            if node.op != "call_function" or not isinstance(target, torch._ops.OpOverload):
                continue
            if target.namespace == "tensorrt" and "quantize" in target._opname:
                return "int8"
            value = node.meta.get("val")
            if target._opname in _COMPUTE_OPS and isinstance(value, Tensor):
                dtypes.add(value.dtype)
    for name, dtype in AUTOCAST_DTYPES.items():
        if dtype in dtypes:
            return name
    return "fp32"


def _calibration_loop(
    calibration: Iterable[Tensor], *, input_size: tuple[int, int], device: str | torch.device
) -> Callable[[nn.Module], None]:
    """ModelOpt's `forward_loop`: runs the model once on every calibration batch (moved to
    `device`, float32) without gradients. ValueError for a batch that is not [B, 3, H, W] of the
    engine's input size, or when there is no batch at all."""

    def forward_loop(model: nn.Module) -> None:
        count = 0
        with torch.no_grad():
            for index, batch in enumerate(calibration):
                if not isinstance(batch, Tensor) or tuple(batch.shape[1:]) != (3, *input_size):
                    shape = tuple(batch.shape) if isinstance(batch, Tensor) else type(batch)
                    raise ValueError(
                        f"calibration batch {index} must be a [B, 3, {input_size[0]}, "
                        f"{input_size[1]}] tensor (preprocessed images), got {shape}"
                    )
                if batch.shape[0] == 0:
                    continue
                model(batch.to(device=device, dtype=torch.float32))
                count += 1
        if count == 0:
            raise ValueError("calibration gave no images; int8 needs representative images")

    return forward_loop


def _quantize_int8(
    model: nn.Module, calibration: Iterable[Tensor], input_size: tuple[int, int], device
) -> Callable[[], object]:
    """ModelOpt post-training int8 quantization of `model` in place (Q/DQ wrappers on eligible
    layers, scales from the calibration forward loop,
    https://docs.pytorch.org/TensorRT/user_guide/shapes_precision/quantization.html); returns
    the context to export it in (ModelOpt's export mode traces its Q/DQ ops)."""
    try:
        import modelopt.torch.quantization as mtq
        from modelopt.torch.quantization.utils import export_torch_mode
    except ImportError as error:
        raise BackendUnavailable(
            "precision 'int8' needs NVIDIA ModelOpt: pip install nvidia-modelopt"
        ) from error
    forward_loop = _calibration_loop(calibration, input_size=input_size, device=device)
    mtq.quantize(model, mtq.INT8_DEFAULT_CFG, forward_loop=forward_loop)
    return export_torch_mode


# ---------------------------------------------------------------------------------------------
# Build.


def build_engine(
    model: nn.Module,
    *,
    input_size: tuple[int, int],
    precision: str = "fp16",
    device: str | torch.device = "cuda",
    batch_sizes: tuple[int, int, int] | None = None,
    calibration: Iterable[Tensor] | None = None,
    workspace_bytes: int | None = None,
) -> bytes:
    """Build a serialized TensorRT engine of `model` (its forward up to the raw outputs).

    Args:
        model: a network whose forward takes [B, 3, H, W] float32 and returns a NamedTuple of
            tensors. Not modified: a copy is moved to `device` (and quantized for int8).
        input_size: (H, W) of the network input, fixed in the engine.
        precision: one of PRECISIONS; it is in the exported graph (module docstring) and
            checked there before TensorRT builds anything.
        device: the CUDA device to build for (engines are specific to a GPU model and TensorRT
            version).
        batch_sizes: None for a fixed batch of 1, or (min, opt, max) for a dynamic batch tuned
            for opt.
        calibration: int8 only, required there: an iterable of preprocessed [B, 3, H, W]
            float32 tensors (any device) that ModelOpt runs the model on to choose the scales.
        workspace_bytes: the most scratch memory TensorRT may use while building and running;
            None lets TensorRT decide.

    Returns:
        The engine as bytes: one input "images" [B, 3, H, W] float32, one float32 output per
        field of the model's output NamedTuple, named after the fields; run it with
        `TensorRTBackend`. Its custom op plugins are JIT plugins: the engine runs only in a
        Python process that registered them (TensorRTBackend does).

    Raises:
        ValueError for bad arguments, BackendUnavailable for missing software, RuntimeError
        when the graph does not compute in `precision` or TensorRT returns no engine.
    """
    size, profile = _check_build_args(
        precision, calibration, batch_sizes, input_size, workspace_bytes
    )
    require_tensorrt(device)
    import torch_tensorrt

    output_type = model_output_type(model)
    model = copy.deepcopy(model).eval().to(device)
    with torch.cuda.device(torch.device(device)):
        if precision == "int8":
            export_mode = _quantize_int8(model, calibration, size, device)
            with torch.no_grad(), export_mode():
                exported = _export(model, size, profile, device)
        else:
            with torch.no_grad():
                exported = _export(model, size, profile, device, precision)
        found = graph_precision(exported)
        if found != precision:
            raise RuntimeError(
                f"precision {precision} did not reach the network graph (it computes in "
                f"{found}); refusing to build an engine that would not be {precision}"
            )
        to_plugin_ops(exported)
        register_plugins(custom_ops_in_graph(exported))

        convert = torch_tensorrt.dynamo.convert_exported_program_to_serialized_trt_engine
        keywords = dict(
            arg_inputs=[torch_tensorrt.Input(**_input_spec(size, profile))],
            device=torch.device(device),
            arg_input_binding_names=(INPUT_NAME,),
            # A pytree of names shaped like the return value: the NamedTuple itself.
            output_binding_names=output_type(*output_type._fields),
            **_engine_settings(precision, workspace_bytes=workspace_bytes),
        )
        unaccepted = _unaccepted_keywords(convert, keywords)
        if unaccepted:
            raise BackendUnavailable(
                f"torch_tensorrt {torch_tensorrt.__version__} would ignore {unaccepted} "
                "(not parameters of convert_exported_program_to_serialized_trt_engine); this "
                "code is written against torch_tensorrt 2.14"
            )
        engine = convert(exported, **keywords)
    if not engine:
        raise RuntimeError("TensorRT returned no engine; rerun with debug logging for the cause")
    return bytes(engine)
