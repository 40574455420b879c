"""PanopticYolact composition, configs and a forward -> fusion smoke test (tiny inputs)."""

import dataclasses

import numpy as np
import pytest
import torch

from segmentation_ros.models.panoptic_yolact import (
    COCO_PANOPTIC_STUFF,
    PANOPTIC_YOLACT_MOBILENETV3,
    PANOPTIC_YOLACT_RESNET50,
    PanopticYolact,
    PanopticYolactConfig,
    SemanticHeadConfig,
    panoptic_config_from_dict,
    panoptic_config_to_dict,
    with_classes,
)
from segmentation_ros.models.preprocess import preprocess
from segmentation_ros.panoptic.fusion import fuse_instances
from segmentation_ros.structures import Instances

STUFF = ("road", "grass")
THINGS = ("person", "car", "cone")


@pytest.fixture(scope="module")
def small_config():
    return with_classes(PANOPTIC_YOLACT_MOBILENETV3, stuff_names=STUFF, thing_names=THINGS)


@pytest.fixture(scope="module")
def model(small_config):
    torch.manual_seed(0)
    return PanopticYolact.from_config(small_config).eval()


def test_forward_shapes_and_yolact_part_unchanged(model):
    x = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        out = model(x)
        ref = model.yolact(x)
    assert out.semantic.shape == (2, len(STUFF) + len(THINGS), 16, 24)
    assert out.proto.shape[:3] == (2, 16, 24)  # same frame as the semantic logits
    for name in ("loc", "conf", "coef", "proto"):
        torch.testing.assert_close(getattr(out, name), getattr(ref, name))
    assert out.conf.shape[-1] == len(THINGS) + 1


def test_output_stride_8(small_config):
    config = dataclasses.replace(
        small_config, semantic=dataclasses.replace(small_config.semantic, output_stride=8)
    )
    model = PanopticYolact.from_config(config).eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, 64, 64))
    assert out.semantic.shape == (1, 5, 8, 8)


def test_config_properties_and_class_order(small_config, model):
    assert small_config.thing_names == THINGS and small_config.num_stuff == 2
    assert small_config.category_names == STUFF + THINGS
    assert model.thing_names == THINGS and model.stuff_names == STUFF
    assert model.num_stuff == 2 and model.num_things == 3
    assert model.priors is not None and model.priors.shape[1] == 4
    full = PANOPTIC_YOLACT_MOBILENETV3
    assert len(COCO_PANOPTIC_STUFF) == 53 and full.num_things == 80
    assert full.input_size == (320, 320)
    assert PANOPTIC_YOLACT_RESNET50.semantic.use_deformable
    assert PANOPTIC_YOLACT_RESNET50.input_size == (550, 550)


def test_preprocess_takes_the_panoptic_config(small_config):
    image = np.zeros((48, 80, 3), dtype=np.uint8)
    x = preprocess(image, small_config)
    assert x.shape == (1, 3, 320, 320)


def test_config_dict_round_trip(small_config):
    data = panoptic_config_to_dict(small_config)
    assert panoptic_config_from_dict(data) == small_config
    with pytest.raises(ValueError, match="unknown"):
        panoptic_config_from_dict({**data, "drivable": []})


def test_config_errors(small_config):
    with pytest.raises(ValueError, match="unique"):
        with_classes(small_config, stuff_names=("road", "car"), thing_names=THINGS)
    with pytest.raises(ValueError, match="FPN levels"):
        dataclasses.replace(small_config, semantic=SemanticHeadConfig(num_levels=6))
    with pytest.raises(ValueError, match="output_stride"):
        SemanticHeadConfig(output_stride=2)
    with pytest.raises(ValueError, match="norm"):
        SemanticHeadConfig(norm="layer")
    assert isinstance(small_config, PanopticYolactConfig)


def test_forward_to_panoptic_result(model):
    """Semantic logits of one image + (fake) instances -> a PanopticResult at the image size."""
    with torch.no_grad():
        out = model(torch.randn(1, 3, 64, 96))
    sem = out.semantic[0]
    probs = torch.zeros(1, 16, 24)
    probs[0, 4:10, 6:12] = 0.9
    inst = Instances(
        image_size=(120, 180),
        boxes=torch.tensor([[48.0, 40.0, 96.0, 100.0]]),
        classes=torch.tensor([1]),
        scores=torch.tensor([0.8]),
        mask_scores=torch.tensor([0.8]),
        mask_probs=probs,
    )
    res = fuse_instances(inst, sem, num_stuff=model.num_stuff)
    assert res.id_map.shape == (120, 180) and res.id_map.dtype == torch.int32
    assert set(res.segments.ids.tolist()) <= set(res.id_map.unique().tolist())


def test_resnet50_variant_with_deformable_head():
    pytest.importorskip("segmentation_ros.ops.deform_conv")
    config = with_classes(PANOPTIC_YOLACT_RESNET50, stuff_names=STUFF, thing_names=THINGS)
    model = PanopticYolact.from_config(config).eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, 64, 64))
    assert out.semantic.shape == (1, 5, 16, 16)


def test_forward_postprocess_fusion_end_to_end(model):
    """Random weights: raw outputs -> YOLACT postprocess -> UPSNet fusion, shapes and types."""
    from segmentation_ros.models.priors import make_priors
    from segmentation_ros.postprocess import YolactPostprocessParams, postprocess_yolact

    torch.manual_seed(1)
    with torch.no_grad():
        out = model(torch.randn(1, 3, 64, 96))
    params = YolactPostprocessParams(max_detections=10)
    priors = make_priors(model.config.yolact, (64, 96))
    (instances,) = postprocess_yolact(out, priors, image_size=(120, 180), params=params)
    assert len(instances) > 0
    res = fuse_instances(instances, out.semantic[0], num_stuff=model.num_stuff, min_stuff_area=0)
    assert res.id_map.shape == (120, 180)
    counts = torch.bincount(res.id_map.flatten().long(), minlength=len(res.segments) + 1)
    assert res.segments.areas.tolist() == counts[res.segments.ids.long()].tolist()
    things = res.segments.category_ids[res.segments.is_thing]
    assert bool(((things >= 2) & (things < 5)).all())
