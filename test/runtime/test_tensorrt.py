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
from segmentation_ros.ops.deform_conv import ModulatedDeformConv2d
from segmentation_ros.runtime import tensorrt as trt_rt
from segmentation_ros.runtime.backends import BackendUnavailable

DCN = "segros::modulated_deform_conv2d"
DCN_TRT = "segros::modulated_deform_conv2d_trt"


# --- status ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "version,expected",
    [("10.7.0", (10, 7, 0)), ("10.13.3.9.post1", (10, 13, 3, 9)), ("2.14.0+cu128", (2, 14, 0))]
    + [("2.14.0a0", (2, 14, 0)), ("unknown", None), (None, None)],
)
def test_version_tuple(version, expected):
    assert trt_rt._version_tuple(version) == expected


def test_status_message_none_when_everything_is_there():
    message = trt_rt._status_message(
        "10.7.0", "2.14.0+cu128", True, device="cuda:0", device_count=1
    )
    assert message is None
    assert trt_rt._status_message("11.0.1", "2.15.1", True) is None


@pytest.mark.parametrize(
    "facts,present,absent",
    [
        (  # this machine
            dict(trt_version=None, torch_trt_version=None, cuda_available=False),
            [
                "tensorrt is not installed (>= 10.7 needed",
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
            ["tensorrt 10.6.1 is too old (>= 10.7 needed)", "pip install"],
            ["torch_tensorrt", "CUDA device", "NVIDIA GPU"],
        ),
        (
            dict(trt_version="10.8.0", torch_trt_version="2.13.0", cuda_available=True),
            ["torch_tensorrt 2.13.0 is too old (>= 2.14 needed), matching torch 2.14"],
            ["tensorrt 10.8.0", "CUDA device"],
        ),
        (
            dict(trt_version="10.8.0", torch_trt_version="2.14.0", cuda_available=False),
            ["no CUDA device (torch.cuda.is_available() is False)", "NVIDIA GPU"],
            ["is not installed", "too old", "pip install"],
        ),
        (
            dict(trt_version="garbled", torch_trt_version="2.14.0", cuda_available=True),
            ["tensorrt version 'garbled' could not be read (>= 10.7 needed)"],
            [],
        ),
    ],
    ids=["nothing", "old-tensorrt", "old-torch-tensorrt", "no-cuda", "unreadable-version"],
)
def test_status_message_names_what_is_missing(facts, present, absent):
    message = trt_rt._status_message(**facts)
    assert message.startswith("backend tensorrt is unavailable: ")
    for text in present:
        assert text in message
    for text in absent:
        assert text not in message


def test_status_message_devices_and_import_errors():
    message = trt_rt._status_message("10.8.0", "2.14.0", True, device="cpu")
    assert "device 'cpu' is not a CUDA device" in message
    message = trt_rt._status_message("10.8.0", "2.14.0", True, device="cuda:1", device_count=1)
    assert "cuda:1 requested but 1 CUDA device(s) found" in message
    assert trt_rt._status_message("10.8.0", "2.14.0", True, device="cuda:0", device_count=1) is None
    message = trt_rt._status_message(
        None,
        None,
        True,
        import_errors={"tensorrt": "OSError: libnvinfer.so.10: cannot open shared object file"},
    )
    assert "tensorrt failed to import (OSError: libnvinfer.so.10" in message
    assert "torch_tensorrt is not installed" in message


def test_status_on_this_machine_matches_what_is_installed():
    message = trt_rt.tensorrt_status()
    missing = [
        name for name in ("tensorrt", "torch_tensorrt") if not importlib.util.find_spec(name)
    ]
    for name in missing:
        assert f"{name} is not installed" in message
    if not torch.cuda.is_available():
        assert "no CUDA device" in message
    if message is None:
        trt_rt.require_tensorrt()
    else:
        with pytest.raises(BackendUnavailable) as raised:
            trt_rt.require_tensorrt()
        assert str(raised.value) == message

    versions = trt_rt.tensorrt_versions()
    assert set(versions) == {"tensorrt", "torch_tensorrt", "cuda"}
    assert versions["cuda"] == torch.version.cuda
    for name in missing:
        assert versions[name] is None


@pytest.fixture
def without_tensorrt(monkeypatch):
    """tensorrt and torch_tensorrt absent, whatever this machine has."""
    monkeypatch.setattr(trt_rt, "_import_version", lambda name: (None, None))


def test_entry_points_raise_backend_unavailable(without_tensorrt):
    model = _Tiny(bias=True)
    with pytest.raises(BackendUnavailable, match="tensorrt is not installed"):
        trt_rt.require_tensorrt()
    with pytest.raises(BackendUnavailable, match="torch_tensorrt is not installed"):
        trt_rt.build_engine(model, input_size=(8, 8), precision="fp16", device="cuda")
    with pytest.raises(BackendUnavailable, match="tensorrt is not installed"):
        trt_rt.TensorRTBackend(b"not an engine", YolactOutputs, device="cuda")
    with pytest.raises(BackendUnavailable, match="tensorrt is not installed"):
        trt_rt.register_plugins([DCN])
    assert trt_rt.tensorrt_versions()["tensorrt"] is None


def test_module_imports_no_tensorrt_at_import():
    """No top-level import of tensorrt, torch_tensorrt or modelopt (only inside functions)."""
    tree = ast.parse(inspect.getsource(trt_rt))
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


def test_precision_settings():
    assert trt_rt.precision_settings("fp32") == {"use_explicit_typing": True}
    assert trt_rt.precision_settings("int8") == {"use_explicit_typing": True}
    for precision, dtype in (("fp16", torch.float16), ("bf16", torch.bfloat16)):
        assert trt_rt.precision_settings(precision) == {
            "use_explicit_typing": True,
            "enable_autocast": True,
            "autocast_low_precision_type": dtype,
        }
    trt_rt.precision_settings("fp32")["enable_autocast"] = True  # a new dict each call
    assert "enable_autocast" not in trt_rt.precision_settings("fp32")
    with pytest.raises(ValueError, match="unknown precision 'fp8'.*'fp32', 'fp16', 'bf16', 'int8'"):
        trt_rt.precision_settings("fp8")
    assert trt_rt.PRECISIONS == ("fp32", "fp16", "bf16", "int8")


def test_engine_settings():
    settings = trt_rt._engine_settings("fp16", plugin_ops=[DCN_TRT], workspace_bytes=1 << 30)
    assert settings["autocast_excluded_ops"] == {
        torch.ops.segros.modulated_deform_conv2d_trt.default
    }
    assert settings["workspace_size"] == 1 << 30
    assert settings["require_full_compilation"] and settings["min_block_size"] == 1
    assert settings["immutable_weights"]
    fp32 = trt_rt._engine_settings("fp32", plugin_ops=[DCN_TRT])
    assert "autocast_excluded_ops" not in fp32 and "workspace_size" not in fp32
    assert "autocast_excluded_ops" not in trt_rt._engine_settings("bf16")


def test_batch_profile_and_input_spec():
    assert trt_rt._batch_profile(None) == (1, 1, 1)
    assert trt_rt._batch_profile((1, 4, 8)) == (1, 4, 8)
    assert trt_rt._input_spec((64, 96), (1, 1, 1)) == {
        "shape": (1, 3, 64, 96),
        "dtype": torch.float32,
    }
    assert trt_rt._input_spec((64, 96), (2, 2, 2))["shape"] == (2, 3, 64, 96)
    assert trt_rt._input_spec((64, 96), (1, 4, 8)) == {
        "min_shape": (1, 3, 64, 96),
        "opt_shape": (4, 3, 64, 96),
        "max_shape": (8, 3, 64, 96),
        "dtype": torch.float32,
    }


@pytest.mark.parametrize("batch_sizes", [(0, 1, 2), (2, 1, 4), (1, 4, 2), (1, 2), (1.0, 2, 3), 4])
def test_batch_profile_rejects(batch_sizes):
    with pytest.raises(ValueError, match="batch_sizes"):
        trt_rt._batch_profile(batch_sizes)


def test_build_arguments_are_checked_first():
    check = trt_rt._check_build_args
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
        trt_rt.build_engine(_Tiny(bias=True), input_size=(8, 8), precision="int8")


def test_binding_names_supported():
    def old(exported_program, inputs=None, *, arg_inputs=None, **kwargs): ...

    def new(exported_program, *, arg_input_binding_names=None, output_binding_names=None): ...

    assert not trt_rt._binding_names_supported(old)
    assert trt_rt._binding_names_supported(new)


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
        exported = trt_rt._export(model, (64, 64), (1, 1, 1), "cpu")
    return model, exported


def test_custom_ops_in_yolact_plus_graph_and_rewrite(yolact_plus):
    model, exported = yolact_plus
    assert trt_rt.custom_ops_in_graph(exported) == {DCN}
    assert trt_rt.to_plugin_ops(exported) is exported
    assert trt_rt.custom_ops_in_graph(exported) == {DCN_TRT}
    assert trt_rt._plugin_targets(trt_rt.custom_ops_in_graph(exported)) == [DCN_TRT]
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        expected, got = model(x), exported.module()(x)
    assert type(got) is YolactOutputs
    for field, a, b in zip(YolactOutputs._fields, expected, got):
        torch.testing.assert_close(b, a, rtol=0, atol=1e-5, msg=field)


def test_no_custom_ops_in_mobilenet_graph_with_dynamic_batch():
    model = build_model("yolact_mobilenetv3", input_size=(64, 64)).eval()
    with torch.no_grad():
        exported = trt_rt._export(model, (64, 64), (1, 2, 4), "cpu")
    assert trt_rt.custom_ops_in_graph(exported) == set()
    assert trt_rt._plugin_targets(trt_rt.custom_ops_in_graph(exported)) == []
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
    trt_rt.to_plugin_ops(exported)
    assert trt_rt.custom_ops_in_graph(exported) == {DCN_TRT}
    (node,) = [
        n
        for n in exported.graph.nodes
        if n.target is torch.ops.segros.modulated_deform_conv2d_trt.default
    ]
    assert not node.kwargs and len(node.args) == 13  # positional, as the converter reads them
    assert node.args[5:] == (2, 2, 1, 1, 1, 1, 1, 1)
    # Torch-TensorRT starts with run_decompositions: the plugin op must stay whole.
    decomposed = exported.run_decompositions()
    assert trt_rt.custom_ops_in_graph(decomposed) == {DCN_TRT}
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
    assert trt_rt._plugin_targets([DCN, DCN_TRT]) == [DCN_TRT]
    assert trt_rt._plugin_targets([]) == []
    for name in trt_rt.POSTPROCESS_OPS:
        with pytest.raises(ValueError, match="postprocess op and runs outside the engine"):
            trt_rt._plugin_targets([name])
    with pytest.raises(ValueError, match="no TensorRT plugin for 'segros::nope'"):
        trt_rt._plugin_targets(["segros::nope"])
    for plugin in set(trt_rt.NETWORK_PLUGIN_OPS.values()):  # each names a registered op
        assert trt_rt._plugin_overloads([plugin])


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
    trt_rt._calibration_loop(iter(batches), input_size=(8, 8), device="cpu")(model)
    assert model.seen == [
        ((2, 3, 8, 8), torch.float32, "cpu", False),
        ((1, 3, 8, 8), torch.float32, "cpu", False),
    ]

    loop = trt_rt._calibration_loop([torch.zeros(1, 3, 8, 9)], input_size=(8, 8), device="cpu")
    with pytest.raises(ValueError, match=r"calibration batch 0 must be a \[B, 3, 8, 8\]"):
        loop(_Recorder())
    loop = trt_rt._calibration_loop([], input_size=(8, 8), device="cpu")
    with pytest.raises(ValueError, match="calibration gave no images"):
        loop(_Recorder())


# --- running an engine ---------------------------------------------------------------------


def test_output_bindings():
    fields = YolactOutputs._fields
    assert trt_rt._output_bindings(["proto", "coef", "loc", "conf"], fields) == list(fields)
    defaults = ["output3", "output0", "output2", "output1"]
    assert trt_rt._output_bindings(defaults, fields) == ["output0", "output1", "output2", "output3"]
    with pytest.raises(ValueError, match="another model type"):
        trt_rt._output_bindings(["loc", "conf", "coef", "proto", "semantic"], fields)
    with pytest.raises(ValueError, match="another model type"):
        trt_rt._output_bindings(["output0", "output1"], fields)


def test_check_images():
    check = trt_rt._check_images
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
    assert trt_rt._torch_dtype("FLOAT") is torch.float32
    assert trt_rt._torch_dtype("HALF") is torch.float16
    assert trt_rt._torch_dtype("BF16") is torch.bfloat16
    with pytest.raises(ValueError, match="FP8"):
        trt_rt._torch_dtype("FP8")
