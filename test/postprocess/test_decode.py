"""Box decoding, class softmax and relative -> image boxes against slow references."""

import math

import pytest
import torch

from segmentation_ros.postprocess import boxes_to_image, class_softmax, decode_boxes


def slow_decode(loc, prior):
    cx = prior[0] + loc[0] * 0.1 * prior[2]
    cy = prior[1] + loc[1] * 0.1 * prior[3]
    w = prior[2] * math.exp(loc[2] * 0.2)
    h = prior[3] * math.exp(loc[3] * 0.2)
    return [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]


def test_decode_matches_slow():
    gen = torch.Generator().manual_seed(0)
    priors = torch.cat(
        [torch.rand(30, 2, generator=gen), torch.rand(30, 2, generator=gen) * 0.5], 1
    )
    loc = torch.randn(2, 30, 4, generator=gen)
    boxes = decode_boxes(loc, priors)
    assert boxes.shape == (2, 30, 4)
    expected = torch.tensor(
        [[slow_decode(loc[b, a].tolist(), priors[a].tolist()) for a in range(30)] for b in range(2)]
    )
    torch.testing.assert_close(boxes, expected)


def test_decode_zero_offsets_give_prior_corners():
    priors = torch.tensor([[0.5, 0.5, 0.2, 0.4]])
    torch.testing.assert_close(
        decode_boxes(torch.zeros(1, 4), priors), torch.tensor([[0.4, 0.3, 0.6, 0.7]])
    )


def test_decode_bad_shapes():
    with pytest.raises(ValueError, match="anchors"):
        decode_boxes(torch.zeros(5, 4), torch.zeros(6, 4))
    with pytest.raises(ValueError, match=r"\[A, 4\]"):
        decode_boxes(torch.zeros(5, 3), torch.zeros(5, 4))


def test_class_softmax():
    conf = torch.randn(3, 7, 5)
    probs = class_softmax(conf)
    torch.testing.assert_close(probs.sum(-1), torch.ones(3, 7))
    e = conf[1, 2].double().exp()
    torch.testing.assert_close(probs[1, 2].double(), e / e.sum())


def test_boxes_to_image_official_sanitize():
    rel = torch.tensor(
        [
            [0.1, 0.2, 0.5, 0.6],  # inside
            [0.5, 0.6, 0.1, 0.2],  # reversed corners: ordered
            [-0.2, -0.1, 1.3, 1.1],  # beyond the image: clamped
            [-0.5, 0.2, -0.1, 0.4],  # entirely left of the image: empty box on the border
        ]
    )
    out = boxes_to_image(rel, (100, 200))
    expected = torch.tensor(
        [
            [20.0, 20.0, 100.0, 60.0],
            [20.0, 20.0, 100.0, 60.0],
            [0.0, 0.0, 200.0, 100.0],
            [0.0, 20.0, 0.0, 40.0],
        ]
    )
    torch.testing.assert_close(out, expected)
    assert torch.equal(rel[0], torch.tensor([0.1, 0.2, 0.5, 0.6]))  # input untouched
