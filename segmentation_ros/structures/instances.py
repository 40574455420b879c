"""Detections of one image: `Instances`, and the compact masks the ROS messages carry.

Conventions (stated once for the package):
- Image: H x W pixels; pixel (u, v) (column u, row v) covers [u, u + 1) x [v, v + 1).
- Boxes: [N, 4] float32 (x1, y1, x2, y2) in absolute pixels of the original image,
  0 <= x1 <= x2 <= W and 0 <= y1 <= y2 <= H (clamped to the image).
- Classes: int64, 0-based indices into the model's `class_names` (background is not a class).
- Masks are kept compact: `mask_probs` [N, Hp, Wp] float32, the sigmoid mask probabilities at
  prototype resolution, already cropped to the box (zero outside it). The prototype frame
  spans the whole image (it is the network input, which is the whole image resized), so a
  full-resolution mask is the bilinear resize of `mask_probs` to H x W (align_corners=False)
  thresholded with `> threshold` - exactly the official YOLACT postprocess.
- Order: instances are sorted by descending detection score as NMS produced them. Where masks
  overlap, the instance that comes first (the higher detection score) owns the pixel.
- ROIs: (x, y, w, h) int64, the tight box of a mask's pixels: columns [x, x + w), rows
  [y, y + h); (0, 0, 0, 0) for an empty mask.

Everything stays on the device of the tensors; empty instances (N = 0) work everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor

from segmentation_ros.ops.mask_assembly import render_masks

__all__ = ["CompactMasks", "Instances"]


@dataclass(frozen=True)
class CompactMasks:
    """Binary masks as tight crops - what the per-object ROS messages carry.

    image_size: (H, W) of the image the masks belong to.
    rois:       [N, 4] int64 (x, y, w, h) tight box of each mask's pixels (zeros if empty).
    crops:      N uint8 tensors [h_i, w_i], 255 = mask pixel, 0 = not (views into a shared
                buffer, possibly not contiguous: `np.ascontiguousarray(c.numpy())`).
    areas:      [N] int64 pixel counts.
    centroids:  [N, 2] float32 (x, y), mean of the pixel centres (u + 0.5, v + 0.5) in image
                pixels; NaN for an empty mask.
    """

    image_size: tuple[int, int]
    rois: Tensor
    crops: list[Tensor]
    areas: Tensor
    centroids: Tensor
    # The same crops as bool, when the producer has them (saves a conversion in `id_image`).
    bool_crops: list[Tensor] | None = field(default=None, repr=False, compare=False)

    def __len__(self) -> int:
        return len(self.crops)

    def id_image(self) -> Tensor:
        """[H, W] int32: 0 = background, i + 1 = instance i; the earlier instance wins overlaps."""
        masks = self.bool_crops
        if masks is None:
            masks = [c != 0 for c in self.crops]
        return _paint_ids(self.image_size, self.rois, masks)


def _paint_ids(image_size: tuple[int, int], rois: Tensor, crops: list[Tensor]) -> Tensor:
    """Id image from tight bool crops; earlier instances own overlapping pixels."""
    height, width = image_size
    ids = torch.zeros((height, width), dtype=torch.int32, device=rois.device)
    xs, ys, ws, hs = rois.unbind(1)
    if bool(((rois < 0).any(1) | (xs + ws > width) | (ys + hs > height)).any()):
        raise ValueError(f"rois must lie inside the {height}x{width} image, got {rois.tolist()}")
    # Paint from the last instance to the first so that earlier ones overwrite later ones; the
    # windows are strided views of `ids` (one `as_strided` call each, cheaper than slicing).
    offsets = (rois[:, 1] * width + rois[:, 0]).tolist()
    sizes = rois[:, 2:].tolist()
    for i in range(len(offsets) - 1, -1, -1):
        w, h = sizes[i]
        if w and h:
            ids.as_strided((h, w), (width, 1), offsets[i]).masked_fill_(crops[i], i + 1)
    return ids


class Instances:
    """Detections of one image, struct of arrays (in the spirit of detectron2's `Instances`).

    image_size:  (H, W) of the original image.
    boxes:       [N, 4] float32 (x1, y1, x2, y2) absolute pixels, clamped to the image.
    scores:      [N] float32 detection (box) score.
    mask_scores: [N] float32 mask score (== scores without a mask-IoU head).
    classes:     [N] int64 class index into `class_names`.
    mask_probs:  [N, Hp, Wp] float32 cropped mask probabilities at prototype resolution.
    keypoints:   [N, K, 3] float32 (x, y, score) image pixels (`structures.keypoints`), NaN
                 rows for classes without keypoints; None for models without a keypoint head.
    See the module docstring for the conventions.
    """

    __slots__ = (
        "image_size",
        "boxes",
        "scores",
        "mask_scores",
        "classes",
        "mask_probs",
        "keypoints",
    )

    def __init__(
        self,
        *,
        image_size: tuple[int, int],
        boxes: Tensor,
        scores: Tensor,
        mask_scores: Tensor,
        classes: Tensor,
        mask_probs: Tensor,
        keypoints: Tensor | None = None,
    ) -> None:
        if len(image_size) != 2 or min(int(v) for v in image_size) < 1:
            raise ValueError(f"image_size must be (H, W) >= 1, got {image_size}")
        n = int(boxes.shape[0]) if boxes.dim() >= 1 else -1
        if boxes.dim() != 2 or boxes.shape[1] != 4:
            raise ValueError(f"boxes must be [N, 4], got {tuple(boxes.shape)}")
        for name, value in (("scores", scores), ("mask_scores", mask_scores), ("classes", classes)):
            if value.shape != (n,):
                raise ValueError(f"{name} must be [N={n}], got {tuple(value.shape)}")
        if mask_probs.dim() != 3 or mask_probs.shape[0] != n:
            raise ValueError(f"mask_probs must be [N={n}, Hp, Wp], got {tuple(mask_probs.shape)}")
        if classes.dtype != torch.int64:
            raise TypeError(f"classes must be int64, got {classes.dtype}")
        if keypoints is not None and (
            keypoints.dim() != 3 or keypoints.shape[0] != n or keypoints.shape[2] != 3
        ):
            raise ValueError(f"keypoints must be [N={n}, K, 3], got {tuple(keypoints.shape)}")
        self.image_size = (int(image_size[0]), int(image_size[1]))
        self.boxes = boxes
        self.scores = scores
        self.mask_scores = mask_scores
        self.classes = classes
        self.mask_probs = mask_probs
        self.keypoints = keypoints

    @staticmethod
    def empty(
        image_size: tuple[int, int],
        proto_size: tuple[int, int] = (0, 0),
        device: torch.device | str | None = None,
    ) -> Instances:
        """No detections; `proto_size` (Hp, Wp) sets the shape of the empty `mask_probs`."""
        f32 = {"dtype": torch.float32, "device": device}
        return Instances(
            image_size=image_size,
            boxes=torch.zeros((0, 4), **f32),
            scores=torch.zeros(0, **f32),
            mask_scores=torch.zeros(0, **f32),
            classes=torch.zeros(0, dtype=torch.int64, device=device),
            mask_probs=torch.zeros((0, *proto_size), **f32),
        )

    # -- container protocol -----------------------------------------------------------------

    def __len__(self) -> int:
        return int(self.boxes.shape[0])

    def __getitem__(self, item: int | slice | Tensor) -> Instances:
        """Select instances: an int (kept as a 1-element Instances), a slice, a bool mask [N]
        or an int64 index tensor. Order follows the index."""
        if isinstance(item, int):
            n = len(self)
            if not -n <= item < n:
                raise IndexError(f"instance index {item} out of range for {n} instances")
            item = slice(item, item + 1 if item != -1 else None)
        if isinstance(item, Tensor) and item.dtype == torch.bool and item.shape != (len(self),):
            raise IndexError(f"bool index must be [{len(self)}], got {tuple(item.shape)}")
        return Instances(
            image_size=self.image_size,
            boxes=self.boxes[item],
            scores=self.scores[item],
            mask_scores=self.mask_scores[item],
            classes=self.classes[item],
            mask_probs=self.mask_probs[item],
            keypoints=None if self.keypoints is None else self.keypoints[item],
        )

    def to(self, device: torch.device | str) -> Instances:
        return Instances(
            image_size=self.image_size,
            boxes=self.boxes.to(device),
            scores=self.scores.to(device),
            mask_scores=self.mask_scores.to(device),
            classes=self.classes.to(device),
            mask_probs=self.mask_probs.to(device),
            keypoints=None if self.keypoints is None else self.keypoints.to(device),
        )

    @property
    def device(self) -> torch.device:
        return self.boxes.device

    def __repr__(self) -> str:
        return (
            f"Instances(num_instances={len(self)}, image_size={self.image_size}, "
            f"proto_size={tuple(self.mask_probs.shape[1:])}, device={self.device})"
        )

    # -- boxes --------------------------------------------------------------------------------

    def int_boxes(self) -> Tensor:
        """[N, 4] int64 boxes as the official postprocess returns them (`boxes.long()`).

        Equal to the official values for every box that overlaps the image; for a box entirely
        outside it the official ones are inverted (x2 < 0 or x1 > W), ours are clamped.
        """
        return self.boxes.long()

    # -- masks --------------------------------------------------------------------------------

    def full_masks(self, threshold: float = 0.5) -> Tensor:
        """[N, H, W] bool full-resolution masks, exactly the official computation:
        `F.interpolate(mask_probs, (H, W), bilinear, align_corners=False) > threshold`.
        Memory: N x H x W floats transiently; prefer `compact_masks` / `id_image`."""
        height, width = self.image_size
        if len(self) == 0 or self.mask_probs.shape[1] == 0 or self.mask_probs.shape[2] == 0:
            return torch.zeros((len(self), height, width), dtype=torch.bool, device=self.device)
        up = F.interpolate(
            self.mask_probs[None], (height, width), mode="bilinear", align_corners=False
        )
        return up[0] > threshold

    def compact_masks(self, threshold: float = 0.5) -> CompactMasks:
        """Tight ROI + uint8 crop (0 / 255) per instance, with areas and centroids, computed
        without materialising full-size masks (see `ops.mask_assembly.render_masks`)."""
        rendered = render_masks(self.mask_probs, self.image_size, threshold, uint8=True)
        return CompactMasks(
            image_size=self.image_size,
            rois=rendered.rois,
            crops=rendered.crops_u8,
            areas=rendered.areas,
            centroids=rendered.centroids,
            bool_crops=rendered.crops,
        )

    def id_image(self, threshold: float = 0.5) -> Tensor:
        """[H, W] int32 instance id image: 0 = background, i + 1 = instance i; where masks
        overlap the earlier (higher-score) instance wins. Equal to the first-True index of
        `full_masks(threshold)` along N, without materialising the N full-size masks."""
        rendered = render_masks(self.mask_probs, self.image_size, threshold)
        return _paint_ids(self.image_size, rendered.rois, rendered.crops)

    def areas(self, threshold: float = 0.5) -> Tensor:
        """[N] int64 pixel count of each full-resolution mask (overlaps counted for each)."""
        return render_masks(self.mask_probs, self.image_size, threshold).areas

    def centroids(self, threshold: float = 0.5) -> Tensor:
        """[N, 2] float32 (x, y) mean pixel centre of each full-resolution mask; NaN if empty."""
        return render_masks(self.mask_probs, self.image_size, threshold).centroids
