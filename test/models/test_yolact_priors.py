"""Priors against a slow reference written like the official `PredictionModule.make_priors`."""

from __future__ import annotations

import dataclasses
from itertools import product
from math import sqrt

import pytest
import torch

from segmentation_ros.models import (
    PriorConfig,
    feature_map_sizes,
    get_config,
    make_priors,
    num_priors,
    with_input_size,
)


def official_priors_550(config) -> torch.Tensor:
    """The official loops (square input `max_size`), level sizes from the official network."""
    max_size = 550
    prior_data = []
    for (conv_h, conv_w), scales, ars in zip(
        [(69, 69), (35, 35), (18, 18), (9, 9), (5, 5)],
        config.priors.scales,
        config.priors.aspect_ratios,
    ):
        for j, i in product(range(conv_h), range(conv_w)):
            x = (i + 0.5) / conv_w
            y = (j + 0.5) / conv_h
            for scale in scales:
                for ar in ars:
                    if not config.priors.preapply_sqrt:
                        ar = sqrt(ar)
                    if config.priors.use_pixel_scales:
                        w = scale * ar / max_size
                        h = scale / ar / max_size
                    else:
                        w = scale * ar / conv_w
                        h = scale / ar / conv_h
                    if config.priors.use_square_anchors:
                        h = w
                    prior_data += [x, y, w, h]
    return torch.Tensor(prior_data).view(-1, 4)


def slow_priors(config, height: int, width: int) -> torch.Tensor:
    """Our documented generalisation to H != W, as plain loops."""
    sizes = [(-(-height // s), -(-width // s)) for s in config.level_strides]  # ceil
    data = []
    p = config.priors
    for (conv_h, conv_w), scales, ars in zip(sizes, p.scales, p.aspect_ratios):
        for j in range(conv_h):
            for i in range(conv_w):
                for scale in scales:
                    for ar in ars:
                        r = ar if p.preapply_sqrt else sqrt(ar)
                        nw, nh = (width, height) if p.use_pixel_scales else (conv_w, conv_h)
                        w = scale * r / nw
                        h = scale * r / nh if p.use_square_anchors else scale / r / nh
                        data.append([(i + 0.5) / conv_w, (j + 0.5) / conv_h, w, h])
    return torch.tensor(data, dtype=torch.float64).to(torch.float32)


@pytest.mark.parametrize(
    "name, count",
    [("yolact_base", 19248), ("yolact_resnet50", 19248), ("yolact_darknet53", 19248),
     ("yolact_plus_base", 57744), ("yolact_plus_resnet50", 57744)],
)  # fmt: skip
def test_official_550_bit_exact(name, count):
    config = get_config(name)
    priors = make_priors(config)
    assert priors.dtype == torch.float32 and priors.shape == (count, 4)
    assert num_priors(config) == count
    assert torch.equal(priors, official_priors_550(config))


def test_official_level_sizes():
    assert feature_map_sizes(get_config("yolact_base")) == [
        (69, 69),
        (35, 35),
        (18, 18),
        (9, 9),
        (5, 5),
    ]


def test_v1_square_anchors_and_plus_three_scales():
    v1 = make_priors(get_config("yolact_base"))
    assert torch.equal(v1[:, 2], v1[:, 3])  # the official v1 bug: every prior is square
    plus = make_priors(get_config("yolact_plus_base"))
    first = plus[:9]  # one cell: 3 scales x ratios (1, 1/2, 2)
    assert torch.allclose(first[:, 0], torch.full((9,), 0.5 / 69))
    torch.testing.assert_close(first[1, 2] / first[1, 3], torch.tensor(0.5))
    torch.testing.assert_close(first[3, 2] * 550, torch.tensor(24 * 2 ** (1 / 3)))


@pytest.mark.parametrize("size", [(320, 320), (384, 384), (288, 512), (97, 61)])
@pytest.mark.parametrize("name", ["yolact_mobilenetv3", "yolact_resnet18", "yolact_plus_base"])
def test_any_input_size_matches_slow_reference(name, size):
    config = dataclasses.replace(get_config(name), input_size=size)
    priors = make_priors(config)
    assert torch.equal(priors, slow_priors(config, *size))
    assert priors.shape[0] == num_priors(config)
    assert torch.equal(make_priors(get_config(name), size), priors)


def test_non_square_priors_are_square_in_pixels():
    config = dataclasses.replace(get_config("yolact_mobilenetv3"), input_size=(288, 512))
    priors = make_priors(config)
    square = priors[0::3]  # ratio 1 anchors
    torch.testing.assert_close(square[:, 2] * 512, square[:, 3] * 288)


@pytest.mark.parametrize(
    "priors",
    [
        PriorConfig(scales=((3.0,),) * 5, use_pixel_scales=False),
        PriorConfig(scales=((3.0, 4.5),) * 5, aspect_ratios=((1.0, 2.0),) * 5, preapply_sqrt=True),
        PriorConfig(use_square_anchors=True, use_pixel_scales=False, scales=((2.0,),) * 5),
    ],
)
def test_other_prior_modes(priors):
    config = dataclasses.replace(get_config("yolact_resnet18"), priors=priors, input_size=(96, 160))
    assert torch.equal(make_priors(config), slow_priors(config, 96, 160))


def test_with_input_size_rescales_anchors():
    base = get_config("yolact_mobilenetv3")
    bigger = with_input_size(base, (640, 640))
    assert bigger.input_size == (640, 640)
    assert bigger.priors.scales[0][0] == pytest.approx(2 * base.priors.scales[0][0])
    same = with_input_size(base, (640, 640), rescale_anchors=False)
    assert same.priors == base.priors


def test_priors_device_argument():
    assert make_priors(get_config("yolact_resnet18"), device="meta").device.type == "meta"
