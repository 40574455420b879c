"""Pixel Consensus Voting (Wang et al., "Pixel Consensus Voting for Panoptic Segmentation",
CVPR 2020): the discretised vote table, ground-truth cell assignment, vote accumulation,
peak regions and back-projection with the query filter.

Geometry (stated once; `VoteConfig`). Everything runs on a voting grid (typically 1/4 of the
network input); offsets and sizes are in grid cells, (y, x) order, y down. Around every pixel p
the table has K = 17 cells plus one "abstain" class, numbered as the lecture draws its 9 x 9
table (`voting_filter`):
- cell 0 is the `inner_size` block centred at p; cells 1..8 the 8 blocks of `inner_size`
  around it, anticlockwise (as seen on the image) from the top: centres at inner_size * (dy, dx)
  for (dy, dx) = N (-1, 0), NW (-1, -1), W (0, -1), SW (1, -1), S (1, 0), SE (1, 1), E (0, 1),
  NE (-1, 1) (`RING`);
- cells 9..16: the outer ring of 8 blocks of `outer_size` = 3 * inner_size, centred at
  outer_size * (dy, dx) in the same order (9 = N, 10 = NW, ..., 16 = NE);
- class 17 = abstain: stuff, void, or an object whose centroid lies outside the table.
With the defaults (1, 3) the table covers the 9 x 9 neighbourhood:

    10 10 10  9  9  9 16 16 16
    10 10 10  9  9  9 16 16 16
    10 10 10  9  9  9 16 16 16
    11 11 11  2  1  8 15 15 15
    11 11 11  3  0  7 15 15 15
    11 11 11  4  5  6 15 15 15
    12 12 12 13 13 13 14 14 14
    12 12 12 13 13 13 14 14 14
    12 12 12 13 13 13 14 14 14

a pixel whose instance centroid is farther than `reach` = 4 grid cells (Chebyshev) abstains.
The authors' code (w-hc/pcv, `Snake.ring_walk`) walks the same rings in the same direction but
starts each ring at its south-east block (1 = SE, 2 = E, 3 = NE, 4 = N, ...); the numbering is a
permutation of the vote channels and changes nothing else. The paper uses larger multi-ring
tables; this is the lecture's 17-cell one. At 1/4 resolution an object votes from pixels within
16 input pixels of its centroid; the other pixels of a large object abstain.

Parts:
- `assign_vote_cells`: instance map -> ground-truth cell per pixel (training target);
- `VoteAccumulator` / `accumulate_votes` (the voting filter): vote probabilities
  [B, 18, H, W] -> heatmap [B, 1, H, W] with one-hot transposed convolutions and average pooling
  (standard ops only, so it exports to ONNX); the mass a pixel puts in a cell is spread
  uniformly over the cell's pixels; as in the reference (`Ballot`), a block whose centre falls
  outside the image loses its whole vote, and a block partly outside loses its outside part;
- `find_peak_regions` (with `connected_components`): threshold + 4-connected components (the
  reference's `scipy.ndimage.label` default);
- `query_filter`: the voting filter spatially inverted (rotated 180 degrees);
- `pcv_backproject`: the registered op `segros::pcv_backproject`: pixel p belongs to peak region
  R when the query filter placed on some pixel q of R names, at p, the cell p voted for (that
  is: q lies in p's voted cell); a pixel claimed by several regions goes to the one whose peak
  (the centre of the region's bounding box) is nearest, as the reference resolves overlaps.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

# The ring of 8 blocks around a centre, anticlockwise (as seen on the image) from the top.
RING: tuple[tuple[int, int], ...] = (
    (-1, 0),
    (-1, -1),
    (0, -1),
    (1, -1),
    (1, 0),
    (1, 1),
    (0, 1),
    (-1, 1),
)
# (dy, dx) of the inner cells (0 = centre, 1..8 = ring) and of the outer cells (9..16).
INNER_CELLS: tuple[tuple[int, int], ...] = ((0, 0), *RING)
OUTER_CELLS: tuple[tuple[int, int], ...] = RING


@dataclass(frozen=True)
class VoteConfig:
    """The vote table (module docstring): 9 inner cells of `inner_size`, 8 outer cells of
    `outer_size` = 3 * inner_size (odd sizes), class `num_cells` (17) = abstain."""

    inner_size: int = 1
    outer_size: int = 3
    num_cells: int = 17

    def __post_init__(self) -> None:
        if not isinstance(self.inner_size, int) or self.inner_size < 1 or self.inner_size % 2 == 0:
            raise ValueError(f"inner_size must be an odd int >= 1, got {self.inner_size!r}")
        if self.outer_size != 3 * self.inner_size:
            raise ValueError(
                f"outer_size must be 3 * inner_size = {3 * self.inner_size} so that the outer "
                f"ring tiles around the inner block, got {self.outer_size!r}"
            )
        if self.num_cells != 17:
            raise ValueError(
                f"only the 17-cell table is implemented, got num_cells={self.num_cells}"
            )

    @property
    def num_classes(self) -> int:
        """Channels of the voting head: the cells plus abstain (18)."""
        return self.num_cells + 1

    @property
    def abstain(self) -> int:
        """Class index of abstain (17)."""
        return self.num_cells

    @property
    def reach(self) -> int:
        """Largest Chebyshev offset (grid cells) a cell covers: 4 for the defaults."""
        return self.outer_size + self.outer_size // 2

    def cell_geometry(self) -> list[tuple[int, int, int]]:
        """Per cell 0..16: (centre dy, centre dx, block size), offsets from the voting pixel."""
        inner = [
            (dy * self.inner_size, dx * self.inner_size, self.inner_size) for dy, dx in INNER_CELLS
        ]
        outer = [
            (dy * self.outer_size, dx * self.outer_size, self.outer_size) for dy, dx in OUTER_CELLS
        ]
        return inner + outer

    def offset_table(self, device: torch.device | str | None = None) -> Tensor:
        """The voting filter: [2 * reach + 1, 2 * reach + 1] int64, the cell index of offset
        (oy, ox) at [oy + reach, ox + reach] (offset = centroid - pixel, grid cells); painted
        from `cell_geometry` (the cells tile the square)."""
        r = self.reach
        table = torch.full((2 * r + 1, 2 * r + 1), -1, dtype=torch.int64)
        for k, (cy, cx, size) in enumerate(self.cell_geometry()):
            y0, x0 = cy + r - size // 2, cx + r - size // 2
            table[y0 : y0 + size, x0 : x0 + size] = k
        return table.to(device)


def voting_filter(config: VoteConfig = VoteConfig()) -> Tensor:
    """The voting filter (`VoteConfig.offset_table`): [2R + 1, 2R + 1] int64, R = reach; entry
    [R + dy, R + dx] is the cell a pixel votes for when its centroid lies at (dy, dx) from it."""
    return config.offset_table()


def query_filter(config: VoteConfig = VoteConfig()) -> Tensor:
    """The query filter: the voting filter spatially inverted (rotated by 180 degrees).
    [2R + 1, 2R + 1] int64; entry [R + oy, R + ox] = k means: placed on a peak pixel q, the pixel
    p = q + (oy, ox) voted for q exactly when p's vote is k (q - p = -(oy, ox) lies in cell k)."""
    return torch.flip(config.offset_table(), dims=(0, 1))


