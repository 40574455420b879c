"""YOLACT's auxiliary semantic segmentation loss (official dbolya/yolact
`layers/modules/multibox_loss.py` `semantic_segmentation_loss`) on a case worked out by hand, and
its head, built for training only (official weights landing in it: test_yolact_official_layout)."""

import math

import torch

from segmentation_ros.data.transforms import TrainTarget
from segmentation_ros.models import get_config
from segmentation_ros.models.config import with_input_size
from segmentation_ros.models.family import family_of
from segmentation_ros.models.losses import semantic_aux_loss


def _target(masks, classes, crowd):
    n = len(classes)
    return TrainTarget(
        boxes=torch.zeros(n, 4),
        classes=torch.tensor(classes, dtype=torch.long),
        masks=masks,
        iscrowd=torch.tensor(crowd, dtype=torch.bool),
        semantic=torch.zeros(4, 4, dtype=torch.long),
        id_map=torch.zeros(4, 4, dtype=torch.int32),
        instance_ids=torch.arange(1, n + 1),
    )


def _sp(x):  # softplus, log(1 + e^x)
    return math.log1p(math.exp(x))


def test_loss_against_a_hand_computation():
    """4 x 4 masks, 2 x 2 logits, C = 2 things. Bilinear 4 -> 2 (align_corners=False) samples at
    source 2 d + 0.5: each target pixel is the mean of its 2 x 2 block, kept when > 0.5.

    object 0, class 1: top-left block full (1.0 -> 1), 2 pixels of the top-right block (0.5 -> 0)
    object 1, class 1: 3 pixels of the bottom-right block (0.75 -> 1)
    object 2, class 0, crowd: everything (left out, as the official loss splits crowds off)
    object 3, class 0: 1 pixel of the bottom-left block (0.25 -> 0)
    Targets: class 0 all 0; class 1 [[1, 0], [0, 1]].
    BCE with logits x, target t: log(1 + e^x) - t x, summed over classes and pixels, / (h w),
    averaged over the images.
    """
    masks = torch.zeros(4, 4, 4, dtype=torch.bool)
    masks[0, 0:2, 0:2] = True
    masks[0, 0, 2:4] = True
    masks[1, 2, 2:4] = True
    masks[1, 3, 3] = True
    masks[2] = True
    masks[3, 3, 0] = True
    target = _target(masks, [1, 1, 0, 0], [False, False, True, False])
    logits = torch.tensor([[[0.0, 1.0], [-1.0, 2.0]], [[2.0, 0.0], [1.0, -3.0]]])
    class0 = _sp(0) + _sp(1) + _sp(-1) + _sp(2)
    class1 = (_sp(2) - 2) + _sp(0) + _sp(1) + (_sp(-3) + 3)
    expected = (class0 + class1) / 4
    got = semantic_aux_loss(logits[None], [target])
    assert math.isclose(float(got), expected, rel_tol=1e-6)

    # A second image without objects: every target 0, logits 0 -> C * log 2; batch mean.
    empty = _target(torch.zeros(0, 4, 4, dtype=torch.bool), [], [])
    got = semantic_aux_loss(torch.stack([logits, torch.zeros(2, 2, 2)]), [target, empty])
    assert math.isclose(float(got), (expected + 2 * math.log(2)) / 2, rel_tol=1e-6)


def test_the_head_is_built_for_training_only_and_trains_from_p3():
    config = with_input_size(get_config("yolact_mobilenetv3"), (64, 64))
    family = family_of(config)
    assert family.build(config).semantic_aux_head is None
    model = family.build(config, training=True)
    head = model.semantic_aux_head
    # Official: nn.Conv2d(src_channels[0], num_classes - 1, kernel_size=1) (background excluded).
    assert head.weight.shape == (config.num_classes, config.fpn.num_features, 1, 1)
    assert list(model.parameters())[-2:] == [head.weight, head.bias]  # registered last
    # The inference forward is unchanged: the head plays no part in the raw outputs.
    x = torch.randn(1, 3, 64, 64)
    inference = family.build(config)
    inference.load_state_dict(
        {k: v for k, v in model.state_dict().items() if "semantic_seg_conv" not in k}
    )
    for a, b in zip(model.eval()(x), inference.eval()(x)):
        torch.testing.assert_close(a, b)
