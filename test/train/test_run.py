"""What a run leaves and how it continues: TensorBoard events read back with TensorBoard's own
reader, a resumed run that continues the loss curve of the run it resumes, portable checkpoints,
the progress bar, mixed precision, loader workers."""

import csv
import re
import shutil

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from segmentation_ros.data.datasets import SyntheticSceneDataset
from segmentation_ros.tools.train import main as train_main
from segmentation_ros.train.models import build_training_model
from segmentation_ros.train.trainer import TrainConfig, Trainer, read_training_checkpoint

SIZE = (64, 64)


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def dataset():
    return SyntheticSceneDataset([0, 1, 2], width=80, height=60)


def _model(dataset, name="yolact_mobilenetv3"):
    torch.manual_seed(0)
    return build_training_model(name, dataset.categories, SIZE)


def _csv(path):
    """{step: row}; each step once."""
    with open(path / "train_log.csv") as f:
        rows = list(csv.DictReader(f))
    by_step = {int(r["step"]): r for r in rows}
    assert len(by_step) == len(rows), [r["step"] for r in rows]
    return by_step


def _scalars(path, tag):
    acc = EventAccumulator(str(path / "tensorboard"))
    acc.Reload()
    return {e.step: e.value for e in acc.Scalars(tag)}


class _Stop(Exception):
    pass


def test_a_resumed_run_continues_the_loss_curve_where_it_stopped(dataset, tmp_path):
    """N steps in one go vs a run stopped after N/2 + 1 steps (checkpoint at N/2) and resumed
    from that checkpoint, copied to another folder, into the same run folder: the same loss at
    every step in the CSV and in TensorBoard (the stopped run's step N/2 + 1 replaced, not
    repeated) and the same final weights."""
    config = TrainConfig(
        steps=4,
        batch_size=2,
        lr=2e-3,
        optimizer="adamw",
        schedule="cosine",
        warmup_steps=1,
        checkpoint_every=2,
        log_every=1,
        seed=7,
    )
    ref = Trainer(_model(dataset), dataset, out_dir=tmp_path / "ref", config=config, log=print)
    ref.fit()

    def stop_after_3(line):
        if line.startswith("step 3/"):
            raise _Stop

    run = tmp_path / "run"
    first = Trainer(_model(dataset), dataset, out_dir=run, config=config, log=stop_after_3)
    with pytest.raises(_Stop):
        first.fit()
    assert sorted(_csv(run)) == [1, 2, 3]
    moved = tmp_path / "elsewhere" / "ckpt.pt"  # another machine: the file alone
    moved.parent.mkdir()
    shutil.copy(run / "checkpoint_0000002.pt", moved)
    (run / "checkpoint_0000002.pt").unlink()

    torch.manual_seed(123)  # other initial weights: the checkpoint must replace them all
    again = Trainer(
        build_training_model("yolact_mobilenetv3", dataset.categories, SIZE),
        dataset,
        out_dir=run,
        config=config,
        log=print,
    )
    assert again.resume(moved) == 2
    again.fit()

    ref_rows, run_rows = _csv(tmp_path / "ref"), _csv(run)
    assert sorted(run_rows) == [1, 2, 3, 4]
    for step in range(1, 5):
        for term in ("total", "box", "cls", "mask", "lr", "num_positives"):
            assert float(run_rows[step][term]) == pytest.approx(
                float(ref_rows[step][term]), rel=1e-6
            ), (step, term)
    ref_tb, run_tb = _scalars(tmp_path / "ref", "loss/total"), _scalars(run, "loss/total")
    assert sorted(run_tb) == [1, 2, 3, 4]  # the stopped run's step 3 purged
    assert run_tb == pytest.approx(ref_tb, rel=1e-6)
    assert ref_tb[4] == pytest.approx(float(ref_rows[4]["total"]), rel=1e-5)
    for (name, a), b in zip(ref.model.state_dict().items(), again.model.state_dict().values()):
        torch.testing.assert_close(b, a, rtol=1e-6, atol=1e-7, msg=name)


def test_tensorboard_events_hold_every_loss_term(dataset, tmp_path):
    model = _model(dataset, "panoptic_yolact_mobilenetv3")
    config = TrainConfig(steps=3, batch_size=2, warmup_steps=0, log_every=0, augment=False)
    Trainer(model, dataset, out_dir=tmp_path, config=config).fit()
    acc = EventAccumulator(str(tmp_path / "tensorboard"))
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    terms = {"total", "box", "cls", "mask", "semantic"}
    assert {f"loss/{t}" for t in terms} | {"lr", "num_positives", "seconds_per_step"} <= tags
    rows = _csv(tmp_path)
    for term in terms:
        events = {e.step: e.value for e in acc.Scalars(f"loss/{term}")}
        assert sorted(events) == [1, 2, 3]
        for step, value in events.items():
            assert value == pytest.approx(float(rows[step][term]), rel=1e-5)


