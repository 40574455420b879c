"""Input admission without a running node, one case per class of the outside reliability test
(issue #12): stamps that jump, decompression bombs, odd-width YUV, 1-pixel images, 8UC4 / 32SC1,
implausible CameraInfo. Each answer is a result or a drop with its own cause."""

import numpy as np
import pytest
from sensor_msgs.msg import CameraInfo, CompressedImage, Image

from segmentation_ros.ros.diagnostics import DROP_CAUSES
from segmentation_ros.ros.image_codec import numpy_to_compressed, numpy_to_image
from segmentation_ros.ros.inputs import (
    MIN_IMAGE_SIDE,
    FrameDropped,
    StampOrder,
    camera_from_info,
    camera_misfit,
    check_image,
    decode_image,
)

from .test_image_codec import jpeg_claiming, png_claiming

S = 1_000_000_000  # ns per second


def cause_of(fn, *args, **kwargs) -> str:
    with pytest.raises(FrameDropped) as info:
        fn(*args, **kwargs)
    assert info.value.cause in DROP_CAUSES
    return info.value.cause


def test_one_future_stamp_costs_two_frames_not_the_stream():
    order = StampOrder()
    t = 1_000 * S
    order.check(t, now=0.0)
    order.check(t + 3600 * S, now=0.03)  # a bad clock, once
    answers = []
    for i in range(1, 6):
        try:
            order.check(t + i * S // 30, now=0.03 + i / 30)
            answers.append("ok")
        except FrameDropped as drop:
            answers.append(drop.cause)
    assert answers == ["out_of_order", "out_of_order", "ok", "ok", "ok"]


def test_a_looping_bag_is_followed_and_a_lone_late_frame_is_still_refused():
    order = StampOrder()
    for i in range(10):
        order.check((100 + i) * S, now=i / 30)
    assert cause_of(order.check, 99 * S, now=0.4) == "out_of_order"  # a lone late frame
    order.check(110 * S, now=0.43)  # the stream goes on: the refusal run is over
    assert cause_of(order.check, 50 * S, now=0.46) == "out_of_order"  # the bag restarts
    assert cause_of(order.check, 50 * S + S // 30, now=0.5) == "out_of_order"
    order.check(50 * S + 2 * S // 30, now=0.53)  # third in a row: the new time base
    order.check(50 * S + 3 * S // 30, now=0.56)


def test_a_slow_camera_recovers_within_a_second():
    order = StampOrder()
    order.check(10_000 * S, now=0.0)  # stamped in the future
    assert cause_of(order.check, 5 * S, now=1.0) == "out_of_order"
    order.check(6 * S, now=2.0)  # a second of refusals, 1 Hz camera: adopted
    order.check(7 * S, now=3.0)


def _rgb(height, width, encoding="rgb8"):
    channels = {"rgb8": 3, "8UC4": 4, "32SC1": 1}[encoding]
    dtype = np.int32 if encoding == "32SC1" else np.uint8
    shape = (height, width) if channels == 1 else (height, width, channels)
    return numpy_to_image(np.zeros(shape, dtype), encoding)


@pytest.mark.parametrize("height,width", [(1, 1), (1, 320), (240, 1), (3, 3), (15, 640)])
def test_tiny_images_are_dropped_as_too_small(height, width):
    assert cause_of(check_image, _rgb(height, width), max_side=2048) == "too_small"
    tiny = numpy_to_compressed(np.zeros((height, width, 3), np.uint8), fmt="png")
    assert cause_of(check_image, tiny, max_side=2048) == "too_small"
    edge = MIN_IMAGE_SIDE
    assert decode_image(_rgb(edge, edge), max_side=2048).shape == (edge, edge, 3)


@pytest.mark.parametrize("encoding", ["yuv422", "uyvy", "yuyv", "yuv422_yuy2"])
def test_odd_width_yuv_is_a_counted_bad_size(encoding):
    msg = Image(height=480, width=641, encoding=encoding, step=641 * 2)
    msg.data = bytes(641 * 2 * 480)
    assert cause_of(check_image, msg, max_side=2048) == "bad_size"
    assert cause_of(decode_image, msg, max_side=2048) == "bad_size"


def test_8uc4_is_a_result_and_32sc1_a_bad_encoding():
    assert decode_image(_rgb(32, 48, "8UC4"), max_side=2048).shape == (32, 48, 3)
    assert cause_of(check_image, _rgb(32, 48, "32SC1"), max_side=2048) == "bad_encoding"


@pytest.mark.parametrize(
    "data", [jpeg_claiming(32768, 32767), png_claiming(20000, 20000)], ids=["jpeg", "png"]
)
def test_decompression_bombs_are_too_large_by_their_header(data):
    bomb = CompressedImage(format="jpeg", data=data)
    assert cause_of(check_image, bomb, max_side=2048) == "too_large"
    assert cause_of(decode_image, bomb, max_side=2048) == "too_large"


def test_unreadable_compressed_data_is_a_decode_error():
    corrupt = CompressedImage(format="jpeg", data=b"\xff\xd8\xff\xe0 not a jpeg")
    assert cause_of(check_image, corrupt, max_side=2048) == "decode_error"
    assert cause_of(decode_image, CompressedImage(), max_side=2048) == "decode_error"


def info(k=(120.0, 0.0, 80.0, 0.0, 120.0, 60.0, 0.0, 0.0, 1.0), width=160, height=120):
    msg = CameraInfo(width=width, height=height, distortion_model="plumb_bob")
    msg.k = list(k)
    msg.d = [0.0] * 5
    return msg


@pytest.mark.parametrize(
    "msg",
    [
        info(k=(1e-300, 0.0, 80.0, 0.0, 1e-300, 60.0, 0.0, 0.0, 1.0)),
        info(k=(120.0, 0.0, 1e7, 0.0, 120.0, 1e7, 0.0, 0.0, 1.0)),
        info(width=2**32 - 1, height=2**32 - 1),
    ],
    ids=["focal-1e-300", "principal-point-1e7", "size-2^32-1"],
)
def test_implausible_camera_info_is_refused(msg):
    assert cause_of(camera_from_info, msg) == "bad_camera_info"


def test_camera_info_must_fit_the_images():
    camera = camera_from_info(info())  # before any image: accepted
    assert camera_misfit(camera, (320, 240)) is None  # the same camera at twice the resolution
    assert camera_misfit(None, (320, 240)) is None
    assert camera_misfit(camera, (120, 160)).cause == "bad_camera_info"
    assert cause_of(camera_from_info, info(), (640, 360)) == "bad_camera_info"


def test_close_waits_for_the_frame_in_flight_and_the_consumer_outlives_it():
    import threading
    import time

    from segmentation_ros.ros.inputs import Frame, LatestSlot

    slot, log = LatestSlot(), []

    def consumer():
        while not slot.finished:
            frame = slot.take(timeout=0.05)
            if frame is not None:
                time.sleep(0.3)  # inference
                log.append(("done", frame.msg))

    thread = threading.Thread(target=consumer)
    thread.start()
    for cycle in range(3):  # deactivate / activate: one thread throughout
        slot.open()
        slot.put(Frame(cycle, 0.0, cycle + 1))
        time.sleep(0.1)  # taken, in flight
        slot.close()
        log.append(("closed", cycle))
    slot.close(final=True)
    thread.join(2.0)
    assert not thread.is_alive()
    assert log == [entry for cycle in range(3) for entry in (("done", cycle), ("closed", cycle))]
