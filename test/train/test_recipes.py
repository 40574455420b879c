"""Recipe files (`config/train/*.yaml`) and `segmentation-ros-train --recipe`: the synthetic CPU
recipe is the model card's command, flags override a recipe, mistakes are named."""

import re
import shlex
from pathlib import Path

import pytest

from segmentation_ros.models import registry
from segmentation_ros.tools.train import parse_args

REPO = Path(__file__).resolve().parents[2]
RECIPES = sorted((REPO / "config" / "train").glob("*.yaml"))
CARD = REPO / "segmentation_ros" / "weights" / "MODEL_CARD.md"


def _card_commands() -> list[list[str]]:
    """The `segmentation-ros-train` commands of the model card (continuation lines joined)."""
    text = CARD.read_text().replace("\\\n", " ")
    return [
        shlex.split(line.strip())[1:]
        for line in text.splitlines()
        if line.strip().startswith("segmentation-ros-train ")
    ]


def test_the_synthetic_recipe_is_the_model_cards_first_stage():
    stage1 = next(c for c in _card_commands() if "--resume" not in c)
    from_card = vars(parse_args(stage1))
    from_recipe = vars(parse_args(["--recipe", str(REPO / "config/train/synthetic_cpu.yaml")]))
    from_recipe.pop("recipe"), from_card.pop("recipe")
    assert from_recipe == from_card


def test_every_recipe_parses_and_names_a_registered_model():
    assert {p.name for p in RECIPES} >= {
        "synthetic_cpu.yaml",
        "coco_panoptic_gpu.yaml",
        "cityscapes_gpu.yaml",
    }
    for path in RECIPES:
        args = parse_args(["--recipe", str(path)])
        assert args.model in registry.available_models(), path
        assert args.data and args.out and args.steps > 0, path
        # every batch divides over the GPU count its header's torchrun line names
        launch = re.search(r"--nproc-per-node (\d+)", path.read_text())
        if launch:
            assert args.batch_size % int(launch.group(1)) == 0, path


def test_flags_override_the_recipe(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("model: yolact_mobilenetv3\ndata: synthetic:x\nout: o\nsteps: 5\nlr: 2e-3\n")
    args = parse_args(["--recipe", str(recipe), "--steps", "9", "--no-augment"])
    assert (args.steps, args.lr, args.no_augment) == (9, 2e-3, True)
    assert args.model == "yolact_mobilenetv3"
    assert args.out == Path("o")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("stepz: 3\n", "unknown option.*stepz"),
        ("optimizer: lbfgs\n", "optimizer must be one of sgd, adamw"),
        ("input-size: big\n", "input-size: expected HEIGHTxWIDTH"),
        ("no-augment: 3\n", "no-augment takes true or false"),
        ("- a\n- b\n", "must be a mapping"),
    ],
)
def test_recipe_mistakes_are_named(tmp_path, capsys, text, message):
    recipe = tmp_path / "bad.yaml"
    recipe.write_text(text)
    with pytest.raises(SystemExit):
        parse_args(["--recipe", str(recipe), "--data", "d", "--out", "o", "--steps", "1"])
    err = capsys.readouterr().err
    assert str(recipe) in err and re.search(message, err), err


def test_required_options_come_from_recipe_or_flags(tmp_path, capsys):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("model: yolact_mobilenetv3\n")
    with pytest.raises(SystemExit):
        parse_args(["--recipe", str(recipe), "--out", "o"])
    assert "required: --data, --steps" in capsys.readouterr().err
