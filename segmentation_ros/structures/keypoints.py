"""Keypoint sets: names, OKS sigmas, skeleton and left-right flip, stated once.

Keypoints travel as [N, K, 3] float32 (x, y, score or visibility) in absolute pixels of the
original image, COCO's continuous frame (pixel (u, v) covers [u, u + 1) x [v, v + 1), as for
boxes in `structures.instances`). Ground truth uses COCO's visibility (0 not labelled, 1
labelled but occluded, 2 visible); predictions a score (the heatmap's logit at its maximum, as
torchvision's `heatmaps_to_keypoints` returns it).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "KEYPOINT_SETS",
    "SYNTHETIC_KEYPOINTS",
    "KeypointSet",
    "flip_of",
    "keypoint_set_of",
    "skeleton_of",
]


@dataclass(frozen=True)
class KeypointSet:
    """names: K keypoint names; sigmas: K OKS sigmas (COCO's per-keypoint falloff, relative to
    the object scale sqrt(area)); skeleton: limbs as 1-based index pairs (COCO's `skeleton`);
    flip: index of each keypoint after a horizontal flip (left <-> right)."""

    names: tuple[str, ...]
    sigmas: tuple[float, ...]
    skeleton: tuple[tuple[int, int], ...]
    flip: tuple[int, ...]

    def __post_init__(self) -> None:
        k = len(self.names)
        if not k or len(self.sigmas) != k or sorted(self.flip) != list(range(k)):
            raise ValueError("a keypoint set needs K names, K sigmas and a flip permutation of K")
        if any(not 1 <= i <= k for pair in self.skeleton for i in pair):
            raise ValueError(f"skeleton indices are 1-based in 1..{k}")

    def __len__(self) -> int:
        return len(self.names)


#: The synthetic world's people: CrowdPose's 14 keypoints (Li et al., CVPR 2019) in its order,
#: COCO's 12 body joints + head + neck, with CrowdPose's OKS sigmas (COCO's for the joints,
#: 0.079 for head and neck). See `data.synthetic_keypoints` for where each one lies.
SYNTHETIC_KEYPOINTS = KeypointSet(
    names=(
        "left_shoulder",
        "right_shoulder",
        "left_elbow",
        "right_elbow",
        "left_wrist",
        "right_wrist",
        "left_hip",
        "right_hip",
        "left_knee",
        "right_knee",
        "left_ankle",
        "right_ankle",
        "head",
        "neck",
    ),
    sigmas=(0.079, 0.079, 0.072, 0.072, 0.062, 0.062, 0.107, 0.107, 0.087, 0.087, 0.089, 0.089)
    + (0.079, 0.079),
    skeleton=(
        (13, 14),
        (14, 1),
        (14, 2),
        (1, 3),
        (3, 5),
        (2, 4),
        (4, 6),
        (1, 7),
        (2, 8),
        (7, 8),
        (7, 9),
        (9, 11),
        (8, 10),
        (10, 12),
    ),
    flip=(1, 0, 3, 2, 5, 4, 7, 6, 9, 8, 11, 10, 12, 13),
)

#: The keypoint sets we know, for looking one up by its names.
KEYPOINT_SETS = (SYNTHETIC_KEYPOINTS,)


def keypoint_set_of(names: tuple[str, ...] | list[str]) -> KeypointSet | None:
    """The known `KeypointSet` with exactly these names in this order, else None."""
    for known in KEYPOINT_SETS:
        if tuple(names) == known.names:
            return known
    return None


def flip_of(names: tuple[str, ...] | list[str]) -> tuple[int, ...]:
    """The left-right flip of keypoints named COCO-style: "left_x" <-> "right_x", others stay.
    ValueError when a side's partner is missing."""
    names = tuple(names)
    out = []
    for name in names:
        other = name.replace("left", "\0").replace("right", "left").replace("\0", "right")
        if other not in names:
            raise ValueError(f"keypoint {name!r} has no mirror {other!r} among {names}")
        out.append(names.index(other))
    return tuple(out)


def skeleton_of(names: tuple[str, ...] | list[str]) -> tuple[tuple[int, int], ...]:
    """Limbs (1-based pairs) of the known set with these names; () for an unknown set."""
    known = keypoint_set_of(names)
    return () if known is None else known.skeleton
