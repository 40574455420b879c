"""The TensorRT path without TensorRT: status messages, settings, argument and input checks,
graph op discovery and the rewrite to plugin ops run for real on the CPU; the entry points that
need TensorRT raise BackendUnavailable before importing it. Building and running engines is
tested on a GPU machine with TensorRT (the lead's GPU test file)."""

import ast
import importlib.util
import inspect

import pytest
import torch
from torch import nn
from torch._subclasses.fake_tensor import FakeTensorMode

from segmentation_ros.models import YolactOutputs, build_model
from segmentation_ros.ops import deform_conv_tensorrt as dcn_trt
from segmentation_ros.ops.deform_conv import ModulatedDeformConv2d
from segmentation_ros.runtime.base import BackendUnavailable
from segmentation_ros.runtime.tensorrt import build, plugins, run, status

DCN = "segros::modulated_deform_conv2d"
DCN_TRT = "segros::modulated_deform_conv2d_trt"


# --- status ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "version,expected",
    [("10.7.0", (10, 7, 0)), ("10.13.3.9.post1", (10, 13, 3, 9)), ("2.14.0+cu128", (2, 14, 0))]
    + [("2.14.0a0", (2, 14, 0)), ("unknown", None), (None, None)],
)
def test_version_tuple(version, expected):
    assert status._version_tuple(version) == expected


def test_status_message_none_when_everything_is_there():
    message = status._status_message(
        "11.1.0", "2.14.0+cu130", True, device="cuda:0", device_count=1, torch_version="2.14.1"
    )
    assert message is None
    assert status._status_message("11.3.0", "2.15.1", True) is None


@pytest.mark.parametrize(
    "facts,present,absent",
    [
        (  # this machine
            dict(trt_version=None, torch_trt_version=None, cuda_available=False),
            [
                "tensorrt is not installed (>= 11.1 needed",
                "torch_tensorrt is not installed (>= 2.14 needed",
                "no CUDA device",
                "pip install",
                "NVIDIA GPU",
                "torch or onnxruntime backend",
            ],
            [],
        ),
        (
            dict(trt_version="10.6.1", torch_trt_version="2.14.0", cuda_available=True),
            ["tensorrt 10.6.1 is too old (>= 11.1 needed)", "pip install"],
            ["torch_tensorrt", "CUDA device", "NVIDIA GPU"],
        ),
        (
            dict(trt_version="11.1.0", torch_trt_version="2.13.0", cuda_available=True),
            ["torch_tensorrt 2.13.0 is too old (>= 2.14 needed), matching torch 2.14"],
            ["tensorrt 11.1.0", "CUDA device"],
        ),
        (
            dict(trt_version="11.1.0", torch_trt_version="2.14.0", cuda_available=False),
            ["no CUDA device (torch.cuda.is_available() is False)", "NVIDIA GPU"],
            ["is not installed", "too old", "pip install"],
        ),
        (  # torch-tensorrt 2.14 (which requires TensorRT 11.1) on the GPU machine's torch 2.11
            dict(
                trt_version="11.1.0",
                torch_trt_version="2.14.0",
                cuda_available=True,
                torch_version="2.11.0+cu130",
            ),
            ["torch_tensorrt 2.14.0 is built for torch 2.14, this torch is 2.11.0+cu130"],
            ["is not installed", "too old", "CUDA device"],
        ),
        (  # a TensorRT newer than torch-tensorrt 2.14's wheel allows (>= 11.1, < 11.2)
            dict(trt_version="11.2.0", torch_trt_version="2.14.0", cuda_available=True),
            ["torch_tensorrt 2.14.0 needs tensorrt >= 11.1, < 11.2, found 11.2.0"],
            ["too old", "CUDA device"],
        ),
        (  # the release the old code accepted (MIN_TENSORRT was 10.7)
            dict(trt_version="10.7.0", torch_trt_version="2.14.0", cuda_available=True),
            ["tensorrt 10.7.0 is too old (>= 11.1 needed)"],
            [],
        ),
        (
            dict(trt_version="garbled", torch_trt_version="2.14.0", cuda_available=True),
            ["tensorrt version 'garbled' could not be read (>= 11.1 needed)"],
            [],
        ),
    ],
    ids=[
        "nothing",
        "old-tensorrt",
        "old-torch-tensorrt",
        "no-cuda",
        "torch-2.11",
        "new-tensorrt",
        "tensorrt-10.7",
        "unreadable-version",
    ],
)
def test_status_message_names_what_is_missing(facts, present, absent):
    message = status._status_message(**facts)
    assert message.startswith("backend tensorrt is unavailable: ")
    for text in present:
        assert text in message
    for text in absent:
        assert text not in message


