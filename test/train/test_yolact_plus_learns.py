"""YOLACT++ (deformable convolutions in the backbone, fast mask re-scoring) learns on a small
fixed set: its losses fall, the deformable offsets train, and the mask-IoU head learns the IoU of
the masks it is shown (its loss falls on masks that no longer change much)."""

import dataclasses

import pytest
import torch

from segmentation_ros.data.datasets import SyntheticSceneDataset
from segmentation_ros.data.transforms import collate
from segmentation_ros.models.config import YOLACT_PLUS_BASE, YOLACT_RESNET18
from segmentation_ros.models.config_parts import BackboneConfig, MaskIoUConfig, conv
from segmentation_ros.models.losses import LossConfig, LossWeights
from segmentation_ros.train.models import build_training_model
from segmentation_ros.train.trainer import TrainConfig, Trainer, freeze_batchnorm

SIZE = (64, 64)

# The light YOLACT heads on the smallest Bottleneck ResNet (50) with deformable 3x3 convs in the
# last blocks of stages 3 and 4, and a mask-IoU net short enough for 16 x 16 prototypes (the
# official five stride-2 convs need >= 63). discard_mask_area: the official 5 x 5 prototype
# pixels at 550 input (138 x 138 prototypes) is 0.3 pixel at 16 x 16; 2 keeps out the slivers.
PLUS = dataclasses.replace(
    YOLACT_RESNET18,
    name="yolact_plus_resnet50_test",
    backbone=BackboneConfig(
        kind="resnet", depth=50, selected_layers=(1, 2, 3), dcn_layers=(0, 0, 2, 1)
    ),
    mask_iou=MaskIoUConfig(layers=(conv(8, 3, stride=2), conv(16, 3, stride=2))),
    postprocess=YOLACT_PLUS_BASE.postprocess,
)


pytestmark = pytest.mark.usefixtures("one_thread")


def _losses(trainer, batch):
    trainer.model.train()
    freeze_batchnorm(trainer.model)
    with torch.no_grad():
        return trainer.family.training_losses(
            trainer.model,
            batch.images,
            batch.targets,
            trainer.priors,
            trainer.loss_config,
            generator=torch.Generator().manual_seed(0),
        )


def test_yolact_plus_learns_on_a_fixed_image(tmp_path):
    dataset = SyntheticSceneDataset([0], width=80, height=60)
    torch.manual_seed(0)
    model = build_training_model(PLUS, dataset.categories, SIZE)
    offsets = [m for n, m in model.named_modules() if n.endswith("conv_offset_mask")]
    assert len(offsets) == 3 and model.mask_iou_head is not None
    offsets_before = [m.weight.detach().clone() for m in offsets]
    train = TrainConfig(
        steps=50,
        batch_size=1,
        lr=2e-3,
        optimizer="adamw",
        schedule="constant",
        warmup_steps=0,
        log_every=0,
        augment=False,
    )
    # Phase 1: everything but the mask-IoU head (weight 0) until the masks overlap their objects
    # (at random init every mask IoU is 0: a ReLU head learns that by dying).
    no_iou = LossConfig(discard_mask_area=2, weights=LossWeights(mask_iou=0.0))
    trainer = Trainer(model, dataset, out_dir=tmp_path, config=train, loss_config=no_iou)
    batch = collate([trainer.training_set[0]])
    first = _losses(trainer, batch)
    result = trainer.fit()
    assert result.skipped_steps == 0
    trained = _losses(trainer, batch)
    assert float(trained.total) < 0.4 * float(first.total), (first, trained)
    for name in ("box", "cls", "mask", "semantic_aux"):
        assert getattr(trained, name) < 0.5 * getattr(first, name), (name, first, trained)
    for before, module in zip(offsets_before, offsets):
        assert not torch.equal(before, module.weight)  # the deformable offsets train

    # Phase 2: the official weight (25) on the mask-IoU term too. The head ends in a ReLU (as the
    # official FastMaskIoUNet): a class whose output is <= 0 for every mask gets no gradient, and
    # at this scale the classes of this image are (at init; the official xavier / zero-bias
    # init has the same risk). The last conv's bias at 1 starts every class alive, and wrong.
    torch.nn.init.constant_(model.maskiou_net.maskiou_net[-2].bias, 1.0)
    trainer = Trainer(
        model,
        dataset,
        out_dir=tmp_path,
        config=dataclasses.replace(train, steps=12, lr=1e-3),
        loss_config=LossConfig(discard_mask_area=2),
    )
    start = _losses(trainer, batch)
    trainer.fit()
    end = _losses(trainer, batch)
    assert start.mask_iou > 0.3, start  # the head predicts ~1 for masks of IoU < 1
    assert end.mask_iou < 0.5 * start.mask_iou, (start, end)
