"""SemanticHead shapes, options and semantic_loss."""

import pytest
import torch

from segmentation_ros.models.semantic_head import SemanticHead, semantic_loss


def _fpn(batch=2, channels=16, size=(40, 56), levels=5):
    """YOLACT-like FPN maps P3..P7 for a (8 * size) network input, rounded up per level."""
    h, w = size
    maps = []
    for _ in range(levels):
        maps.append(torch.randn(batch, channels, h, w))
        h, w = (h + 1) // 2, (w + 1) // 2
    return maps


@pytest.mark.parametrize("deformable", [False, True])
@pytest.mark.parametrize(("output_stride", "factor"), [(4, 2), (8, 1)])
def test_output_shapes(output_stride, factor, deformable):
    if deformable:
        pytest.importorskip("segmentation_ros.ops.deform_conv")
    torch.manual_seed(0)
    head = SemanticHead(16, 8, 5, 3, output_stride, deformable, norm="none").eval()
    feats = _fpn(size=(10, 7))  # odd sizes: 10x7, 5x4, 3x2
    with torch.no_grad():
        out = head(feats)
    assert out.shape == (2, 5, 10 * factor, 7 * factor)
    assert out.dtype == torch.float32 and torch.isfinite(out).all()


def test_only_the_first_num_levels_are_used():
    torch.manual_seed(0)
    head = SemanticHead(16, 8, 4, 2, 8).eval()
    feats = _fpn(size=(8, 8))
    with torch.no_grad():
        ref = head(feats)
        feats[2] = torch.full_like(feats[2], 1e3)
        torch.testing.assert_close(head(feats), ref)


@pytest.mark.parametrize("norm", ["none", "batch", "group"])
def test_norms_train_and_backprop(norm):
    torch.manual_seed(0)
    head = SemanticHead(16, 32, 4, 3, 4, num_convs=3, norm=norm).train()
    feats = _fpn(size=(6, 6))
    logits = head(feats)
    target = torch.randint(0, 4, (2, 12, 12))
    target[0, :3] = 255
    loss = semantic_loss(logits, target)
    loss.backward()
    assert torch.isfinite(loss)
    assert head.classifier.weight.grad is not None
    assert all(p.grad is not None for p in head.subnet.parameters())


def test_semantic_loss_upsamples_to_label_resolution_and_ignores():
    torch.manual_seed(0)
    logits = torch.randn(1, 3, 4, 4, requires_grad=True)
    target = torch.randint(0, 3, (1, 4, 4))
    ref = torch.nn.functional.cross_entropy(logits, target)
    torch.testing.assert_close(semantic_loss(logits, target), ref)
    big = semantic_loss(logits, torch.randint(0, 3, (1, 16, 16)))
    assert big.shape == () and torch.isfinite(big)
    all_ignored = semantic_loss(logits, torch.full((1, 4, 4), 255))
    assert all_ignored.item() == 0.0
    all_ignored.backward()
    assert logits.grad is not None


def test_semantic_loss_class_weights_weight_each_pixel_by_its_class():
    # the weighted mean: sum_p w[y_p] * (-log softmax(x_p)[y_p]) / sum_p w[y_p]
    torch.manual_seed(1)
    logits = torch.randn(2, 3, 4, 4)
    target = torch.randint(0, 3, (2, 4, 4))
    target[0, 0, 0] = 255
    weights = torch.tensor([0.5, 1.0, 4.0])
    nll = -torch.log_softmax(logits, 1).permute(0, 2, 3, 1)
    valid = target != 255
    y = target[valid]
    w = weights[y]
    expected = (w * nll[valid].gather(1, y[:, None]).squeeze(1)).sum() / w.sum()
    got = semantic_loss(logits, target, class_weights=weights)
    torch.testing.assert_close(got, expected)
    with pytest.raises(ValueError, match="class weights"):
        semantic_loss(logits, target, class_weights=torch.ones(2))


def test_semantic_loss_errors():
    logits = torch.randn(2, 3, 4, 4)
    with pytest.raises(ValueError, match="class ids outside"):
        semantic_loss(logits, torch.full((2, 4, 4), 3))
    with pytest.raises(TypeError, match="integer"):
        semantic_loss(logits, torch.zeros(2, 4, 4))
    with pytest.raises(ValueError, match=r"\[B, H, W\]"):
        semantic_loss(logits, torch.zeros(1, 4, 4, dtype=torch.long))


def test_constructor_and_input_errors():
    with pytest.raises(ValueError, match="output_stride"):
        SemanticHead(16, 8, 4, 3, 2)
    with pytest.raises(ValueError, match="input_stride"):
        SemanticHead(16, 8, 4, 3, 8, input_stride=4)
    with pytest.raises(ValueError, match="norm"):
        SemanticHead(16, 8, 4, 3, 4, norm="layer")
    with pytest.raises(ValueError, match="num_levels"):
        SemanticHead(16, 8, 4, 0, 4)
    head = SemanticHead(16, 8, 4, 3, 4)
    with pytest.raises(ValueError, match="3 FPN levels"):
        head(_fpn(levels=2, size=(4, 4)))
    with pytest.raises(ValueError, match=r"\[B, 16, H, W\]"):
        head(_fpn(channels=8, size=(4, 4)))


def test_fpn_with_p2_at_output_stride_4():
    head = SemanticHead(16, 8, 4, 4, 4, input_stride=4).eval()
    with torch.no_grad():
        out = head(_fpn(batch=1, size=(12, 16), levels=4))
    assert out.shape == (1, 4, 12, 16)


def test_deformable_head_backprops_into_offsets():
    pytest.importorskip("segmentation_ros.ops.deform_conv")
    torch.manual_seed(0)
    head = SemanticHead(8, 8, 3, 2, 8, True, norm="none").train()
    dcn = head.subnet[0]
    assert not bool(dcn.conv_offset_mask.weight.detach().any())  # zero offsets at init kept
    loss = semantic_loss(head(_fpn(batch=1, channels=8, size=(5, 5))), torch.zeros(1, 5, 5).long())
    loss.backward()
    assert dcn.conv_offset_mask.weight.grad is not None
