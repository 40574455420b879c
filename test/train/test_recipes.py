"""Recipe files (`config/train/*.yaml`) and `segmentation-ros-train --recipe`: the synthetic CPU
recipe is the model card's command, flags override a recipe, mistakes are named."""

import re
import shlex
from pathlib import Path

import pytest

from segmentation_ros.models import registry
from segmentation_ros.tools.train import build_parser, parse_args

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
    assert build_parser().get_default("mask_target") == "binary"  # official unless a recipe says
    stage5 = parse_args(["--recipe", str(REPO / "config/train/default_stage5.yaml")])
    assert stage5.mask_target == "area"


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


def test_semantic_class_weights_option():
    from segmentation_ros.tools.train import semantic_class_weights

    class Counted:  # a data set's class pixel counts: shares 1/21, 4/21, 16/21
        def class_pixel_counts(self):
            return [1.0, 4.0, 16.0]

    assert semantic_class_weights("", Counted(), 3) == ()
    assert semantic_class_weights("1,2.5,0.5", Counted(), 3) == (1.0, 2.5, 0.5)
    assert semantic_class_weights("sqrt-median-frequency", Counted(), 3) == (2.0, 1.0, 0.5)
    with pytest.raises(ValueError, match="2 for 3 classes"):
        semantic_class_weights("1,2", Counted(), 3)
    with pytest.raises(ValueError, match="not numbers"):
        semantic_class_weights("a,b,c", Counted(), 3)
    with pytest.raises(ValueError, match="annotations"):
        semantic_class_weights("sqrt-median-frequency", object(), 3)
    stage6 = parse_args(["--recipe", str(REPO / "config/train/default_stage6.yaml")])
    assert stage6.semantic_class_weights == "sqrt-median-frequency"
