"""Mask R-CNN trains with the common trainer: torchvision's losses (RPN, box, mask), the MaskIoU
regression and the semantic term fall on a small fixed set; the checkpoint resumes."""

import pytest
import torch

from segmentation_ros.data.datasets import SyntheticSceneDataset
from segmentation_ros.data.transforms import collate
from segmentation_ros.train.models import build_training_model
from segmentation_ros.train.trainer import TrainConfig, Trainer, freeze_batchnorm

SIZE = (96, 128)


def _loss(trainer, batch) -> dict[str, float]:
    """The losses of `batch` with the RoI sampling seeded and BatchNorm frozen (a fixed
    function of the weights)."""
    trainer.model.train()
    freeze_batchnorm(trainer.model)
    torch.manual_seed(0)
    with torch.no_grad():
        losses = trainer.family.training_losses(
            trainer.model, batch.images, batch.targets, None, trainer.loss_config
        )
    return {**{n: float(v) for n, v in losses.items()}, "total": float(losses.total)}


@pytest.mark.usefixtures("one_thread")
def test_mask_rcnn_loss_falls_on_a_small_fixed_set(tmp_path):
    dataset = SyntheticSceneDataset([0, 1], width=128, height=96)
    torch.manual_seed(0)
    model = build_training_model("mask_rcnn_mobilenetv3", dataset.categories, SIZE)
    assert model.config.thing_names == dataset.categories.thing_names
    config = TrainConfig(
        steps=12,
        batch_size=2,
        lr=1e-3,
        optimizer="adamw",
        schedule="constant",
        warmup_steps=0,
        log_every=0,
        augment=False,
        checkpoint_every=12,
    )
    trainer = Trainer(model, dataset, out_dir=tmp_path, config=config)
    assert trainer.priors is None
    batch = collate([trainer.training_set[i] for i in range(2)])
    assert sum(len(t) for t in batch.targets) > 0
    before = _loss(trainer, batch)
    result = trainer.fit()
    after = _loss(trainer, batch)
    assert result.step == 12 and result.skipped_steps == 0
    assert set(result.losses) == {"box", "cls", "mask", "mask_iou", "semantic", "total"}
    assert after["total"] < 0.7 * before["total"], (before, after)
    assert after["cls"] < before["cls"] and after["semantic"] < before["semantic"]
    resumed = Trainer(
        build_training_model("mask_rcnn_mobilenetv3", dataset.categories, SIZE),
        dataset,
        out_dir=tmp_path / "resumed",
        config=config,
    )
    assert resumed.resume(result.checkpoint) == 12
