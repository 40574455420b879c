"""Cost of converting a 640x480 rgb8 sensor_msgs/Image to numpy and back (microseconds).

source env.sh && python benchmarks/bench_image_codec.py
"""

import time

import numpy as np

from segmentation_ros.ros.image_codec import image_to_numpy, numpy_to_image, to_rgb8


def per_call_us(fn, repeat=200):
    fn()
    start = time.perf_counter()
    for _ in range(repeat):
        fn()
    return (time.perf_counter() - start) / repeat * 1e6


def main():
    rgb = np.random.default_rng(0).integers(0, 255, (480, 640, 3), dtype=np.uint8)
    msg = numpy_to_image(rgb, "rgb8")
    bgr_msg = numpy_to_image(rgb, "bgr8")
    rows = {
        "Image rgb8 -> numpy (zero copy)": per_call_us(lambda: image_to_numpy(msg)),
        "numpy -> Image rgb8": per_call_us(lambda: numpy_to_image(rgb, "rgb8")),
        "round trip rgb8": per_call_us(lambda: numpy_to_image(image_to_numpy(msg), "rgb8")),
        "Image bgr8 -> RGB array (model input)": per_call_us(lambda: to_rgb8(bgr_msg)),
    }
    for name, us in rows.items():
        print(f"{name:40s} {us:9.1f} us")


if __name__ == "__main__":
    main()
