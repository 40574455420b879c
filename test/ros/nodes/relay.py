"""Test process: republish every message of a type from `in_topic` to `out_topic` unchanged, or
publish one latched (transient local) message given as a Python literal of field values.

    relay.py relay <pkg.msg.Type> <in_topic> <out_topic>
    relay.py latch-class-info <model_name> <n_classes>
"""

import sys

import numpy as np
import rclpy
from rclpy.executors import ExternalShutdownException
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy


def relay(node, type_name: str, in_topic: str, out_topic: str):
    module_name, class_name = type_name.rsplit(".", 1)
    msg_type = getattr(__import__(module_name, fromlist=[class_name]), class_name)
    qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
    publisher = node.create_publisher(msg_type, out_topic, qos)
    node.create_subscription(msg_type, in_topic, publisher.publish, qos)


def latch_class_info(node, model_name: str, n_classes: int):
    from segmentation_ros.ros.messages import ClassTable, make_class_info

    rng = np.random.default_rng(n_classes)
    table = ClassTable(
        names=tuple(f"class_{i}" for i in range(n_classes)),
        colors=rng.integers(0, 255, (n_classes, 3), dtype=np.uint8),
        is_thing=np.arange(n_classes) % 2 == 1,
        drivable=np.arange(n_classes) % 3 == 0,
    )
    qos = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL)
    publisher = node.create_publisher(
        type(make_class_info(table, model_name="")), "class_info", qos
    )
    publisher.publish(make_class_info(table, model_name=model_name))
    node.get_logger().info("published class_info once")
    node._keep = publisher


def main():
    rclpy.init()
    node = rclpy.create_node("test_helper")
    mode, *args = sys.argv[1:]
    if mode == "relay":
        relay(node, *args)
    elif mode == "latch-class-info":
        latch_class_info(node, args[0], int(args[1]))
    else:
        raise SystemExit(f"unknown mode {mode!r}")
    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()


if __name__ == "__main__":
    main()
