"""The Mask R-CNN family's keypoint head (torchvision's K one-hot masks): decoding against the
heatmap's definition, the postprocess's frames, and learning on a fixed set of synthetic people
(the world's exact keypoints)."""

import dataclasses
import math

import numpy as np
import pytest
import torch

from segmentation_ros.data.classes import SYNTHETIC_CLASSES
from segmentation_ros.data.synthetic import generate_scene
from segmentation_ros.models import get_config
from segmentation_ros.models.families.mask_rcnn import decode_keypoints
from segmentation_ros.models.family import PostprocessSettings, family_of
from segmentation_ros.models.mask_rcnn import KeypointMaskRCNNOutputs
from segmentation_ros.structures.keypoints import SYNTHETIC_KEYPOINTS

pytestmark = pytest.mark.usefixtures("one_thread")
K = len(SYNTHETIC_KEYPOINTS)
STUFF = tuple(c.name for c in SYNTHETIC_CLASSES if not c.isthing)
THINGS = tuple(c.name for c in SYNTHETIC_CLASSES if c.isthing)


def _config(input_size, **changes):
    family = family_of("mask_rcnn")
    config = family.with_classes(
        get_config("mask_rcnn_mobilenetv3"), stuff_names=STUFF, thing_names=THINGS
    )
    config = family.with_input_size(config, input_size)
    return dataclasses.replace(config, keypoint_names=SYNTHETIC_KEYPOINTS.names, **changes)


def test_one_hot_heatmap_decodes_to_its_cell_centre():
    """A heatmap of S x S over a box of S x S pixels: the peak in cell (row i, column j) is the
    pixel (x1 + j + 0.5, y1 + i + 0.5) (cells are pixels; COCO's continuous frame)."""
    s = 56
    logits = torch.full((1, 3, s, s), -10.0)
    cells = [(5, 7), (30, 2), (55, 40)]
    for k, (i, j) in enumerate(cells):
        logits[0, k, i, j] = 10.0
    box = torch.tensor([[10.0, 20.0, 10.0 + s, 20.0 + s]])
    got = decode_keypoints(logits, box)[0]
    expected = torch.tensor([[10 + j + 0.5, 20 + i + 0.5] for i, j in cells])
    torch.testing.assert_close(got[:, :2], expected, atol=0.05, rtol=0)
    assert (got[:, 2] > 5).all()  # score: the logit at the peak (bicubic resize keeps it high)


def test_postprocess_gives_image_pixel_keypoints_for_the_keypoint_class_only():
    config = _config(
        (64, 96),
        fusion=dataclasses.replace(get_config("mask_rcnn_mobilenetv3").fusion, min_stuff_area=0),
    )
    s = config.keypoint_heatmap_size
    boxes = torch.tensor([[4.0, 4.0, 4.0 + s / 2, 4.0 + s / 2], [60.0, 10.0, 90.0, 50.0]])
    logits = torch.full((1, 2, K, s, s), -10.0)
    logits[0, :, :, 10, 20] = 10.0  # every keypoint at cell (10, 20)
    semantic = torch.zeros(1, len(STUFF) + len(THINGS), 16, 24)
    semantic[0, len(STUFF) :] = 10.0
    person, car = THINGS.index("person"), THINGS.index("car")
    raw = KeypointMaskRCNNOutputs(
        boxes=boxes[None],
        scores=torch.tensor([[0.9, 0.8]]),
        classes=torch.tensor([[person, car]]),
        mask_probs=torch.full((1, 2, 28, 28), 0.9),
        mask_iou=torch.ones(1, 2),
        semantic=semantic,
        keypoint_logits=logits,
    )
    post = family_of("mask_rcnn").postprocessor(None, config, input_size=(64, 96))
    result = post(raw, (128, 192), PostprocessSettings(score_threshold=0.1))
    seg = result.segments
    assert seg.keypoints.shape == (len(seg), K, 3)
    cls = seg.class_ids.tolist()
    p = cls.index(len(STUFF) + person)
    c = cls.index(len(STUFF) + car)
    # Box of 28 input pixels over 56 cells: cell (10, 20) -> input (4 + 10.25, 4 + 5.25); the
    # image is twice the input.
    expected = torch.tensor([2 * (4 + (20 + 0.5) / 2), 2 * (4 + (10 + 0.5) / 2)])
    torch.testing.assert_close(seg.keypoints[p, :, :2], expected.expand(K, 2), atol=0.6, rtol=0)
    assert torch.isnan(seg.keypoints[c]).all()
    assert torch.isnan(seg.keypoints[~seg.is_thing]).all()