def test_status_message_devices_and_import_errors():
    message = status._status_message("11.1.0", "2.14.0", True, device="cpu")
    assert "device 'cpu' is not a CUDA device" in message
    message = status._status_message("11.1.0", "2.14.0", True, device="cuda:1", device_count=1)
    assert "cuda:1 requested but 1 CUDA device(s) found" in message
    assert status._status_message("11.1.0", "2.14.0", True, device="cuda:0", device_count=1) is None
    message = status._status_message(
        None,
        None,
        True,
        import_errors={"tensorrt": "OSError: libnvinfer.so.11: cannot open shared object file"},
    )
    assert "tensorrt failed to import (OSError: libnvinfer.so.11" in message
    assert "torch_tensorrt is not installed" in message


def test_plugins_off_is_backend_unavailable_with_the_reason():
    """torch-tensorrt turns Quick Deployable Plugins off for some TensorRT releases (its
    _features.py); then its generators raise NotImplementedError: we say why instead."""
    assert status._qdp_message(True, "11.1.0") is None
    message = status._qdp_message(False, "10.14.1")
    assert "Quick Deployable Plugins" in message and "tensorrt 10.14.1" in message
    assert "deformable convolution" in message


def test_status_on_this_machine_matches_what_is_installed():
    message = status.tensorrt_status()
    missing = [
        name for name in ("tensorrt", "torch_tensorrt") if not importlib.util.find_spec(name)
    ]
    for name in missing:
        assert f"{name} is not installed" in message
    if not torch.cuda.is_available():
        assert "no CUDA device" in message
    if message is None:
        status.require_tensorrt()
    else:
        with pytest.raises(BackendUnavailable) as raised:
            status.require_tensorrt()
        assert str(raised.value) == message

    versions = status.tensorrt_versions()
    assert set(versions) == {"tensorrt", "torch_tensorrt", "cuda"}
    assert versions["cuda"] == torch.version.cuda
    for name in missing:
        assert versions[name] is None


@pytest.fixture
def without_tensorrt(monkeypatch):
    """tensorrt and torch_tensorrt absent, whatever this machine has."""
    monkeypatch.setattr(status, "_import_version", lambda name: (None, None))


def test_entry_points_raise_backend_unavailable(without_tensorrt):
    model = _Tiny(bias=True)
    with pytest.raises(BackendUnavailable, match="tensorrt is not installed"):
        status.require_tensorrt()
    with pytest.raises(BackendUnavailable, match="torch_tensorrt is not installed"):
        build.build_engine(model, input_size=(8, 8), precision="fp16", device="cuda")
    with pytest.raises(BackendUnavailable, match="tensorrt is not installed"):
        run.TensorRTBackend(b"not an engine", YolactOutputs, device="cuda")
    with pytest.raises(BackendUnavailable, match="tensorrt is not installed"):
        plugins.register_plugins([DCN])
    assert status.tensorrt_versions()["tensorrt"] is None


@pytest.mark.parametrize("module", [status, plugins, build, run], ids=lambda m: m.__name__)
def test_module_imports_no_tensorrt_at_import(module):
    """No top-level import of tensorrt, torch_tensorrt or modelopt (only inside functions)."""
    tree = ast.parse(inspect.getsource(module))
    top_level = [
        node
        for statement in tree.body
        if not isinstance(statement, ast.FunctionDef | ast.ClassDef)
        for node in ast.walk(statement)
        if isinstance(node, ast.Import | ast.ImportFrom)
    ]
    imported = {
        alias.name for node in top_level if isinstance(node, ast.Import) for alias in node.names
    }
    imported |= {node.module for node in top_level if isinstance(node, ast.ImportFrom)}
    assert "torch" in imported  # the walk sees the imports
    assert not {
        m for m in imported if m.split(".")[0] in ("tensorrt", "torch_tensorrt", "modelopt")
    }


