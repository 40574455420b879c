"""PCV voting: ground-truth cells on hand-made cases, vote accumulation and back-projection
against slow loop references, opcheck, exact instance recovery from ground-truth votes."""

import pytest
import torch
import torch.nn.functional as F

from segmentation_ros.ops.pcv_voting import (
    VoteAccumulator,
    VoteConfig,
    accumulate_votes,
    assign_vote_cells,
    connected_components,
    find_peak_regions,
    pcv_backproject,
    pcv_backproject_reference,
    vote_cells,
)

CONFIGS = [VoteConfig(), VoteConfig(inner_size=3, outer_size=9)]


# ---- slow references ------------------------------------------------------------------------


def cell_pixels(config, k, y, x):
    """The (y, x) pixels of cell k of pixel (y, x), written out from the module docstring."""
    inner = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)]
    outer = [d for d in inner if d != (0, 0)]
    if k < 9:
        (dy, dx), s = inner[k], config.inner_size
    else:
        (dy, dx), s = outer[k - 9], config.outer_size
    cy, cx = y + dy * s, x + dx * s
    return [
        (cy + i, cx + j) for i in range(-(s // 2), s // 2 + 1) for j in range(-(s // 2), s // 2 + 1)
    ]


def slow_votes(config, probs):
    b, _, h, w = probs.shape
    out = torch.zeros(b, 1, h, w, dtype=torch.float64)
    for n in range(b):
        for y in range(h):
            for x in range(w):
                for k in range(17):
                    pix = cell_pixels(config, k, y, x)
                    for py, px in pix:
                        if 0 <= py < h and 0 <= px < w:
                            out[n, 0, py, px] += float(probs[n, k, y, x]) / len(pix)
    return out


def slow_backproject(config, cells, regions):
    b, h, w = cells.shape
    out = torch.zeros_like(cells)
    for n in range(b):
        for y in range(h):
            for x in range(w):
                k = int(cells[n, y, x])
                if not 0 <= k < 17:
                    continue
                counts = {}
                for py, px in cell_pixels(config, k, y, x):
                    if 0 <= py < h and 0 <= px < w and int(regions[n, py, px]) > 0:
                        r = int(regions[n, py, px])
                        counts[r] = counts.get(r, 0) + 1
                if counts:
                    best = max(counts.values())
                    out[n, y, x] = min(r for r, c in counts.items() if c == best)
    return out


# ---- geometry and ground truth --------------------------------------------------------------


def test_config_validation():
    c = VoteConfig()
    assert (c.num_classes, c.abstain, c.reach) == (18, 17, 4)
    with pytest.raises(ValueError, match="outer_size"):
        VoteConfig(inner_size=1, outer_size=5)
    with pytest.raises(ValueError, match="odd"):
        VoteConfig(inner_size=2, outer_size=6)
    with pytest.raises(ValueError, match="17-cell"):
        VoteConfig(num_cells=25)


def test_assign_vote_cells_hand_made():
    m = torch.zeros(7, 11, dtype=torch.int64)
    m[1:3, 1:3] = 4  # centroid (1.5, 1.5) -> rounded half up to (2, 2)
    m[5, :] = 9  # 11 pixels in a row, centroid (5, 5): the ends are 5 away -> abstain
    m[6, 0] = -1  # ignored
    cells = assign_vote_cells(m, ignore_index=-100)
    # block: offsets centroid - pixel (1,1)->8, (1,0)->7, (0,1)->5, (0,0)->4
    assert cells[1:3, 1:3].tolist() == [[8, 7], [5, 4]]
    # row: offsets +5 +4 +3 +2 +1 0 -1 -2 -3 -4 -5 along x -> abstain, outer (0,1) = 13,
    # inner (0,1) = 5, 4, inner (0,-1) = 3, outer (0,-1) = 12, abstain
    assert cells[5].tolist() == [17, 13, 13, 13, 5, 4, 3, 12, 12, 12, 17]
    assert cells[6, 0] == -100
    assert (cells[0] == 17).all() and (cells[6, 1:] == 17).all()
    # an L shape whose centroid is outside it: pixels (0,0),(0,1),(0,2),(1,0),(2,0), centroid
    # (0.6, 0.6) -> (1, 1), not an object pixel; the pixels vote for it anyway
    m2 = torch.zeros(3, 3, dtype=torch.int32)
    m2[0, :] = 1
    m2[:, 0] = 1
    assert assign_vote_cells(m2).tolist() == [[8, 7, 6], [5, 17, 17], [2, 17, 17]]
    # outer cell diagonals: a pixel 3 up-left of a 1-pixel-wide diagonal's centroid
    m3 = torch.zeros(7, 7, dtype=torch.int64)
    m3[torch.arange(7), torch.arange(7)] = 2  # centroid (3, 3)
    assert assign_vote_cells(m3).diagonal().tolist() == [16, 16, 8, 4, 0, 9, 9]


def test_assign_vote_cells_batch_and_ids():
    m = torch.zeros(2, 5, 5, dtype=torch.int64)
    m[0, 0, 0] = 1000  # large ids are fine (compacted), the same id in two images is separate
    m[1, 4, 4] = 1000
    m[1, 4, 3] = 1000  # centroid (4, 3.5) -> (4, 4)
    cells = assign_vote_cells(m)
    assert cells[0, 0, 0] == 4 and cells[1, 4, 4] == 4 and cells[1, 4, 3] == 5
    assert assign_vote_cells(torch.zeros(4, 6, dtype=torch.int64)).eq(17).all()
    assert assign_vote_cells(torch.zeros(0, 6, dtype=torch.int64)).shape == (0, 6)
    with pytest.raises(TypeError, match="integer"):
        assign_vote_cells(torch.zeros(4, 4))
    with pytest.raises(ValueError, match=r"\[H, W\]"):
        assign_vote_cells(torch.zeros(4, dtype=torch.int64))


# ---- voting ---------------------------------------------------------------------------------


@pytest.mark.parametrize("config", CONFIGS)
def test_votes_match_slow_loop(config):
    torch.manual_seed(0)
    probs = torch.softmax(torch.randn(1, 18, 9, 10, dtype=torch.float64), dim=1)
    fast = VoteAccumulator(config)(probs)
    torch.testing.assert_close(fast, slow_votes(config, probs))


def test_votes_conserve_mass_inside_image():
    probs = torch.zeros(1, 18, 20, 20)
    probs[0, 12, 10, 10] = 1.0  # outer (0, -1): block centred at (10, 7)
    heat = accumulate_votes(probs)
    assert heat.sum().item() == pytest.approx(1.0)
    assert torch.allclose(heat[0, 0, 9:12, 6:9], torch.full((3, 3), 1 / 9))
    probs[0, 12, 10, 10] = 0.0
    probs[0, 9, 0, 0] = 1.0  # outer (-1, -1) of a corner: block centre (-3, -3), all outside
    probs[0, 16, 17, 17] = 1.0  # outer (1, 1): centre (20, 20) outside, 1 of 9 pixels inside
    heat = accumulate_votes(probs)
    assert heat.sum().item() == pytest.approx(1 / 9)
    assert heat[0, 0, 19, 19].item() == pytest.approx(1 / 9)
    with pytest.raises(ValueError, match=r"\[B, 18, H, W\]"):
        accumulate_votes(torch.zeros(1, 17, 4, 4))


# ---- peaks ----------------------------------------------------------------------------------


def test_connected_components_partition():
    torch.manual_seed(1)
    mask = torch.rand(17, 23) > 0.55
    labels, n = connected_components(mask)
    assert labels[~mask].eq(0).all() and labels[mask].min() == 1 and labels.max() == n
    # same partition as a slow flood fill
    seen = torch.zeros_like(labels)
    count = 0
    for y in range(17):
        for x in range(23):
            if mask[y, x] and not seen[y, x]:
                count += 1
                stack = [(y, x)]
                seen[y, x] = count
                while stack:
                    cy, cx = stack.pop()
                    for dy in (-1, 0, 1):
                        for dx in (-1, 0, 1):
                            py, px = cy + dy, cx + dx
                            if 0 <= py < 17 and 0 <= px < 23 and mask[py, px] and not seen[py, px]:
                                seen[py, px] = count
                                stack.append((py, px))
    assert n == count
    assert torch.equal(labels, seen)  # raster order of first pixels, as the flood fill
    assert connected_components(torch.zeros(3, 4, dtype=torch.bool))[1] == 0


def test_find_peak_regions_filters():
    heat = torch.zeros(10, 10)
    heat[1, 1] = 5.0  # one pixel, mass 5
    heat[5:7, 5:8] = 1.0  # six pixels, mass 6
    heat[9, 0] = 1.5  # one pixel, mass 1.5
    r = find_peak_regions(heat, threshold=1.0)
    assert r.num_regions == 3 and r.areas.tolist() == [1, 6, 1]
    r = find_peak_regions(heat[None, None], threshold=1.0, min_area=2)
    assert r.num_regions == 1 and r.labels[5, 5] == 1 and r.labels[1, 1] == 0
    r = find_peak_regions(heat, threshold=1.0, min_mass=2.0)
    assert r.num_regions == 2 and r.labels[1, 1] == 1 and r.labels[6, 7] == 2
    assert find_peak_regions(torch.zeros(4, 4)).num_regions == 0
    with pytest.raises(ValueError, match="heatmap"):
        find_peak_regions(torch.zeros(2, 4, 4))


# ---- back-projection ------------------------------------------------------------------------


@pytest.mark.parametrize("config", CONFIGS)
def test_backproject_matches_slow_loop(config):
    torch.manual_seed(2)
    cells = torch.randint(0, 19, (2, 9, 10))  # 17 = abstain, 18 = out of range (abstain too)
    regions = torch.randint(0, 4, (2, 9, 10)) * (torch.rand(2, 9, 10) > 0.6)
    out = pcv_backproject(cells, regions, 3, config)
    assert torch.equal(out, slow_backproject(config, cells, regions))
    ref = pcv_backproject_reference(cells, regions, 3, config.inner_size, config.outer_size)
    assert torch.equal(out, ref)


def test_backproject_ties_go_to_lowest_label():
    cells = torch.full((1, 7, 7), 17)
    cells[0, 3, 3] = 13  # outer (0, 1): block rows 2..4, cols 5..7
    regions = torch.zeros(1, 7, 7, dtype=torch.int64)
    regions[0, 2, 5] = 2
    regions[0, 4, 6] = 1
    assert pcv_backproject(cells, regions, 2)[0, 3, 3] == 1
    regions[0, 3, 5] = 2
    assert pcv_backproject(cells, regions, 2)[0, 3, 3] == 2


def test_backproject_opcheck():
    torch.manual_seed(3)
    cells = torch.randint(0, 18, (2, 9, 10))
    regions = torch.randint(0, 3, (2, 9, 10))
    torch.library.opcheck(torch.ops.segros.pcv_backproject.default, (cells, regions, 2, 1, 3))
    torch.library.opcheck(torch.ops.segros.pcv_backproject.default, (cells, regions, 0, 1, 3))


def test_backproject_empty_and_errors():
    e = torch.zeros(0, 5, dtype=torch.int64)
    assert pcv_backproject(e, e, 0).shape == (0, 5)
    cells = torch.zeros(4, 4, dtype=torch.int64)
    assert pcv_backproject(cells, cells, 0).eq(0).all()
    with pytest.raises(ValueError, match="must match"):
        pcv_backproject(cells, torch.zeros(4, 5, dtype=torch.int64), 1)
    with pytest.raises(TypeError, match="int64"):
        pcv_backproject(cells, cells.int(), 1)
    with pytest.raises(ValueError, match=r"\[H, W\]"):
        pcv_backproject(cells[0], cells[0], 1)
    with pytest.raises(RuntimeError, match="regions"):  # the fake kernel's message
        torch.ops.segros.pcv_backproject.default(
            cells[None].to("meta"), cells[None, :, :3].to("meta"), 1, 1, 3
        )


# ---- end to end: ground-truth votes recover the instances ----------------------------------


def synthetic_instances():
    """[40, 48] instance map: separated objects of several sizes and shapes, two larger than
    the 9 x 9 table (so some of their pixels abstain)."""
    m = torch.zeros(40, 48, dtype=torch.int64)
    m[2, 2] = 1  # a single pixel
    m[2:4, 8:10] = 2  # 2 x 2
    m[1:6, 15:20] = 3  # 5 x 5
    m[10:13, 2:14] = 4  # a 3 x 12 bar: its ends are 5+ away from its centroid
    m[24:38, 24:40] = 5  # 14 x 16 block: much larger than the table
    m[20:30, 4:6] = 6  # thin vertical bar
    yy, xx = torch.meshgrid(torch.arange(40), torch.arange(48), indexing="ij")
    d2 = (yy - 12) ** 2 + (xx - 36) ** 2
    m[(d2 <= 16) & (d2 >= 4)] = 7  # a ring: its centroid is not one of its pixels
    return m


def test_ground_truth_votes_recover_instances_exactly():
    config = VoteConfig()
    inst = synthetic_instances()
    cells = assign_vote_cells(inst, config=config)
    probs = F.one_hot(cells, 18).permute(2, 0, 1)[None].float()
    heat = VoteAccumulator(config)(probs)
    peaks = find_peak_regions(heat, threshold=1.0)
    assert peaks.num_regions == 7
    labels = pcv_backproject(vote_cells(probs[0]), peaks.labels, peaks.num_regions, config)
    voted = cells < 17
    assert (labels[~voted] == 0).all()  # stuff and abstaining pixels get no instance
    # every voting pixel gets the region of its own instance: a one-to-one map
    pairs = torch.unique(torch.stack([inst[voted], labels[voted]]), dim=1)
    assert pairs.shape[1] == 7
    assert (labels[voted] > 0).all()
    assert torch.unique(pairs[0]).numel() == 7 and torch.unique(pairs[1]).numel() == 7
    # the abstaining pixels are only those of the objects larger than the table
    assert set(inst[(cells == 17) & (inst > 0)].tolist()) == {4, 5, 6}
    # and the whole of every object within the table is recovered
    for i in (1, 2, 3, 7):
        region = labels[inst == i]
        assert (region == region[0]).all() and region[0] > 0


@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::torch.jit.TracerWarning")
def test_vote_accumulator_exports_to_onnx():
    import io

    ort = pytest.importorskip("onnxruntime")
    model, probs = VoteAccumulator().eval(), torch.rand(1, 18, 10, 12)
    buffer = io.BytesIO()
    torch.onnx.export(
        model, (probs,), buffer, dynamo=False, opset_version=17, input_names=["probs"]
    )
    (out,) = ort.InferenceSession(buffer.getvalue()).run(None, {"probs": probs.numpy()})
    torch.testing.assert_close(torch.from_numpy(out), model(probs), atol=1e-5, rtol=1e-5)