def _check_int_map(name: str, t: Tensor) -> None:
    if not isinstance(t, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if t.dtype.is_floating_point or t.dtype.is_complex or t.dtype == torch.bool:
        raise TypeError(f"{name} must hold integer ids, got {t.dtype}")
    if t.dim() not in (2, 3):
        raise ValueError(f"{name} must be [H, W] or [B, H, W], got {tuple(t.shape)}")


def assign_vote_cells(
    instance_map: Tensor, *, config: VoteConfig = VoteConfig(), ignore_index: int = -1
) -> Tensor:
    """Ground-truth vote class per pixel.

    instance_map: [H, W] or [B, H, W] integer instance ids on the voting grid (downsample the
        image's instance map with nearest neighbour first): 0 = no instance (stuff / void),
        > 0 = a thing instance (ids need not be contiguous), < 0 = ignored.
    Returns int64 of the same shape: for instance pixels the cell (0..16) containing their
    instance's centroid (the mean of the instance's pixel coordinates on this grid, rounded
    half up: floor(c + 0.5)), or `config.abstain` (17) if it is farther than `config.reach`;
    17 for id 0; `ignore_index` for negative ids (what `pcv_vote_loss` ignores).
    """
    _check_int_map("instance_map", instance_map)
    squeeze = instance_map.dim() == 2
    ids = (instance_map[None] if squeeze else instance_map).long()
    out = torch.full_like(ids, config.abstain)
    out[ids < 0] = ignore_index
    b, y, x = (ids > 0).nonzero(as_tuple=True)
    if b.numel():
        key = b * (int(ids.max()) + 1) + ids[b, y, x]
        _, inv = torch.unique(key, return_inverse=True)
        count = torch.bincount(inv).double()
        cy = torch.floor(torch.zeros_like(count).index_add_(0, inv, y.double()) / count + 0.5)
        cx = torch.floor(torch.zeros_like(count).index_add_(0, inv, x.double()) / count + 0.5)
        dy, dx = cy.long()[inv] - y, cx.long()[inv] - x
        r = config.reach
        inside = (dy.abs() <= r) & (dx.abs() <= r)
        table = config.offset_table(ids.device)
        cells = table[(dy + r).clamp(0, 2 * r), (dx + r).clamp(0, 2 * r)]
        out[b, y, x] = torch.where(inside, cells, torch.full_like(cells, config.abstain))
    return out[0] if squeeze else out


# --------------------------------------------------------------------------------------------
# Voting


def _one_hot_kernels(cells: tuple[tuple[int, int], ...]) -> Tensor:
    """[len(cells), 1, 3, 3]: channel i has a 1 at (dy + 1, dx + 1)."""
    w = torch.zeros(len(cells), 1, 3, 3)
    for i, (dy, dx) in enumerate(cells):
        w[i, 0, dy + 1, dx + 1] = 1.0
    return w


class VoteAccumulator(nn.Module):
    """Vote probabilities [B, 18, H, W] -> vote heatmap [B, 1, H, W] (the "voting filter").

    Each channel k < 17 of pixel p adds its probability to the pixels of cell k of p, spread
    uniformly (each of the s x s pixels gets prob / s^2); channel 17 (abstain) is dropped.
    A cell block: a transposed convolution with a fixed one-hot 3 x 3 kernel, dilation s and
    padding s moves the vote to the block centre (output H x W: a centre outside the image is
    dropped with the whole block, as the reference's `Ballot` does), then `avg_pool2d` (s x s,
    stride 1, padding s // 2, count_include_pad=True: every pixel of the block gets exactly
    1 / s^2 of the vote; the part of a block outside the image is lost) spreads it over the
    block. Inner cells with inner_size 1 need no pooling. Only conv_transpose2d and avg_pool2d:
    exports to ONNX. The kernels are buffers (follow `.to()`), not parameters.
    """

    def __init__(self, config: VoteConfig = VoteConfig()) -> None:
        super().__init__()
        self.config = config
        self.register_buffer("inner_kernel", _one_hot_kernels(INNER_CELLS), persistent=False)
        self.register_buffer("outer_kernel", _one_hot_kernels(OUTER_CELLS), persistent=False)

    @staticmethod
    def _spread(votes: Tensor, kernel: Tensor, size: int) -> Tensor:
        centres = F.conv_transpose2d(votes, kernel.to(votes.dtype), padding=size, dilation=size)
        if size > 1:
            centres = F.avg_pool2d(
                centres, size, stride=1, padding=size // 2, count_include_pad=True
            )
        return centres

    def forward(self, probs: Tensor) -> Tensor:
        c = self.config
        if probs.dim() != 4 or probs.shape[1] != c.num_classes:
            raise ValueError(
                f"vote probabilities must be [B, {c.num_classes}, H, W], got {tuple(probs.shape)}"
            )
        inner = self._spread(probs[:, :9], self.inner_kernel, c.inner_size)
        outer = self._spread(probs[:, 9 : c.num_cells], self.outer_kernel, c.outer_size)
        return inner + outer


def accumulate_votes(probs: Tensor, config: VoteConfig = VoteConfig()) -> Tensor:
    """Functional `VoteAccumulator`: [B, 18, H, W] probabilities -> [B, 1, H, W] heatmap."""
    return VoteAccumulator(config).to(probs.device)(probs)


def vote_cells(probs: Tensor, config: VoteConfig = VoteConfig()) -> Tensor:
    """Argmax vote class per pixel: [..., 18, H, W] probabilities or logits -> [..., H, W] int64
    in 0..16, or 17 (abstain) where abstain is the argmax."""
    if probs.dim() < 3 or probs.shape[-3] != config.num_classes:
        raise ValueError(
            f"votes must be [..., {config.num_classes}, H, W], got {tuple(probs.shape)}"
        )
    return probs.argmax(dim=-3)


# --------------------------------------------------------------------------------------------
# Peaks


def connected_components(mask: Tensor) -> tuple[Tensor, int]:
    """4-connected components of a [H, W] bool mask, in pure torch (any device); the
    connectivity of `scipy.ndimage.label`'s default structure, which the reference uses.

    Returns (labels [H, W] int64, 0 = background, 1..N numbered in raster order of each
    component's first pixel; N). Vectorised label propagation: every pixel starts with a key
    (larger for earlier pixels), then a max over the pixel and its 4 neighbours (a 3 x 1 and a
    1 x 3 max pooling) restricted to the mask alternates with pointer jumping (a pixel takes
    the key held by the pixel its key names) until nothing changes; the number of rounds is
    about log of the component diameter plus its tortuosity, small for the compact peak
    regions of PCV.
    """
    if mask.dim() != 2:
        raise ValueError(f"mask must be [H, W], got {tuple(mask.shape)}")
    h, w = mask.shape
    n = h * w
    if n == 0 or not bool(mask.any()):
        return torch.zeros(h, w, dtype=torch.int64, device=mask.device), 0
    dtype = torch.float32 if n < 2**24 else torch.float64  # exact integer keys
    m = mask.bool()
    keys = torch.where(m, n - torch.arange(n, device=mask.device).view(h, w), 0).to(dtype)
    while True:
        k = keys[None, None]
        pooled = torch.maximum(
            F.max_pool2d(k, (3, 1), stride=1, padding=(1, 0)),
            F.max_pool2d(k, (1, 3), stride=1, padding=(0, 1)),
        )[0, 0]
        new = torch.where(m, pooled, keys)
        flat = new.flatten()
        jumped = flat[(n - flat.long()).clamp(0, n - 1)].view(h, w)  # key of the named pixel
        new = torch.where(m, torch.maximum(new, jumped), new)
        if torch.equal(new, keys):
            break
        keys = new
    uniq, inv = torch.unique(keys[m], return_inverse=True)  # ascending keys = reverse raster
    labels = torch.zeros(h, w, dtype=torch.int64, device=mask.device)
    labels[m] = uniq.numel() - inv
    return labels, int(uniq.numel())


class PeakRegions(NamedTuple):
    """labels [H, W] int64 (0 = none, 1..N); areas [N] int64 pixels; masses [N] float votes
    (heatmap sum over the region)."""

    labels: Tensor
    areas: Tensor
    masses: Tensor

    @property
    def num_regions(self) -> int:
        return int(self.areas.numel())


def find_peak_regions(
    heatmap: Tensor, *, threshold: float = 1.0, min_area: int = 1, min_mass: float = 0.0
) -> PeakRegions:
    """Instance candidates: 4-connected components of `heatmap >= threshold` (the reference's
    `conn_comp_peak_search`).

    heatmap: [H, W] (or [1, 1, H, W]) accumulated votes (`VoteAccumulator`), in votes: one
        pixel's whole vote is 1. Components with fewer than `min_area` pixels or less than
        `min_mass` total votes are dropped; the others are renumbered 1..N keeping their
        (raster) order.
    """
    if heatmap.dim() == 4 and heatmap.shape[:2] == (1, 1):
        heatmap = heatmap[0, 0]
    if heatmap.dim() != 2:
        raise ValueError(f"heatmap must be [H, W] or [1, 1, H, W], got {tuple(heatmap.shape)}")
    if min_area < 1:
        raise ValueError(f"min_area must be >= 1, got {min_area}")
    labels, n = connected_components(heatmap >= threshold)
    if n == 0:
        empty = torch.zeros(0, dtype=torch.int64, device=heatmap.device)
        return PeakRegions(labels, empty, empty.to(heatmap.dtype))
    areas = torch.bincount(labels.flatten(), minlength=n + 1)[1:]
    masses = torch.zeros(n + 1, dtype=heatmap.dtype, device=heatmap.device)
    masses = masses.index_add_(0, labels.flatten(), heatmap.flatten())[1:]
    keep = (areas >= min_area) & (masses >= min_mass)
    if not bool(keep.all()):
        remap = torch.zeros(n + 1, dtype=torch.int64, device=heatmap.device)
        remap[1:][keep] = torch.arange(1, int(keep.sum()) + 1, device=heatmap.device)
        labels, areas, masses = remap[labels], areas[keep], masses[keep]
    return PeakRegions(labels, areas, masses)


# --------------------------------------------------------------------------------------------
# Back-projection: segros::pcv_backproject


def peak_centres(regions: Tensor, num_regions: int) -> Tensor:
    """Peak of each region as the reference takes it (`conn_comp_peak_search`): the centre of
    the region's bounding box, (y0 + h // 2, x0 + w // 2) with h, w its height and width.

    regions: [B, H, W] int64 labels 0 (none; negative values count as none) .. num_regions.
    Returns [B, num_regions + 1, 2] int64 (y, x) per image and label (row 0 and the labels
    absent from an image hold -1)."""
    bsz, h, w = regions.shape
    base = num_regions + 1
    out = torch.full((bsz * base, 2), -1, dtype=torch.int64, device=regions.device)
    b, y, x = (regions > 0).nonzero(as_tuple=True)
    if b.numel() == 0:
        return out.view(bsz, base, 2)
    index = b * base + regions[b, y, x]
    big = max(h, w)
    lo = torch.full((bsz * base, 2), big, dtype=torch.int64, device=regions.device)
    hi = torch.full((bsz * base, 2), -1, dtype=torch.int64, device=regions.device)
    yx = torch.stack([y, x], dim=1)
    lo.scatter_reduce_(0, index[:, None].expand(-1, 2), yx, reduce="amin")
    hi.scatter_reduce_(0, index[:, None].expand(-1, 2), yx, reduce="amax")
    present = hi[:, 0] >= 0
    out[present] = lo[present] + (hi[present] - lo[present] + 1) // 2
    return out.view(bsz, base, 2)


def pcv_backproject_reference(
    cells: Tensor, regions: Tensor, num_regions: int, inner_size: int, outer_size: int
) -> Tensor:
    """Pure PyTorch back-projection (the op's implementation and fallback); see `pcv_backproject`.

    The query filter Q (`query_filter`) is placed on every region pixel q, as the reference's
    `ConvEqualOpe` does: pixel p = q + o inside the image is claimed by q's region when
    cells[p] == Q[o]. Among the regions claiming p, the one whose peak (`peak_centres`) is
    nearest (squared Euclidean distance, ties to the lower label) wins, with one
    `scatter_reduce(amin)` of an encoded key. Sparse in the region pixels (peak regions are
    small): cost and memory O(region pixels x (2 reach + 1)^2 + H x W).
    """
    bsz, h, w = cells.shape
    out = torch.zeros(bsz * h * w, dtype=torch.int64, device=cells.device)
    if out.numel() == 0 or num_regions == 0:
        return out.view(bsz, h, w)
    config = VoteConfig(inner_size, outer_size)
    r = config.reach
    query = query_filter(config).to(cells.device).flatten()  # [(2r + 1)^2]
    o = torch.arange(-r, r + 1, device=cells.device)
    oy = o[:, None].expand(-1, o.numel()).flatten()
    ox = o[None, :].expand(o.numel(), -1).flatten()
    qb, qy, qx = (regions > 0).nonzero(as_tuple=True)
    label = regions[qb, qy, qx]
    py = qy[:, None] + oy[None, :]  # [Q, (2r + 1)^2] pixels under the filter
    px = qx[:, None] + ox[None, :]
    inside = (py >= 0) & (py < h) & (px >= 0) & (px < w)
    flat = (qb[:, None] * h + py.clamp(0, h - 1)) * w + px.clamp(0, w - 1)
    hit = inside & (cells.reshape(-1)[flat] == query[None, :])
    base = num_regions + 1
    keys = torch.unique(flat[hit] * base + label[:, None].expand_as(flat)[hit])
    pix, lab = keys // base, keys % base
    centres = peak_centres(regions, num_regions).view(-1, 2)
    centre = centres[(pix // (h * w)) * base + lab]
    dy = (pix % (h * w)) // w - centre[:, 0]
    dx = pix % w - centre[:, 1]
    score = (dy * dy + dx * dx) * base + lab  # nearest peak first, then the lower label
    none = torch.iinfo(torch.int64).max
    best = torch.full_like(out, none)
    best.scatter_reduce_(0, pix, score, reduce="amin", include_self=True)
    out = torch.where(best < none, best % base, 0)
    return out.view(bsz, h, w)


def _check_backproject(cells, regions, num_regions, inner_size, outer_size) -> None:
    torch._check(cells.dim() == 3, lambda: f"cells must be [B, H, W], got {tuple(cells.shape)}")
    torch._check(
        cells.dtype == torch.int64, lambda: f"cells must be int64 vote classes, got {cells.dtype}"
    )
    torch._check(
        regions.dtype == torch.int64, lambda: f"regions must be int64 labels, got {regions.dtype}"
    )
    torch._check(
        tuple(regions.shape) == tuple(cells.shape),
        lambda: f"regions {tuple(regions.shape)} must have the shape of cells {tuple(cells.shape)}",
    )
    torch._check(num_regions >= 0, lambda: f"num_regions must be >= 0, got {num_regions}")
    torch._check(
        inner_size >= 1 and inner_size % 2 == 1 and outer_size == 3 * inner_size,
        lambda: (
            f"need an odd inner_size and outer_size = 3 * inner_size, got {inner_size}, "
            f"{outer_size}"
        ),
    )


@torch.library.custom_op("segros::pcv_backproject", mutates_args=())
def _pcv_backproject_op(
    cells: Tensor, regions: Tensor, num_regions: int, inner_size: int, outer_size: int
) -> Tensor:
    return pcv_backproject_reference(cells, regions, num_regions, inner_size, outer_size)


@_pcv_backproject_op.register_fake
def _(cells, regions, num_regions, inner_size, outer_size):
    _check_backproject(cells, regions, num_regions, inner_size, outer_size)
    return cells.new_empty(cells.shape)


def pcv_backproject(
    cells: Tensor, regions: Tensor, num_regions: int, config: VoteConfig = VoteConfig()
) -> Tensor:
    """Back-projection with the query filter (the voting filter spatially inverted): peak
    regions -> instances.

    cells: [H, W] or [B, H, W] int64 vote class per pixel (`vote_cells`: the argmax of the vote
        distribution; 17 = abstain, also any value outside 0..16).
    regions: same shape, int64 peak-region labels (`find_peak_regions`): 0 = none, 1..R
        (negative values count as none).
    num_regions: R.
    Returns int64 of the same shape: pixel p is claimed by every region with a pixel inside the
    cell p voted for (equivalently: the query filter placed on that pixel names p's vote at
    p); of those, p gets the region whose peak (centre of its bounding box, `peak_centres`) is
    nearest to p, ties to the lowest label, as the reference resolves multiply-claimed pixels;
    0 when p abstains or no region pixel lies in its cell. Runs `segros::pcv_backproject`.
    """
    for name, t in (("cells", cells), ("regions", regions)):
        if not isinstance(t, Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
        if t.dim() not in (2, 3):
            raise ValueError(f"{name} must be [H, W] or [B, H, W], got {tuple(t.shape)}")
    if cells.shape != regions.shape:
        raise ValueError(
            f"cells {tuple(cells.shape)} and regions {tuple(regions.shape)} must match"
        )
    if cells.dtype != torch.int64 or regions.dtype != torch.int64:
        raise TypeError(f"cells and regions must be int64, got {cells.dtype}, {regions.dtype}")
    if regions.numel() and int(regions.max()) > num_regions:
        raise ValueError(f"regions holds labels above num_regions={num_regions}")
    squeeze = cells.dim() == 2
    if squeeze:
        cells, regions = cells[None], regions[None]
    out = _pcv_backproject_op(
        cells, regions, int(num_regions), config.inner_size, config.outer_size
    )
    return out[0] if squeeze else out
