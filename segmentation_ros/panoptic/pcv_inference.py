"""Panoptic inference of Pixel Consensus Voting (Wang et al., CVPR 2020): vote and semantic
logits of one image -> `PanopticResult`.

Steps (all on the voting grid h x w, typically 1/4 of the network input):
1. softmax of the vote logits [18, h, w] -> heatmap (`VoteAccumulator`) -> peak regions
   (threshold, 4-connected components, `find_peak_regions`), as the reference
   (w-hc/pcv `conn_comp_peak_search`);
2. back-projection (`pcv_backproject`) with the query filter: a pixel is claimed by the peak
   regions lying in the cell it voted for (argmax; abstaining pixels take none), and a pixel
   claimed by several goes to the nearest peak, as the reference;
3. instances are kept on the pixels whose semantic argmax is a thing class (the reference
   instead drops, on contested pixels only, the instances whose class differs from the pixel's);
   off by default, as neither the lecture nor the paper has it: they can grow
   `grow_iterations` steps (3 x 3 dilation) into neighbouring unclaimed thing pixels (the
   17-cell table only reaches 4 grid cells, so the far pixels of large objects abstain);
4. a thing segment's category is the majority thing class of its pixels, its score the mean
   probability of that class over them; unclaimed pixels whose semantic argmax is a stuff class
   form one segment per stuff class (score: mean probability of that class); unclaimed pixels
   whose argmax is a thing class are void (`unclaimed_things="void"`) or join the best stuff
   class (`"stuff"`);
5. the id map is upsampled to the image size with nearest neighbour (pixel-centre aligned);
   segments smaller than `min_thing_area` / `min_stuff_area` image pixels become void; ids are
   1..N, things first (in peak order), then stuff by category.
Categories follow `segmentation_ros.panoptic.result`: stuff 0..S-1, things S..S+T-1.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from segmentation_ros.ops.pcv_voting import (
    VoteAccumulator,
    VoteConfig,
    find_peak_regions,
    pcv_backproject,
    vote_cells,
)
from segmentation_ros.structures import PanopticResult, Segments

UNCLAIMED_THINGS = ("void", "stuff")


@dataclass(frozen=True)
class PCVInferenceParams:
    """Settings of `pcv_panoptic`.

    threshold: heatmap level (in votes; one pixel's full vote is 1) of the peak regions.
    min_peak_area: peak regions with fewer grid pixels are dropped.
    min_peak_mass: peak regions with fewer votes in total are dropped.
    grow_iterations: 3 x 3 growth steps of the instances into unclaimed thing pixels (grid
        cells); 0 (default, the lecture's and the reference's inference) keeps exactly the
        back-projected pixels.
    unclaimed_things: "void" or "stuff" (see the module docstring).
    min_thing_area / min_stuff_area: smaller segments (image pixels) become void.
    """

    threshold: float = 1.0
    min_peak_area: int = 1
    min_peak_mass: float = 0.0
    grow_iterations: int = 0
    unclaimed_things: str = "void"
    min_thing_area: int = 16
    min_stuff_area: int = 64

    def __post_init__(self) -> None:
        if self.unclaimed_things not in UNCLAIMED_THINGS:
            raise ValueError(
                f"unclaimed_things must be one of {UNCLAIMED_THINGS}, got {self.unclaimed_things!r}"
            )
        if self.min_peak_area < 1:
            raise ValueError(f"min_peak_area must be >= 1, got {self.min_peak_area}")
        if min(self.grow_iterations, self.min_thing_area, self.min_stuff_area) < 0:
            raise ValueError("grow_iterations, min_thing_area and min_stuff_area must be >= 0")


DEFAULT_PCV_PARAMS = PCVInferenceParams()
DEFAULT_VOTE_CONFIG = VoteConfig()


def _nearest_index(out_size: int, in_size: int, device: torch.device) -> Tensor:
    """Source index of each output pixel, pixel-centre aligned: floor((i + 0.5) * in / out)."""
    i = torch.arange(out_size, device=device, dtype=torch.float64)
    return ((i + 0.5) * (in_size / out_size)).floor().long().clamp_(0, in_size - 1)


def _grow(labels: Tensor, allowed: Tensor, iterations: int) -> Tensor:
    """Dilate positive labels (3 x 3, the largest neighbouring label) into `allowed` pixels
    that have none; stops early when nothing changes."""
    for _ in range(iterations):
        grown = F.max_pool2d(labels[None, None].float(), 3, stride=1, padding=1)[0, 0].long()
        new = torch.where((labels == 0) & allowed, grown, labels)
        if torch.equal(new, labels):
            break
        labels = new
    return labels


def pcv_panoptic(
    vote_logits: Tensor,
    semantic_logits: Tensor,
    *,
    num_stuff: int,
    image_size: tuple[int, int] | None = None,
    vote_config: VoteConfig = DEFAULT_VOTE_CONFIG,
    params: PCVInferenceParams = DEFAULT_PCV_PARAMS,
) -> PanopticResult:
    """PCV panoptic segmentation of one image (steps in the module docstring).

    vote_logits: [18, h, w] float raw voting-head logits (cells 0..16, abstain 17).
    semantic_logits: [S + T, h, w] float raw semantic logits on the same grid, stuff first.
    num_stuff: S (0 <= S <= S + T).
    image_size: (H, W) of the id map; default (h, w).
    Returns a `PanopticResult` (id map [H, W] int32) on the device of the inputs.
    """
    if vote_logits.dim() != 3 or vote_logits.shape[0] != vote_config.num_classes:
        raise ValueError(
            f"vote_logits must be [{vote_config.num_classes}, h, w], got {tuple(vote_logits.shape)}"
        )
    if semantic_logits.dim() != 3 or semantic_logits.shape[-2:] != vote_logits.shape[-2:]:
        raise ValueError(
            f"semantic_logits must be [S + T, h, w] on the voting grid "
            f"{tuple(vote_logits.shape[-2:])}, got {tuple(semantic_logits.shape)}"
        )
    num_classes = semantic_logits.shape[0]
    if not 0 <= num_stuff <= num_classes:
        raise ValueError(f"num_stuff must be in [0, {num_classes}], got {num_stuff}")
    h, w = vote_logits.shape[-2:]
    height, width = (h, w) if image_size is None else (int(image_size[0]), int(image_size[1]))
    if height < 0 or width < 0:
        raise ValueError(f"image_size must be (H, W) >= 0, got {image_size}")
    device = vote_logits.device
    if h * w == 0 or height * width == 0:
        return PanopticResult(
            torch.zeros(height, width, dtype=torch.int32, device=device), Segments.empty(device)
        )

    # 1-2: votes -> peak regions -> back-projected instances on the grid.
    probs = torch.softmax(vote_logits.float(), dim=0)
    heat = VoteAccumulator(vote_config).to(device)(probs[None])[0, 0]
    peaks = find_peak_regions(
        heat,
        threshold=params.threshold,
        min_area=params.min_peak_area,
        min_mass=params.min_peak_mass,
    )
    instances = pcv_backproject(
        vote_cells(probs, vote_config), peaks.labels, peaks.num_regions, vote_config
    )

    # 3: restrict to thing pixels, grow into unclaimed ones.
    sem_probs = torch.softmax(semantic_logits.float(), dim=0)
    semantic = sem_probs.argmax(dim=0)
    is_thing_px = semantic >= num_stuff
    instances = torch.where(is_thing_px, instances, 0)
    if params.grow_iterations:
        instances = _grow(instances, is_thing_px, params.grow_iterations)

    # 4: segments on the grid. Things: majority thing class, mean probability of that class.
    num_things = num_classes - num_stuff
    empty_long = torch.zeros(0, dtype=torch.int64, device=device)
    thing_cats, thing_scores = empty_long, torch.zeros(0, device=device)
    grid_ids = torch.zeros(h, w, dtype=torch.int64, device=device)
    n_inst = peaks.num_regions
    if n_inst and num_things:
        thing_class = (semantic - num_stuff).clamp(min=0)
        votes = torch.bincount(
            (instances * num_things + thing_class).flatten(), minlength=(n_inst + 1) * num_things
        ).view(n_inst + 1, num_things)[1:]
        area = votes.sum(dim=1)
        present = area > 0
        cats = votes.argmax(dim=1) + num_stuff  # ties: the lowest class
        prob = sem_probs.gather(0, cats[(instances - 1).clamp(min=0)][None])[0]
        score_sum = torch.zeros(n_inst + 1, device=device)
        score_sum = score_sum.index_add_(0, instances.flatten(), prob.flatten())[1:]
        remap = torch.zeros(n_inst + 1, dtype=torch.int64, device=device)
        remap[1:][present] = torch.arange(1, int(present.sum()) + 1, device=device)
        grid_ids = remap[instances]  # 1..n_things in peak order
        thing_cats = cats[present]
        thing_scores = (score_sum / area.clamp(min=1))[present]
    n_things = int(thing_cats.numel())

    # Stuff: unclaimed pixels, one segment per stuff class present.
    stuff_cats, stuff_scores = empty_long, torch.zeros(0, device=device)
    if num_stuff:
        stuff_prob, stuff_class = sem_probs[:num_stuff].max(dim=0)
        stuff_px = grid_ids == 0
        if params.unclaimed_things == "void":
            stuff_px &= ~is_thing_px
        cls = stuff_class[stuff_px]
        counts = torch.bincount(cls, minlength=num_stuff)
        stuff_cats = torch.nonzero(counts).flatten()
        lut = torch.zeros(num_stuff, dtype=torch.int64, device=device)
        lut[stuff_cats] = torch.arange(1, stuff_cats.numel() + 1, device=device) + n_things
        grid_ids = torch.where(stuff_px, lut[stuff_class], grid_ids)
        prob_sum = torch.zeros(num_stuff, device=device).index_add_(0, cls, stuff_prob[stuff_px])
        stuff_scores = prob_sum[stuff_cats] / counts[stuff_cats]

    category_ids = torch.cat([thing_cats, stuff_cats])
    is_thing = torch.arange(category_ids.numel(), device=device) < n_things
    scores = torch.cat([thing_scores, stuff_scores]).float()

    # 5: image size, area filter, ids 1..N.
    rows = _nearest_index(height, h, device)
    cols = _nearest_index(width, w, device)
    id_map = grid_ids[rows][:, cols]
    n = int(category_ids.numel())
    areas = torch.bincount(id_map.flatten(), minlength=n + 1)[1:]
    min_area = torch.where(is_thing, params.min_thing_area, params.min_stuff_area)
    keep = (areas >= min_area) & (areas > 0)
    remap = torch.zeros(n + 1, dtype=torch.int64, device=device)
    n_keep = int(keep.sum())
    remap[1:][keep] = torch.arange(1, n_keep + 1, device=device)
    segments = Segments(
        ids=torch.arange(1, n_keep + 1, dtype=torch.int32, device=device),
        class_ids=category_ids[keep],
        is_thing=is_thing[keep],
        scores=scores[keep],
        areas=areas[keep],
    )
    return PanopticResult(remap[id_map].to(torch.int32), segments)
