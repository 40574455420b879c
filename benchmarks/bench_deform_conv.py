"""DCNv2 at 256 channels, 35x35, 3x3, batch 1, 2 threads: milliseconds per call of
torchvision's kernel, our op, the pure PyTorch reference, the whole layer (offset conv + op) in
PyTorch and in ONNX Runtime (exported to DeformConv), and forward + backward of op and reference.

    .venv/bin/python benchmarks/bench_deform_conv.py [--repeat 10]

Median of `repeat` timed calls after one warm-up. Figures on a shared CPU are noisy.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from torchvision.ops import deform_conv2d as tv_deform_conv2d

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from segmentation_ros.ops.deform_conv import (  # noqa: E402
    ModulatedDeformConv2d,
    deform_conv2d_reference,
    modulated_deform_conv2d,
    onnx_custom_translation_table,
)

CHANNELS, SIZE, THREADS = 256, 35, 2


def median_ms(fn, repeat: int) -> float:
    fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def forward_backward(fn, tensors):
    def run():
        leaves = [t.detach().requires_grad_(True) for t in tensors]
        fn(*leaves).sum().backward()

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=10)
    repeat = parser.parse_args().repeat
    torch.set_num_threads(THREADS)
    torch.manual_seed(0)
    layer = ModulatedDeformConv2d(CHANNELS, CHANNELS, 3, padding=1).eval()
    torch.nn.init.normal_(layer.conv_offset_mask.weight, std=0.01)  # offsets of about a pixel
    x = torch.randn(1, CHANNELS, SIZE, SIZE)
    with torch.no_grad():
        o1, o2, logits = torch.chunk(layer.conv_offset_mask(x), 3, dim=1)
        offset, mask = torch.cat((o1, o2), 1), torch.sigmoid(logits)
    weight, bias = layer.weight.detach(), layer.bias.detach()
    pairs = ([1, 1], [1, 1], [1, 1], 1, 1)

    def ours(x, offset, mask, weight, bias):
        return modulated_deform_conv2d(x, offset, mask, weight, bias, padding=1)

    def reference(x, offset, mask, weight, bias):
        return deform_conv2d_reference(x, offset, mask, weight, bias, *pairs)

    def tv_with_mask(x, offset, mask, weight, bias):
        return tv_deform_conv2d(x, offset, weight, bias, padding=1, mask=mask)

    tensors = (x, offset, mask, weight, bias)
    rows = {
        "torchvision.ops.deform_conv2d": lambda: tv_with_mask(*tensors),
        "segros op (torchvision forward)": lambda: ours(*tensors),
        "pure PyTorch reference": lambda: reference(*tensors),
        "layer (offset conv + op), eager": lambda: layer(x),
    }
    print(f"DCNv2 {CHANNELS} ch {SIZE}x{SIZE} 3x3 batch 1, {THREADS} threads, median ms")
    with torch.no_grad():
        for label, fn in rows.items():
            print(f"  {label:36s} {median_ms(fn, repeat):8.2f}")
    training = {
        "torchvision forward + backward": tv_with_mask,
        "segros op forward + backward": ours,
        "reference forward + backward": reference,
    }
    for label, fn in training.items():
        print(f"  {label:36s} {median_ms(forward_backward(fn, tensors), repeat):8.2f}")
    ms = median_ms(onnx_runtime(layer, x), repeat)
    print(f"  {'layer in ONNX Runtime (DeformConv)':36s} {ms:8.2f}")


def onnx_runtime(layer: torch.nn.Module, x: torch.Tensor):
    """Exports `layer` (DeformConv, opset 19) and returns a function running it in ORT."""
    import onnxruntime as ort

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "dcn.onnx"
        torch.onnx.export(
            layer,
            (x,),
            dynamo=True,
            opset_version=19,
            custom_translation_table=onnx_custom_translation_table(),
            verbose=False,
        ).save(str(path))
        options = ort.SessionOptions()
        options.intra_op_num_threads = THREADS
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    feed = {session.get_inputs()[0].name: x.numpy()}
    return lambda: session.run(None, feed)


if __name__ == "__main__":
    main()
