"""PCV model: voting head, vote loss, composition with the backbone / FPN / semantic head, configs,
and a forward -> panoptic inference smoke test (tiny inputs)."""

import dataclasses

import pytest
import torch
import torch.nn.functional as F

from segmentation_ros.models.pcv import (
    PCV_MOBILENETV3,
    PCV_RESNET50,
    PCVConfig,
    PCVModel,
    PCVOutputs,
    VotingHead,
    VotingHeadConfig,
    pcv_config_from_dict,
    pcv_config_to_dict,
    pcv_vote_loss,
    pcv_with_classes,
)
from segmentation_ros.ops.pcv_voting import assign_vote_cells
from segmentation_ros.panoptic.pcv_inference import PCVInferenceParams, pcv_panoptic

STUFF = ("road", "grass")
THINGS = ("person", "car", "cone")


@pytest.fixture(scope="module")
def small_config():
    return pcv_with_classes(PCV_MOBILENETV3, stuff_names=STUFF, thing_names=THINGS)


@pytest.fixture(scope="module")
def model(small_config):
    torch.manual_seed(0)
    return PCVModel.from_config(small_config).eval()


def test_voting_head_shapes_and_errors():
    head = VotingHead(8, mid_channels=16, num_convs=2, upsample_factor=2, norm="group")
    out = head(torch.randn(2, 8, 5, 7))
    assert out.shape == (2, 18, 10, 14)
    assert VotingHead(8, num_convs=0)(torch.randn(1, 8, 3, 3)).shape == (1, 18, 3, 3)
    with pytest.raises(ValueError, match=r"\[B, 8, H, W\]"):
        head(torch.randn(2, 4, 5, 7))
    with pytest.raises(ValueError, match="norm"):
        VotingHead(8, norm="layer")
    with pytest.raises(ValueError, match="mid_channels"):
        VotingHead(8, mid_channels=0)


def test_vote_loss():
    torch.manual_seed(1)
    logits = torch.randn(2, 18, 6, 7, requires_grad=True)
    inst = torch.zeros(2, 6, 7, dtype=torch.int64)
    inst[0, 1:4, 1:4] = 1
    inst[1, 2:5, 3:6] = 2
    inst[1, 0, 0] = -1
    target = assign_vote_cells(inst)
    loss = pcv_vote_loss(logits, target)
    valid = target != -1
    expected = F.cross_entropy(logits.permute(0, 2, 3, 1)[valid], target[valid])
    torch.testing.assert_close(loss, expected)
    loss.backward()
    assert logits.grad is not None
    zero = pcv_vote_loss(logits, torch.full((2, 6, 7), -1))
    assert zero.item() == 0.0 and zero.requires_grad
    with pytest.raises(ValueError, match="grid of the logits"):
        pcv_vote_loss(logits, target[:, :5])
    with pytest.raises(ValueError, match="outside"):
        pcv_vote_loss(logits, torch.full((2, 6, 7), 18))
    with pytest.raises(TypeError, match="integer"):
        pcv_vote_loss(logits, target.float())
    # weighted: sum(w * ce) / sum(w) over the pixels not ignored (the reference's "total")
    weights = torch.rand(2, 6, 7)
    ce = F.cross_entropy(logits.permute(0, 2, 3, 1)[valid], target[valid], reduction="none")
    torch.testing.assert_close(
        pcv_vote_loss(logits, target, weights), (ce * weights[valid]).sum() / weights[valid].sum()
    )
    assert pcv_vote_loss(logits, target, torch.zeros(2, 6, 7)).item() == 0.0
    with pytest.raises(ValueError, match="weights"):
        pcv_vote_loss(logits, target, weights[:, :5])


def test_forward_shapes(model):
    with torch.no_grad():
        out = model(torch.randn(2, 3, 64, 96))
    assert isinstance(out, PCVOutputs)
    assert out.votes.shape == (2, 18, 16, 24)
    assert out.semantic.shape == (2, len(STUFF) + len(THINGS), 16, 24)
    with pytest.raises(ValueError, match=r"\[B, 3, H, W\]"):
        model(torch.randn(3, 64, 64))


def test_forward_then_panoptic(model):
    with torch.no_grad():
        out = model(torch.randn(1, 3, 64, 64))
    result = pcv_panoptic(
        out.votes[0],
        out.semantic[0],
        num_stuff=model.num_stuff,
        image_size=(64, 64),
        params=PCVInferenceParams(min_thing_area=0, min_stuff_area=0),
    )
    assert result.id_map.shape == (64, 64)
    assert int(result.segments.areas.sum()) == int((result.id_map > 0).sum())
    assert (result.segments.category_ids < len(STUFF) + len(THINGS)).all()


def test_configs():
    for config in (PCV_MOBILENETV3, PCV_RESNET50):
        assert config.num_stuff == 53 and config.num_things == 80
        assert config.output_stride == 4 and config.input_size == config.network.input_size
        assert pcv_config_from_dict(pcv_config_to_dict(config)) == config
    small = pcv_with_classes(PCV_MOBILENETV3, stuff_names=STUFF, thing_names=THINGS)
    assert small.category_names == STUFF + THINGS
    with pytest.raises(ValueError, match="unique"):
        pcv_with_classes(PCV_MOBILENETV3, stuff_names=("car",), thing_names=THINGS)
    with pytest.raises(ValueError, match="FPN levels"):
        dataclasses.replace(small, semantic=dataclasses.replace(small.semantic, num_levels=9))
    with pytest.raises(ValueError, match="norm"):
        VotingHeadConfig(norm="layer")
    assert isinstance(small, PCVConfig)
