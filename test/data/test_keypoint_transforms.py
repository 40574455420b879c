"""Keypoints through the data sets and the training transforms, against the synthetic world's
truth: read back exactly, and after flips, scaled crops and the resize to the network input
still on their own person (the id map moves with them) with left and right still anatomical."""

import dataclasses

import numpy as np

from segmentation_ros.data.classes import SYNTHETIC_CLASSES
from segmentation_ros.data.datasets import SyntheticSceneDataset, open_dataset
from segmentation_ros.data.synthetic import generate_scene, write_dataset
from segmentation_ros.data.transforms import (
    Compose,
    RandomHorizontalFlip,
    RandomScaleCrop,
    TrainTransform,
)
from segmentation_ros.models import get_config
from segmentation_ros.structures.keypoints import SYNTHETIC_KEYPOINTS

SEEDS = [1, 2, 3, 4, 6]  # scenes with people at 160 x 120
PERSON = SYNTHETIC_CLASSES.id_of("person")
NAMES = {n: i for i, n in enumerate(SYNTHETIC_KEYPOINTS.names)}


def test_written_data_set_reads_back_the_exact_keypoints(tmp_path):
    write_dataset(tmp_path, SEEDS, width=160, height=120, image_format="png")
    dataset = open_dataset(f"synthetic:{tmp_path}")
    assert dataset.keypoint_names == SYNTHETIC_KEYPOINTS.names
    for index, seed in enumerate(SEEDS):
        sample, scene = dataset[index], generate_scene(seed, width=160, height=120)
        np.testing.assert_allclose(sample.keypoints, scene.segments.keypoints, atol=1e-4)
        assert sample.keypoint_flip == SYNTHETIC_KEYPOINTS.flip


def _check_target(target):
    """Fraction of visible keypoints on their own instance's mask; anatomical left / right."""
    kp, masks = target.keypoints.numpy(), target.masks.numpy()
    h, w = masks.shape[1:]
    on, total, sides = 0, 0, 0
    for person, mask in zip(kp, masks):
        for x, y, v in person:
            if v == 2:
                total += 1
                on += bool(mask[min(int(y), h - 1), min(int(x), w - 1)])
        a, b = person[NAMES["left_hip"]], person[NAMES["right_hip"]]
        if a[2] > 0 and b[2] > 0:
            assert a[0] > b[0]  # facing the camera: the left hip is right in the image
            sides += 1
    return on, total, sides


def test_flip_scale_crop_and_resize_move_keypoints_with_their_people():
    dataset = SyntheticSceneDataset(SEEDS, width=160, height=120, effects=False)
    config = dataclasses.replace(get_config("mask_rcnn_mobilenetv3"), input_size=(96, 128))
    flip = Compose((RandomScaleCrop((0.9, 1.4)), RandomHorizontalFlip(1.0)))
    on = total = sides = 0
    for augment in (None, flip):
        transform = TrainTransform(config, augment)
        for index in range(len(SEEDS)):
            sample = dataset[index]
            target = transform(sample, np.random.default_rng(index)).target
            assert target.keypoints.shape == (len(target), len(NAMES), 3)
            people = (target.classes.numpy() + sample.num_stuff) == PERSON
            assert not target.keypoints.numpy()[~people, :, 2].any()
            counts = _check_target(target)
            on, total, sides = on + counts[0], total + counts[1], sides + counts[2]
    assert total >= 100 and sides >= 5
    assert on >= 0.95 * total, (on, total)  # nearest-neighbour resizing moves thin parts a pixel
