"""sensor_msgs/Image and CompressedImage <-> numpy, without cv_bridge.

Arrays follow the message encodings: `rgb8` gives HxWx3 uint8 in RGB order, `bgr8` in BGR order,
mono/single-channel encodings give HxW arrays. Decoding is zero-copy where the layout allows
(native byte order, any row padding: the array is a strided view of the message's buffer; it
stays valid as long as the message does). `to_rgb8` turns every colour encoding (`RGB_ENCODINGS`:
all but 32SC1, which holds labels) into the HxWx3 uint8 RGB image the models take.

Every malformed message raises `ImageConversionError` (a ValueError) naming the offending field;
nothing else is raised for bad input. `compressed_size` reads the size a JPEG / PNG stream declares
from its header without decoding a pixel, so that a decompression bomb (a few KB claiming
32768 x 32767) is refused before the decoder allocates for it; `compressed_to_numpy` decodes only
JPEG and PNG streams and checks the decoded size against the declared one.

This module is used even where cv_bridge is installed: it does what cv_bridge's
`imgmsg_to_cv2(msg, "passthrough")` does (a numpy view of the buffer), without cv_bridge's copy,
and one code path keeps robots and this test machine behaving the same.
"""

from __future__ import annotations

import array as pyarray
from dataclasses import dataclass

import cv2
import numpy as np


class ImageConversionError(ValueError):
    """A message cannot be converted; the message names the field to fix."""


@dataclass(frozen=True)
class _Layout:
    dtype: str  # numpy dtype, native byte order
    channels: int  # channels of the decoded array (1 -> HxW)
    pixel_bytes: int  # bytes one pixel takes in the message


# yuv422 / yuyv pack two pixels in four bytes: decoded as HxWx2 uint8 (as cv_bridge does); their
# width must be even (a pixel pair shares its U and V).
_LAYOUTS: dict[str, _Layout] = {
    "rgb8": _Layout("u1", 3, 3),
    "bgr8": _Layout("u1", 3, 3),
    "rgba8": _Layout("u1", 4, 4),
    "bgra8": _Layout("u1", 4, 4),
    "mono8": _Layout("u1", 1, 1),
    "8UC1": _Layout("u1", 1, 1),
    "8UC3": _Layout("u1", 3, 3),
    "8UC4": _Layout("u1", 4, 4),
    "mono16": _Layout("u2", 1, 2),
    "16UC1": _Layout("u2", 1, 2),
    "16UC3": _Layout("u2", 3, 6),
    "32FC1": _Layout("f4", 1, 4),
    "32SC1": _Layout("i4", 1, 4),
    "yuv422": _Layout("u1", 2, 2),  # UYVY
    "uyvy": _Layout("u1", 2, 2),
    "yuyv": _Layout("u1", 2, 2),  # YUY2
    "yuv422_yuy2": _Layout("u1", 2, 2),
    "bayer_rggb8": _Layout("u1", 1, 1),
    "bayer_bggr8": _Layout("u1", 1, 1),
    "bayer_gbrg8": _Layout("u1", 1, 1),
    "bayer_grbg8": _Layout("u1", 1, 1),
}
SUPPORTED_ENCODINGS = tuple(_LAYOUTS)
_PAIRED = ("yuv422", "uyvy", "yuyv", "yuv422_yuy2")

# Colour conversions to RGB, by encoding. OpenCV names Bayer patterns by the second row's first
# two pixels, hence the apparent swap (ROS bayer_rggb8 == OpenCV BayerBG).
_TO_RGB = {
    "bgr8": cv2.COLOR_BGR2RGB,
    "rgba8": cv2.COLOR_RGBA2RGB,
    "8UC4": cv2.COLOR_RGBA2RGB,  # 8UC3 is read as rgb8, so 8UC4 as rgba8
    "bgra8": cv2.COLOR_BGRA2RGB,
    "mono8": cv2.COLOR_GRAY2RGB,
    "8UC1": cv2.COLOR_GRAY2RGB,
    "yuv422": cv2.COLOR_YUV2RGB_UYVY,
    "uyvy": cv2.COLOR_YUV2RGB_UYVY,
    "yuyv": cv2.COLOR_YUV2RGB_YUYV,
    "yuv422_yuy2": cv2.COLOR_YUV2RGB_YUYV,
    "bayer_rggb8": cv2.COLOR_BayerBG2RGB,
    "bayer_bggr8": cv2.COLOR_BayerRG2RGB,
    "bayer_gbrg8": cv2.COLOR_BayerGR2RGB,
    "bayer_grbg8": cv2.COLOR_BayerGB2RGB,
}
# The encodings `to_rgb8` turns into a colour image. 32SC1 is not among them: it holds labels or
# integer depth (our own `instances` output uses it), which a segmentation network cannot take.
RGB_ENCODINGS = tuple(e for e in SUPPORTED_ENCODINGS if e != "32SC1")


