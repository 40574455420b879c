"""TensorRT plugins for our custom ops inside network graphs (see the package docstring): which
ops get one, and their registration through Torch-TensorRT's automatic plugin generation.
Needs TensorRT only when registering."""

from __future__ import annotations

from collections.abc import Iterable

import torch

# The adapter op the plugin is generated from must be defined.
from segmentation_ros.ops import deform_conv_tensorrt  # noqa: F401
from segmentation_ros.runtime.tensorrt.status import require_plugins, require_tensorrt

# Our ops that can appear in a network graph -> the op the TensorRT plugin is generated from.
NETWORK_PLUGIN_OPS = {
    "segros::modulated_deform_conv2d": "segros::modulated_deform_conv2d_trt",
    "segros::modulated_deform_conv2d_trt": "segros::modulated_deform_conv2d_trt",
}
# Our ops that belong to the postprocess, which runs outside the engine.
POSTPROCESS_OPS = ("segros::fast_nms", "segros::assemble_masks", "segros::pcv_backproject")


def _plugin_overloads(plugin_ops: Iterable[str]) -> set:
    """The torch OpOverloads of plugin op names ("ns::name" -> torch.ops.ns.name.default)."""
    overloads = set()
    for name in plugin_ops:
        namespace, op = name.split("::")
        overloads.add(getattr(getattr(torch.ops, namespace), op).default)
    return overloads


def _plugin_targets(op_names: Iterable[str]) -> list[str]:
    """The plugin ops to register for the custom ops found in a network graph (sorted, unique).
    ValueError for a postprocess op (it runs outside the engine) or an op with no plugin."""
    targets = set()
    for name in op_names:
        if name in NETWORK_PLUGIN_OPS:
            targets.add(NETWORK_PLUGIN_OPS[name])
        elif name in POSTPROCESS_OPS:
            raise ValueError(
                f"{name} is a postprocess op and runs outside the engine; export only the "
                "network (up to its raw head outputs)"
            )
        else:
            raise ValueError(
                f"no TensorRT plugin for {name!r}; ops with plugins: "
                f"{sorted(set(NETWORK_PLUGIN_OPS.values()))}"
            )
    return sorted(targets)


def _qdp_registered(name: str) -> bool:
    """Whether TensorRT's plugin registry has a Quick Deployable Plugin `name`."""
    try:  # the registry Torch-TensorRT's own converter generator looks up
        from tensorrt.plugin._lib import QDP_REGISTRY
    except ImportError:  # pragma: no cover - layout of other TensorRT releases
        import tensorrt.plugin as trtp

        namespace, op = name.split("::")
        return hasattr(getattr(trtp.op, namespace, None), op)
    return name in QDP_REGISTRY


def register_plugins(op_names: Iterable[str]) -> list[str]:
    """Register the TensorRT plugin and the Torch-TensorRT converter of each of our custom ops
    in `op_names` (as found by `custom_ops_in_graph`); returns the plugin op names. Idempotent:
    what is already registered is left alone. Needs TensorRT.

    Mechanism (package docstring): Torch-TensorRT's automatic plugin generation for TensorRT's
    Quick Deployable Plugins, `torch_tensorrt.dynamo.conversion.plugins.generate_plugin(name)`
    (shape descriptor from the op's fake kernel, JIT implementation calling the op, whose CUDA
    kernel is our Triton kernel) then `generate_plugin_converter(name,
    supports_dynamic_shapes=True)` (the two steps of `plugins.custom_op`, called separately so
    that each is skipped when already registered). Chosen because it needs no hand-written
    plugin or converter and runs our Triton kernel inside the engine (no graph break); see
    https://docs.pytorch.org/TensorRT/tutorials/_rendered_examples/dynamo/auto_generate_plugins.html
    """
    targets = _plugin_targets(op_names)
    require_tensorrt()
    if targets:  # torch_tensorrt turns plugin generation off for some TensorRT releases
        require_plugins()
    from torch_tensorrt.dynamo.conversion import plugins
    from torch_tensorrt.dynamo.conversion._ConverterRegistry import DYNAMO_CONVERTERS

    for name in targets:
        if not _qdp_registered(name):
            plugins.generate_plugin(name)
        if next(iter(_plugin_overloads([name]))) not in DYNAMO_CONVERTERS:
            # supports_dynamic_shapes: the descriptor's shapes are expressions of the input
            # shapes, so a dynamic batch works; the output size is not data dependent, so no
            # output allocator (requires_output_allocator keeps its default, False).
            plugins.generate_plugin_converter(name, supports_dynamic_shapes=True)
    return targets


def register_available_plugins() -> list[str]:
    """Register every network plugin when torch_tensorrt can generate plugins here, else none:
    what `TensorRTBackend` does before deserialising (JIT plugins must be registered in the
    process first; an engine without plugin layers loads either way)."""
    from torch_tensorrt._features import ENABLED_FEATURES

    if not ENABLED_FEATURES.qdp_plugin:
        return []
    return register_plugins(sorted(NETWORK_PLUGIN_OPS))
