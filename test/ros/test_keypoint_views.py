"""Keypoints in the overlay image and the RViz markers (no DDS): drawn where the pixel and
robot-frame conventions put them."""

import numpy as np
from std_msgs.msg import Header

from segmentation_ros.ros.visualization import draw_keypoints, make_markers


def test_overlay_dots_sit_on_the_keypoint_pixels_and_limbs_join_them():
    image = np.zeros((60, 80, 3), np.uint8)
    kp = np.full((2, 3, 3), np.nan)
    # COCO pixels: (10.5, 20.5) is the centre of pixel (column 10, row 20).
    kp[0] = [[10.5, 20.5, 1.0], [60.5, 20.5, 1.0], [30.5, 50.5, 1.0]]
    draw_keypoints(image, kp, skeleton=[(1, 2)])
    magenta = (255, 0, 255)
    for x, y in ((10, 20), (60, 20), (30, 50)):
        assert tuple(image[y, x]) == magenta
    limb = image[20, 25:45].astype(int)  # the limb between 1 and 2: yellow (antialiased)
    assert (limb[:, 0] > 150).all() and (limb[:, 0] == limb[:, 1]).all() and not limb[:, 2].any()
    assert not image[0:10].any() and not image[:, 70:].any()  # nothing elsewhere
    assert (image[40:, 55:] == 0).all()  # no limb to keypoint 3


def test_markers_carry_each_persons_keypoints_and_limbs():
    header = Header(frame_id="base_link")
    xyz = np.full((2, 3, 3), np.nan)
    xyz[1] = [[3.0, 0.1, 1.4], [3.0, -0.1, 1.4], [3.0, 0.0, 1.7]]
    msg = make_markers(
        header=header,
        ground_xy=np.array([[3.0, 0.0], [3.0, 0.0]]),
        ground_width=np.array([0.5, 0.5]),
        labels=["car", "person"],
        colors=np.zeros((2, 3), np.uint8),
        ids=[1, 2],
        keypoints_xyz=xyz,
        skeleton=[(1, 3), (2, 3)],
    )
    extra = [m for m in msg.markers if m.ns in ("keypoints", "skeleton")]
    assert [(m.ns, m.id) for m in extra] == [("keypoints", 2), ("skeleton", 2)]
    dots, limbs = extra
    assert [(p.x, p.y, p.z) for p in dots.points] == [tuple(p) for p in xyz[1]]
    assert [(p.x, p.y, p.z) for p in limbs.points] == [tuple(xyz[1][i]) for i in (0, 2, 1, 2)]
    assert dots.header.frame_id == "base_link"