# --- settings and arguments ----------------------------------------------------------------


def test_engine_settings_carry_no_precision_options():
    """The converter drops autocast options (it builds its settings from its own parameters)
    and torch-tensorrt 2.14 has no use_explicit_typing: the precision is in the graph."""
    for precision in ("fp32", "fp16", "bf16", "int8"):
        settings = build._engine_settings(precision)
        assert not {k for k in settings if "autocast" in k or "typing" in k or "precision" in k}
    build._engine_settings("fp32")["min_block_size"] = 7  # a new dict each call
    assert build._engine_settings("fp32")["min_block_size"] == 1
    with pytest.raises(ValueError, match="unknown precision 'fp8'.*'fp32', 'fp16', 'bf16', 'int8'"):
        build._engine_settings("fp8")
    assert build.PRECISIONS == ("fp32", "fp16", "bf16", "int8")


def test_engine_settings():
    settings = build._engine_settings("fp16", workspace_bytes=1 << 30)
    assert settings["workspace_size"] == 1 << 30
    assert settings["require_full_compilation"] and settings["min_block_size"] == 1
    assert settings["immutable_weights"]
    assert "workspace_size" not in build._engine_settings("fp32")


def test_batch_profile_and_input_spec():
    assert build._batch_profile(None) == (1, 1, 1)
    assert build._batch_profile((1, 4, 8)) == (1, 4, 8)
    assert build._input_spec((64, 96), (1, 1, 1)) == {
        "shape": (1, 3, 64, 96),
        "dtype": torch.float32,
    }
    assert build._input_spec((64, 96), (2, 2, 2))["shape"] == (2, 3, 64, 96)
    assert build._input_spec((64, 96), (1, 4, 8)) == {
        "min_shape": (1, 3, 64, 96),
        "opt_shape": (4, 3, 64, 96),
        "max_shape": (8, 3, 64, 96),
        "dtype": torch.float32,
    }


@pytest.mark.parametrize("batch_sizes", [(0, 1, 2), (2, 1, 4), (1, 4, 2), (1, 2), (1.0, 2, 3), 4])
def test_batch_profile_rejects(batch_sizes):
    with pytest.raises(ValueError, match="batch_sizes"):
        build._batch_profile(batch_sizes)


def test_build_arguments_are_checked_first():
    check = build._check_build_args
    assert check("fp16", None, (1, 2, 4), (64, 64), None) == ((64, 64), (1, 2, 4))
    assert check("int8", [torch.zeros(1, 3, 64, 64)], None, [64, 64], 0) == ((64, 64), (1, 1, 1))
    with pytest.raises(ValueError, match="'int8' needs calibration: pass calibration="):
        check("int8", None, None, (64, 64), None)
    with pytest.raises(ValueError, match="calibration is only used with precision 'int8'"):
        check("fp16", [torch.zeros(1, 3, 64, 64)], None, (64, 64), None)
    with pytest.raises(ValueError, match="input_size"):
        check("fp16", None, None, (64, 0), None)
    with pytest.raises(ValueError, match="input_size"):
        check("fp16", None, None, (64, 64, 3), None)
    with pytest.raises(ValueError, match="workspace_bytes"):
        check("fp16", None, None, (64, 64), -1)
    with pytest.raises(ValueError, match="unknown precision"):
        check("int4", None, None, (64, 64), None)
    # build_engine checks them before it needs TensorRT, so the error is the user's on any machine
    with pytest.raises(ValueError, match="'int8' needs calibration"):
        build.build_engine(_Tiny(bias=True), input_size=(8, 8), precision="int8")