def _layout(encoding: str) -> _Layout:
    try:
        return _LAYOUTS[encoding]
    except KeyError:
        raise ImageConversionError(
            f"encoding: unsupported {encoding!r}; expected one of {', '.join(SUPPORTED_ENCODINGS)}"
        ) from None


def image_to_numpy(msg) -> np.ndarray:
    """Decode a sensor_msgs/Image into an array in the message's own encoding.

    Returns HxW (one channel) or HxWxC, dtype per encoding (uint8, uint16, float32, int32);
    yuv422/yuyv give HxWx2 uint8. A view of `msg.data` when the byte order is native.
    """
    layout = _layout(msg.encoding)
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    if height <= 0:
        raise ImageConversionError(f"height: must be positive, got {height}")
    if width <= 0:
        raise ImageConversionError(f"width: must be positive, got {width}")
    if msg.encoding in _PAIRED and width % 2:
        raise ImageConversionError(
            f"width: {msg.encoding!r} packs two pixels in four bytes, so the width must be even, "
            f"got {width}"
        )
    row_bytes = width * layout.pixel_bytes
    if step < row_bytes:
        raise ImageConversionError(
            f"step: {step} bytes is less than width * bytes per pixel = {row_bytes} "
            f"for {msg.encoding!r}"
        )
    itemsize = np.dtype(layout.dtype).itemsize
    buffer = msg.data
    size = len(buffer) * (buffer.itemsize if hasattr(buffer, "itemsize") else 1)
    if size < step * height:
        raise ImageConversionError(
            f"data: {size} bytes, but height * step = {height} * {step} = {step * height}"
        )
    shape = (height, width) if layout.channels == 1 else (height, width, layout.channels)
    strides = (step, layout.pixel_bytes) + ((itemsize,) if layout.channels > 1 else ())
    big_endian = bool(msg.is_bigendian) and itemsize > 1
    dtype = np.dtype(layout.dtype).newbyteorder(">" if big_endian else "<")
    array = np.ndarray(shape, dtype=dtype, buffer=buffer, strides=strides)
    if not dtype.isnative:
        array = array.astype(dtype.newbyteorder("="))
    return array


def to_rgb8(msg) -> np.ndarray:
    """Decode a sensor_msgs/Image of one of `RGB_ENCODINGS` into HxWx3 uint8 RGB (what the models
    take).

    16-bit and float images are mapped to 8 bits by the full range of their type (16-bit >> 8,
    float clipped to [0, 1]); depth-like encodings are accepted but rarely meaningful here.
    """
    array = image_to_numpy(msg)
    encoding = msg.encoding
    if encoding not in RGB_ENCODINGS:
        raise ImageConversionError(
            f"encoding: {encoding!r} holds labels or integer depth, not an image; expected one of "
            f"{', '.join(RGB_ENCODINGS)}"
        )
    if encoding in ("rgb8", "8UC3"):
        return array
    if encoding in _TO_RGB:
        return cv2.cvtColor(np.ascontiguousarray(array), _TO_RGB[encoding])
    if encoding in ("mono16", "16UC1"):
        return cv2.cvtColor((array >> 8).astype(np.uint8), cv2.COLOR_GRAY2RGB)
    if encoding == "16UC3":
        return (array >> 8).astype(np.uint8)
    if encoding == "32FC1":
        gray = (np.nan_to_num(np.clip(array, 0.0, 1.0)) * 255.0 + 0.5).astype(np.uint8)
        return cv2.cvtColor(gray, cv2.COLOR_GRAY2RGB)
    raise AssertionError(f"{encoding!r} is in RGB_ENCODINGS without a conversion")