def _fixed_set(size=(128, 160), seeds=range(40), want=2):
    """Synthetic scenes with at least one person of >= 10 visible keypoints, as torchvision
    targets at the network input (the scene is rendered at that size)."""
    person = SYNTHETIC_CLASSES.id_of("person")
    images, targets = [], []
    for seed in seeds:
        scene = generate_scene(seed, width=size[1], height=size[0], effects=False)
        segs = scene.segments
        things = np.flatnonzero(segs.is_thing)
        kp = segs.keypoints[things]
        if not ((segs.category_ids[things] == person) & ((kp[..., 2] > 0).sum(1) >= 10)).any():
            continue
        x, y, w, h = segs.bboxes[things].T
        images.append(torch.from_numpy(scene.image).permute(2, 0, 1).float())
        targets.append(
            {
                "boxes": torch.tensor(np.stack([x, y, x + w, y + h], 1), dtype=torch.float32),
                "labels": torch.from_numpy(segs.category_ids[things] - len(STUFF) + 1),
                "masks": torch.from_numpy(scene.id_map[None] == segs.ids[things][:, None, None]).to(
                    torch.uint8
                ),
                "keypoints": torch.tensor(kp, dtype=torch.float32),
                "person": torch.from_numpy(segs.category_ids[things] == person),
            }
        )
        if len(images) == want:
            break
    assert len(images) == want
    return images, targets


def _keypoint_error(model, x, targets):
    """Mean distance (in box diagonals) of the predicted visible keypoints of the people, on
    their true boxes."""
    from torchvision.models.detection.image_list import ImageList

    model.eval()
    with torch.no_grad():
        feats = model.features(x)
        sizes = [tuple(x.shape[-2:])] * x.shape[0]
        boxes = [t["boxes"][t["person"]] for t in targets]
        logits = model.detector.roi_heads._keypoint_logits(
            feats, boxes, ImageList(x, sizes).image_sizes
        )
        pred = decode_keypoints(logits, torch.cat(boxes))
    truth = torch.cat([t["keypoints"][t["person"]] for t in targets])
    box = torch.cat(boxes)
    diag = (box[:, 2:] - box[:, :2]).norm(dim=1)[:, None]
    err = (pred[..., :2] - truth[..., :2]).norm(dim=-1) / diag
    return float(err[truth[..., 2] > 0].mean())


def test_keypoint_head_learns_a_fixed_set():
    torch.manual_seed(0)
    config = _config((128, 160), rpn_post_nms_top_n_train=64, box_batch_size_per_image=32)
    family = family_of("mask_rcnn")
    model = family.build(config)
    images, targets = _fixed_set()
    mean = torch.tensor(config.normalization.mean)[:, None, None]
    std = torch.tensor(config.normalization.std)[:, None, None]
    x = (torch.stack(images) - mean) / std
    train_targets = [{k: v for k, v in t.items() if k != "person"} for t in targets]
    before = _keypoint_error(model, x, targets)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(60):
        model.train()
        out = model.training_losses(x, train_targets)
        total = sum(v for k, v in out.items() if k.startswith("loss_"))
        opt.zero_grad()
        total.backward()
        opt.step()
        losses.append(float(out["loss_keypoint"].detach()))
    after = _keypoint_error(model, x, targets)
    # Random heatmaps: a cross-entropy near log(S^2); it must fall well below that.
    s = config.keypoint_heatmap_size
    assert losses[0] > 0.8 * math.log(s * s)
    print("keypoint loss", [round(v, 2) for v in losses[::5]], "error", before, after)
    assert np.mean(losses[-5:]) < 0.6 * losses[0], losses
    assert after < 0.3 * before, (before, after)


