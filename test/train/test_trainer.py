"""The training loop: schedules, loss going down on a tiny set, deterministic resume,
checkpoints that load for prediction, fine-tuning from official-layout weights, the CLI."""

import csv
import dataclasses
import json

import pytest
import torch

from segmentation_ros.data.datasets import SyntheticSceneDataset
from segmentation_ros.data.synthetic import write_dataset
from segmentation_ros.data.transforms import collate
from segmentation_ros.models import build_model, get_config, load_checkpoint, preprocess
from segmentation_ros.models.config import with_input_size
from segmentation_ros.models.pcv_losses import pcv_targets
from segmentation_ros.ops.pcv_voting import assign_vote_cells
from segmentation_ros.postprocess.yolact import postprocess_yolact
from segmentation_ros.tools.train import main as train_main
from segmentation_ros.train.finetune import load_for_finetuning
from segmentation_ros.train.models import build_training_model
from segmentation_ros.train.trainer import (
    TrainConfig,
    Trainer,
    freeze_batchnorm,
    learning_rate,
    read_training_checkpoint,
)

SIZE = (64, 64)


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def dataset():
    return SyntheticSceneDataset([0, 1], width=80, height=60)


def _model(dataset, name="yolact_mobilenetv3", seed=0):
    torch.manual_seed(seed)
    return build_training_model(name, dataset.categories, SIZE)


def _batch_loss(trainer, batch):
    trainer.model.train()
    freeze_batchnorm(trainer.model)
    with torch.no_grad():
        losses = trainer.family.training_losses(
            trainer.model,
            batch.images,
            batch.targets,
            trainer.priors,
            trainer.loss_config,
            generator=torch.Generator().manual_seed(0),
        )
    return float(losses.total), losses


def test_learning_rate_schedules():
    c = TrainConfig(steps=100, lr=1.0, warmup_steps=10, warmup_factor=0.1, lr_steps=(0.5, 0.8))
    assert learning_rate(0, c) == pytest.approx(0.1)
    assert learning_rate(5, c) == pytest.approx(0.55)
    assert learning_rate(10, c) == 1.0 and learning_rate(49, c) == 1.0
    assert learning_rate(50, c) == pytest.approx(0.1) and learning_rate(80, c) == pytest.approx(
        0.01
    )
    cos = dataclasses.replace(c, schedule="cosine", min_lr_factor=0.0)
    assert learning_rate(10, cos) == pytest.approx(1.0)
    assert learning_rate(55, cos) == pytest.approx(0.5)
    assert learning_rate(100, cos) == pytest.approx(0.0, abs=1e-12)
    assert learning_rate(70, dataclasses.replace(c, schedule="constant")) == 1.0
    with pytest.raises(ValueError, match="optimizer"):
        TrainConfig(optimizer="lbfgs")
    with pytest.raises(ValueError, match="fractions"):
        TrainConfig(lr_steps=(2.0,))
    assert TrainConfig(batch_size=4).bn_frozen and not TrainConfig(batch_size=8).bn_frozen


def test_training_lowers_the_loss(dataset, tmp_path):
    config = TrainConfig(
        steps=12,
        batch_size=2,
        lr=2e-3,
        optimizer="adamw",
        schedule="constant",
        warmup_steps=0,
        log_every=0,
        augment=False,
    )
    trainer = Trainer(_model(dataset), dataset, out_dir=tmp_path, config=config)
    batch = collate([trainer.training_set[i] for i in range(2)])
    before, first = _batch_loss(trainer, batch)
    result = trainer.fit()
    after, losses = _batch_loss(trainer, batch)
    assert result.step == 12 and result.skipped_steps == 0
    assert after < 0.7 * before, (before, after)
    assert losses.box < 1.5 * 23
    assert set(result.losses) == {"box", "cls", "mask", "semantic_aux", "total"}
    # YOLACT's auxiliary semantic loss trains its P3 head too.
    assert losses.semantic_aux < 0.7 * first.semantic_aux, (first.semantic_aux, losses)
    rows = list(csv.DictReader(open(tmp_path / "train_log.csv")))
    assert [int(r["step"]) for r in rows] == list(range(1, 13))
    assert float(rows[-1]["lr"]) == pytest.approx(2e-3) and float(rows[0]["total"]) > 0