def test_unaccepted_keywords():
    """What a **kwargs would swallow: keywords that are not named parameters."""

    def old(exported_program, inputs=None, *, arg_inputs=None, **kwargs): ...

    def new(exported_program, *, arg_input_binding_names=None, output_binding_names=None): ...

    names = ["arg_input_binding_names", "output_binding_names"]
    assert build._unaccepted_keywords(old, names) == names
    assert build._unaccepted_keywords(new, names) == []
    assert build._unaccepted_keywords(old, ["arg_inputs", "enable_autocast"]) == ["enable_autocast"]


# --- graphs --------------------------------------------------------------------------------


class _Tiny(nn.Module):
    """conv -> DCN (stride 2, offsets that matter) -> ReLU, returning a NamedTuple."""

    output_type = YolactOutputs

    def __init__(self, bias: bool):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.dcn = ModulatedDeformConv2d(4, 6, 3, stride=2, padding=1, bias=bias)
        nn.init.normal_(self.dcn.conv_offset_mask.weight, std=0.1)

    def forward(self, x):
        y = self.dcn(self.conv(x)).relu()
        return YolactOutputs(y, y.mean(1), y.amax(1), y.permute(0, 2, 3, 1))


@pytest.fixture(scope="module")
def yolact_plus():
    torch.manual_seed(0)
    model = build_model("yolact_plus_resnet50", input_size=(64, 64)).eval()
    for module in model.modules():
        if hasattr(module, "conv_offset_mask"):
            nn.init.normal_(module.conv_offset_mask.weight, std=0.01)
    with torch.no_grad():
        exported = build._export(model, (64, 64), (1, 1, 1), "cpu")
    return model, exported


def test_custom_ops_in_yolact_plus_graph_and_rewrite(yolact_plus):
    model, exported = yolact_plus
    assert dcn_trt.custom_ops_in_graph(exported) == {DCN}
    assert dcn_trt.to_plugin_ops(exported) is exported
    assert dcn_trt.custom_ops_in_graph(exported) == {DCN_TRT}
    assert plugins._plugin_targets(dcn_trt.custom_ops_in_graph(exported)) == [DCN_TRT]
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        expected, got = model(x), exported.module()(x)
    assert type(got) is YolactOutputs
    for field, a, b in zip(YolactOutputs._fields, expected, got):
        torch.testing.assert_close(b, a, rtol=0, atol=1e-5, msg=field)


@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_reduced_precision_is_in_the_exported_graph(precision):
    """The engine's precision travels in the graph (TensorRT 11 networks are strongly typed and
    the serialized-engine converter drops autocast options): convolutions in the low dtype, our
    deformable convolution in float32 (its autocast registration), outputs float32, and the
    plugin rewrite still finds the op. Read off the graph by node dtypes, not by our flags."""
    torch.manual_seed(0)
    model = _Tiny(bias=True).eval()
    with torch.no_grad():
        exported = build._export(model, (16, 16), (1, 1, 1), "cpu", precision)
        reference = build._export(model, (16, 16), (1, 1, 1), "cpu")
    dtype = build.AUTOCAST_DTYPES[precision]
    nodes = [n for n in exported.graph.nodes if n.op == "call_function"]
    convs = [n for n in nodes if getattr(n.target, "_opname", "") in ("conv2d", "convolution")]
    assert convs and {n.meta["val"].dtype for n in convs} == {dtype}
    (dcn,) = [n for n in nodes if n.target is torch.ops.segros.modulated_deform_conv2d.default]
    assert dcn.meta["val"].dtype == torch.float32
    assert not [n for n in nodes if "autocast" in str(n.target)]  # inlined into casts
    assert build.graph_precision(exported) == precision
    assert build.graph_precision(reference) == "fp32"
    dcn_trt.to_plugin_ops(exported)
    assert dcn_trt.custom_ops_in_graph(exported) == {DCN_TRT}
    x = torch.randn(1, 3, 16, 16)
    with torch.no_grad():
        expected, got = model(x), exported.module()(x)
    for a, b in zip(expected, got):
        assert b.dtype == torch.float32
        assert (a - b).abs().max() <= 0.02 * a.abs().max() + 0.02  # a few low-precision ulps


