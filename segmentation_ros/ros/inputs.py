"""Input admission for the segmentation node: camera messages -> RGB arrays or a drop cause.

- `LatestSlot`: the hand-over between the subscription callback and the inference worker. It
  holds at most one frame; a frame that arrives before the worker took the previous one replaces
  it (the replaced one is counted as `overwritten`). Nothing queues up, so latency stays bounded
  by one inference.
- `check_image` (in the subscription callback, before a message may take the slot, so a bad
  message never displaces a good one): declared size, encoding, step and data length, without
  converting a pixel; an 8000 x 8000 image costs nothing. `decode_image` (in the worker):
  sensor_msgs/Image or CompressedImage -> HxWx3 uint8 RGB. Both raise `FrameDropped` naming the
  cause (`diagnostics.DROP_CAUSES`).
- `StampOrder`: rejects frames whose stamp is older than the last accepted one.
- `camera_from_info`: sensor_msgs/CameraInfo -> `drivable.CameraModel`, or FrameDropped.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import numpy as np

from segmentation_ros.drivable import CameraModel
from segmentation_ros.ros.image_codec import (
    ImageConversionError,
    compressed_to_numpy,
    image_to_numpy,
    to_rgb8,
)


class FrameDropped(Exception):
    """A frame cannot be used; `cause` is one of diagnostics.DROP_CAUSES, the text says why."""

    def __init__(self, cause: str, detail: str):
        super().__init__(f"{cause}: {detail}")
        self.cause = cause
        self.detail = detail


@dataclass
class Frame:
    """A received camera message waiting for inference.

    msg: the Image / CompressedImage. arrival: time.monotonic() at the callback.
    stamp_ns: the header stamp in nanoseconds (0 = unset).
    """

    msg: Any
    arrival: float
    stamp_ns: int


class LatestSlot:
    """A one-frame mailbox between a producer callback and a consumer thread."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._frame: Frame | None = None
        self._closed = False

    def put(self, frame: Frame) -> bool:
        """Store `frame`; True when it replaced a frame nobody had taken (overwritten)."""
        with self._cond:
            replaced = self._frame is not None
            self._frame = frame
            self._cond.notify()
            return replaced

    def take(self, timeout: float | None = None) -> Frame | None:
        """The newest frame, waiting up to `timeout` seconds; None on timeout or when closed."""
        with self._cond:
            if self._frame is None and not self._closed:
                self._cond.wait(timeout)
            frame, self._frame = self._frame, None
            return None if self._closed else frame

    def close(self) -> None:
        """Wake the consumer and refuse further frames until `open`."""
        with self._cond:
            self._closed = True
            self._frame = None
            self._cond.notify_all()

    def open(self) -> None:
        with self._cond:
            self._closed = False
            self._frame = None

    @property
    def closed(self) -> bool:
        return self._closed


def stamp_ns(header) -> int:
    """A std_msgs/Header stamp in integer nanoseconds."""
    return int(header.stamp.sec) * 1_000_000_000 + int(header.stamp.nanosec)


class StampOrder:
    """Accepts stamps that do not go back in time (equal stamps pass; 0 means unset and passes)."""

    def __init__(self) -> None:
        self.last_ns = 0

    def check(self, stamp: int) -> None:
        """Raise FrameDropped("out_of_order") for a stamp older than the last accepted one."""
        if stamp and stamp < self.last_ns:
            raise FrameDropped(
                "out_of_order",
                f"stamp {stamp / 1e9:.3f} s is older than the last frame's "
                f"{self.last_ns / 1e9:.3f} s",
            )
        if stamp:
            self.last_ns = stamp

    def reset(self) -> None:
        self.last_ns = 0


def check_age(stamp: int, now_ns: int, max_age_ms: float) -> None:
    """Raise FrameDropped("stale") when the frame is older than `max_age_ms` (0: no limit).
    Unset stamps (0) have no age."""
    if max_age_ms > 0 and stamp and (now_ns - stamp) > max_age_ms * 1e6:
        raise FrameDropped(
            "stale", f"frame is {(now_ns - stamp) / 1e6:.0f} ms old (max_image_age_ms "
            f"{max_age_ms:.0f})"
        )  # fmt: skip


_SIZE_FIELDS = ("height:", "width:", "step:", "data:")


def check_image(msg, *, max_side: int) -> None:
    """Cheap checks of a received message before it may take the slot (no pixel is converted):
    declared size, encoding, step and data length of an Image; non-empty data of a
    CompressedImage. Raises FrameDropped with cause too_large, bad_size or bad_encoding."""
    if not hasattr(msg, "encoding"):  # CompressedImage: only decoding can tell
        if len(msg.data) == 0:
            raise FrameDropped("decode_error", "data: empty CompressedImage")
        return
    height, width = int(msg.height), int(msg.width)
    if max(height, width) > max_side:
        raise FrameDropped("too_large", f"{width}x{height} exceeds max_image_side {max_side}")
    try:
        image_to_numpy(msg)  # validates; a zero-copy view
    except ImageConversionError as error:
        text = str(error)
        cause = "bad_size" if text.startswith(_SIZE_FIELDS) else "bad_encoding"
        raise FrameDropped(cause, text) from None


def decode_image(msg, *, max_side: int) -> np.ndarray:
    """sensor_msgs/Image or CompressedImage -> [H, W, 3] uint8 RGB (a view where possible).

    Raises FrameDropped with cause too_large, bad_size, bad_encoding or decode_error.
    """
    if hasattr(msg, "encoding"):  # sensor_msgs/Image
        check_image(msg, max_side=max_side)
        try:
            return to_rgb8(msg)
        except ImageConversionError as error:
            raise FrameDropped("bad_encoding", str(error)) from None
    try:
        rgb = compressed_to_numpy(msg, "rgb8")
    except ImageConversionError as error:
        raise FrameDropped("decode_error", str(error)) from None
    except Exception as error:  # OpenCV raises cv2.error on some corrupt streams
        raise FrameDropped("decode_error", f"{type(error).__name__}: {error}") from None
    if max(rgb.shape[:2]) > max_side:
        raise FrameDropped(
            "too_large", f"{rgb.shape[1]}x{rgb.shape[0]} exceeds max_image_side {max_side}"
        )
    return rgb


def camera_from_info(msg) -> CameraModel:
    """sensor_msgs/CameraInfo -> CameraModel; FrameDropped("bad_camera_info") if unusable.

    An empty distortion model is taken as plumb_bob (what uncalibrated drivers send).
    """
    try:
        return CameraModel(
            K=np.asarray(msg.k, dtype=np.float64),
            D=np.asarray(msg.d, dtype=np.float64),
            width=int(msg.width),
            height=int(msg.height),
            distortion_model=msg.distortion_model or "plumb_bob",
        )
    except (ValueError, TypeError) as error:
        raise FrameDropped("bad_camera_info", str(error)) from None