def test_resume_continues_the_same_run_and_loads_for_prediction(dataset, tmp_path):
    config = TrainConfig(
        steps=3, batch_size=2, lr=1e-3, warmup_steps=2, checkpoint_every=2, log_every=2, seed=3
    )
    lines = []
    a = Trainer(
        _model(dataset),
        dataset,
        out_dir=tmp_path / "a",
        config=config,
        log=lines.append,
        extra={"note": "x"},
    )
    a.fit()
    assert len(lines) == 2 and lines[-1].startswith("step 3/3 | loss ")
    mid = tmp_path / "a" / "checkpoint_0000002.pt"
    saved = read_training_checkpoint(mid)
    assert saved["extra"]["step"] == 2 and saved["extra"]["note"] == "x"
    assert saved["config"]["class_names"] == list(dataset.categories.thing_names)

    b = Trainer(_model(dataset, seed=99), dataset, out_dir=tmp_path / "b", config=config)
    assert b.resume(mid) == 2
    b.fit()
    for (name, pa), pb in zip(a.model.state_dict().items(), b.model.state_dict().values()):
        torch.testing.assert_close(pa, pb, rtol=1e-5, atol=1e-6, msg=name)

    assert "semantic_seg_conv.weight" in saved["state_dict"]  # training-only head, saved
    model, model_config = load_checkpoint(tmp_path / "a" / "last.pt")
    assert model.class_names == dataset.categories.thing_names
    assert model.semantic_aux_head is None  # inference leaves it out
    image = dataset[0].image
    with torch.no_grad():
        out = model.eval()(preprocess(image, model_config))
    (instances,) = postprocess_yolact(out, model.priors, image_size=image.shape[:2])
    assert instances.boxes.shape[1] == 4


def test_resume_of_a_checkpoint_without_the_auxiliary_head(dataset, tmp_path):
    """Checkpoints written before the auxiliary semantic head existed (weights and optimizer
    state without it) resume: the head starts from its init, a log line says so."""
    from segmentation_ros.models.family import family_of

    config = TrainConfig(steps=2, batch_size=2, optimizer="adamw", warmup_steps=0, log_every=0)
    trained = _model(dataset)
    old_model = family_of(trained.config).build(trained.config)  # no semantic_seg_conv
    old = Trainer(old_model, dataset, out_dir=tmp_path / "old", config=config)
    path = old.fit().checkpoint
    assert not any("semantic_seg_conv" in k for k in read_training_checkpoint(path)["state_dict"])

    lines = []
    new = Trainer(
        _model(dataset, seed=5),
        dataset,
        out_dir=tmp_path / "old",
        config=dataclasses.replace(config, steps=3),
        log=lines.append,
    )
    head_init = new.model.semantic_seg_conv.weight.detach().clone()
    assert new.resume(path) == 2
    assert lines == [f"{path} has no semantic_seg_conv (training-only head, added since): "
                     "initialised it"]  # fmt: skip
    torch.testing.assert_close(new.model.semantic_seg_conv.weight, head_init)
    for key, value in old.model.state_dict().items():
        torch.testing.assert_close(new.model.state_dict()[key], value, msg=key)
    assert len(new.optimizer.state) == len(old.optimizer.state)  # AdamW moments restored
    result = new.fit()
    assert result.step == 3 and result.skipped_steps == 0 and "semantic_aux" in result.losses
    rows = list(csv.DictReader(open(tmp_path / "old" / "train_log.csv")))
    assert [int(r["step"]) for r in rows] == [1, 2, 3]  # appended in the old log's columns


def test_panoptic_model_trains_and_saves(dataset, tmp_path):
    model = _model(dataset, "panoptic_yolact_mobilenetv3")
    assert model.stuff_names == dataset.categories.stuff_names
    config = TrainConfig(steps=2, batch_size=2, warmup_steps=0, log_every=0)
    result = Trainer(model, dataset, out_dir=tmp_path, config=config).fit()
    assert "semantic" in result.losses and result.losses["semantic"] > 0
    saved = read_training_checkpoint(result.checkpoint)
    assert saved["config"]["stuff_names"] == list(dataset.categories.stuff_names)
    loaded, loaded_config = load_checkpoint(result.checkpoint)
    assert loaded_config.stuff_names == dataset.categories.stuff_names
    with torch.no_grad():
        out = loaded.eval()(preprocess(dataset[0].image, loaded_config))
    assert out.semantic.shape[1] == len(dataset.categories.names)


def test_finetune_from_official_layout_weights(dataset):
    coco = build_model(with_input_size(get_config("yolact_mobilenetv3"), SIZE))  # 80 classes
    official = {k: v.clone() for k, v in coco.state_dict().items()}
    # Training-only: the training model's head (other class count) keeps its init.
    official["semantic_seg_conv.weight"] = torch.zeros(80, 128, 1, 1)
    official["semantic_seg_conv.bias"] = torch.zeros(80)
    model = _model(dataset)
    conf_before = model.prediction_layers[0].conf_layer.weight.clone()
    report = load_for_finetuning(model, official)
    assert report.reinitialized == (
        "prediction_layers.0.conf_layer.weight",
        "prediction_layers.0.conf_layer.bias",
        "semantic_seg_conv.weight",
        "semantic_seg_conv.bias",
    )
    assert not report.missing and not report.unused
    torch.testing.assert_close(
        model.backbone.features[0][0].weight, coco.backbone.features[0][0].weight
    )
    torch.testing.assert_close(model.prediction_layers[0].conf_layer.weight, conf_before)
    assert "conf_layer" in report.summary()
    panoptic = _model(dataset, "panoptic_yolact_mobilenetv3")
    rep = load_for_finetuning(panoptic, official)
    assert any(k.startswith("semantic_head.") for k in rep.missing)
    assert "yolact.fpn.pred_layers.0.weight" in rep.loaded
    pcv = _model(dataset, "pcv_mobilenetv3")
    rep = load_for_finetuning(pcv, official)
    assert "backbone_fpn.fpn.pred_layers.0.weight" in rep.loaded
    assert any(k.startswith("proto_net.") for k in rep.unused)
    with pytest.raises(ValueError, match="no tensor"):
        load_for_finetuning(model, {"foo.weight": torch.zeros(1)})


