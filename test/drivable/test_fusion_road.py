"""Fusion over time with odometry: a robot drives the synthetic world's camera along a straight
road; the fused grid in the odometry frame is compared with the road's true area there."""

from segmentation_ros.train.drivable_eval import fused_road_agreement


def test_fused_grid_covers_more_road_than_one_frame_and_stays_aligned():
    straight = fused_road_agreement(12, step=1.0)
    print(straight)
    assert straight["road_m2"] > 1.5 * straight["single_frame_road_m2"]
    assert straight["iou"] >= 0.9
    turning = fused_road_agreement(12, step=1.0, yaw_rate=0.03)  # poses with a yaw
    assert turning["iou"] >= 0.9


def test_wrong_odometry_misaligns_the_fused_grid():
    # 0.1 rad of heading error in every pose the fusion is told: the road smears sideways.
    good = fused_road_agreement(12, step=1.0)
    wrong = fused_road_agreement(12, step=1.0, pose_error=0.1)
    assert wrong["iou"] < good["iou"] - 0.1, (good, wrong)