def test_checkpoint_holds_no_path_and_only_cpu_tensors(dataset, tmp_path):
    config = TrainConfig(steps=1, batch_size=2, warmup_steps=0, log_every=0)
    result = Trainer(_model(dataset), dataset, out_dir=tmp_path, config=config).fit()
    data = read_training_checkpoint(result.checkpoint)

    def walk(value):
        if isinstance(value, dict):
            for v in value.values():
                yield from walk(v)
        elif isinstance(value, list | tuple):
            for v in value:
                yield from walk(v)
        else:
            yield value

    leaves = list(walk(data))
    assert not [v for v in leaves if isinstance(v, str) and str(tmp_path) in v]
    tensors = [v for v in leaves if isinstance(v, torch.Tensor)]
    assert tensors and all(t.device.type == "cpu" for t in tensors)
    assert not any(k.startswith("module.") for k in data["state_dict"])
    # the gradient scaler has nothing to keep in fp32
    assert data["extra"]["grad_scaler"] == {}


def test_progress_bar_shows_rate_and_eta(dataset, tmp_path, capsys):
    config = TrainConfig(steps=3, batch_size=2, warmup_steps=0, log_every=0, augment=False)
    Trainer(_model(dataset), dataset, out_dir=tmp_path, config=config, progress_bar=True).fit()
    err = capsys.readouterr().err
    # tqdm: "3/3 [00:02<00:00,  1.10step/s, loss=..., lr=...]" (or s/step when slower)
    assert re.search(r"3/3 \[\d\d:\d\d<\d\d:\d\d, +[\d.]+(step/s|s/step), loss=[\d.]+", err), err


def test_bf16_trains_on_the_cpu_and_fp16_is_refused(dataset, tmp_path, capsys):
    config = TrainConfig(steps=1, batch_size=2, warmup_steps=0, log_every=0, augment=False)
    dtypes = []
    fp32 = Trainer(_model(dataset), dataset, out_dir=tmp_path / "a", config=config).fit()
    bf16_trainer = Trainer(
        _model(dataset),
        dataset,
        out_dir=tmp_path / "b",
        config=TrainConfig(**{**config.__dict__, "precision": "bf16"}),
    )
    first_conv = next(m for m in bf16_trainer.model.modules() if isinstance(m, torch.nn.Conv2d))
    first_conv.register_forward_hook(lambda m, i, o: dtypes.append(o.dtype))
    bf16 = bf16_trainer.fit()
    assert dtypes == [torch.bfloat16]  # the convolutions ran in bf16
    # same weights, same batch: the bf16 loss is the fp32 loss to bf16's ~3 significant digits
    # (8-bit mantissa: 2^-8 = 0.4 % per rounding, partly averaging out over the sums)
    assert bf16.losses["total"] == pytest.approx(fp32.losses["total"], rel=0.03)
    assert bf16.losses["total"] != fp32.losses["total"]

    fp16 = TrainConfig(**{**config.__dict__, "precision": "fp16"})
    with pytest.raises(ValueError, match="fp16 trains on CUDA only.*bf16"):
        Trainer(_model(dataset), dataset, out_dir=tmp_path / "c", config=fp16)
    data = tmp_path / "syn"
    from segmentation_ros.data.synthetic import write_dataset

    write_dataset(data, [0], width=64, height=48, image_format="png")
    args = ["--model", "yolact_mobilenetv3", "--data", f"synthetic:{data}", "--out"]
    args += [str(tmp_path / "d"), "--steps", "1", "--precision", "fp16"]
    assert train_main(args) == 1
    assert "fp16 trains on CUDA only" in capsys.readouterr().err
    assert not (tmp_path / "d").exists()


def test_loader_workers_give_the_same_batches(dataset, tmp_path):
    config = TrainConfig(steps=3, batch_size=2, warmup_steps=0, seed=4)
    one = Trainer(_model(dataset), dataset, out_dir=tmp_path / "a", config=config)
    two = Trainer(
        _model(dataset),
        dataset,
        out_dir=tmp_path / "b",
        config=TrainConfig(**{**config.__dict__, "workers": 2}),
    )
    batches = list(zip(one._loader(), two._loader(), strict=True))
    assert len(batches) == 3
    for a, b in batches:
        assert a.image_ids == b.image_ids
        torch.testing.assert_close(a.images, b.images, rtol=0, atol=0)
        for ta, tb in zip(a.targets, b.targets):
            torch.testing.assert_close(ta.boxes, tb.boxes, rtol=0, atol=0)