def numpy_to_image(array: np.ndarray, encoding: str, header=None, msg=None):
    """Build a sensor_msgs/Image from an array laid out as `encoding` (no padding, native order).

    array: HxW or HxWxC with the dtype and channel count of the encoding.
    """
    from sensor_msgs.msg import Image

    layout = _layout(encoding)
    expected_dtype = np.dtype(layout.dtype)
    if array.dtype != expected_dtype:
        raise ImageConversionError(
            f"encoding: {encoding!r} needs dtype {expected_dtype}, got an array of {array.dtype}"
        )
    channels = 1 if array.ndim == 2 else (array.shape[2] if array.ndim == 3 else -1)
    if channels != layout.channels or (array.ndim == 3 and layout.channels == 1):
        raise ImageConversionError(
            f"encoding: {encoding!r} needs {layout.channels} channel(s), got shape {array.shape}"
        )
    height, width = array.shape[:2]
    if height == 0 or width == 0:
        raise ImageConversionError(f"height/width: empty array of shape {array.shape}")
    msg = msg if msg is not None else Image()
    if header is not None:
        msg.header = header
    msg.height, msg.width, msg.encoding = height, width, encoding
    msg.is_bigendian = 0
    msg.step = width * layout.pixel_bytes
    msg.data = to_uint8_array(array)
    return msg


def to_uint8_array(array: np.ndarray) -> pyarray.array:
    """An array's bytes as the array.array('B') that message `uint8[]` fields hold.

    One copy; the generated setters take an array.array as is, whereas an ndarray is checked
    element by element (~1000x slower) and bytes are copied once more.
    """
    out = pyarray.array("B")
    out.frombytes(memoryview(np.ascontiguousarray(array)).cast("B"))
    return out


def compressed_to_numpy(
    msg, desired_encoding: str = "rgb8", *, max_side: int | None = None
) -> np.ndarray:
    """Decode a sensor_msgs/CompressedImage (jpeg or png) into `desired_encoding`.

    desired_encoding: "rgb8" (HxWx3 RGB), "bgr8", "mono8", or "passthrough" (what the codec holds:
    BGR(A) or grey, 8 or 16 bit). max_side: refuse, before decoding, a stream whose header
    declares a larger width or height (None: no limit).
    """
    if desired_encoding not in ("rgb8", "bgr8", "mono8", "passthrough"):
        raise ImageConversionError(
            f"desired_encoding: {desired_encoding!r}; expected rgb8, bgr8, mono8 or passthrough"
        )
    data = np.frombuffer(msg.data, dtype=np.uint8)
    width, height, kind = compressed_size(data)
    if max_side is not None and max(width, height) > max_side:
        raise ImageConversionError(
            f"width/height: the {kind} header declares {width}x{height}, more than {max_side}"
        )
    flags = cv2.IMREAD_GRAYSCALE if desired_encoding == "mono8" else cv2.IMREAD_UNCHANGED
    try:
        image = cv2.imdecode(data, flags)
    except cv2.error as error:
        raise ImageConversionError(f"data: OpenCV could not decode the {kind}: {error}") from None
    if image is None:
        raise ImageConversionError(
            f"data: {data.size} bytes could not be decoded as {kind} (format {msg.format!r})"
        )
    if image.shape[:2] not in ((height, width), (width, height)):  # EXIF may turn it 90 deg
        raise ImageConversionError(
            f"data: decoded {image.shape[1]}x{image.shape[0]}, but the {kind} header declares "
            f"{width}x{height}"
        )
    if desired_encoding in ("passthrough", "mono8"):
        return image
    if image.dtype != np.uint8:
        image = (image >> 8).astype(np.uint8)
    if image.ndim == 2:
        code = cv2.COLOR_GRAY2RGB if desired_encoding == "rgb8" else cv2.COLOR_GRAY2BGR
    elif image.shape[2] == 4:
        code = cv2.COLOR_BGRA2RGB if desired_encoding == "rgb8" else cv2.COLOR_BGRA2BGR
    else:
        return cv2.cvtColor(image, cv2.COLOR_BGR2RGB) if desired_encoding == "rgb8" else image
    return cv2.cvtColor(image, code)


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# JPEG start-of-frame markers (baseline, progressive, lossless, arithmetic ...): C0-CF except DHT
# (C4), JPG (C8) and DAC (CC). Markers without a length field: TEM (01), RST0-7 (D0-D7), SOI.
_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_JPEG_STANDALONE = frozenset([0x01, *range(0xD0, 0xD9)])


