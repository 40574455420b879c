"""Input admission for the segmentation node: camera messages -> RGB arrays or a drop cause.

- `LatestSlot`: the hand-over between the subscription callback and the inference worker. It
  holds at most one frame; a frame that arrives before the worker took the previous one replaces
  it (the replaced one is counted as `overwritten`). Nothing queues up, so latency stays bounded
  by one inference. `HandOver`: the same between the inference and the publishing thread, but
  its `put` waits instead of replacing.
- `check_image` (in the subscription callback, before a message may take the slot, so a bad
  message never displaces a good one): declared size, encoding, step and data length, without
  converting a pixel; an 8000 x 8000 image costs nothing. A CompressedImage is judged by the size
  its JPEG / PNG header declares, so a decompression bomb is refused before any decoder runs.
  `decode_image` (in the worker): sensor_msgs/Image or CompressedImage -> HxWx3 uint8 RGB. Both
  raise `FrameDropped` naming the cause (`diagnostics.DROP_CAUSES`); nothing else escapes them.
- Images narrower or lower than `MIN_IMAGE_SIDE` pixels are dropped as `too_small`.
- `StampOrder`: refuses frames whose stamp is older than the last accepted one, and adopts the
  stream's new time base after a run of refusals (see the class).
- `camera_from_info`: sensor_msgs/CameraInfo -> `drivable.CameraModel`, or FrameDropped when it
  is not a plausible calibration (`drivable.check_plausible`) or does not fit the images.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from segmentation_ros.drivable import CameraModel
from segmentation_ros.drivable.camera import check_plausible
from segmentation_ros.ros.image_codec import (
    RGB_ENCODINGS,
    ImageConversionError,
    compressed_size,
    compressed_to_numpy,
    image_to_numpy,
    to_rgb8,
)

#: Smallest image side the node takes: the largest `grid_stride` (the ground projection samples
#: one pixel every grid_stride along each side). Smaller images are dropped as `too_small`.
MIN_IMAGE_SIDE = 16


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
    """A one-frame mailbox between a producer callback and one consumer thread that lives as long
    as the node (a new thread per activate took a new malloc arena each time: RSS grew 10 % over
    the first deactivate / activate cycles, measured with benchmarks/bench_soak.py).

    `close` refuses frames and waits until the consumer has finished the frame it took (it
    says so by calling `take` again), so that nothing is published after a deactivate;
    `close(final=True)` ends the consumer's loop (`finished`).
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._frame: Frame | None = None
        self._closed = False
        self._finished = False
        self._in_flight = False

    def put(self, frame: Frame) -> bool:
        """Store `frame`; True when it replaced a frame nobody had taken (overwritten)."""
        with self._cond:
            replaced = self._frame is not None
            self._frame = frame
            self._cond.notify_all()
            return replaced

    def take(self, timeout: float | None = None) -> Frame | None:
        """The newest frame, waiting up to `timeout` seconds; None on timeout or while closed.
        Calling it again marks the previous frame finished."""
        with self._cond:
            self._in_flight = False
            self._cond.notify_all()
            if (self._frame is None or self._closed) and not self._finished:
                self._cond.wait(timeout)
            frame, self._frame = (None if self._closed else self._frame), None
            self._in_flight = frame is not None
            self._cond.notify_all()  # a waiting `HandOver.put` may go on
            return frame

    def close(self, *, final: bool = False, wait_s: float = 30.0) -> None:
        """Refuse frames until `open` and wait (up to wait_s) for the frame being processed."""
        with self._cond:
            self._closed = True
            self._finished = self._finished or final
            self._frame = None
            self._cond.notify_all()
            self._cond.wait_for(lambda: not self._in_flight, wait_s)

    def open(self) -> None:
        with self._cond:
            self._closed = False
            self._frame = None

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def finished(self) -> bool:
        return self._finished


class HandOver(LatestSlot):
    """A `LatestSlot` whose `put` waits until the previous item was taken instead of replacing
    it: between the node's inference thread and its publishing thread, where every inferred
    frame is worth publishing and the inference must not run more than one frame ahead.
    `put` returns True when the item was handed over, False when the hand-over is (or became)
    closed; `take`, `close`, `open` as LatestSlot."""

    def put(self, frame, timeout: float | None = None) -> bool:
        with self._cond:
            self._cond.wait_for(lambda: self._frame is None or self._closed, timeout)
            if self._closed or self._frame is not None:
                return False
            self._frame = frame
            self._cond.notify_all()
            return True


def stamp_ns(header) -> int:
    """A std_msgs/Header stamp in integer nanoseconds."""
    return int(header.stamp.sec) * 1_000_000_000 + int(header.stamp.nanosec)


class StampOrder:
    """Accepts stamps that do not go back in time (equal stamps pass; 0 means unset and passes).

    A stamp older than the last accepted one is refused (out_of_order): a late frame from a
    reordering transport or a second path. Such frames come alone. A run of `reset_after`
    refusals in a row, or refusals for `reset_after_s` seconds, is something else: the time base
    moved (the clock jumped back, a bag looped, one frame was stamped in the future by a bad
    clock). The frame that completes the run is accepted and becomes the reference, so one bad
    stamp costs at most reset_after - 1 frames (or reset_after_s seconds at a slow camera) instead
    of blinding the node. The node's clock is not used: with `use_sim_time` or an unsynchronised
    camera it is no better a reference than the stream itself.
    """

    def __init__(self, *, reset_after: int = 3, reset_after_s: float = 1.0) -> None:
        self.reset_after = int(reset_after)
        self.reset_after_s = float(reset_after_s)
        self.last_ns = 0
        self._refused = 0
        self._first_refusal = 0.0

    def check(self, stamp: int, now: float | None = None) -> None:
        """Raise FrameDropped("out_of_order") for a stamp older than the last accepted one, unless
        it completes a run of refusals. now: time.monotonic() (for the reset_after_s rule)."""
        if not stamp:
            return
        if stamp < self.last_ns:
            now = time.monotonic() if now is None else now
            if not self._refused:
                self._first_refusal = now
            self._refused += 1
            run_over = (
                self._refused >= self.reset_after or now - self._first_refusal >= self.reset_after_s
            )
            if not run_over:
                raise FrameDropped(
                    "out_of_order",
                    f"stamp {stamp / 1e9:.3f} s is older than the last frame's "
                    f"{self.last_ns / 1e9:.3f} s (refusal {self._refused} in a row; the stream's "
                    f"time base is adopted after {self.reset_after} or {self.reset_after_s:g} s)",
                )
        self.last_ns = stamp
        self._refused = 0

    def reset(self) -> None:
        self.last_ns = 0
        self._refused = 0


