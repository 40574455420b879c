"""The panoptic result that travels from postprocess (panoptic YOLACT or PCV) to the node.

Category convention (stated once): a panoptic model has `stuff_names` (S) and `thing_names` (T);
panoptic category ids are 0..S-1 for stuff and S..S+T-1 for things, the same order as the semantic
head's channels. A YOLACT thing class c (0-based) is panoptic category S + c.
Segment ids are 1..N within one image; id 0 in the id map is void / unknown.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass
class Segments:
    """Struct of arrays, one entry per segment (COCO-panoptic `segments_info`).

    ids:          [N] int32, the value of the segment's pixels in the id map (>= 1).
    category_ids: [N] int64, panoptic category id (see module docstring).
    is_thing:     [N] bool.
    areas:        [N] int64, pixel count in the id map.
    scores:       [N] float32, detection score for things, mean stuff probability for stuff.
    """

    ids: Tensor
    category_ids: Tensor
    is_thing: Tensor
    areas: Tensor
    scores: Tensor

    def __len__(self) -> int:
        return int(self.ids.shape[0])

    def __getitem__(self, item) -> Segments:
        return Segments(
            ids=self.ids[item],
            category_ids=self.category_ids[item],
            is_thing=self.is_thing[item],
            areas=self.areas[item],
            scores=self.scores[item],
        )

    def to(self, device) -> Segments:
        return Segments(
            *(
                t.to(device)
                for t in (self.ids, self.category_ids, self.is_thing, self.areas, self.scores)
            )
        )

    @staticmethod
    def empty(device=None) -> Segments:
        return Segments(
            ids=torch.zeros(0, dtype=torch.int32, device=device),
            category_ids=torch.zeros(0, dtype=torch.int64, device=device),
            is_thing=torch.zeros(0, dtype=torch.bool, device=device),
            areas=torch.zeros(0, dtype=torch.int64, device=device),
            scores=torch.zeros(0, dtype=torch.float32, device=device),
        )


@dataclass
class PanopticResult:
    """One image's panoptic segmentation.

    id_map:   [H, W] int32 segment id per pixel (0 = void / unknown), at the image's resolution.
    segments: the segments present in `id_map`.
    """

    id_map: Tensor
    segments: Segments

    def semantic_map(self, void_label: int = 255) -> Tensor:
        """[H, W] int64 category id per pixel; void pixels get `void_label`."""
        lut = torch.full(
            (int(self.id_map.max().item()) + 1 if self.id_map.numel() else 1,),
            void_label,
            dtype=torch.int64,
            device=self.id_map.device,
        )
        lut[self.segments.ids.long()] = self.segments.category_ids
        return lut[self.id_map.long()]

    def to(self, device) -> PanopticResult:
        return PanopticResult(self.id_map.to(device), self.segments.to(device))