def compressed_size(data) -> tuple[int, int, str]:
    """(width, height, "JPEG" | "PNG") that a compressed stream declares, read from its header
    (the PNG IHDR chunk, the JPEG start-of-frame segment) without decoding any pixel.

    data: the bytes of a CompressedImage (bytes, array.array('B') or a uint8 ndarray).
    Raises ImageConversionError for anything else (other formats, a truncated or zero-size header).
    """
    buf = np.frombuffer(data, dtype=np.uint8) if not isinstance(data, np.ndarray) else data
    if buf.size == 0:
        raise ImageConversionError("data: empty CompressedImage")
    if buf[:8].tobytes() == _PNG_SIGNATURE:
        if buf.size < 24 or buf[12:16].tobytes() != b"IHDR":
            raise ImageConversionError("data: a PNG signature without its IHDR chunk")
        width, height = (int.from_bytes(buf[i : i + 4].tobytes(), "big") for i in (16, 20))
        return _declared(width, height, "PNG")
    if buf[:2].tobytes() != b"\xff\xd8":
        raise ImageConversionError(
            f"data: not a JPEG or PNG stream (starts with {buf[:8].tobytes()!r})"
        )
    i = 2
    while i + 4 <= buf.size:
        if buf[i] != 0xFF:
            raise ImageConversionError(f"data: JPEG header broken at byte {i} (no marker)")
        marker = int(buf[i + 1])
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in _JPEG_STANDALONE:
            i += 2
            continue
        length = int(buf[i + 2]) << 8 | int(buf[i + 3])
        if marker in _JPEG_SOF:
            if i + 9 > buf.size or length < 8:
                raise ImageConversionError("data: JPEG start-of-frame segment is truncated")
            height = int(buf[i + 5]) << 8 | int(buf[i + 6])
            width = int(buf[i + 7]) << 8 | int(buf[i + 8])
            return _declared(width, height, "JPEG")
        if marker == 0xDA or length < 2:  # start of scan before any frame header
            break
        i += 2 + length
    raise ImageConversionError("data: JPEG stream without a start-of-frame header")


def _declared(width: int, height: int, kind: str) -> tuple[int, int, str]:
    if width <= 0 or height <= 0:
        raise ImageConversionError(f"width/height: the {kind} header declares {width}x{height}")
    return width, height, kind


def numpy_to_compressed(
    array: np.ndarray, encoding: str = "rgb8", fmt: str = "jpeg", quality: int = 90, header=None
):
    """Encode an rgb8 / bgr8 / mono8 array into a sensor_msgs/CompressedImage.

    The format string follows image_transport: "<encoding>; jpeg compressed bgr8" (or png).
    """
    from sensor_msgs.msg import CompressedImage

    if fmt not in ("jpeg", "png"):
        raise ImageConversionError(f"format: {fmt!r}; expected 'jpeg' or 'png'")
    if encoding not in ("rgb8", "bgr8", "mono8"):
        raise ImageConversionError(f"encoding: {encoding!r}; expected rgb8, bgr8 or mono8")
    if array.size == 0:
        raise ImageConversionError(f"height/width: empty array of shape {array.shape}")
    bgr = cv2.cvtColor(array, cv2.COLOR_RGB2BGR) if encoding == "rgb8" else array
    params = [cv2.IMWRITE_JPEG_QUALITY, int(quality)] if fmt == "jpeg" else []
    ok, encoded = cv2.imencode(".jpg" if fmt == "jpeg" else ".png", bgr, params)
    if not ok:
        raise ImageConversionError(f"data: OpenCV could not encode a {array.shape} array")
    msg = CompressedImage()
    if header is not None:
        msg.header = header
    packed = "mono8" if encoding == "mono8" else "bgr8"
    msg.format = f"{encoding}; {fmt} compressed {packed}"
    msg.data = to_uint8_array(encoded)
    return msg
