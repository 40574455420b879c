"""Model families: every registered architecture belongs to exactly one family; each family
round-trips build -> save -> load -> postprocess; checkpoints on disk keep their "kind"."""

import dataclasses

import numpy as np
import pytest
import torch

from segmentation_ros.models import available_models, get_config
from segmentation_ros.models.checkpoint import load_for_inference, save_checkpoint
from segmentation_ros.models.family import PostprocessSettings, all_families, family_of
from segmentation_ros.pipeline import DEFAULT_CHECKPOINT

THINGS = ("person", "car", "cone")
STUFF = ("road", "grass", "sky")
SIZE = (64, 64)


def test_every_registered_model_belongs_to_exactly_one_family():
    registered = all_families()
    assert [f.kind for f in registered] == ["yolact", "panoptic_yolact", "pcv", "mask_rcnn"]
    for name in available_models():
        config = get_config(name)
        owners = [f for f in registered if type(config) is f.config_type]
        assert len(owners) == 1, name
        assert family_of(config) is owners[0]
        assert family_of(owners[0].kind) is owners[0]
    with pytest.raises(ValueError, match="unknown model kind 'maskrcnn'"):
        family_of("maskrcnn")
    with pytest.raises(TypeError, match="model config"):
        family_of(42)


@pytest.mark.parametrize(
    "name",
    [
        "yolact_mobilenetv3",
        "panoptic_yolact_mobilenetv3",
        "pcv_mobilenetv3",
        "mask_rcnn_mobilenetv3",
    ],
)
def test_family_round_trip_build_save_load_postprocess(tmp_path, name):
    family = family_of(get_config(name))
    config = family.with_classes(get_config(name), stuff_names=STUFF, thing_names=THINGS)
    config = family.with_input_size(config, SIZE)
    torch.manual_seed(0)
    model = family.build(config).eval()
    path = tmp_path / "model.pt"
    save_checkpoint(path, model)
    # On disk: our format with the family's kind name, readable without our code's help.
    raw_file = torch.load(path, map_location="cpu", weights_only=True)
    assert raw_file["kind"] == family.kind
    loaded, loaded_config = load_for_inference(path)
    assert loaded_config == config and family_of(loaded_config) is family
    for key, value in model.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[key], value, rtol=0, atol=0)
    # The class table: stuff first, then things (the semantic head's channel order).
    classes = family.classes(config)
    expected = THINGS if family.kind == "yolact" else STUFF + THINGS
    assert classes.names == expected
    assert classes.is_thing == tuple(n in THINGS for n in expected)
    # Both models give the same segments through the family's postprocess.
    x = torch.rand(1, 3, *SIZE, generator=torch.Generator().manual_seed(1))
    image_size = (48, 80)
    settings = PostprocessSettings(score_threshold=0.0, max_detections=10)
    results = []
    for net in (model, loaded):
        post = family.postprocessor(net, config, input_size=SIZE, device="cpu")
        with torch.no_grad():
            results.append(post(net(x), image_size, settings).numpy())
    a, b = results
    np.testing.assert_array_equal(a.id_map, b.id_map)
    np.testing.assert_array_equal(a.segments.class_ids, b.segments.class_ids)
    # The one result: an id map at the image size whose ids are the segments', each segment's
    # area its pixel count, thing flags those of its class.
    assert a.id_map.shape == image_size and a.id_map.dtype == np.int32
    present = set(np.unique(a.id_map[a.id_map > 0]).tolist())
    assert present <= set(a.segments.ids.tolist())
    counts = np.bincount(a.id_map.ravel(), minlength=int(a.segments.ids.max(initial=0)) + 1)
    np.testing.assert_array_equal(a.segments.areas, counts[a.segments.ids])
    np.testing.assert_array_equal(
        a.segments.is_thing, np.array(classes.is_thing)[a.segments.class_ids]
    )
    assert (a.segments.class_ids < len(classes)).all()


