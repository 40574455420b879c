"""preprocess == the official FastBaseTransform (BGR input, BGR means, then channel swap)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from segmentation_ros.models import get_config, preprocess

# The official constants, BGR order (data/config.py).
MEANS_BGR = (103.94, 116.78, 123.68)
STD_BGR = (57.38, 57.12, 58.40)


def official_fast_base_transform(bgr: np.ndarray, size: tuple[int, int], darknet: bool):
    """utils/augmentations.py FastBaseTransform on a [H, W, 3] BGR image (eval.py: float)."""
    img = torch.from_numpy(bgr).float()[None]
    mean = torch.Tensor(MEANS_BGR).float()[None, :, None, None]
    std = torch.Tensor(STD_BGR).float()[None, :, None, None]
    img = img.permute(0, 3, 1, 2).contiguous()
    img = F.interpolate(img, size, mode="bilinear", align_corners=False)
    img = img / 255 if darknet else (img - mean) / std
    return img[:, (2, 1, 0), :, :].contiguous()


def bilinear_reference(img: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """Plain-loop bilinear resize, half-pixel centres, edge clamp (align_corners=False)."""
    in_h, in_w, _ = img.shape
    out = np.zeros((out_h, out_w, img.shape[2]), np.float64)
    for y in range(out_h):
        sy = max((y + 0.5) * in_h / out_h - 0.5, 0.0)
        y0 = min(int(sy), in_h - 1)
        y1, wy = min(y0 + 1, in_h - 1), sy - y0
        for x in range(out_w):
            sx = max((x + 0.5) * in_w / out_w - 0.5, 0.0)
            x0 = min(int(sx), in_w - 1)
            x1, wx = min(x0 + 1, in_w - 1), sx - x0
            top = (1 - wx) * img[y0, x0] + wx * img[y0, x1]
            bottom = (1 - wx) * img[y1, x0] + wx * img[y1, x1]
            out[y, x] = (1 - wy) * top + wy * bottom
    return out


@pytest.fixture
def rgb():
    return np.random.default_rng(0).integers(0, 256, size=(37, 53, 3), dtype=np.uint8)


@pytest.mark.parametrize("name", ["yolact_resnet50", "yolact_darknet53", "yolact_mobilenetv3"])
@pytest.mark.parametrize("size", [(550, 550), (24, 40), (37, 53)])
def test_matches_official_fast_base_transform(rgb, name, size):
    config = dataclasses.replace(get_config(name), input_size=size)
    ours = preprocess(rgb, config)
    expected = official_fast_base_transform(rgb[..., ::-1].copy(), size, "darknet" in name)
    assert ours.shape == (1, 3, *size) and ours.dtype == torch.float32
    torch.testing.assert_close(ours, expected, rtol=0, atol=0)


def test_resize_matches_loop_reference(rgb):
    config = dataclasses.replace(get_config("yolact_darknet53"), input_size=(16, 29))
    ours = preprocess(rgb, config)[0].permute(1, 2, 0).numpy() * 255
    np.testing.assert_allclose(ours, bilinear_reference(rgb.astype(np.float64), 16, 29), atol=1e-3)


def test_batch_tensor_and_float_input(rgb):
    config = dataclasses.replace(get_config("yolact_resnet18"), input_size=(32, 48))
    batch = torch.from_numpy(np.stack([rgb, rgb[::-1].copy()]))
    out = preprocess(batch, config)
    assert out.shape == (2, 3, 32, 48)
    torch.testing.assert_close(out[0:1], preprocess(rgb, config))
    torch.testing.assert_close(preprocess(batch.float(), config), out)
    assert preprocess(rgb, config, input_size=(8, 8)).shape == (1, 3, 8, 8)
    empty = preprocess(torch.zeros(0, 5, 5, 3, dtype=torch.uint8), config)
    assert empty.shape == (0, 3, 32, 48)


def test_device_argument(rgb):
    out = preprocess(rgb, get_config("yolact_resnet18"), device="cpu")
    assert out.device.type == "cpu"


@pytest.mark.parametrize(
    "image, error, match",
    [
        (np.zeros((4, 4, 3), np.int32), TypeError, "uint8 or float32"),
        (torch.zeros(4, 4, 3, dtype=torch.float64), TypeError, "uint8 or float32"),
        ([[0, 0, 0]], TypeError, "numpy array or a torch tensor"),
        (np.zeros((4, 4), np.uint8), ValueError, r"\[H, W, 3\]"),
        (np.zeros((3, 4, 4), np.uint8), ValueError, r"\[H, W, 3\]"),
        (np.zeros((4, 4, 4), np.uint8), ValueError, "channels last"),
        (np.zeros((0, 4, 3), np.uint8), ValueError, "empty"),
    ],
)
def test_errors(image, error, match):
    with pytest.raises(error, match=match):
        preprocess(image, get_config("yolact_resnet18"))