def test_cli_trains_resumes_and_reports_errors(tmp_path, capsys):
    data = tmp_path / "syn"
    write_dataset(data, [0, 1], width=64, height=48, image_format="png")
    out = tmp_path / "run"
    base = [
        "--data",
        f"synthetic:{data}",
        "--out",
        str(out),
        "--batch-size",
        "2",
        "--input-size",
        "64x64",
        "--log-every",
        "1",
    ]
    assert train_main(["--model", "yolact_mobilenetv3", "--steps", "2", *base]) == 0
    printed = capsys.readouterr().out.strip().splitlines()
    summary = json.loads(printed[-1])
    assert summary["step"] == 2 and set(summary["losses"]) >= {"box", "cls", "mask", "total"}
    assert any(line.startswith("step 1/2") for line in printed)
    assert train_main(["--steps", "3", "--resume", str(out / "last.pt"), *base]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["step"] == 3
    rows = list(csv.DictReader(open(out / "train_log.csv")))
    assert [int(r["step"]) for r in rows] == [1, 2, 3]

    assert (
        train_main(
            ["--model", "yolact_resnet18", "--steps", "4", "--resume", str(out / "last.pt"), *base]
        )
        == 1
    )
    assert "holds yolact_mobilenetv3" in capsys.readouterr().err
    assert train_main(["--model", "nope", "--steps", "1", *base]) == 1
    assert "unknown model" in capsys.readouterr().err
    bad = ["--model", "yolact_mobilenetv3", "--steps", "1", "--data", "weird", "--out", str(out)]
    assert train_main(bad) == 1
    assert "data spec" in capsys.readouterr().err

    official = tmp_path / "official.pth"
    coco = build_model(with_input_size(get_config("yolact_mobilenetv3"), SIZE))  # 80 classes
    torch.save(coco.state_dict(), official)
    ft = ["--model", "yolact_mobilenetv3", "--steps", "1", "--finetune-official", str(official)]
    ft += [*base[:3], str(tmp_path / "ft"), *base[4:], "--batchnorm", "train"]
    assert train_main(ft) == 0
    assert "re-initialised (shape differs" in capsys.readouterr().out


def test_pcv_model_learns_to_vote(tmp_path):
    """PCV on a fixed set of 2 scenes: the loss falls and the vote head learns the cells (the
    lecture's table, `assign_vote_cells`) instead of predicting one class ("abstain", the class
    of every stuff pixel) everywhere. With the plain mean of the pixel loss instead of the
    reference's weight mask, the same run gets 19 % of the voting pixels right (3 classes
    predicted in all); with it, 47 % (9 classes)."""
    dataset = SyntheticSceneDataset([0, 1], width=144, height=108)
    torch.manual_seed(0)
    model = build_training_model("pcv_mobilenetv3", dataset.categories, (96, 128))
    assert model.stuff_names == dataset.categories.stuff_names
    config = TrainConfig(
        steps=80,
        batch_size=2,
        lr=2e-3,
        optimizer="adamw",
        schedule="constant",
        warmup_steps=0,
        log_every=0,
        augment=False,
    )
    trainer = Trainer(model, dataset, out_dir=tmp_path, config=config)
    assert trainer.priors is None
    batch = collate([trainer.training_set[i] for i in range(2)])

    def evaluate():
        total, losses = _batch_loss(trainer, batch)
        with torch.no_grad():
            votes = trainer.model(batch.images).votes
        cells = assign_vote_cells(pcv_targets(batch.targets, tuple(votes.shape[-2:])))
        voting = (cells >= 0) & (cells < 17)  # instance pixels within reach of their centroid
        predicted = votes.argmax(dim=1)
        return total, losses, voting, (predicted[voting] == cells[voting]).float().mean()

    before, losses, voting, accuracy_before = evaluate()
    assert {n for n, _ in losses.items()} == {"semantic", "pcv"}
    assert int(voting.sum()) >= 40  # enough instance pixels for the accuracy to mean something
    result = trainer.fit()
    after, losses, _, accuracy = evaluate()
    assert result.step == 80 and result.skipped_steps == 0
    assert after < 0.2 * before, (before, after)
    assert accuracy > 0.35 and accuracy > 3 * accuracy_before, (accuracy_before, accuracy)
