"""`segmentation-ros-eval pq` and `mask-ap` run without importing torch (the import alone took
1.6 s of a PQ run). Each runs in a fresh interpreter on a tiny data set; the check is on that
interpreter's `sys.modules` after the command, and its results are checked so that a command
that did nothing cannot pass."""

import json
import subprocess
import sys

import numpy as np
from pycocotools import mask as mask_utils

from segmentation_ros.panoptic.coco_io import coco_segments_info, write_id_png

RUN = """
import json, sys
from segmentation_ros.tools.eval import main
status = main(sys.argv[1:])
heavy = sorted(m for m in ("torch", "torchvision", "onnxruntime") if m in sys.modules)
print(json.dumps({"status": status, "heavy": heavy}))
"""


def run_eval(*argv):
    proc = subprocess.run(
        [sys.executable, "-c", RUN, *map(str, argv)], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    return json.loads(lines[-2]), json.loads(lines[-1])


def test_pq_command_does_not_import_torch(tmp_path):
    gt = np.zeros((8, 10), np.int64)
    gt[:4], gt[4:] = 0x10203, 0x40506  # person above road, 24-bit ids
    pred = np.where(np.arange(8)[:, None] < 5, 1, 2).repeat(10, 1)  # person 50 px: IoU 0.8
    anns = {}
    for name, m, cats in (("gt", gt, {0x10203: 1, 0x40506: 2}), ("pred", pred, {1: 1, 2: 2})):
        (tmp_path / name).mkdir()
        write_id_png(tmp_path / name / "a.png", m)
        segs = [{"id": i, "category_id": c, "iscrowd": 0} for i, c in cats.items()]
        anns[name] = [
            {"image_id": 1, "file_name": "a.png", "segments_info": coco_segments_info(m, segs)}
        ]
    categories = [
        {"id": 1, "name": "person", "isthing": 1},
        {"id": 2, "name": "road", "isthing": 0},
    ]
    (tmp_path / "gt.json").write_text(
        json.dumps({"annotations": anns["gt"], "categories": categories})
    )
    (tmp_path / "pred.json").write_text(json.dumps({"annotations": anns["pred"]}))

    summary, run = run_eval(
        "pq", "--gt-json", tmp_path / "gt.json", "--gt-dir", tmp_path / "gt",
        "--pred-json", tmp_path / "pred.json", "--pred-dir", tmp_path / "pred",
    )  # fmt: skip
    assert run == {"status": 0, "heavy": []}
    assert summary["Things"]["pq"] == 0.8 and summary["Stuff"]["pq"] == 30 / 40  # 40 / 50, 30 / 40


def test_mask_ap_command_does_not_import_torch(tmp_path):
    mask = np.zeros((20, 30), np.uint8)
    mask[2:12, 3:20] = 1
    rle = mask_utils.encode(np.asfortranarray(mask))
    rle["counts"] = rle["counts"].decode()
    ann = {"id": 1, "image_id": 7, "category_id": 1, "segmentation": rle, "iscrowd": 0}
    ann |= {"area": int(mask.sum()), "bbox": mask_utils.toBbox(rle).tolist()}
    gt = {
        "images": [{"id": 7, "width": 30, "height": 20, "file_name": "7.jpg"}],
        "annotations": [ann],
        "categories": [{"id": 1, "name": "person"}],
    }
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    result = {"image_id": 7, "category_id": 1, "segmentation": rle, "score": 0.9}
    (tmp_path / "res.json").write_text(json.dumps([result]))

    summary, run = run_eval(
        "mask-ap", "--gt-json", tmp_path / "gt.json", "--pred-json", tmp_path / "res.json"
    )
    assert run == {"status": 0, "heavy": []}
    assert abs(summary["ap"] - 1.0) < 1e-9  # a perfect mask


def test_parser_of_every_subcommand_is_torch_free():
    """Building the parser (what `--help` and every subcommand pay) imports no torch."""
    code = (
        "import sys; from segmentation_ros.tools.eval import build_parser; build_parser(); "
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "False", out.stderr
