"""Exact person keypoints of the synthetic world, COCO-style.

The keypoint set is `structures.keypoints.SYNTHETIC_KEYPOINTS`: CrowdPose's 14 (COCO's 12 body
joints + head + neck) with CrowdPose's OKS sigmas. The synthetic person has no face, so COCO's
eyes, ears and nose cannot be placed exactly; our "head" is the centre of the head ellipse
(CrowdPose's is the top of the head; the sigma is the same).

Each keypoint is a fixed point of the person's billboard (`synthetic_shapes.person_keypoints_sz`)
projected through the scene camera. Coordinates are COCO's: continuous pixels, pixel (col, row)
covers [col, col + 1) x [row, row + 1), so the pixel holding keypoint (x, y) is
(floor(x), floor(y)) (our image frame has pixel centres at integers: x = u + 0.5).
Visibility, COCO's flags:
- 2: the pixel belongs to the person's own segment in the final id map;
- 1: the person's drawing covers the pixel but a nearer object (thing or stuff) was drawn over it;
- 0: outside the image, behind the camera, or the part is too thin at this size to cover the
  keypoint's pixel; x = y = 0 then, as in COCO.
"""

from __future__ import annotations

import numpy as np

from segmentation_ros.data.synthetic_render import Z_NEAR, Canvas
from segmentation_ros.data.synthetic_shapes import Thing, bb_points, billboard, person_keypoints_sz
from segmentation_ros.structures.keypoints import SYNTHETIC_KEYPOINTS

KEYPOINT_NAMES = SYNTHETIC_KEYPOINTS.names
KEYPOINT_SIGMAS = SYNTHETIC_KEYPOINTS.sigmas
KEYPOINT_SKELETON = SYNTHETIC_KEYPOINTS.skeleton  # 1-based pairs (COCO's `skeleton`)
KEYPOINT_FLIP = SYNTHETIC_KEYPOINTS.flip
NUM_KEYPOINTS = len(KEYPOINT_NAMES)
KEYPOINT_KIND = "person"


class PendingKeypoints:
    """One drawn person's keypoints between drawing and annotating.

    label: the person's raw label; xy [K, 2] float64 COCO pixels; pixel [K, 2] int (col, row);
    inside [K] bool (in the image, in front of the camera); covered [K] bool (the person's own
    drawing covered the pixel right after it was drawn, before nearer objects).
    """

    def __init__(self, canvas: Canvas, thing: Thing, label: int) -> None:
        origin, right = billboard(thing.x, thing.y)
        points = bb_points(origin, right, person_keypoints_sz(thing.params))
        uv, depth = canvas.camera.project(points)
        h, w = canvas.parts.shape
        with np.errstate(invalid="ignore"):
            pixel = np.floor(uv + 0.5)
            inside = (depth > Z_NEAR) & (pixel >= 0).all(1) & (pixel[:, 0] < w) & (pixel[:, 1] < h)
        self.label = int(label)
        self.xy = uv + 0.5
        self.pixel = np.where(inside[:, None], pixel, 0).astype(np.int64)
        labels = np.asarray(canvas.labels, np.int32)
        drawn = labels[canvas.parts[self.pixel[:, 1], self.pixel[:, 0]]]
        self.inside = inside
        self.covered = inside & (drawn == self.label)

    def annotate(self, raw: np.ndarray) -> np.ndarray:
        """[K, 3] float64 (x, y, visibility) given the final raw label map [H, W]."""
        own = raw[self.pixel[:, 1], self.pixel[:, 0]] == self.label
        vis = np.where(self.covered, np.where(own, 2, 1), 0)
        out = np.zeros((NUM_KEYPOINTS, 3))
        out[:, :2] = np.where(vis[:, None] > 0, self.xy, 0.0)
        out[:, 2] = vis
        return out


def keypoint_category() -> dict:
    """The COCO category fields that describe our keypoints (`keypoints`, `skeleton`)."""
    return {"keypoints": list(KEYPOINT_NAMES), "skeleton": [list(p) for p in KEYPOINT_SKELETON]}


def coco_keypoint_fields(keypoints: np.ndarray) -> dict:
    """[K, 3] (x, y, v) -> COCO annotation fields {keypoints: flat list, num_keypoints}."""
    kp = np.asarray(keypoints, dtype=np.float64)
    flat = []
    for x, y, v in kp:
        flat += [float(x), float(y), int(v)]  # unrounded: floor(x) is the pixel
    return {"keypoints": flat, "num_keypoints": int((kp[:, 2] > 0).sum())}
