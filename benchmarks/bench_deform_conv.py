"""DCNv2 at 256 channels, 35x35, 3x3 (batch 1): torchvision kernel, pure reference, ONNX Runtime.

source env.sh && python benchmarks/bench_deform_conv.py
"""

import tempfile
import time
from pathlib import Path

import torch

from segmentation_ros.ops.deform_conv import ModulatedDeformConv2d, deform_conv2d_reference


def ms(fn, repeat=20):
    fn()
    start = time.perf_counter()
    for _ in range(repeat):
        fn()
    return (time.perf_counter() - start) / repeat * 1e3


def main():
    torch.set_num_threads(2)
    torch.manual_seed(0)
    layer = ModulatedDeformConv2d(256, 256, 3, padding=1).eval()
    torch.nn.init.normal_(layer.conv_offset_mask.weight, std=0.01)
    x = torch.randn(1, 256, 35, 35)
    with torch.no_grad():
        o1, o2, m = torch.chunk(layer.conv_offset_mask(x), 3, dim=1)
        offset, mask = torch.cat((o1, o2), 1), torch.sigmoid(m)
        print(f"layer (torchvision kernel)   {ms(lambda: layer(x)):7.2f} ms")
        ref = lambda: deform_conv2d_reference(  # noqa: E731
            x, offset, mask, layer.weight, layer.bias, [1, 1], [1, 1], [1, 1], 1, 1
        )
        print(f"pure PyTorch reference       {ms(ref, 5):7.2f} ms")

    import onnxruntime as ort

    from segmentation_ros.ops.deform_conv import onnx_custom_translation_table

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "dcn.onnx"
        torch.onnx.export(
            layer, (x,), dynamo=True, opset_version=19,
            custom_translation_table=onnx_custom_translation_table(),
        ).save(str(path))  # fmt: skip
        options = ort.SessionOptions()
        options.intra_op_num_threads = 2
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        feed = {session.get_inputs()[0].name: x.numpy()}
        print(f"layer in ONNX Runtime        {ms(lambda: session.run(None, feed)):7.2f} ms")


if __name__ == "__main__":
    main()