def check_age(stamp: int, now_ns: int, max_age_ms: float) -> None:
    """Raise FrameDropped("stale") when the frame is older than `max_age_ms` (0: no limit).
    Unset stamps (0) have no age."""
    if max_age_ms > 0 and stamp and (now_ns - stamp) > max_age_ms * 1e6:
        raise FrameDropped(
            "stale", f"frame is {(now_ns - stamp) / 1e6:.0f} ms old (max_image_age_ms "
            f"{max_age_ms:.0f})"
        )  # fmt: skip


_SIZE_FIELDS = ("height:", "width:", "step:", "data:")


def _check_size(width: int, height: int, max_side: int, what: str) -> None:
    if max(width, height) > max_side:
        raise FrameDropped("too_large", f"{what}{width}x{height} exceeds max_image_side {max_side}")
    if min(width, height) < MIN_IMAGE_SIDE:
        raise FrameDropped(
            "too_small", f"{what}{width}x{height}: a side is under {MIN_IMAGE_SIDE} pixels"
        )


def check_image(msg, *, max_side: int) -> tuple[int, int]:
    """Cheap checks of a received message before it may take the slot (no pixel is converted):
    declared size, encoding, step and data length of an Image; the size a CompressedImage's
    JPEG / PNG header declares. Returns (width, height). Raises FrameDropped with cause
    too_large, too_small, bad_size, bad_encoding or decode_error."""
    if not hasattr(msg, "encoding"):  # CompressedImage
        try:
            width, height, kind = compressed_size(msg.data)
        except ImageConversionError as error:
            raise FrameDropped("decode_error", str(error)) from None
        _check_size(width, height, max_side, f"the {kind} header declares ")
        return width, height
    height, width = int(msg.height), int(msg.width)
    if max(height, width) > max_side:
        raise FrameDropped("too_large", f"{width}x{height} exceeds max_image_side {max_side}")
    try:
        image_to_numpy(msg)  # validates; a zero-copy view
    except ImageConversionError as error:
        text = str(error)
        cause = "bad_size" if text.startswith(_SIZE_FIELDS) else "bad_encoding"
        raise FrameDropped(cause, text) from None
    _check_size(width, height, max_side, "")
    if msg.encoding not in RGB_ENCODINGS:
        raise FrameDropped(
            "bad_encoding",
            f"encoding: {msg.encoding!r} holds labels or integer depth, not an image; expected one "
            f"of {', '.join(RGB_ENCODINGS)}",
        )
    return width, height


def decode_image(msg, *, max_side: int) -> np.ndarray:
    """sensor_msgs/Image or CompressedImage -> [H, W, 3] uint8 RGB (a view where possible).

    Raises FrameDropped with cause too_large, too_small, bad_size, bad_encoding or decode_error;
    a conversion that fails in any other way is a drop too (bad_encoding, decode_error), never an
    exception out of here.
    """
    check_image(msg, max_side=max_side)
    raw = hasattr(msg, "encoding")  # sensor_msgs/Image
    cause = "bad_encoding" if raw else "decode_error"
    try:
        return to_rgb8(msg) if raw else compressed_to_numpy(msg, "rgb8", max_side=max_side)
    except ImageConversionError as error:
        raise FrameDropped(cause, str(error)) from None
    except Exception as error:  # OpenCV raises cv2.error on what slipped past the checks
        raise FrameDropped(cause, f"{type(error).__name__}: {error}") from None


def camera_from_info(msg, image_size: tuple[int, int] | None = None) -> CameraModel:
    """sensor_msgs/CameraInfo -> CameraModel; FrameDropped("bad_camera_info") if unusable:
    malformed, implausible (`drivable.camera.check_plausible`) or, when `image_size` (width,
    height) of the images is known, not fitting them.

    An empty distortion model is taken as plumb_bob (what uncalibrated drivers send).
    """
    try:
        camera = CameraModel(
            K=np.asarray(msg.k, dtype=np.float64),
            D=np.asarray(msg.d, dtype=np.float64),
            width=int(msg.width),
            height=int(msg.height),
            distortion_model=msg.distortion_model or "plumb_bob",
        )
        check_plausible(camera, image_size)
    except (ValueError, TypeError) as error:
        raise FrameDropped("bad_camera_info", str(error)) from None
    return camera


def camera_misfit(camera: CameraModel | None, image_size: tuple[int, int]) -> FrameDropped | None:
    """The drop (bad_camera_info) for a `camera`, accepted before any image came, that does not
    fit images of `image_size` (width, height); None when it fits or there is none."""
    try:
        if camera is not None:
            check_plausible(camera, image_size)
    except ValueError as error:
        return FrameDropped("bad_camera_info", str(error))
    return None
