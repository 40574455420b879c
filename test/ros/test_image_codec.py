"""Image conversion: every encoding decodes to the pixels an OpenCV reference conversion gives,
with padded rows and big-endian data; every malformed message gets ImageConversionError."""

import cv2
import numpy as np
import pytest
from sensor_msgs.msg import CompressedImage, Image

from segmentation_ros.ros.image_codec import (
    SUPPORTED_ENCODINGS,
    ImageConversionError,
    compressed_to_numpy,
    image_to_numpy,
    numpy_to_compressed,
    numpy_to_image,
    to_rgb8,
)

H, W = 6, 8  # even sizes: yuv422 packs pixel pairs, Bayer works on 2x2 cells
RNG = np.random.default_rng(0)

# encoding -> (numpy dtype, channels in the decoded array, bytes per pixel)
LAYOUT = {
    "rgb8": ("u1", 3, 3), "bgr8": ("u1", 3, 3), "rgba8": ("u1", 4, 4), "bgra8": ("u1", 4, 4),
    "mono8": ("u1", 1, 1), "8UC1": ("u1", 1, 1), "8UC3": ("u1", 3, 3), "8UC4": ("u1", 4, 4),
    "mono16": ("u2", 1, 2), "16UC1": ("u2", 1, 2), "16UC3": ("u2", 3, 6),
    "32FC1": ("f4", 1, 4), "32SC1": ("i4", 1, 4),
    "yuv422": ("u1", 2, 2), "uyvy": ("u1", 2, 2), "yuyv": ("u1", 2, 2), "yuv422_yuy2": ("u1", 2, 2),
    "bayer_rggb8": ("u1", 1, 1), "bayer_bggr8": ("u1", 1, 1),
    "bayer_gbrg8": ("u1", 1, 1), "bayer_grbg8": ("u1", 1, 1),
}  # fmt: skip

# What OpenCV does to reach RGB from each colour encoding (the reference).
OPENCV_TO_RGB = {
    "bgr8": cv2.COLOR_BGR2RGB, "rgba8": cv2.COLOR_RGBA2RGB, "bgra8": cv2.COLOR_BGRA2RGB,
    "mono8": cv2.COLOR_GRAY2RGB, "8UC1": cv2.COLOR_GRAY2RGB,
    "yuv422": cv2.COLOR_YUV2RGB_UYVY, "uyvy": cv2.COLOR_YUV2RGB_UYVY,
    "yuyv": cv2.COLOR_YUV2RGB_YUYV, "yuv422_yuy2": cv2.COLOR_YUV2RGB_YUYV,
    "bayer_rggb8": cv2.COLOR_BayerBG2RGB, "bayer_bggr8": cv2.COLOR_BayerRG2RGB,
    "bayer_gbrg8": cv2.COLOR_BayerGR2RGB, "bayer_grbg8": cv2.COLOR_BayerGB2RGB,
}  # fmt: skip


def random_pixels(encoding):
    dtype, channels, _ = LAYOUT[encoding]
    shape = (H, W) if channels == 1 else (H, W, channels)
    if dtype == "f4":
        return RNG.standard_normal(shape).astype(np.float32)
    info = np.iinfo(np.dtype(dtype))
    return RNG.integers(info.min, info.max, size=shape, endpoint=True, dtype=np.dtype(dtype))


def make_msg(pixels, encoding, padding=0, big_endian=False):
    """Pack by hand: rows of width * bytes-per-pixel, `padding` garbage bytes after each row."""
    _, _, pixel_bytes = LAYOUT[encoding]
    dtype = pixels.dtype.newbyteorder(">" if big_endian else "<")
    rows = pixels.astype(dtype).reshape(H, -1).view(np.uint8).reshape(H, W * pixel_bytes)
    garbage = np.full((H, padding), 0xAB, np.uint8)
    msg = Image(height=H, width=W, encoding=encoding, is_bigendian=int(big_endian))
    msg.step = W * pixel_bytes + padding
    msg.data = np.concatenate([rows, garbage], axis=1).tobytes()
    return msg


def test_every_listed_encoding_is_supported():
    assert set(LAYOUT) == set(SUPPORTED_ENCODINGS)