def test_graph_precision_sees_quantize_nodes():
    """ModelOpt's exported Q/DQ op is `tensorrt::quantize_op` (modelopt's tensor_quant.py)."""
    lib = torch.library.Library("tensorrt", "FRAGMENT")  # noqa: F841 - kept alive below
    if not hasattr(torch.ops.tensorrt, "quantize_op"):
        lib.define(
            "quantize_op(Tensor x, Tensor amax, int bits, int exp, bool u, bool n) -> Tensor"
        )
        lib.impl("quantize_op", lambda x, *_: x.clone(), "CompositeExplicitAutograd")
    graph = torch.fx.Graph()
    x = graph.placeholder("x")
    q = graph.call_function(torch.ops.tensorrt.quantize_op.default, (x, x, 8, 0, False, False))
    graph.output(q)
    assert build.graph_precision(torch.fx.GraphModule(torch.nn.Module(), graph)) == "int8"


def test_no_custom_ops_in_mobilenet_graph_with_dynamic_batch():
    model = build_model("yolact_mobilenetv3", input_size=(64, 64)).eval()
    with torch.no_grad():
        exported = build._export(model, (64, 64), (1, 2, 4), "cpu")
    assert dcn_trt.custom_ops_in_graph(exported) == set()
    assert plugins._plugin_targets(dcn_trt.custom_ops_in_graph(exported)) == []
    (images,) = [n for n in exported.graph.nodes if n.op == "placeholder" and n.users][-1:]
    batch = images.meta["val"].shape[0]
    assert isinstance(batch, torch.SymInt)
    (bounds,) = exported.range_constraints.values()
    assert (bounds.lower, bounds.upper) == (1, 4)


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no-bias"])
def test_to_plugin_ops_keeps_outputs_and_survives_decomposition(bias):
    torch.manual_seed(0)
    model = _Tiny(bias).eval()
    x = torch.randn(2, 3, 9, 11)
    exported = torch.export.export(model, (x,))
    dcn_trt.to_plugin_ops(exported)
    assert dcn_trt.custom_ops_in_graph(exported) == {DCN_TRT}
    (node,) = [
        n
        for n in exported.graph.nodes
        if n.target is torch.ops.segros.modulated_deform_conv2d_trt.default
    ]
    assert not node.kwargs and len(node.args) == 13  # positional, as the converter reads them
    assert node.args[5:] == (2, 2, 1, 1, 1, 1, 1, 1)
    # Torch-TensorRT starts with run_decompositions: the plugin op must stay whole.
    decomposed = exported.run_decompositions()
    assert dcn_trt.custom_ops_in_graph(decomposed) == {DCN_TRT}
    with torch.no_grad():
        expected = model(x)
        for program in (exported, decomposed):
            for a, b in zip(expected, program.module()(x)):
                torch.testing.assert_close(b, a, rtol=0, atol=1e-6)


def test_plugin_adapter_op():
    torch.manual_seed(0)
    x, weight, bias = torch.randn(1, 4, 6, 7), torch.randn(6, 4, 3, 3), torch.randn(6)
    offset, mask = torch.randn(1, 18, 3, 4) * 0.5, torch.rand(1, 9, 3, 4)
    attributes = (2, 2, 1, 1, 1, 1, 1, 1)
    op = torch.ops.segros.modulated_deform_conv2d_trt.default
    torch.library.opcheck(op, (x, offset, mask, weight, bias, *attributes))
    expected = torch.ops.segros.modulated_deform_conv2d(
        x, offset, mask, weight, bias, [2, 2], [1, 1], [1, 1], 1, 1
    )
    torch.testing.assert_close(op(x, offset, mask, weight, bias, *attributes), expected)
    # generate_plugin derives the plugin's output shape from the fake kernel on placeholder
    # tensors whose dimensions are all 5: the adapter's fake kernel takes them, the op's does not.
    with FakeTensorMode():
        t, b = torch.empty(5, 5, 5, 5), torch.empty(5)
        assert op(t, t, t, t, b).shape == (5, 5, 5, 5)
        with pytest.raises(RuntimeError, match="offset must be"):
            torch.ops.segros.modulated_deform_conv2d(t, t, t, t, b, [1, 1], [1, 1], [1, 1], 1, 1)


