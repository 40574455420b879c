"""Per-stage milliseconds of YOLACT configs on the CPU (2 threads), torch eager and ONNX Runtime
side by side, and YOLACT-R50 at 550 end to end against a straightforward official pipeline.

    source env.sh && python benchmarks/bench_yolact.py                        # light configs
    python benchmarks/bench_yolact.py --models yolact_resnet50 --end-to-end   # + official, ...
        [--cache-dir DIR]   # ONNX files kept (built ahead: time only what runs)

Stages: preprocess (resize + normalise), network (backend.infer), nms (decode + Fast NMS),
masks (assembly + crop + full-resolution masks inside boxes), id_image. Random weights with the
class logits biased so that about 100 detections survive, at a 640x480 image.

--end-to-end adds the straightforward official pipeline (torch eager, dense postprocess, full
masks), int8 (static QDQ, calibrated on --calibration-scenes synthetic scenes; ONNX Runtime and
OpenVINO) and OpenVINO bf16, with the speed-up over the official pipeline and the agreement with
ONNX Runtime fp32 on
--agreement-scenes other synthetic scenes: box agreement (reference detections whose same-class
match by mask IoU has box IoU >= 0.9, over the larger count) and the mean mask IoU of matches.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np
import torch

from segmentation_ros.data.synthetic import generate_scene
from segmentation_ros.models import build_model
from segmentation_ros.models.checkpoint import load_for_inference
from segmentation_ros.models.preprocess import preprocess
from segmentation_ros.postprocess import YolactPostprocessParams, postprocess_yolact
from segmentation_ros.runtime.backends import build_backend
from segmentation_ros.runtime.cache import ArtifactCache


def timed(fn, repeat):
    fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        times.append((time.perf_counter() - start) * 1e3)
    return float(np.median(times)), result


def make_model(name: str, checkpoint: str = ""):
    if checkpoint:
        return load_for_inference(checkpoint, name)[0].eval()
    torch.manual_seed(0)
    model = build_model(name).eval()
    # Random weights give near-uniform class scores under the threshold: lift a few classes so
    # that realistic numbers of candidates (and 100 detections after NMS) reach the postprocess.
    with torch.no_grad():
        conf_bias = model.prediction_layers[0].conf_layer.bias
        conf_bias.view(-1, model.config.num_classes + 1)[:, 1:6] += 4.0
    return model


def stages(model, backend, image, repeat, path="fast"):
    config = model.config
    params = YolactPostprocessParams.from_config(config.postprocess)
    t_pre, x = timed(lambda: preprocess(image, config), repeat)
    t_net, outputs = timed(lambda: backend.infer(x), repeat)

    def detect():
        return postprocess_yolact(outputs, model.priors, image_size=image.shape[:2], params=params,
                                  mask_iou_head=model.mask_iou_head, path=path)[0]  # fmt: skip

    t_nms, instances = timed(detect, repeat)
    if path == "reference":
        t_masks, _ = timed(lambda: instances.full_masks(), repeat)  # N full-size masks
        t_ids, _ = timed(lambda: _reference_id_image(instances), repeat)
    else:
        t_masks, _ = timed(lambda: instances.compact_masks(), repeat)
        t_ids, _ = timed(lambda: instances.id_image(), repeat)
    return dict(preprocess=t_pre, network=t_net, nms=t_nms, masks=t_masks, id_image=t_ids,
                detections=len(instances))  # fmt: skip


def detections(model, backend, image):
    """(boxes [N, 4], classes [N], full masks [N, H, W] bool) of one image."""
    params = YolactPostprocessParams.from_config(model.config.postprocess)
    outputs = backend.infer(preprocess(image, model.config))
    instances = postprocess_yolact(outputs, model.priors, image_size=image.shape[:2],
                                   params=params, mask_iou_head=model.mask_iou_head)[0]  # fmt: skip
    return (instances.boxes.numpy(), instances.classes.numpy(),
            instances.full_masks().numpy().astype(bool))  # fmt: skip


def agreement(reference, candidate, box_iou=0.9):
    """(reference things, agreeing boxes, matched mask IoUs), the rule of
    `train.backend_agreement.compare_frames`: greedy same-class matches by mask IoU."""
    (rb, rc, rm), (cb, cc, cm) = reference, candidate
    if not len(rb) or not len(cb):
        return max(len(rb), len(cb)), 0, []
    r, c = rm.reshape(len(rm), -1).astype(np.float32), cm.reshape(len(cm), -1).astype(np.float32)
    inter = r @ c.T
    ious = inter / np.maximum(r.sum(1)[:, None] + c.sum(1)[None] - inter, 1)
    ious = np.where(rc[:, None] == cc[None], ious, 0.0)
    lo, hi = (
        np.maximum(rb[:, None, :2], cb[None, :, :2]),
        np.minimum(rb[:, None, 2:], cb[None, :, 2:]),
    )
    inter_box = np.prod(np.clip(hi - lo, 0, None), axis=2)
    area = lambda b: np.prod(b[:, 2:] - b[:, :2], axis=1)  # noqa: E731
    boxes = inter_box / np.maximum(area(rb)[:, None] + area(cb)[None] - inter_box, 1e-9)
    taken, agreeing, matched = np.zeros(len(cb), bool), 0, []
    for i in np.argsort(-ious.max(axis=1)):
        j = int(np.argmax(np.where(taken, -1.0, ious[i])))
        if taken[j] or ious[i, j] <= 0:
            continue
        taken[j] = True
        matched.append(float(ious[i, j]))
        agreeing += int(boxes[i, j] >= box_iou)
    return max(len(rb), len(cb)), agreeing, matched


#: The reduced-precision rows of --end-to-end: (backend, precision, label).
REDUCED = (
    ("onnxruntime", "int8", "ort int8"),
    ("openvino", "int8", "ov int8"),
    ("openvino", "bf16", "ov bf16"),
)


def reduced_rows(name, model, image, args, cache, official_total):
    """int8 (static QDQ, calibrated on synthetic scenes; run by ONNX Runtime and by OpenVINO)
    and OpenVINO bf16: stages, speed-up over the official pipeline, and agreement with ONNX
    Runtime fp32 (= torch fp32) on other synthetic scenes."""

    def scene(seed):
        return generate_scene(seed, width=640, height=480).image

    calibration = [preprocess(scene(100000 + i), model.config)
                   for i in range(args.calibration_scenes)]  # fmt: skip
    size = model.config.input_size
    fp32 = build_backend("onnxruntime", model, cache=cache, input_size=size)
    for kind, precision, label in REDUCED:
        candidate = build_backend(kind, model, precision=precision, cache=cache,
                                  input_size=size, calibration=calibration)  # fmt: skip
        r = stages(model, candidate, image, args.repeat)
        total = sum(r[k] for k in ("preprocess", "network", "nms", "masks", "id_image"))
        print(f"{name:24s} {label:12s} " + " ".join(
            f"{r[k]:9.1f}" for k in ("preprocess", "network", "nms", "masks", "id_image")
        ) + f" {total:9.1f} {r['detections']:9d}")  # fmt: skip
        things = agreeing = 0
        ious: list[float] = []
        for i in range(args.agreement_scenes):
            img = scene(940500 + i)
            n, a, m = agreement(detections(model, fp32, img), detections(model, candidate, img))
            things, agreeing, ious = things + n, agreeing + a, ious + m
        print(f"{label} end to end: {official_total / total:.2f}x the official pipeline; vs ORT "
              f"fp32 on {args.agreement_scenes} synthetic scenes (seeds 940500..): box agreement "
              f"{agreeing / max(things, 1):.3f} ({agreeing}/{things}), mean mask IoU "
              f"{np.mean(ious) if ious else float('nan'):.3f}")  # fmt: skip


def _reference_id_image(instances):
    from segmentation_ros.postprocess import reference_id_image

    return reference_id_image(instances)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", default=["yolact_mobilenetv3", "yolact_resnet18"])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--end-to-end", action="store_true")
    parser.add_argument("--calibration-scenes", type=int, default=32)
    parser.add_argument("--agreement-scenes", type=int, default=10)
    parser.add_argument("--cache-dir", default="", help="artifact cache (default: a temporary one)")
    parser.add_argument("--checkpoint", default="", help="trained weights of the (one) model")
    args = parser.parse_args()
    if args.checkpoint and len(args.models) != 1:
        parser.error("--checkpoint needs exactly one model in --models")
    torch.set_num_threads(2)
    image = np.random.default_rng(0).integers(0, 255, (480, 640, 3), dtype=np.uint8)
    header = f"{'model':24s} {'backend':12s} " + " ".join(
        f"{s:>9s}" for s in ("preproc", "network", "nms", "masks", "id_img", "total", "dets")
    )
    print(header)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = args.cache_dir or tmp
        for name in args.models:
            model = make_model(name, args.checkpoint)
            cache = ArtifactCache(tmp)
            for kind in ("torch", "onnxruntime"):
                backend = build_backend(kind, model, cache=cache,
                                        input_size=model.config.input_size)  # fmt: skip
                r = stages(model, backend, image, args.repeat)
                total = sum(r[k] for k in ("preprocess", "network", "nms", "masks", "id_image"))
                print(f"{name:24s} {kind:12s} " + " ".join(
                    f"{r[k]:9.1f}" for k in ("preprocess", "network", "nms", "masks", "id_image")
                ) + f" {total:9.1f} {r['detections']:9d}")  # fmt: skip
            if args.end_to_end:
                official = stages(model, build_backend("torch", model), image, args.repeat,
                                  path="reference")  # fmt: skip
                total = sum(official[k] for k in ("preprocess", "network", "nms", "masks",
                                                  "id_image"))  # fmt: skip
                print(f"{name:24s} {'official':12s} " + " ".join(
                    f"{official[k]:9.1f}" for k in ("preprocess", "network", "nms", "masks",
                                                    "id_image")
                ) + f" {total:9.1f} {official['detections']:9d}")  # fmt: skip
                reduced_rows(name, model, image, args, cache, total)


if __name__ == "__main__":
    main()
