"""Segmentation node with a model configuration.

    ros2 launch segmentation_ros segmentation.launch.py model:=panoptic \
        camera:=/front_camera/image_raw namespace:=front params_file:=my_overrides.yaml

Arguments: model (default | yolact | yolact_plus | panoptic | pcv | mask_rcnn: reads
config/<model>.yaml), camera (image topic; camera_info is read beside it), namespace,
params_file (overrides applied after config/<model>.yaml), use_sim_time, odom (the
nav_msgs/Odometry topic for drivable/grid_fused, default /odom). The decisions live in
segmentation_ros.ros.launch_logic (tested without the launch package).
"""

from segmentation_ros.ros.launch_logic import launch_description


def generate_launch_description():
    return launch_description()