def test_plugin_targets():
    assert plugins._plugin_targets([DCN, DCN_TRT]) == [DCN_TRT]
    assert plugins._plugin_targets([]) == []
    for name in plugins.POSTPROCESS_OPS:
        with pytest.raises(ValueError, match="postprocess op and runs outside the engine"):
            plugins._plugin_targets([name])
    with pytest.raises(ValueError, match="no TensorRT plugin for 'segros::nope'"):
        plugins._plugin_targets(["segros::nope"])
    for plugin in set(plugins.NETWORK_PLUGIN_OPS.values()):  # each names a registered op
        assert plugins._plugin_overloads([plugin])


# --- int8 calibration --------------------------------------------------------------------------


class _Recorder(nn.Module):
    def __init__(self):
        super().__init__()
        self.seen = []

    def forward(self, x):
        self.seen.append((tuple(x.shape), x.dtype, x.device.type, torch.is_grad_enabled()))
        return x


def test_calibration_loop():
    batches = [torch.zeros(2, 3, 8, 8, dtype=torch.float64), torch.zeros(0, 3, 8, 8)]
    batches.append(torch.zeros(1, 3, 8, 8))
    model = _Recorder()
    build._calibration_loop(iter(batches), input_size=(8, 8), device="cpu")(model)
    assert model.seen == [
        ((2, 3, 8, 8), torch.float32, "cpu", False),
        ((1, 3, 8, 8), torch.float32, "cpu", False),
    ]

    loop = build._calibration_loop([torch.zeros(1, 3, 8, 9)], input_size=(8, 8), device="cpu")
    with pytest.raises(ValueError, match=r"calibration batch 0 must be a \[B, 3, 8, 8\]"):
        loop(_Recorder())
    loop = build._calibration_loop([], input_size=(8, 8), device="cpu")
    with pytest.raises(ValueError, match="calibration gave no images"):
        loop(_Recorder())


# --- running an engine ---------------------------------------------------------------------


def test_output_bindings():
    fields = YolactOutputs._fields
    assert run._output_bindings(["proto", "coef", "loc", "conf"], fields) == list(fields)
    defaults = ["output3", "output0", "output2", "output1"]
    assert run._output_bindings(defaults, fields) == ["output0", "output1", "output2", "output3"]
    with pytest.raises(ValueError, match="another model type"):
        run._output_bindings(["loc", "conf", "coef", "proto", "semantic"], fields)
    with pytest.raises(ValueError, match="another model type"):
        run._output_bindings(["output0", "output1"], fields)


def test_check_images():
    check = run._check_images
    low, high = (1, 3, 64, 96), (4, 3, 64, 96)
    check((1, 3, 64, 96), torch.float32, low, high)
    check((4, 3, 64, 96), torch.float32, low, high)
    with pytest.raises(ValueError, match=r"images must be \[B, 3, H, W\], got \[1, 1, 64, 96\]"):
        check((1, 1, 64, 96), torch.float32, low, high)
    with pytest.raises(ValueError, match=r"images must be \[B, 3, H, W\]"):
        check((3, 64, 96), torch.float32, low, high)
    with pytest.raises(ValueError, match="built for 64x96 inputs, got 64x64"):
        check((1, 3, 64, 64), torch.float32, low, high)
    with pytest.raises(ValueError, match="accepts batches 1 to 4, got 5; rebuild"):
        check((5, 3, 64, 96), torch.float32, low, high)
    with pytest.raises(ValueError, match="accepts batch 1, got 2"):
        check((2, 3, 64, 96), torch.float32, low, low)
    with pytest.raises(TypeError, match="float32"):
        check((1, 3, 64, 96), torch.float16, low, high)


def test_torch_dtype():
    assert run._torch_dtype("FLOAT") is torch.float32
    assert run._torch_dtype("HALF") is torch.float16
    assert run._torch_dtype("BF16") is torch.bfloat16
    with pytest.raises(ValueError, match="FP8"):
        run._torch_dtype("FP8")
