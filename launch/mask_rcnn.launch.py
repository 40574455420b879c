"""segmentation.launch.py with model:=mask_rcnn (config/mask_rcnn.yaml); other arguments alike.

ros2 launch segmentation_ros mask_rcnn.launch.py camera:=/front_camera/image_raw
"""

from segmentation_ros.ros.launch_logic import launch_description


def generate_launch_description():
    return launch_description(fixed_model="mask_rcnn")
