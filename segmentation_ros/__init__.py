"""segmentation_ros: real-time instance and panoptic segmentation for ROS 2 robots.

The library (models/, ops/, postprocess/, panoptic/, drivable/, data/, train/, runtime/) is pure
PyTorch / numpy and never imports rclpy; ros/ is the thin node glue.

In a ROS install this file is replaced by the one rosidl generates for our messages, so it must
stay free of logic. `extend_path` lets a source checkout find the generated `segmentation_ros.msg`
in the colcon install prefix.
"""

__path__ = __import__("pkgutil").extend_path(__path__, __name__)
