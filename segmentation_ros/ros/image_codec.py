"""sensor_msgs/Image and CompressedImage <-> numpy, without cv_bridge.

Arrays follow the message encodings: `rgb8` gives HxWx3 uint8 in RGB order, `bgr8` in BGR order,
mono/single-channel encodings give HxW arrays. Decoding is zero-copy where the layout allows
(native byte order, any row padding: the array is a strided view of the message's buffer; it
stays valid as long as the message does). `to_rgb8` turns any supported encoding into the HxWx3
uint8 RGB image the models take.

Every malformed message raises `ImageConversionError` (a ValueError) naming the offending field;
nothing else is raised for bad input. This module is used even where cv_bridge is installed: it
does what cv_bridge's `imgmsg_to_cv2(msg, "passthrough")` does (a numpy view of the buffer), without
cv_bridge's copy, and one code path keeps robots and this test machine behaving the same.
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


# yuv422 / yuyv pack two pixels in four bytes: decoded as HxWx2 uint8 (as cv_bridge does).
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

# Colour conversions to RGB, by encoding. OpenCV names Bayer patterns by the second row's first
# two pixels, hence the apparent swap (ROS bayer_rggb8 == OpenCV BayerBG).
_TO_RGB = {
    "bgr8": cv2.COLOR_BGR2RGB,
    "rgba8": cv2.COLOR_RGBA2RGB,
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
    """Decode any supported sensor_msgs/Image into HxWx3 uint8 RGB (what the models take).

    16-bit and float images are mapped to 8 bits by the full range of their type (16-bit >> 8,
    float clipped to [0, 1]); depth-like encodings are accepted but rarely meaningful here.
    """
    array = image_to_numpy(msg)
    encoding = msg.encoding
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
    raise ImageConversionError(f"encoding: {encoding!r} has no conversion to rgb8")


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


def compressed_to_numpy(msg, desired_encoding: str = "rgb8") -> np.ndarray:
    """Decode a sensor_msgs/CompressedImage (jpeg or png) into `desired_encoding`.

    desired_encoding: "rgb8" (HxWx3 RGB), "bgr8", "mono8", or "passthrough" (what the codec holds:
    BGR(A) or grey, 8 or 16 bit).
    """
    if desired_encoding not in ("rgb8", "bgr8", "mono8", "passthrough"):
        raise ImageConversionError(
            f"desired_encoding: {desired_encoding!r}; expected rgb8, bgr8, mono8 or passthrough"
        )
    data = np.frombuffer(msg.data, dtype=np.uint8)
    if data.size == 0:
        raise ImageConversionError("data: empty CompressedImage")
    flags = cv2.IMREAD_GRAYSCALE if desired_encoding == "mono8" else cv2.IMREAD_UNCHANGED
    image = cv2.imdecode(data, flags)
    if image is None:
        raise ImageConversionError(
            f"data: {data.size} bytes could not be decoded as an image (format {msg.format!r})"
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
