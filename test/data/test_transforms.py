"""Augmentations keep image, id map, semantic map, masks and boxes consistent; the network-input
step matches inference preprocessing; seeding and collate."""

import dataclasses

import numpy as np
import pytest
import torch

from segmentation_ros.data.datasets import SyntheticSceneDataset
from segmentation_ros.data.samples import VOID_LABEL, build_sample
from segmentation_ros.data.transforms import (
    Compose,
    PhotometricDistort,
    RandomHorizontalFlip,
    RandomScaleCrop,
    TrainingSet,
    TrainTransform,
    collate,
    default_augmentation,
    resize_sample,
)
from segmentation_ros.models import get_config, preprocess, with_input_size
from segmentation_ros.panoptic.pq import SegmentsInfo

from .test_datasets import assert_consistent

CONFIG = with_input_size(get_config("yolact_mobilenetv3"), (40, 56))


def _hand_sample():
    """20 x 30: stuff 0 below row 10, stuff 1 above; things (num_stuff 2): a box near the left
    edge, one near the right edge, one in the middle."""
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)
    ids = np.where(np.arange(20)[:, None] < 10, 2, 1) * np.ones((1, 30), np.int64)
    ids[4:9, 0:3] = 3
    ids[12:18, 26:30] = 4
    ids[8:14, 12:17] = 5
    segs = SegmentsInfo(
        np.array([1, 2, 3, 4, 5]), np.array([0, 1, 2, 3, 2]), np.array([0, 0, 0, 0, 1], bool)
    )
    return build_sample(image, ids, segs, num_stuff=2, image_id=7)


@pytest.fixture(scope="module")
def scenes():
    return [SyntheticSceneDataset([s], width=64, height=48)[0] for s in range(3)]


def test_flip_mirrors_everything():
    s = _hand_sample()
    f = RandomHorizontalFlip(1.0)(s, np.random.default_rng(0))
    assert_consistent(f)
    np.testing.assert_array_equal(f.image, s.image[:, ::-1])
    np.testing.assert_array_equal(f.semantic, s.semantic[:, ::-1])
    w = s.width
    expected = np.stack([w - s.boxes[:, 2], s.boxes[:, 1], w - s.boxes[:, 0], s.boxes[:, 3]], 1)
    np.testing.assert_array_equal(f.boxes, expected)
    np.testing.assert_array_equal(f.masks, s.masks[:, :, ::-1])
    np.testing.assert_array_equal(f.classes, s.classes)
    np.testing.assert_array_equal(f.iscrowd, s.iscrowd)
    assert RandomHorizontalFlip(0.0)(s, np.random.default_rng(0)) is s


def test_crop_recomputes_boxes_and_drops_emptied_instances():
    s = _hand_sample()
    # scale 1, crop 12 x 14: try offsets until the left-edge instance is cut away.
    t = RandomScaleCrop((1.0, 1.0), crop_size=(12, 14))
    seen_drop = seen_clip = False
    for seed in range(40):
        c = t(s, np.random.default_rng(seed))
        assert_consistent(c)
        assert c.image.shape == (12, 14, 3)
        seen_drop |= len(c) < len(s)
        seen_clip |= bool(((c.boxes[:, 2] - c.boxes[:, 0]) < 5).any())
    assert seen_drop and seen_clip


def test_scale_crop_pads_with_void_when_zooming_out():
    s = _hand_sample()
    c = RandomScaleCrop((0.5, 0.5))(s, np.random.default_rng(1))
    assert_consistent(c)
    assert c.image.shape == s.image.shape
    void = c.semantic == VOID_LABEL
    assert void.sum() >= s.semantic.size - 10 * 15  # at most a 10 x 15 scaled copy is labelled
    assert (c.image[void] == np.array([124, 117, 104], np.uint8)).all()


@pytest.mark.parametrize("seed", range(6))
def test_default_augmentation_keeps_consistency(scenes, seed):
    aug = default_augmentation()
    for scene in scenes:
        out = aug(scene, np.random.default_rng(seed))
        assert_consistent(out)
        assert out.image.shape == scene.image.shape


def test_photometric_changes_the_image_only(scenes):
    s = scenes[0]
    a = PhotometricDistort(p=1.0)(s, np.random.default_rng(3))
    b = PhotometricDistort(p=1.0)(s, np.random.default_rng(3))
    np.testing.assert_array_equal(a.image, b.image)  # a function of the generator
    assert not np.array_equal(a.image, s.image) and a.image.dtype == np.uint8
    for name in ("semantic", "boxes", "masks", "id_map", "classes"):
        np.testing.assert_array_equal(getattr(a, name), getattr(s, name))


def test_resize_sample_is_nearest_on_labels():
    s = _hand_sample()
    r = resize_sample(s, (40, 60))
    assert_consistent(r)
    np.testing.assert_array_equal(r.semantic, np.repeat(np.repeat(s.semantic, 2, 0), 2, 1))
    np.testing.assert_array_equal(r.boxes, s.boxes * 2)


def test_train_transform_matches_inference_preprocess(scenes):
    s = scenes[1]
    ex = TrainTransform(CONFIG)(s, np.random.default_rng(0))
    torch.testing.assert_close(ex.image, preprocess(s.image, CONFIG)[0], rtol=0, atol=0)
    t = ex.target
    h, w = CONFIG.input_size
    assert ex.image.shape == (3, h, w) and t.semantic.shape == (h, w)
    assert t.masks.shape == (len(t), h, w) and t.masks.dtype == torch.bool
    assert t.boxes.dtype == torch.float32 and t.classes.dtype == torch.int64
    assert (t.boxes[:, 0] >= 0).all() and (t.boxes[:, 2] <= w).all()
    assert (t.boxes[:, 3] <= h).all() and (t.boxes[:, 2] > t.boxes[:, 0]).all()
    for n in range(len(t)):  # boxes bound their masks tightly at the input size
        ys, xs = torch.nonzero(t.masks[n], as_tuple=True)
        assert t.boxes[n].tolist() == [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]


def test_training_set_is_seeded_per_epoch_and_index(scenes):
    ts = TrainingSet(scenes, TrainTransform(CONFIG, default_augmentation()), seed=5)
    a, b, c = ts[(0, 1)], ts[(0, 1)], ts[(1, 1)]
    torch.testing.assert_close(a.image, b.image, rtol=0, atol=0)
    assert not torch.equal(a.image, c.image)
    batch = collate([ts[(0, i)] for i in range(3)])
    assert batch.images.shape == (3, 3, 40, 56) and len(batch.targets) == 3
    assert batch.image_ids == tuple(s.image_id for s in scenes)
    moved = batch.to("cpu")
    assert moved.targets[0].semantic.dtype == torch.int64


def test_collate_rejects_mixed_sizes(scenes):
    other = dataclasses.replace(CONFIG, input_size=(32, 32))
    a = TrainTransform(CONFIG)(scenes[0], np.random.default_rng(0))
    b = TrainTransform(other)(scenes[0], np.random.default_rng(0))
    with pytest.raises(ValueError, match="different input sizes"):
        collate([a, b])
    with pytest.raises(ValueError, match="empty"):
        collate([])


def test_bad_parameters():
    with pytest.raises(ValueError, match="scale_range"):
        RandomScaleCrop((2.0, 1.0))
    with pytest.raises(ValueError, match="crop_size"):
        RandomScaleCrop(crop_size=(0, 4))
    assert isinstance(default_augmentation(photometric=False), Compose)
