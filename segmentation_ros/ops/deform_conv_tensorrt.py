"""TensorRT pieces of `segros::modulated_deform_conv2d` (beside the op, as its ONNX translation
is in deform_conv.py).

Torch-TensorRT's automatic plugin generation (`generate_plugin` / `generate_plugin_converter`,
TensorRT >= 10.7 Quick Deployable Plugins) maps only Tensor / int / float / bool / str
arguments, passes tensors first and attributes positionally, and infers output shapes by running
the fake kernel on placeholder tensors whose dimensions are all 5. Our op has `Tensor? bias` and
`int[]` stride / padding / dilation, and a fake kernel that checks shapes, so the plugin is
generated from an adapter with a flat signature, `segros::modulated_deform_conv2d_trt`, which
calls the op (its Triton kernel on CUDA); `to_plugin_ops` rewrites exported graphs to it.
`runtime.tensorrt` registers the plugin and builds engines. Pure PyTorch: tested on the CPU.
"""

from __future__ import annotations

import torch
from torch import Tensor

# The op the adapter calls must be defined.
from segmentation_ros.ops import deform_conv  # noqa: F401


def custom_ops_in_graph(exported: torch.export.ExportedProgram | torch.fx.GraphModule) -> set[str]:
    """Names ("segros::name") of our custom ops called in a graph, subgraphs included."""
    graph_module = getattr(exported, "graph_module", exported)
    names = set()
    for module in graph_module.modules():
        if not isinstance(module, torch.fx.GraphModule):
            continue
        for node in module.graph.nodes:
            target = node.target
            if node.op == "call_function" and isinstance(target, torch._ops.OpOverload):
                if target.namespace == "segros":
                    names.add(target._schema.name)
    return names


@torch.library.custom_op("segros::modulated_deform_conv2d_trt", mutates_args=())
def _modulated_deform_conv2d_trt(
    input: Tensor,
    offset: Tensor,
    mask: Tensor,
    weight: Tensor,
    bias: Tensor,
    stride_h: int = 1,
    stride_w: int = 1,
    pad_h: int = 0,
    pad_w: int = 0,
    dilation_h: int = 1,
    dilation_w: int = 1,
    groups: int = 1,
    deformable_groups: int = 1,
) -> Tensor:
    """`segros::modulated_deform_conv2d` with a flat signature Torch-TensorRT's plugin
    generator can map (see the module docstring): tensors first, bias always present, one int
    per attribute. Calls our op, so it runs its kernels (Triton on CUDA)."""
    return torch.ops.segros.modulated_deform_conv2d(
        input,
        offset,
        mask,
        weight,
        bias,
        [stride_h, stride_w],
        [pad_h, pad_w],
        [dilation_h, dilation_w],
        groups,
        deformable_groups,
    )


@_modulated_deform_conv2d_trt.register_fake
def _(input, offset, mask, weight, bias, *attributes):
    # No consistency checks: generate_plugin runs this on placeholder tensors whose dimensions
    # are all 5. The real op checked the shapes when the model was exported.
    torch._check(
        input.dim() == 4 and offset.dim() == 4 and weight.dim() == 4,
        lambda: "input, offset and weight must be 4-D",
    )
    return input.new_empty(input.shape[0], weight.shape[0], offset.shape[2], offset.shape[3])


def _bound_arguments(schema, node: torch.fx.Node) -> dict:
    """{argument name: value} of a call_function node, defaults filled in from the schema."""
    values = {}
    for index, argument in enumerate(schema.arguments):
        if index < len(node.args):
            values[argument.name] = node.args[index]
        elif argument.name in node.kwargs:
            values[argument.name] = node.kwargs[argument.name]
        else:
            assert argument.has_default_value(), argument.name
            values[argument.name] = argument.default_value
    return values


def to_plugin_ops(exported: torch.export.ExportedProgram) -> torch.export.ExportedProgram:
    """Rewrite, in place, each `segros::modulated_deform_conv2d` call of an exported graph to
    `segros::modulated_deform_conv2d_trt` (a missing bias becomes zeros of the weight's dtype
    and device) and return the program. The program computes the same outputs; its other nodes
    are untouched. All arguments are passed positionally, as the generated converter reads them.
    """
    graph_module = exported.graph_module
    graph = graph_module.graph
    source = torch.ops.segros.modulated_deform_conv2d.default
    target = torch.ops.segros.modulated_deform_conv2d_trt.default
    changed = False
    for node in list(graph.nodes):
        if node.op != "call_function" or node.target is not source:
            continue
        args = _bound_arguments(source._schema, node)
        weight, bias = args["weight"], args["bias"]
        with graph.inserting_before(node):
            if bias is None:
                weight_value = weight.meta.get("val")
                out_channels = int(weight_value.shape[0])
                bias = graph.call_function(
                    torch.ops.aten.new_zeros.default, (weight, [out_channels])
                )
                bias.meta["val"] = weight_value.new_zeros(out_channels)
            (stride_h, stride_w), (pad_h, pad_w), (dilation_h, dilation_w) = (
                args["stride"],
                args["padding"],
                args["dilation"],
            )
            flat = graph.call_function(
                target,
                (
                    args["input"],
                    args["offset"],
                    args["mask"],
                    weight,
                    bias,
                    int(stride_h),
                    int(stride_w),
                    int(pad_h),
                    int(pad_w),
                    int(dilation_h),
                    int(dilation_w),
                    int(args["groups"]),
                    int(args["deformable_groups"]),
                ),
            )
        flat.meta.update(node.meta)
        node.replace_all_uses_with(flat)
        graph.erase_node(node)
        changed = True
    if changed:
        graph.lint()
        graph_module.recompile()
    return exported
