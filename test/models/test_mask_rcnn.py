"""The Mask R-CNN family against torchvision (its own model with the same weights, loaded from a
state-dict file), ONNX Runtime against torch, the Mask Scoring R-CNN IoU targets against
pycocotools, and the postprocess's re-scoring."""

import dataclasses

import numpy as np
import pycocotools.mask as mask_utils
import pytest
import torch
import torchvision
from torchvision.models.detection.roi_heads import paste_masks_in_image

from segmentation_ros.models import get_config
from segmentation_ros.models.family import PostprocessSettings, family_of
from segmentation_ros.models.mask_rcnn import MaskRCNNOutputs
from segmentation_ros.models.mask_rcnn_build import TORCHVISION_COCO_CATEGORIES
from segmentation_ros.models.mask_rcnn_heads import mask_iou_targets

SIZE = (160, 224)  # multiples of 32: torchvision's transform neither pads nor resizes


pytestmark = pytest.mark.usefixtures("one_thread")


def test_torchvision_checkpoint_file_gives_torchvision_detections(tmp_path):
    """A state dict saved from torchvision's randomly initialised `maskrcnn_resnet50_fpn` (91
    COCO labels) loads from the file into `mask_rcnn_resnet50` (80 COCO things, picked by name)
    and detects what torchvision's own model detects on the same image."""
    torch.manual_seed(0)
    reference = torchvision.models.detection.maskrcnn_resnet50_fpn(
        weights=None,
        weights_backbone=None,
        min_size=SIZE[0],
        max_size=SIZE[1],
        box_score_thresh=0.0,
        box_detections_per_img=20,
        rpn_pre_nms_top_n_test=200,
        rpn_post_nms_top_n_test=100,
    ).eval()
    state = reference.state_dict()
    # Trained weights never predict the "N/A" gaps; a very low logit makes the 91-way and the
    # 81-way softmax the same.
    gaps = [i for i, n in enumerate(TORCHVISION_COCO_CATEGORIES) if n == "N/A"]
    with torch.no_grad():
        state["roi_heads.box_predictor.cls_score.bias"][gaps] = -1e4
    path = tmp_path / "maskrcnn_resnet50_fpn_random.pth"
    torch.save(state, path)

    family = family_of("mask_rcnn")
    config = dataclasses.replace(
        get_config("mask_rcnn_resnet50"),
        input_size=SIZE,
        box_score_thresh=0.0,
        box_detections_per_img=20,
        rpn_pre_nms_top_n_test=200,
        rpn_post_nms_top_n_test=100,
    )
    model = family.build(config).eval()
    family.load_official(model, torch.load(path, map_location="cpu", weights_only=True))

    image = torch.rand(3, *SIZE, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = reference([image])[0]
        x = reference.transform([image])[0].tensors  # the same normalised input
        ours = model(x)
    assert expected["boxes"].shape[0] > 5
    names = [TORCHVISION_COCO_CATEGORIES[int(i)] for i in expected["labels"]]
    assert [config.thing_names[int(c)] for c in ours.classes[0]] == names
    torch.testing.assert_close(ours.boxes[0], expected["boxes"], rtol=0, atol=1e-3)
    torch.testing.assert_close(ours.scores[0], expected["scores"], rtol=1e-4, atol=1e-6)
    pasted = paste_masks_in_image(ours.mask_probs[0][:, None], ours.boxes[0], SIZE, padding=1)
    torch.testing.assert_close(pasted, expected["masks"], rtol=0, atol=1e-4)
    with pytest.raises(ValueError, match="not COCO labels"):
        other = family.with_classes(config, stuff_names=(), thing_names=("person", "robot"))
        family.load_official(family.build(other), state)


def _separated(model):
    """Random weights with widely spread logits: no score ties, so that two backends agree on
    which boxes survive top-k and NMS."""
    torch.manual_seed(0)
    rpn = model.detector.rpn.head
    torch.nn.init.normal_(rpn.cls_logits.weight, std=0.5)
    heads = model.detector.roi_heads
    torch.nn.init.normal_(heads.box_predictor.cls_score.weight, std=0.2)
    return model


def _op_types(graph) -> set[str]:
    """Op types of a graph and its subgraphs (torchvision's NMS sits in an `If` branch)."""
    types = set()
    for node in graph.node:
        types.add(node.op_type)
        for attribute in node.attribute:
            if attribute.g is not None and attribute.g.node:
                types |= _op_types(attribute.g)
    return types


def test_onnxruntime_agrees_with_torch(tmp_path):
    import onnx

    from segmentation_ros.runtime.backends import OnnxRuntimeBackend, TorchBackend
    from segmentation_ros.runtime.onnx_export import export_onnx

    family = family_of("mask_rcnn")
    config = family.with_classes(
        get_config("mask_rcnn_mobilenetv3"),
        stuff_names=("road", "sky"),
        thing_names=("person", "car", "cone"),
    )
    config = family.with_input_size(config, (96, 128))
    model = _separated(family.build(config).eval())
    path = export_onnx(model, tmp_path / "mask_rcnn.onnx", input_size=(96, 128))
    ops = _op_types(onnx.load(str(path)).graph)
    assert {"RoiAlign", "NonMaxSuppression"} <= ops
    x = torch.randn(1, 3, 96, 128, generator=torch.Generator().manual_seed(2))
    eager = TorchBackend(model).infer(x)
    ort = OnnxRuntimeBackend(path, MaskRCNNOutputs).infer(x)
    assert eager.boxes.shape[1] > 3
    for field, a, b in zip(MaskRCNNOutputs._fields, eager, ort, strict=True):
        assert a.shape == b.shape, field
        scale = max(1.0, float(a.float().abs().max()))
        np.testing.assert_allclose(
            b.float().numpy(), a.float().numpy(), atol=1e-4 * scale, rtol=0, err_msg=field
        )


def test_mask_iou_targets_are_the_iou_pycocotools_computes():
    gen = torch.Generator().manual_seed(3)
    logits = torch.randn(6, 28, 28, generator=gen) * 3
    targets = (torch.rand(6, 28, 28, generator=gen) > 0.6).float()
    targets[0] = 0.0
    logits[1] = -1.0  # empty prediction
    got = mask_iou_targets(logits, targets)
    for i in range(6):
        pred = np.asfortranarray((logits[i] > 0).numpy().astype(np.uint8))
        gt = np.asfortranarray((targets[i] >= 0.5).numpy().astype(np.uint8))
        iou = mask_utils.iou([mask_utils.encode(pred)], [mask_utils.encode(gt)], [0])[0, 0]
        assert got[i].item() == pytest.approx(float(iou), abs=1e-6), i


def _raw(scores, mask_iou):
    """Two detections far apart, full masks, flat semantic logits (things above sky)."""
    n = len(scores)
    boxes = torch.tensor([[4.0, 4.0, 20.0, 20.0], [40.0, 30.0, 60.0, 50.0]])[:n]
    semantic = torch.zeros(1, 4, 16, 24)
    semantic[0, 1] = 5.0
    semantic[0, 2:] = 10.0  # the thing classes, so that the fusion keeps the instances
    return MaskRCNNOutputs(
        boxes=boxes[None],
        scores=torch.tensor(scores)[None],
        classes=torch.tensor([0, 1])[:n][None],
        mask_probs=torch.full((1, n, 28, 28), 0.9),
        mask_iou=torch.tensor(mask_iou)[None],
        semantic=semantic,
    )


@pytest.mark.parametrize("rescore", [True, False])
def test_mask_score_is_class_score_times_predicted_iou(rescore):
    """Mask Scoring R-CNN: s_mask = s_cls x s_iou (Huang et al. 2019, Sec. 3.2); off: s_cls."""
    family = family_of("mask_rcnn")
    config = family.with_classes(
        get_config("mask_rcnn_mobilenetv3"), stuff_names=("road", "sky"), thing_names=("a", "b")
    )
    config = dataclasses.replace(family.with_input_size(config, (64, 96)), rescore=rescore)
    config = dataclasses.replace(
        config, fusion=dataclasses.replace(config.fusion, min_stuff_area=0)
    )
    post = family.postprocessor(None, config, input_size=(64, 96))
    result = post(
        _raw([0.9, 0.6], [0.5, 0.8]), (128, 192), PostprocessSettings(score_threshold=0.1)
    )
    seg = result.segments
    things = seg.is_thing
    assert int(things.sum()) == 2
    order = torch.argsort(-seg.scores[things])
    torch.testing.assert_close(seg.scores[things][order], torch.tensor([0.9, 0.6]))
    expected = torch.tensor([0.45, 0.48]) if rescore else torch.tensor([0.9, 0.6])
    torch.testing.assert_close(seg.mask_scores[things][order], expected)
    # Boxes scale from the network input (64 x 96) to the image (128 x 192).
    torch.testing.assert_close(seg.boxes[things][order][0], torch.tensor([8.0, 8.0, 40.0, 40.0]))
    # The settings' threshold drops detections at or below it.
    fewer = post(_raw([0.9, 0.6], [0.5, 0.8]), (128, 192), PostprocessSettings(score_threshold=0.7))
    assert int(fewer.segments.is_thing.sum()) == 1
