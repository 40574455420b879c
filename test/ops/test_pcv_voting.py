"""PCV voting against the lecture: its 9 x 9 table and the query filter written out verbatim,
ground-truth cells on hand-made cases, vote accumulation and back-projection against slow loops
built from those tables and the reference code's rules (w-hc/pcv: `Ballot` drops blocks centred
outside the image, `ndi.label` 4-connectivity, overlaps to the nearest peak), opcheck, exact
instance recovery from ground-truth votes."""

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
    query_filter,
    vote_cells,
    voting_filter,
)

CONFIGS = [VoteConfig(), VoteConfig(inner_size=3, outer_size=9)]

# The lecture's voting filter: the cell a pixel (at the centre) votes for when its instance's
# centroid lies at that position. 0 at the centre, 1..8 around it anticlockwise from the top,
# 9..16 the outer 3 x 3 blocks in the same order.
LECTURE_TABLE = [
    [10, 10, 10, 9, 9, 9, 16, 16, 16],
    [10, 10, 10, 9, 9, 9, 16, 16, 16],
    [10, 10, 10, 9, 9, 9, 16, 16, 16],
    [11, 11, 11, 2, 1, 8, 15, 15, 15],
    [11, 11, 11, 3, 0, 7, 15, 15, 15],
    [11, 11, 11, 4, 5, 6, 15, 15, 15],
    [12, 12, 12, 13, 13, 13, 14, 14, 14],
    [12, 12, 12, 13, 13, 13, 14, 14, 14],
    [12, 12, 12, 13, 13, 13, 14, 14, 14],
]

# The query filter: the voting filter spatially inverted (written out by hand, rotated 180
# degrees): placed on a peak, it shows the vote each pixel around it must cast to point there.
LECTURE_QUERY = [
    [14, 14, 14, 13, 13, 13, 12, 12, 12],
    [14, 14, 14, 13, 13, 13, 12, 12, 12],
    [14, 14, 14, 13, 13, 13, 12, 12, 12],
    [15, 15, 15, 6, 5, 4, 11, 11, 11],
    [15, 15, 15, 7, 0, 3, 11, 11, 11],
    [15, 15, 15, 8, 1, 2, 11, 11, 11],
    [16, 16, 16, 9, 9, 9, 10, 10, 10],
    [16, 16, 16, 9, 9, 9, 10, 10, 10],
    [16, 16, 16, 9, 9, 9, 10, 10, 10],
]


def scaled(table, config):
    """The 9 x 9 table at inner_size s: every entry becomes an s x s block (cells at s, 3s)."""
    s = config.inner_size
    t = torch.tensor(table)
    return t.repeat_interleave(s, 0).repeat_interleave(s, 1)


# ---- slow references ------------------------------------------------------------------------


def cell_pixels(config, k, y, x):
    """The (y, x) pixels of cell k of pixel (y, x), read off the lecture's table."""
    t = scaled(LECTURE_TABLE, config)
    r = t.shape[0] // 2
    return [(y + int(i) - r, x + int(j) - r) for i, j in (t == k).nonzero().tolist()]


def slow_votes(config, probs):
    """Each cell's probability spread over its pixels inside the image; a block whose centre is
    outside the image gives nothing (the reference's `Ballot`: transposed conv cropped to the
    image, then average pooling)."""
    b, _, h, w = probs.shape
    out = torch.zeros(b, 1, h, w, dtype=torch.float64)
    for n in range(b):
        for y in range(h):
            for x in range(w):
                for k in range(17):
                    pix = cell_pixels(config, k, y, x)
                    cy = sum(p[0] for p in pix) // len(pix)
                    cx = sum(p[1] for p in pix) // len(pix)
                    if not (0 <= cy < h and 0 <= cx < w):
                        continue
                    for py, px in pix:
                        if 0 <= py < h and 0 <= px < w:
                            out[n, 0, py, px] += float(probs[n, k, y, x]) / len(pix)
    return out