def test_official_weights_go_to_the_part_the_family_names():
    """Official YOLACT state dicts load into a YOLACT model, a panoptic model's `yolact` and a
    PCV model's backbone + FPN, torchvision's Mask R-CNN weights into a Mask R-CNN model's
    detector (key prefixes of the whole model's state dict)."""
    names = ("yolact_mobilenetv3", "panoptic_yolact_mobilenetv3", "pcv_mobilenetv3")
    for name in (*names, "mask_rcnn_mobilenetv3"):
        config = get_config(name)
        model = family_of(config).build(config)
        part, prefix = family_of(config).official_part(model)
        whole = model.state_dict()
        for key in part.state_dict():
            assert prefix + key in whole, (name, key)


def test_embedded_default_checkpoint_kind_is_a_registered_family():
    data = torch.load(DEFAULT_CHECKPOINT, map_location="cpu", weights_only=True)
    family = family_of(data["kind"])
    model, config = load_for_inference(DEFAULT_CHECKPOINT)
    assert family_of(config) is family
    assert isinstance(model, family.network_type)


def test_checkpoints_without_kind_are_yolact(tmp_path):
    """Files written before the "kind" field existed hold YOLACT models."""
    config = dataclasses.replace(get_config("yolact_mobilenetv3"), class_names=THINGS)
    model = family_of(config).build(config)
    path = tmp_path / "old.pt"
    save_checkpoint(path, model)
    data = torch.load(path, map_location="cpu", weights_only=True)
    del data["kind"]
    torch.save(data, path)
    _, loaded_config = load_for_inference(path)
    assert family_of(loaded_config).kind == "yolact" and loaded_config == config


def test_pcv_postprocess_keeps_the_best_things_above_the_threshold():
    """PCV on logits made from a known scene (ground-truth votes, 4 things on sky and road):
    `max_detections` keeps the best things, the threshold drops things, stuff always stays, and
    the pixels of dropped things become void."""
    import torch.nn.functional as F

    from segmentation_ros.models.pcv import PCV_MOBILENETV3, PCVOutputs
    from segmentation_ros.ops.pcv_voting import assign_vote_cells

    semantic = torch.zeros(24, 32, dtype=torch.int64)
    semantic[:10] = 1  # sky above road
    instances = torch.zeros(24, 32, dtype=torch.int64)
    instances[2:8, 2:8], instances[12:18, 3:9] = 1, 2
    instances[13:19, 12:18], instances[12:20, 20:28] = 3, 4
    for i, category in {1: 2, 2: 3, 3: 4, 4: 3}.items():
        semantic[instances == i] = category
    votes = F.one_hot(assign_vote_cells(instances), 18).permute(2, 0, 1).float() * 20.0
    sem = F.one_hot(semantic, 5).permute(2, 0, 1).float() * 10.0
    family = family_of("pcv")
    config = family.with_classes(
        PCV_MOBILENETV3, stuff_names=("road", "sky"), thing_names=("person", "car", "cone")
    )
    post = family.postprocessor(family.build(config), config, input_size=(96, 128))
    raw = PCVOutputs(votes=votes[None], semantic=sem[None])
    every = post(raw, (48, 64), PostprocessSettings(score_threshold=0.0, max_detections=10))
    assert int(every.segments.is_thing.sum()) == 4 and int((~every.segments.is_thing).sum()) == 2
    two = post(raw, (48, 64), PostprocessSettings(score_threshold=0.0, max_detections=2))
    thing_scores = every.segments.scores[every.segments.is_thing]
    kept = two.segments.scores[two.segments.is_thing]
    torch.testing.assert_close(kept.sort().values, thing_scores.sort().values[-2:])
    torch.testing.assert_close(
        two.segments.scores[~two.segments.is_thing], every.segments.scores[~every.segments.is_thing]
    )
    assert set(torch.unique(two.id_map).tolist()) == {0, *two.segments.ids.tolist()}
    none = post(raw, (48, 64), PostprocessSettings(score_threshold=1.01))
    assert not bool(none.segments.is_thing.any())
    thing_pixels = torch.isin(every.id_map, every.segments.ids[every.segments.is_thing])
    assert bool((none.id_map[thing_pixels] == 0).all())
