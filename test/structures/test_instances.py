"""Instances: container behaviour, masks (official full masks, id image, compact crops)."""

import math

import pytest
import torch
import torch.nn.functional as F

from segmentation_ros.ops.mask_assembly import assemble_masks
from segmentation_ros.structures import CompactMasks, Instances

IMAGE = (90, 120)  # H + W > 128: PyTorch's generic bilinear kernel (see ops.mask_assembly)


def make_instances(n=5, seed=0, proto=(16, 20)):
    gen = torch.Generator().manual_seed(seed)
    centre = torch.rand(n, 2, generator=gen)
    size = torch.rand(n, 2, generator=gen) * 0.6 + 0.1
    rel = torch.cat([centre - size / 2, centre + size / 2], dim=1)
    probs = assemble_masks(
        torch.relu(torch.randn(*proto, 4, generator=gen)) * 3,
        torch.tanh(torch.randn(n, 4, generator=gen)),
        rel,
    )
    scale = torch.tensor([IMAGE[1], IMAGE[0]] * 2)
    boxes = (rel * scale).clamp(min=0).minimum(scale)
    return Instances(
        image_size=IMAGE,
        boxes=boxes,
        scores=torch.linspace(0.9, 0.5, n),
        mask_scores=torch.linspace(0.8, 0.4, n),
        classes=torch.arange(n) % 3,
        mask_probs=probs,
    )


def slow_id_image(full_masks):
    """First instance (lowest index) covering each pixel, 0 for none."""
    n, height, width = full_masks.shape
    ids = torch.zeros(height, width, dtype=torch.int32)
    for v in range(height):
        for u in range(width):
            for i in range(n):
                if full_masks[i, v, u]:
                    ids[v, u] = i + 1
                    break
    return ids


def test_len_getitem_to():
    inst = make_instances()
    assert len(inst) == 5
    sub = inst[inst.scores > 0.65]
    assert len(sub) == 3 and torch.equal(sub.classes, inst.classes[:3])
    picked = inst[torch.tensor([4, 0])]
    assert torch.equal(picked.boxes, inst.boxes[[4, 0]])
    assert torch.equal(picked.mask_probs, inst.mask_probs[[4, 0]])
    assert len(inst[1:3]) == 2 and len(inst[2]) == 1 and len(inst[-1]) == 1
    assert torch.equal(inst[-1].scores, inst.scores[-1:])
    moved = inst.to("cpu")
    assert moved.device == torch.device("cpu") and moved.image_size == IMAGE
    with pytest.raises(IndexError):
        inst[5]
    with pytest.raises(IndexError):
        inst[torch.ones(3, dtype=torch.bool)]


def test_validation():
    inst = make_instances(2)
    fields = {
        "image_size": IMAGE,
        "boxes": inst.boxes,
        "scores": inst.scores,
        "mask_scores": inst.mask_scores,
        "classes": inst.classes,
        "mask_probs": inst.mask_probs,
    }
    with pytest.raises(ValueError, match="boxes"):
        Instances(**{**fields, "boxes": inst.boxes[:, :3]})
    with pytest.raises(ValueError, match="scores"):
        Instances(**{**fields, "scores": inst.scores[:1]})
    with pytest.raises(ValueError, match="mask_probs"):
        Instances(**{**fields, "mask_probs": inst.mask_probs[0]})
    with pytest.raises(TypeError, match="int64"):
        Instances(**{**fields, "classes": inst.classes.int()})
    with pytest.raises(ValueError, match="image_size"):
        Instances(**{**fields, "image_size": (0, 5)})


def test_full_masks_are_official():
    inst = make_instances()
    up = F.interpolate(inst.mask_probs[None], IMAGE, mode="bilinear", align_corners=False)[0]
    assert torch.equal(inst.full_masks(), up > 0.5)
    assert torch.equal(inst.full_masks(0.3), up > 0.3)


def test_id_image_first_instance_wins():
    inst = make_instances(6, seed=1)
    full = inst.full_masks()
    assert (full.sum(dim=0) > 1).any(), "the test needs overlapping masks"
    ids = inst.id_image()
    assert ids.dtype == torch.int32 and ids.shape == IMAGE
    assert torch.equal(ids, slow_id_image(full))


def test_compact_masks_cover_full_masks():
    inst = make_instances(6, seed=2)
    full = inst.full_masks()
    compact = inst.compact_masks()
    assert isinstance(compact, CompactMasks) and len(compact) == 6
    assert compact.rois.dtype == torch.int64 and compact.rois.shape == (6, 4)
    for i, ((x, y, w, h), crop) in enumerate(zip(compact.rois.tolist(), compact.crops)):
        assert crop.dtype == torch.uint8 and crop.shape == (h, w)
        assert set(crop.unique().tolist()) <= {0, 255}
        pasted = torch.zeros(IMAGE, dtype=torch.bool)
        pasted[y : y + h, x : x + w] = crop == 255
        assert torch.equal(pasted, full[i])
    assert torch.equal(compact.areas, full.sum(dim=(1, 2)))
    assert torch.equal(compact.areas, inst.areas())
    assert torch.equal(compact.id_image(), inst.id_image())
    # Without the bool crops the id image is the same.
    plain = CompactMasks(IMAGE, compact.rois, compact.crops, compact.areas, compact.centroids)
    assert torch.equal(plain.id_image(), inst.id_image())


def test_centroids():
    inst = make_instances(4, seed=3)
    full = inst.full_masks()
    centroids = inst.centroids()
    for i in range(4):
        ys, xs = torch.nonzero(full[i], as_tuple=True)
        if ys.numel():
            expected = torch.stack([xs.double().mean() + 0.5, ys.double().mean() + 0.5])
            torch.testing.assert_close(centroids[i].double(), expected)
        else:
            assert torch.isnan(centroids[i]).all()


def test_int_boxes_official_rounding():
    inst = make_instances()
    inst.boxes[0] = torch.tensor([0.0, 2.9999, 119.5, 90.0])
    assert inst.int_boxes()[0].tolist() == [0, 2, 119, 90]
    assert inst.int_boxes().dtype == torch.int64


def test_empty_instances_everywhere():
    empty = Instances.empty(IMAGE, (16, 20))
    assert len(empty) == 0 and empty.mask_probs.shape == (0, 16, 20)
    assert empty.full_masks().shape == (0, *IMAGE)
    assert torch.equal(empty.id_image(), torch.zeros(IMAGE, dtype=torch.int32))
    compact = empty.compact_masks()
    assert len(compact) == 0 and compact.rois.shape == (0, 4)
    assert empty.areas().shape == (0,) and empty.centroids().shape == (0, 2)
    assert len(empty[empty.scores > 0.5]) == 0 and len(empty.to("cpu")) == 0
    assert empty.int_boxes().shape == (0, 4)
    assert "num_instances=0" in repr(empty)


def test_blank_mask_instance():
    inst = make_instances(2)
    inst.mask_probs[1] = 0
    compact = inst.compact_masks()
    assert compact.rois[1].tolist() == [0, 0, 0, 0] and compact.areas[1] == 0
    assert compact.crops[1].shape == (0, 0)
    assert math.isnan(float(compact.centroids[1, 0]))
    assert not (inst.id_image() == 2).any()
