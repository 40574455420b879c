"""Training augmentations and the network-input step, keeping image, masks, boxes and semantic
map consistent, and the collate into a batch.

Every augmentation is a callable `(sample, rng) -> sample` on `PanopticSample` (numpy, see
`datasets.py` for the conventions) with an explicit `np.random.Generator`, so the result is a
function of the seed alone (`TrainingSet` seeds one generator per (epoch, index): the same
samples whatever the number of loader workers).

Consistency by construction: geometric steps move the image (bilinear) and the panoptic id
map (nearest, pixel centres) only; the semantic map, the instance masks and their tight boxes
are then re-derived from the id map (`datasets.build_sample`). Instances emptied by a crop or a
downscale disappear, with their segments. Photometric steps change the image only.

Then `TrainTransform` resizes to the network input (height, width) exactly as inference does
(`models.preprocess`: bilinear, align_corners=False, RGB mean / std) and returns torch tensors:
`TrainExample` (image + `TrainTarget`); `collate` stacks them into a `TrainBatch`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import cv2
import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from segmentation_ros.data.samples import PanopticSample, build_sample

__all__ = [
    "Augmentation",
    "Compose",
    "PhotometricDistort",
    "RandomHorizontalFlip",
    "RandomScaleCrop",
    "TrainBatch",
    "TrainExample",
    "TrainTarget",
    "TrainTransform",
    "TrainingSet",
    "collate",
    "default_augmentation",
    "resize_sample",
]

# The official YOLACT pads with the ImageNet mean (RGB).
MEAN_RGB = (124, 117, 104)


class Augmentation(Protocol):
    def __call__(self, sample: PanopticSample, rng: np.random.Generator) -> PanopticSample: ...


def _rebuild(
    sample: PanopticSample,
    image: np.ndarray,
    id_map: np.ndarray,
    keypoints: np.ndarray | None = None,
) -> PanopticSample:
    """The sample for a moved image and id map (ids still those of `sample.segments`) and the
    keypoints moved with them (`_move_keypoints`)."""
    return build_sample(
        np.ascontiguousarray(image),
        np.ascontiguousarray(id_map),
        sample.segments,
        num_stuff=sample.num_stuff,
        image_id=sample.image_id,
        keypoints=keypoints,
        keypoint_flip=sample.keypoint_flip,
    )


def _move_keypoints(
    sample: PanopticSample,
    size: tuple[int, int],
    *,
    scale: tuple[float, float] = (1.0, 1.0),
    offset: tuple[float, float] = (0.0, 0.0),
    flip: bool = False,
) -> np.ndarray | None:
    """`sample.keypoints` under x' = x * sx + ox, y' = y * sy + oy (after a left-right mirror of
    the sample's width, with left and right swapped, when `flip`) in an image of size (H, W);
    keypoints that leave it become unlabelled (0, 0, 0). None without keypoints."""
    if sample.keypoints is None:
        return None
    kp = sample.keypoints.astype(np.float32, copy=True)
    if flip:
        if len(sample.keypoint_flip) != kp.shape[1]:
            raise ValueError("flipping keypoints needs the sample's keypoint_flip permutation")
        kp = kp[:, list(sample.keypoint_flip)]
        kp[..., 0] = sample.width - kp[..., 0]
    kp[..., 0] = kp[..., 0] * scale[0] + offset[0]
    kp[..., 1] = kp[..., 1] * scale[1] + offset[1]
    height, width = size
    x, y = kp[..., 0], kp[..., 1]
    gone = (kp[..., 2] <= 0) | (x < 0) | (y < 0) | (x >= width) | (y >= height)
    kp[gone] = 0.0
    return kp


def _nearest_index(n_out: int, n_in: int) -> np.ndarray:
    """Source index of each output pixel for nearest resizing by pixel centres."""
    idx = ((np.arange(n_out) + 0.5) * (n_in / n_out)).astype(np.int64)
    return np.minimum(idx, n_in - 1)


def resize_sample(sample: PanopticSample, size: tuple[int, int]) -> PanopticSample:
    """`sample` resized to size = (height, width): image bilinear (OpenCV), id map nearest."""
    height, width = size
    if (height, width) == (sample.height, sample.width):
        return sample
    image = cv2.resize(sample.image, (width, height), interpolation=cv2.INTER_LINEAR)
    id_map = sample.id_map[_nearest_index(height, sample.height)][
        :, _nearest_index(width, sample.width)
    ]
    scale = (width / sample.width, height / sample.height)
    return _rebuild(sample, image, id_map, _move_keypoints(sample, size, scale=scale))


@dataclass(frozen=True)
class Compose:
    """Apply `transforms` in order with the same generator."""

    transforms: tuple[Augmentation, ...]

    def __call__(self, sample: PanopticSample, rng: np.random.Generator) -> PanopticSample:
        for t in self.transforms:
            sample = t(sample, rng)
        return sample


@dataclass(frozen=True)
class RandomHorizontalFlip:
    """Mirror left-right with probability `p` (boxes x1' = W - x2, x2' = W - x1)."""

    p: float = 0.5

    def __call__(self, sample: PanopticSample, rng: np.random.Generator) -> PanopticSample:
        if rng.random() >= self.p:
            return sample
        keypoints = _move_keypoints(sample, (sample.height, sample.width), flip=True)
        return _rebuild(sample, sample.image[:, ::-1], sample.id_map[:, ::-1], keypoints)


@dataclass(frozen=True)
class RandomScaleCrop:
    """Scale by s ~ U(scale_range), then cut a window of `crop_size` (height, width; default the
    input size) at a random place; where the scaled image is smaller than the window it is
    placed at a random offset and the rest is padded (image: `pad_value` RGB, labels: void).

    Boxes are recomputed from the moved masks; instances left without pixels are dropped.
    """

    scale_range: tuple[float, float] = (0.5, 1.5)
    crop_size: tuple[int, int] | None = None
    pad_value: tuple[int, int, int] = MEAN_RGB

    def __post_init__(self) -> None:
        lo, hi = self.scale_range
        if not 0 < lo <= hi or not math.isfinite(hi):
            raise ValueError(f"scale_range must be 0 < lo <= hi, got {self.scale_range}")
        if self.crop_size is not None and min(self.crop_size) < 1:
            raise ValueError(f"crop_size must be (height, width) >= 1, got {self.crop_size}")

    def __call__(self, sample: PanopticSample, rng: np.random.Generator) -> PanopticSample:
        scale = rng.uniform(*self.scale_range)
        h, w = sample.height, sample.width
        ch, cw = self.crop_size or (h, w)
        nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
        scaled = resize_sample(sample, (nh, nw)) if (nh, nw) != (h, w) else sample
        (sy, dy, ly), (sx, dx, lx) = _window(nh, ch, rng), _window(nw, cw, rng)
        image = np.empty((ch, cw, 3), np.uint8)
        image[...] = np.asarray(self.pad_value, np.uint8)
        id_map = np.zeros((ch, cw), scaled.id_map.dtype)
        image[dy : dy + ly, dx : dx + lx] = scaled.image[sy : sy + ly, sx : sx + lx]
        id_map[dy : dy + ly, dx : dx + lx] = scaled.id_map[sy : sy + ly, sx : sx + lx]
        keypoints = _move_keypoints(scaled, (ch, cw), offset=(dx - sx, dy - sy))
        return _rebuild(scaled, image, id_map, keypoints)


def _window(n: int, c: int, rng: np.random.Generator) -> tuple[int, int, int]:
    """(source start, destination start, length) of a random size-c window over n pixels."""
    if n >= c:
        return int(rng.integers(0, n - c + 1)), 0, c
    return 0, int(rng.integers(0, c - n + 1)), n


@dataclass(frozen=True)
class PhotometricDistort:
    """SSD / official YOLACT photometric distortion of the image only, each step with
    probability `p`: brightness +U(-brightness, brightness), contrast x U(contrast) before or
    after (random) the HSV steps saturation x U(saturation) and hue +U(-hue, hue) degrees."""

    brightness: float = 32.0
    contrast: tuple[float, float] = (0.5, 1.5)
    saturation: tuple[float, float] = (0.5, 1.5)
    hue: float = 18.0
    p: float = 0.5

    def __call__(self, sample: PanopticSample, rng: np.random.Generator) -> PanopticSample:
        img = sample.image.astype(np.float32)
        if rng.random() < self.p:
            img += rng.uniform(-self.brightness, self.brightness)
        contrast_first = rng.random() < 0.5
        if contrast_first and rng.random() < self.p:
            img *= rng.uniform(*self.contrast)
        hsv = cv2.cvtColor(np.clip(img, 0, 255) / 255.0, cv2.COLOR_RGB2HSV)
        if rng.random() < self.p:
            hsv[..., 1] = np.clip(hsv[..., 1] * rng.uniform(*self.saturation), 0.0, 1.0)
        if rng.random() < self.p:
            hsv[..., 0] = np.mod(hsv[..., 0] + rng.uniform(-self.hue, self.hue), 360.0)
        img = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB) * 255.0
        if not contrast_first and rng.random() < self.p:
            img *= rng.uniform(*self.contrast)
        image = np.clip(np.rint(img), 0, 255).astype(np.uint8)
        return PanopticSample(**{**sample.__dict__, "image": image})


def default_augmentation(
    scale_range: tuple[float, float] = (0.5, 1.5), flip: float = 0.5, photometric: bool = True
) -> Compose:
    """Photometric distortion, random scale + crop to the image's own size, horizontal flip."""
    steps: list[Augmentation] = [PhotometricDistort()] if photometric else []
    steps += [RandomScaleCrop(scale_range), RandomHorizontalFlip(flip)]
    return Compose(tuple(steps))


# ---------------------------------------------------------------------------------------------
# Network input, batch


@dataclass
class TrainTarget:
    """Ground truth of one image at the network input resolution (H x W), torch tensors.

    boxes:        [N, 4] float32 (x1, y1, x2, y2) pixels of the network input.
    classes:      [N] int64 thing class (0-based).
    masks:        [N, H, W] bool.
    iscrowd:      [N] bool (crowd regions: never positives, see `models.matching`).
    semantic:     [H, W] int64 panoptic category, 255 = void.
    id_map:       [H, W] int32 segment ids (0 = void), for PCV ground truth.
    instance_ids: [N] int64 segment id of each instance in `id_map`.
    keypoints:    [N, K, 3] float32 (x, y, visibility) pixels of the network input (COCO's
                  frame) per instance; None for a data set without keypoints.
    """

    boxes: Tensor
    classes: Tensor
    masks: Tensor
    iscrowd: Tensor
    semantic: Tensor
    id_map: Tensor
    instance_ids: Tensor
    keypoints: Tensor | None = None

    def __len__(self) -> int:
        return int(self.classes.shape[0])

    def to(self, device: torch.device | str, non_blocking: bool = False) -> TrainTarget:
        return TrainTarget(
            **{
                k: None if v is None else v.to(device, non_blocking=non_blocking)
                for k, v in self.__dict__.items()
            }
        )


@dataclass
class TrainExample:
    """One network input [3, H, W] float32 (normalised) and its `TrainTarget`."""

    image: Tensor
    target: TrainTarget
    image_id: int | str = -1


@dataclass
class TrainBatch:
    """images [B, 3, H, W] float32 normalised, one `TrainTarget` per image."""

    images: Tensor
    targets: tuple[TrainTarget, ...]
    image_ids: tuple[int | str, ...] = field(default=())

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def to(self, device: torch.device | str, non_blocking: bool = False) -> TrainBatch:
        return TrainBatch(
            self.images.to(device, non_blocking=non_blocking),
            tuple(t.to(device, non_blocking) for t in self.targets),
            self.image_ids,
        )


@dataclass(frozen=True)
class TrainTransform:
    """Augment (optional), resize to the network input and normalise.

    config: the model config (`YolactConfig` or `PanopticYolactConfig`): its `input_size`
        (height, width) and `normalization` are used, through `models.preprocess`.
    augment: an augmentation (e.g. `default_augmentation()`), None for none (evaluation).
    """

    config: Any
    augment: Augmentation | None = None

    def __call__(self, sample: PanopticSample, rng: np.random.Generator) -> TrainExample:
        from segmentation_ros.models.preprocess import preprocess

        if self.augment is not None:
            sample = self.augment(sample, rng)
        height, width = self.config.input_size
        image = preprocess(sample.image, self.config)[0]
        id_map = sample.id_map[_nearest_index(height, sample.height)][
            :, _nearest_index(width, sample.width)
        ]
        # The image went through `preprocess`: the labels are rebuilt beside a stand-in image.
        blank = np.broadcast_to(np.zeros((1, 1, 3), np.uint8), (height, width, 3))
        scale = (width / sample.width, height / sample.height)
        labels = build_sample(
            blank,
            id_map,
            sample.segments,
            num_stuff=sample.num_stuff,
            image_id=sample.image_id,
            keypoints=_move_keypoints(sample, (height, width), scale=scale),
        )
        keypoints = None
        if labels.keypoints is not None:
            keypoints = torch.from_numpy(labels.keypoints[labels.instance_ids - 1])
        target = TrainTarget(
            boxes=torch.from_numpy(labels.boxes.astype(np.float32)).reshape(-1, 4),
            classes=torch.from_numpy(labels.classes),
            masks=torch.from_numpy(labels.masks),
            iscrowd=torch.from_numpy(labels.iscrowd.astype(bool)),
            semantic=torch.from_numpy(labels.semantic),
            id_map=torch.from_numpy(labels.id_map.astype(np.int32)),
            instance_ids=torch.from_numpy(labels.instance_ids),
            keypoints=keypoints,
        )
        return TrainExample(image, target, sample.image_id)


def collate(examples: Sequence[TrainExample]) -> TrainBatch:
    """Stack `TrainExample`s (same input size) into a `TrainBatch`."""
    if not examples:
        raise ValueError("cannot collate an empty list of examples")
    sizes = {tuple(e.image.shape) for e in examples}
    if len(sizes) != 1:
        raise ValueError(f"examples have different input sizes {sorted(sizes)}")
    return TrainBatch(
        torch.stack([e.image for e in examples]),
        tuple(e.target for e in examples),
        tuple(e.image_id for e in examples),
    )


class TrainingSet(Dataset):
    """A data set of `PanopticSample` with a transform seeded per (epoch, index).

    `training_set[(epoch, index)]` (or `[index]`, epoch 0) applies `transform(sample, rng)` with
    `rng = np.random.default_rng([seed, 1, epoch, index])`: reproducible whatever the loader's
    worker count or order.
    """

    def __init__(self, dataset: Dataset, transform: TrainTransform, seed: int = 0) -> None:
        self.dataset = dataset
        self.transform = transform
        self.seed = int(seed)

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, key: int | tuple[int, int]) -> TrainExample:
        epoch, index = key if isinstance(key, tuple) else (0, key)
        rng = np.random.default_rng([self.seed, 1, int(epoch), int(index)])
        return self.transform(self.dataset[int(index)], rng)