@pytest.mark.parametrize("encoding", sorted(LAYOUT))
@pytest.mark.parametrize("padding", [0, 5, 16])
@pytest.mark.parametrize("big_endian", [False, True])
def test_decode_matches_source_pixels(encoding, padding, big_endian):
    pixels = random_pixels(encoding)
    decoded = image_to_numpy(make_msg(pixels, encoding, padding, big_endian))
    assert decoded.dtype == pixels.dtype.newbyteorder("=")
    np.testing.assert_array_equal(decoded, pixels)


@pytest.mark.parametrize("encoding", sorted(OPENCV_TO_RGB))
@pytest.mark.parametrize("padding", [0, 3])
def test_to_rgb8_matches_opencv(encoding, padding):
    pixels = random_pixels(encoding)
    expected = cv2.cvtColor(pixels, OPENCV_TO_RGB[encoding])
    rgb = to_rgb8(make_msg(pixels, encoding, padding))
    assert rgb.shape == (H, W, 3) and rgb.dtype == np.uint8
    np.testing.assert_array_equal(rgb, expected)


@pytest.mark.parametrize(
    "encoding,first_row,second_row",
    [("bayer_rggb8", "RG", "GB"), ("bayer_bggr8", "BG", "GR"),
     ("bayer_gbrg8", "GB", "RG"), ("bayer_grbg8", "GR", "BG")],
)  # fmt: skip
def test_bayer_pattern_semantics(encoding, first_row, second_row):
    """A flat colour mosaicked with the ROS pattern demosaics back to that colour."""
    colour = {"R": 200, "G": 120, "B": 40}
    mosaic = np.zeros((H, W), np.uint8)
    for dy, row in enumerate((first_row, second_row)):
        for dx, channel in enumerate(row):
            mosaic[dy::2, dx::2] = colour[channel]
    rgb = to_rgb8(make_msg(mosaic, encoding))
    np.testing.assert_allclose(rgb[2:-2, 2:-2].reshape(-1, 3), [[200, 120, 40]] * 8, atol=2)