def slow_backproject(config, cells, regions):
    """The query filter placed on every region pixel claims the pixels whose vote it names;
    a pixel claimed by several regions goes to the nearest peak (bounding-box centre, ties to
    the lowest label), as the reference's `resolve_overlap_by_dist_to_peaks`."""
    b, h, w = cells.shape
    q = scaled(LECTURE_QUERY, config)
    r = q.shape[0] // 2
    out = torch.zeros_like(cells)
    for n in range(b):
        peaks = {}
        for lab in range(1, int(regions[n].clamp(min=0).max()) + 1):
            ys, xs = (regions[n] == lab).nonzero(as_tuple=True)
            if ys.numel():
                y0, y1, x0, x1 = int(ys.min()), int(ys.max()), int(xs.min()), int(xs.max())
                peaks[lab] = (y0 + (y1 - y0 + 1) // 2, x0 + (x1 - x0 + 1) // 2)
        claims = {}
        for qy, qx in (regions[n] > 0).nonzero().tolist():
            lab = int(regions[n, qy, qx])
            for i in range(-r, r + 1):
                for j in range(-r, r + 1):
                    py, px = qy + i, qx + j
                    if 0 <= py < h and 0 <= px < w and int(cells[n, py, px]) == q[i + r, j + r]:
                        claims.setdefault((py, px), set()).add(lab)
        for (py, px), labs in claims.items():
            dist = {lab: (py - peaks[lab][0]) ** 2 + (px - peaks[lab][1]) ** 2 for lab in labs}
            out[n, py, px] = min(labs, key=lambda lab: (dist[lab], lab))
    return out


def test_tables_are_the_lectures():
    assert voting_filter().tolist() == LECTURE_TABLE
    assert query_filter().tolist() == LECTURE_QUERY
    big = VoteConfig(inner_size=3, outer_size=9)
    assert torch.equal(voting_filter(big), scaled(LECTURE_TABLE, big))
    assert torch.equal(query_filter(big), scaled(LECTURE_QUERY, big))


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
    # block: offsets centroid - pixel (1,1) SE -> 6, (1,0) S -> 5, (0,1) E -> 7, (0,0) -> 0
    assert cells[1:3, 1:3].tolist() == [[6, 5], [7, 0]]
    # row: offsets +5 +4 +3 +2 +1 0 -1 -2 -3 -4 -5 along x -> abstain, outer E = 15,
    # inner E = 7, 0, inner W = 3, outer W = 11, abstain
    assert cells[5].tolist() == [17, 15, 15, 15, 7, 0, 3, 11, 11, 11, 17]
    assert cells[6, 0] == -100
    assert (cells[0] == 17).all() and (cells[6, 1:] == 17).all()
    # an L shape whose centroid is outside it: pixels (0,0),(0,1),(0,2),(1,0),(2,0), centroid
    # (0.6, 0.6) -> (1, 1), not an object pixel; the pixels vote for it anyway
    m2 = torch.zeros(3, 3, dtype=torch.int32)
    m2[0, :] = 1
    m2[:, 0] = 1
    assert assign_vote_cells(m2).tolist() == [[6, 5, 4], [7, 17, 17], [8, 17, 17]]
    # outer cell diagonals: a pixel 3 up-left of a 1-pixel-wide diagonal's centroid
    m3 = torch.zeros(7, 7, dtype=torch.int64)
    m3[torch.arange(7), torch.arange(7)] = 2  # centroid (3, 3)
    assert assign_vote_cells(m3).diagonal().tolist() == [14, 14, 6, 0, 2, 10, 10]


def test_assign_vote_cells_batch_and_ids():
    m = torch.zeros(2, 5, 5, dtype=torch.int64)
    m[0, 0, 0] = 1000  # large ids are fine (compacted), the same id in two images is separate
    m[1, 4, 4] = 1000
    m[1, 4, 3] = 1000  # centroid (4, 3.5) -> (4, 4)
    cells = assign_vote_cells(m)
    assert cells[0, 0, 0] == 0 and cells[1, 4, 4] == 0 and cells[1, 4, 3] == 7
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


def test_votes_at_the_border_as_the_reference():
    probs = torch.zeros(1, 18, 20, 20)
    probs[0, 11, 10, 10] = 1.0  # outer W: block centred at (10, 7)
    heat = accumulate_votes(probs)
    assert heat.sum().item() == pytest.approx(1.0)
    assert torch.allclose(heat[0, 0, 9:12, 6:9], torch.full((3, 3), 1 / 9))
    probs[0, 11, 10, 10] = 0.0
    probs[0, 10, 0, 0] = 1.0  # outer NW of a corner: centre (-3, -3), all outside
    probs[0, 14, 17, 17] = 1.0  # outer SE: centre (20, 20) outside, 1 of 9 pixels inside: dropped
    probs[0, 14, 16, 17] = 1.0  # centre (19, 20) outside, 2 pixels inside: dropped
    assert accumulate_votes(probs).sum().item() == 0.0
    probs[0, 14, 16, 16] = 1.0  # centre (19, 19) inside: its 4 pixels inside keep 1/9 each
    heat = accumulate_votes(probs)
    assert heat.sum().item() == pytest.approx(4 / 9)
    assert torch.allclose(heat[0, 0, 18:, 18:], torch.full((2, 2), 1 / 9))
    probs[0, 2, 0, 5] = 1.0  # inner NW of a top pixel: outside
    assert accumulate_votes(probs).sum().item() == pytest.approx(4 / 9)
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
                    for dy, dx in ((-1, 0), (1, 0), (0, -1), (0, 1)):  # 4-connected
                        py, px = cy + dy, cx + dx
                        if 0 <= py < 17 and 0 <= px < 23 and mask[py, px] and not seen[py, px]:
                            seen[py, px] = count
                            stack.append((py, px))
    assert n == count
    assert torch.equal(labels, seen)  # raster order of first pixels, as the flood fill
    assert connected_components(torch.zeros(3, 4, dtype=torch.bool))[1] == 0
    # diagonal neighbours are separate components (scipy.ndimage.label's default structure)
    diag = torch.eye(4, dtype=torch.bool)
    assert connected_components(diag)[1] == 4


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


def test_backproject_query_filter_5x5_by_hand():
    """A one-pixel peak at the centre of a 5 x 5 image (no dilation: inner_size 1). The votes
    that point at it are the centre 5 x 5 of the query filter; four pixels vote otherwise."""
    votes = torch.tensor(
        [
            [14, 13, 17, 13, 12],  # (0, 2) abstains (it should vote 13)
            [15, 6, 5, 7, 11],  # (1, 3) votes E (7), which misses the peak (it should vote 4)
            [15, 7, 0, 3, 16],  # (2, 4) votes the NE block (16) instead of 11
            [15, 8, 1, 2, 11],
            [16, 9, 9, 17, 10],  # (4, 3) abstains
        ]
    )
    regions = torch.zeros(5, 5, dtype=torch.int64)
    regions[2, 2] = 1
    expected = [
        [1, 1, 0, 1, 1],
        [1, 1, 1, 0, 1],
        [1, 1, 1, 1, 0],
        [1, 1, 1, 1, 1],
        [1, 1, 1, 0, 1],
    ]
    assert pcv_backproject(votes, regions, 1).tolist() == expected
    assert torch.equal(
        pcv_backproject_reference(votes[None], regions[None], 1, 1, 3)[0],
        torch.tensor(expected),
    )


def test_backproject_contested_pixel_goes_to_the_nearest_peak():
    cells = torch.full((1, 6, 8), 17)
    cells[0, 2, 1] = 15  # outer E block: rows 1..3, cols 3..5
    regions = torch.zeros(1, 6, 8, dtype=torch.int64)
    regions[0, 1, 3:6] = 1  # 3 pixels in the block, peak (bounding-box centre) (1, 4)
    regions[0, 3, 3] = 2  # 1 pixel in the block, peak (3, 3): nearer to (2, 1)
    assert pcv_backproject(cells, regions, 2)[0, 2, 1] == 2
    regions[0, 3, 3] = 0
    regions[0, 3, 5] = 2  # peak (3, 5): distance^2 17 against 10
    assert pcv_backproject(cells, regions, 2)[0, 2, 1] == 1
    regions[0, 1, 3:6] = 0
    regions[0, 1, 5] = 1  # peaks (1, 5) and (3, 5): equally far, the lower label wins
    assert pcv_backproject(cells, regions, 2)[0, 2, 1] == 1


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
    with pytest.raises(ValueError, match="above num_regions"):
        pcv_backproject(cells, cells + 2, 1)
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
