"""Triton PCV back-projection (interpreted) against `pcv_backproject_reference`: exact."""

import pytest
import torch
from torch._subclasses.fake_tensor import FakeTensorMode

from segmentation_ros.ops.pcv_voting import pcv_backproject_reference
from segmentation_ros.ops.triton.pcv_backproject import BLOCK, pcv_backproject_triton


def random_maps(gen, shape, num_regions):
    """Votes with abstain (17), out-of-range (18, 19, -1) values; sparse region labels with
    few labels (many contested pixels and ties) and some negative ids (no region)."""
    cells = torch.randint(-1, 20, shape, generator=gen)
    regions = torch.randint(-1, num_regions + 1, shape, generator=gen)
    regions = regions * (torch.rand(shape, generator=gen) < 0.5)
    return cells, regions


def check(cells, regions, num_regions, inner_size=1):
    out = pcv_backproject_triton(cells, regions, num_regions, inner_size, 3 * inner_size)
    expected = pcv_backproject_reference(cells, regions, num_regions, inner_size, 3 * inner_size)
    assert out.dtype == torch.int64 and out.shape == expected.shape
    assert torch.equal(out, expected)
    return out


@pytest.mark.parametrize("inner_size", [1, 3])
@pytest.mark.parametrize("shape", [(1, 1, 1), (2, 9, 11), (1, 13, BLOCK // 13 + 2)])
def test_matches_reference(shape, inner_size):
    gen = torch.Generator().manual_seed(shape[1] * 10 + inner_size)
    for num_regions in (1, 3):
        cells, regions = random_maps(gen, shape, num_regions)
        out = check(cells, regions, num_regions, inner_size)
    if shape[1] > 1:
        assert out.gt(0).any()  # not vacuous


def test_dense_regions_ties():
    # Every pixel in a region with two labels: most cells are contested.
    gen = torch.Generator().manual_seed(4)
    cells = torch.randint(0, 17, (1, 8, 9), generator=gen)
    regions = torch.randint(1, 3, (1, 8, 9), generator=gen)
    check(cells, regions, 2)


def test_nearest_peak_and_ties():
    cells = torch.full((1, 7, 7), 17)
    cells[0, 3, 3] = 15  # outer E block: rows 2..4, cols 5..7 (7 is outside)
    regions = torch.zeros(1, 7, 7, dtype=torch.int64)
    regions[0, 2, 5] = 2  # peak (2, 5): distance^2 5
    regions[0, 4, 6] = 1  # peak (4, 6): distance^2 10
    regions[0, 3, 2] = 3  # outside the cell: claims nothing
    assert check(cells, regions, 3)[0, 3, 3] == 2
    regions[0, 4, 6] = 0
    regions[0, 4, 5] = 1  # peak (4, 5): distance^2 5, a tie: the lower label
    assert check(cells, regions, 3)[0, 3, 3] == 1


def test_abstaining_pixels_get_zero():
    regions = torch.ones(1, 5, 5, dtype=torch.int64)
    for vote in (17, 18, 100, -1, -5):
        out = check(torch.full((1, 5, 5), vote), regions, 1)
        assert not out.any()


def test_no_regions():
    gen = torch.Generator().manual_seed(1)
    cells, regions = random_maps(gen, (2, 6, 6), 2)
    assert not check(cells, regions, 0).any()  # num_regions = 0: the reference's zeros


def test_non_contiguous():
    gen = torch.Generator().manual_seed(6)
    cells, regions = random_maps(gen, (2, 11, 9), 3)
    cells_t = cells.transpose(1, 2).contiguous().transpose(1, 2)
    assert not cells_t.is_contiguous()
    check(cells_t, regions, 3)
    check(cells[:, 1::2, ::2], regions[:, 1::2, ::2], 3)


@pytest.mark.parametrize("shape", [(0, 3, 3), (2, 0, 4), (2, 4, 0)])
def test_empty(shape):
    check(torch.zeros(shape, dtype=torch.int64), torch.zeros(shape, dtype=torch.int64), 2)


def test_output_like_fake_kernel():
    gen = torch.Generator().manual_seed(2)
    cells, regions = random_maps(gen, (2, 5, 6), 2)
    out = pcv_backproject_triton(cells, regions, 2, 1, 3)
    with FakeTensorMode() as mode:
        fake = torch.ops.segros.pcv_backproject(
            mode.from_tensor(cells), mode.from_tensor(regions), 2, 1, 3
        )
    assert (out.shape, out.dtype, out.device) == (fake.shape, fake.dtype, fake.device)


def test_rejects_what_the_fake_kernel_rejects():
    cells = torch.zeros(1, 4, 4, dtype=torch.int64)
    with pytest.raises(RuntimeError, match="regions"):
        pcv_backproject_triton(cells, cells[:, :, :3], 1, 1, 3)
    with pytest.raises(RuntimeError, match="inner_size"):
        pcv_backproject_triton(cells, cells, 1, 2, 6)