def test_uyvy_and_yuyv_byte_order():
    """Grey (U = V = 128) pairs: luma is byte 1 and 3 in UYVY, byte 0 and 2 in YUYV.
    OpenCV uses BT.601 video range: grey level = 1.164 * (Y - 16)."""
    uyvy = np.tile(np.array([[128, 50], [128, 200]], np.uint8), (H, W // 2, 1))
    rgb = to_rgb8(make_msg(uyvy, "yuv422"))
    np.testing.assert_allclose(rgb[0, 0], [1.164 * (50 - 16)] * 3, atol=1)
    np.testing.assert_allclose(rgb[0, 1], [1.164 * (200 - 16)] * 3, atol=1)
    yuyv = uyvy[..., ::-1].copy()
    np.testing.assert_array_equal(to_rgb8(make_msg(yuyv, "yuyv")), rgb)


def test_native_decode_is_zero_copy():
    msg = make_msg(random_pixels("rgb8"), "rgb8", padding=4)
    array = image_to_numpy(msg)
    assert np.shares_memory(array, np.frombuffer(msg.data, np.uint8))


@pytest.mark.parametrize("encoding", ["rgb8", "bgra8", "mono8", "mono16", "32FC1", "32SC1"])
def test_numpy_to_image_round_trip(encoding):
    pixels = random_pixels(encoding)
    msg = numpy_to_image(pixels, encoding)
    assert msg.step == W * LAYOUT[encoding][2] and msg.encoding == encoding
    np.testing.assert_array_equal(image_to_numpy(msg), pixels)


def test_numpy_to_image_rejects_wrong_arrays():
    with pytest.raises(ImageConversionError, match="dtype"):
        numpy_to_image(np.zeros((H, W, 3), np.float32), "rgb8")
    with pytest.raises(ImageConversionError, match="channel"):
        numpy_to_image(np.zeros((H, W), np.uint8), "rgb8")
    with pytest.raises(ImageConversionError, match="empty"):
        numpy_to_image(np.zeros((0, W, 3), np.uint8), "rgb8")
    with pytest.raises(ImageConversionError, match="encoding"):
        numpy_to_image(np.zeros((H, W, 3), np.uint8), "hsv8")


def bad(**fields):
    msg = make_msg(random_pixels("rgb8"), "rgb8")
    for name, value in fields.items():
        setattr(msg, name, value)
    return msg


@pytest.mark.parametrize(
    "msg,field",
    [
        (bad(encoding="hsv8"), "encoding"),
        (bad(encoding=""), "encoding"),
        (bad(data=b"\x00" * (H * W * 3 - 1)), "data"),
        (bad(data=b""), "data"),
        (bad(width=0), "width"),
        (bad(height=0), "height"),
        (bad(step=W * 3 - 1), "step"),
        (bad(step=0), "step"),
    ],
)
def test_bad_messages_raise_one_clear_error(msg, field):
    with pytest.raises(ImageConversionError, match=f"^{field}:"):
        image_to_numpy(msg)
    with pytest.raises(ImageConversionError, match=f"^{field}:"):
        to_rgb8(msg)


@pytest.mark.parametrize("fmt", ["png", "jpeg"])
def test_compressed_round_trip(fmt):
    rgb = cv2.GaussianBlur(RNG.integers(0, 255, (48, 64, 3), dtype=np.uint8), (7, 7), 3)
    msg = numpy_to_compressed(rgb, "rgb8", fmt=fmt, quality=95)
    assert msg.format == f"rgb8; {fmt} compressed bgr8"
    decoded = compressed_to_numpy(msg, "rgb8")
    if fmt == "png":
        np.testing.assert_array_equal(decoded, rgb)
    else:
        # The reference: OpenCV's own encode/decode of the same BGR image.
        _, enc = cv2.imencode(".jpg", rgb[..., ::-1].copy(), [cv2.IMWRITE_JPEG_QUALITY, 95])
        np.testing.assert_array_equal(decoded, cv2.imdecode(enc, cv2.IMREAD_COLOR)[..., ::-1])
    np.testing.assert_array_equal(compressed_to_numpy(msg, "bgr8"), decoded[..., ::-1])


def test_compressed_mono_png():
    gray = RNG.integers(0, 255, (20, 30), dtype=np.uint8)
    msg = numpy_to_compressed(gray, "mono8", fmt="png")
    np.testing.assert_array_equal(compressed_to_numpy(msg, "mono8"), gray)
    np.testing.assert_array_equal(compressed_to_numpy(msg, "rgb8")[..., 1], gray)


def test_bad_compressed_data():
    with pytest.raises(ImageConversionError, match="^data:"):
        compressed_to_numpy(CompressedImage(format="jpeg", data=b"not an image"))
    with pytest.raises(ImageConversionError, match="^data:"):
        compressed_to_numpy(CompressedImage(format="jpeg"))
    good = numpy_to_compressed(np.zeros((8, 8, 3), np.uint8), fmt="jpeg")
    truncated = CompressedImage(format=good.format, data=bytes(good.data)[:20])
    with pytest.raises(ImageConversionError, match="^data:"):
        compressed_to_numpy(truncated)
    with pytest.raises(ImageConversionError, match="^desired_encoding:"):
        compressed_to_numpy(good, "yuv422")
    with pytest.raises(ImageConversionError, match="^format:"):
        numpy_to_compressed(np.zeros((8, 8, 3), np.uint8), fmt="bmp")


# -- compressed headers: the declared size read without decoding (PIL as the reference) --------


def jpeg_claiming(width, height, progressive=False):
    """A real JPEG whose start-of-frame header is rewritten to declare width x height."""
    rgb = RNG.integers(0, 255, (48, 64, 3), dtype=np.uint8)
    flags = [cv2.IMWRITE_JPEG_PROGRESSIVE, int(progressive)]
    data = bytearray(cv2.imencode(".jpg", rgb, flags)[1].tobytes())
    sof = next(
        i for i in range(2, len(data) - 1) if data[i] == 0xFF and data[i + 1] in (0xC0, 0xC2)
    )
    data[sof + 5 : sof + 9] = height.to_bytes(2, "big") + width.to_bytes(2, "big")
    return bytes(data)


def png_claiming(width, height):
    """A real PNG whose IHDR chunk (and its CRC) is rewritten to declare width x height."""
    import zlib

    data = bytearray(cv2.imencode(".png", np.zeros((48, 64, 3), np.uint8))[1].tobytes())
    data[16:24] = width.to_bytes(4, "big") + height.to_bytes(4, "big")
    data[29:33] = zlib.crc32(bytes(data[12:29])).to_bytes(4, "big")
    return bytes(data)


def pil_size(data):
    import io

    from PIL import Image as PILImage

    PILImage.MAX_IMAGE_PIXELS = None  # read the header only; never decode
    with PILImage.open(io.BytesIO(data)) as image:
        return image.size


@pytest.mark.parametrize(
    "data",
    [
        cv2.imencode(".jpg", np.zeros((48, 64, 3), np.uint8))[1].tobytes(),
        cv2.imencode(".jpg", np.zeros((37, 29), np.uint8), [cv2.IMWRITE_JPEG_PROGRESSIVE, 1])[
            1
        ].tobytes(),
        cv2.imencode(".png", np.zeros((31, 17, 4), np.uint16))[1].tobytes(),
        jpeg_claiming(32768, 32767),
        jpeg_claiming(20000, 20000, progressive=True),
        png_claiming(20000, 20000),
        png_claiming(1, 2**31 - 1),
    ],
    ids=["jpeg", "progressive", "png16", "jpeg-bomb", "progressive-bomb", "png-bomb", "png-tall"],
)
def test_compressed_size_reads_the_header_as_pil_does(data):
    from segmentation_ros.ros.image_codec import compressed_size

    width, height, _ = compressed_size(np.frombuffer(data, np.uint8))
    assert (width, height) == pil_size(data)


def test_decompression_bomb_refused_before_decoding():
    bomb = CompressedImage(format="jpeg", data=jpeg_claiming(32768, 32767))
    with pytest.raises(
        ImageConversionError, match="^width/height: the JPEG header declares 32768x"
    ):
        compressed_to_numpy(bomb, max_side=4096)
    png = CompressedImage(format="png", data=png_claiming(20000, 20000))
    with pytest.raises(ImageConversionError, match="^width/height: the PNG header declares 20000x"):
        compressed_to_numpy(png, max_side=4096)


def test_compressed_streams_other_than_jpeg_png_are_refused_by_name():
    from segmentation_ros.ros.image_codec import compressed_size

    bmp = cv2.imencode(".bmp", np.zeros((8, 8, 3), np.uint8))[1].tobytes()
    with pytest.raises(ImageConversionError, match="^data: not a JPEG or PNG stream"):
        compressed_to_numpy(CompressedImage(format="bmp", data=bmp))
    header_only = jpeg_claiming(64, 48)[:2] + b"\xff\xda\x00\x08"  # scan before any frame
    with pytest.raises(ImageConversionError, match="^data: JPEG stream without"):
        compressed_size(header_only)
    zero = png_claiming(0, 10)
    with pytest.raises(ImageConversionError, match="^width/height: the PNG header declares 0x10"):
        compressed_size(zero)


# -- encodings the node refused before: odd YUV widths, 8UC4, 32SC1 -----------------------------


@pytest.mark.parametrize("encoding", ["yuv422", "uyvy", "yuyv", "yuv422_yuy2"])
@pytest.mark.parametrize("width", [1, 3, 641])
def test_packed_yuv_needs_an_even_width(encoding, width):
    msg = Image(height=2, width=width, encoding=encoding, step=2 * width)
    msg.data = bytes(2 * width * 2)
    with pytest.raises(ImageConversionError, match="^width: .* must be even"):
        image_to_numpy(msg)
    with pytest.raises(ImageConversionError, match="^width:"):
        to_rgb8(msg)


def test_8uc4_is_read_as_rgba8():
    pixels = random_pixels("8UC4")
    np.testing.assert_array_equal(
        to_rgb8(make_msg(pixels, "8UC4")), cv2.cvtColor(pixels, cv2.COLOR_RGBA2RGB)
    )


def test_32sc1_is_not_a_colour_image():
    from segmentation_ros.ros.image_codec import RGB_ENCODINGS

    pixels = random_pixels("32SC1")
    msg = make_msg(pixels, "32SC1")
    np.testing.assert_array_equal(image_to_numpy(msg), pixels)  # still decodes as labels
    with pytest.raises(ImageConversionError, match="^encoding: '32SC1' holds labels"):
        to_rgb8(msg)
    assert set(SUPPORTED_ENCODINGS) - set(RGB_ENCODINGS) == {"32SC1"}