def test_onnxruntime_agrees_with_torch_on_keypoint_logits(tmp_path):
    """The exported graph carries the keypoint branch (RoiAlign + convs + ConvTranspose +
    Resize); ONNX Runtime's raw outputs and the decoded keypoints agree with torch's."""
    from segmentation_ros.runtime.backends import OnnxRuntimeBackend, TorchBackend
    from segmentation_ros.runtime.onnx_export import export_onnx

    config = _config((96, 128))
    torch.manual_seed(0)
    model = family_of("mask_rcnn").build(config).eval()
    rpn, heads = model.detector.rpn.head, model.detector.roi_heads
    torch.nn.init.normal_(rpn.cls_logits.weight, std=0.5)  # no score ties (see test_mask_rcnn)
    torch.nn.init.normal_(heads.box_predictor.cls_score.weight, std=0.2)
    path = export_onnx(model, tmp_path / "kp.onnx", input_size=(96, 128))
    x = torch.randn(1, 3, 96, 128, generator=torch.Generator().manual_seed(2))
    eager = TorchBackend(model).infer(x)
    ort = OnnxRuntimeBackend(path, KeypointMaskRCNNOutputs).infer(x)
    assert eager.keypoint_logits.shape[:3] == (1, eager.boxes.shape[1], K)
    for field, a, b in zip(KeypointMaskRCNNOutputs._fields, eager, ort, strict=True):
        assert a.shape == b.shape, field
        scale = max(1.0, float(a.float().abs().max()))
        np.testing.assert_allclose(
            b.float().numpy(), a.float().numpy(), atol=1e-4 * scale, rtol=0, err_msg=field
        )
    a = decode_keypoints(eager.keypoint_logits[0], eager.boxes[0])
    b = decode_keypoints(ort.keypoint_logits[0], ort.boxes[0])
    torch.testing.assert_close(b[..., :2], a[..., :2], atol=1e-3, rtol=0)


def test_keypoint_branch_is_torchvisions():
    """Our RoI heads against torchvision's own `RoIHeads` holding the same modules (one thing
    class, person, so that torchvision's "every positive" is our "every person"): the same
    keypoint loss on the same sampled proposals, the same keypoints at inference."""
    from torchvision.models.detection.image_list import ImageList
    from torchvision.models.detection.roi_heads import RoIHeads

    config = _config((128, 160))
    config = family_of("mask_rcnn").with_classes(config, stuff_names=STUFF, thing_names=("person",))
    torch.manual_seed(0)
    model = family_of("mask_rcnn").build(config)
    ours = model.detector.roi_heads
    reference = RoIHeads(
        ours.box_roi_pool, ours.box_head, ours.box_predictor, 0.5, 0.5,
        ours.fg_bg_sampler.batch_size_per_image, 0.25, None, ours.score_thresh, ours.nms_thresh,
        ours.detections_per_img, mask_roi_pool=ours.mask_roi_pool, mask_head=ours.mask_head,
        mask_predictor=ours.mask_predictor, keypoint_roi_pool=ours.keypoint_roi_pool,
        keypoint_head=ours.keypoint_head, keypoint_predictor=ours.keypoint_predictor,
    )  # fmt: skip
    images, targets = _fixed_set(want=1)
    t = targets[0]
    keep = t["person"]
    target = {"boxes": t["boxes"][keep], "labels": torch.ones(int(keep.sum()), dtype=torch.int64),
              "masks": t["masks"][keep], "keypoints": t["keypoints"][keep]}  # fmt: skip
    assert len(target["boxes"]) >= 1
    x = (images[0][None] - 128.0) / 64.0
    sizes = [tuple(x.shape[-2:])]
    model.train()
    reference.train()
    feats = model.features(x)
    proposals, _ = model.detector.rpn(ImageList(x, sizes), feats, [target])
    torch.manual_seed(1)
    _, ours_losses = ours(feats, [p.detach() for p in proposals], sizes, [target])
    torch.manual_seed(1)
    _, ref_losses = reference(feats, [p.detach() for p in proposals], sizes, [target])
    torch.testing.assert_close(ours_losses["loss_keypoint"], ref_losses["loss_keypoint"])
    model.eval()
    reference.eval()
    with torch.no_grad():
        feats = model.features(x)
        proposals, _ = model.detector.rpn(ImageList(x, sizes), feats)
        detections, _ = ours(feats, proposals, sizes)
        expected, _ = reference(feats, proposals, sizes)
    d, e = detections[0], expected[0]
    torch.testing.assert_close(d.boxes, e["boxes"])
    got = decode_keypoints(d.keypoint_logits, d.boxes)
    torch.testing.assert_close(got[..., :2], e["keypoints"][..., :2])
    torch.testing.assert_close(got[..., 2], e["keypoints_scores"])
