"""The keypoint head's cost on the light Mask R-CNN: fp16 size of the state dict and parameters,
and eager forward time (random weights, every detection through the head), with and without it.

    source env.sh && python benchmarks/bench_keypoints.py --threads 2 --runs 15
"""

import argparse
import io
import time

import torch

from segmentation_ros.data.classes import SYNTHETIC_CLASSES
from segmentation_ros.models import family_of, get_config


def fp16_megabytes(model: torch.nn.Module) -> float:
    """Size (MB, 1e6 bytes) of the state dict saved with floating tensors in fp16."""
    state = {k: v.half() if v.is_floating_point() else v for k, v in model.state_dict().items()}
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.tell() / 1e6


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--runs", type=int, default=15)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    family = family_of("mask_rcnn")
    models = {}
    for name in ("mask_rcnn_mobilenetv3", "mask_rcnn_mobilenetv3_keypoints"):
        config = family.with_classes(get_config(name), stuff_names=SYNTHETIC_CLASSES.stuff_names,
                                     thing_names=SYNTHETIC_CLASSES.thing_names)  # fmt: skip
        torch.manual_seed(0)
        models[name] = family.build(config).eval()
        params = sum(t.numel() for t in models[name].parameters())
        print(
            f"{name}: {params / 1e6:.2f} M parameters, {fp16_megabytes(models[name]):.2f} MB fp16"
        )
    x = torch.randn(1, 3, *get_config("mask_rcnn_mobilenetv3").input_size)
    times = {name: [] for name in models}
    with torch.no_grad():
        for _ in range(args.runs + 2):  # interleaved: a busy machine slows both alike
            for name, model in models.items():
                start = time.perf_counter()
                out = model(x)
                times[name].append(time.perf_counter() - start)
    for name, values in times.items():
        v = sorted(values[2:])
        print(f"{name}: forward min {v[0] * 1e3:.0f} ms, median {v[len(v) // 2] * 1e3:.0f} ms "
              f"({out.boxes.shape[1]} detections, {args.threads} threads)")  # fmt: skip


if __name__ == "__main__":
    main()
