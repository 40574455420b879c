"""PCV panoptic inference on synthetic logits made from a known scene (ground-truth votes)."""

import pytest
import torch
import torch.nn.functional as F

from segmentation_ros.ops.pcv_voting import assign_vote_cells
from segmentation_ros.panoptic.pcv_inference import PCVInferenceParams, pcv_panoptic

S, T = 2, 3  # stuff: road 0, sky 1; things: person 2, car 3, cone 4


def scene():
    """[24, 32] grid: sky on top, road below; instances with their panoptic categories."""
    semantic = torch.zeros(24, 32, dtype=torch.int64)
    semantic[:10] = 1
    instances = torch.zeros(24, 32, dtype=torch.int64)
    cats = {1: 2, 2: 3, 3: 4, 4: 3}
    instances[2:6, 2:5] = 1  # person, in the sky
    instances[12:17, 3:9] = 2  # car
    instances[14:16, 14:16] = 3  # cone
    instances[11:23, 19:31] = 4  # a 12 x 12 car: larger than the 9 x 9 table
    for i, c in cats.items():
        semantic[instances == i] = c
    return semantic, instances, cats


def logits_of(semantic, instances):
    votes = F.one_hot(assign_vote_cells(instances), 18).permute(2, 0, 1).float() * 20.0
    sem = F.one_hot(semantic, S + T).permute(2, 0, 1).float() * 10.0
    return votes, sem


def segment_mask(result, segment_index):
    return result.id_map == result.segments.ids[segment_index]


def upsample2(mask):
    return mask.repeat_interleave(2, 0).repeat_interleave(2, 1)


@pytest.mark.parametrize("grow", [None, 4])
def test_recovers_scene(grow):
    """None: the default settings, which do not grow (the lecture's and the reference's
    inference): the abstaining pixels of the large car stay void."""
    semantic, instances, cats = scene()
    votes, sem = logits_of(semantic, instances)
    params = PCVInferenceParams(min_thing_area=0, min_stuff_area=0)
    if grow is not None:
        params = PCVInferenceParams(grow_iterations=grow, min_thing_area=0, min_stuff_area=0)
    result = pcv_panoptic(votes, sem, num_stuff=S, image_size=(48, 64), params=params)
    assert result.id_map.shape == (48, 64) and result.id_map.dtype == torch.int32
    seg = result.segments
    assert seg.ids.tolist() == list(range(1, len(seg) + 1))
    assert seg.is_thing.tolist() == [True] * 4 + [False] * 2  # things first, then stuff
    assert seg.category_ids[4:].tolist() == [0, 1]
    voted = assign_vote_cells(instances) < 17
    for i, cat in cats.items():
        pixels = instances == i
        sid = int(result.id_map[upsample2(pixels & voted)][0])
        k = int((seg.ids == sid).nonzero()[0, 0])
        assert seg.category_ids[k] == cat and seg.is_thing[k]
        assert seg.scores[k] > 0.99
        got = segment_mask(result, k)
        if grow or i != 4:
            assert torch.equal(got, upsample2(pixels))
        else:  # without growth the abstaining pixels of the large car are void
            assert torch.equal(got, upsample2(pixels & voted))
            assert (result.id_map[upsample2(pixels & ~voted)] == 0).all()
        assert seg.areas[k] == got.sum()
    for k, stuff in ((4, 0), (5, 1)):
        assert torch.equal(segment_mask(result, k), upsample2(semantic == stuff))
    torch.testing.assert_close(
        result.semantic_map(void_label=255)[::2, ::2][voted | (instances == 0)],
        semantic[voted | (instances == 0)],
    )


def test_no_things_and_unclaimed_things():
    semantic, _, _ = scene()
    semantic[semantic >= S] = 0  # no things: road and sky only
    votes = torch.zeros(18, 24, 32)
    votes[17] = 20.0  # everyone abstains
    sem = F.one_hot(semantic, S + T).permute(2, 0, 1).float() * 10.0
    result = pcv_panoptic(votes, sem, num_stuff=S)
    assert result.id_map.shape == (24, 32)
    assert result.segments.category_ids.tolist() == [0, 1]
    assert not result.segments.is_thing.any()
    assert result.segments.areas.sum() == 24 * 32
    # thing pixels with no instance: void by default, or the best stuff class
    sem[4, :8, :8] = 30.0  # a "cone" region nobody voted for (stuff 0 second best)
    assert (pcv_panoptic(votes, sem, num_stuff=S).id_map[:8, :8] == 0).all()
    params = PCVInferenceParams(unclaimed_things="stuff")
    result = pcv_panoptic(votes, sem, num_stuff=S, params=params)
    assert torch.equal(result.semantic_map()[:8, :8], semantic[:8, :8])


def test_min_area_filter_and_empty():
    semantic, instances, _ = scene()
    votes, sem = logits_of(semantic, instances)
    params = PCVInferenceParams(min_thing_area=4 * 4 + 1, min_stuff_area=0, grow_iterations=4)
    result = pcv_panoptic(votes, sem, num_stuff=S, image_size=(48, 64), params=params)
    assert result.segments.is_thing.sum() == 3  # the 2 x 2 cone (4 x 4 image pixels) is void
    assert (result.id_map[28:32, 28:32] == 0).all()
    empty = pcv_panoptic(torch.zeros(18, 0, 5), torch.zeros(S + T, 0, 5), num_stuff=S)
    assert empty.id_map.shape == (0, 5) and len(empty.segments) == 0
    out = pcv_panoptic(votes, sem, num_stuff=S + T)  # every class stuff: no things at all
    assert not out.segments.is_thing.any()


def test_bad_inputs():
    votes, sem = torch.zeros(18, 8, 8), torch.zeros(S + T, 8, 8)
    with pytest.raises(ValueError, match=r"vote_logits must be \[18, h, w\]"):
        pcv_panoptic(votes[:17], sem, num_stuff=S)
    with pytest.raises(ValueError, match="voting grid"):
        pcv_panoptic(votes, sem[:, :4], num_stuff=S)
    with pytest.raises(ValueError, match="num_stuff"):
        pcv_panoptic(votes, sem, num_stuff=9)
    with pytest.raises(ValueError, match="unclaimed_things"):
        PCVInferenceParams(unclaimed_things="nearest")
